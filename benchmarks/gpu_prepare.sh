#!/usr/bin/env bash
# Stage what benchmarks/gpu_suite.sh needs on a GPU machine that has PyTorch but neither RecBole nor our datasets and
# cannot reach a package registry: run here, from the repository root, before lending a GPU. It fills .gpu/ (ignored
# through .git/info/exclude, never committed):
#   .gpu/wheels/    RecBole 1.2.1 and its pure-Python requirements missing from a PyTorch image (no dependencies
#                   pulled in: the image has numpy, pandas, scipy, scikit-learn, torch, ...)
#   .gpu/datasets/  copies of the atomic files the suite reads (ml-1m; ml-100k ships inside the RecBole wheel)
# Then send the suite with the folder carried along, e.g. for the session's device tool:
#   command "bash benchmarks/gpu_suite.sh", carry [".gpu"].
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED_DATASETS:-../shared/datasets}
PYTHON_VERSION=${GPU_PYTHON_VERSION:-3.12}   # the GPU image's Python
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu/wheels .gpu/datasets
python -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" \
    --implementation cp --platform manylinux2014_x86_64 -d .gpu/wheels \
    recbole==1.2.1 colorlog==4.7.2 texttable==1.7.2 thop==0.1.1.post2209072238
for dataset in ml-1m; do
    if [ ! -f "$SHARED/$dataset/$dataset.inter" ]; then
        echo "error: $SHARED/$dataset/$dataset.inter not found: put the RecBole atomic files of $dataset there" >&2
        exit 2
    fi
    mkdir -p ".gpu/datasets/$dataset"
    cp "$SHARED/$dataset/"*.inter ".gpu/datasets/$dataset/"
done
du -sh .gpu
