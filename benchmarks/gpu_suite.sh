#!/usr/bin/env bash
# The runs that need a GPU, most valuable first, in one command that ends within SUITE_SECONDS (default 540 s):
#   (a) DiffRec, L-DiffRec and T-DiffRec (and Pop) on ML-1M clean, benchmarks/configs/DiffRec-ml-1m.yaml, until
#       early stopping (the official released checkpoints: Recall@20 0.1787, NDCG@20 0.1148);
#   (b) the converged ml-100k sequential table: every sequential model with its default config beside SASRec,
#       GRU4Rec, BERT4Rec and SequentialPop, until early stopping on valid NDCG@10, seed 2020 first, then 2021-2022;
#   (c) DiffuRec and SASRec on ml-1m, benchmarks/configs/DiffuRec-ml-1m.yaml, DIFFUREC_EPOCHS epochs (default 20).
# Each step is a resumable comparison (recbole_diffusion.compare: one stored cell per model and seed) under a time
# budget; when a budget runs out the step is interrupted (SIGINT) and the next step starts. Run the same command
# again with the results folder in place (committed, or carried back) and every step continues where it stopped:
# stored cells are skipped, an interrupted cell continues from its last_epoch.pth. The results go to
# benchmarks/results/gpu/ (GPU_SUITE_OUTPUT); at the end one summary table of every stored cell is printed and
# written to summary.md there, and, when $OUT is set (the device tool's output folder), the results (without
# best.pth checkpoints) are packed into $OUT/gpu-results.tgz.partNN pieces of at most 15 MiB.
#
#   bash benchmarks/gpu_suite.sh            # on a GPU machine; benchmarks/gpu_prepare.sh stages what it lacks
#   bash benchmarks/gpu_suite.sh --smoke    # the same steps with tiny budgets, on the CPU (minutes)
#
# --smoke: every step on ml-100k (the general step with properties/protocol/general.yaml), one epoch, tiny sizes and
# only the users with at most 30 ratings (benchmarks/gpu-smoke.yaml), one seed, results in GPU_SUITE_OUTPUT (default:
# a new temporary folder).
# GPU_SUITE_SEQUENTIAL_MODELS / GPU_SUITE_GENERAL_MODELS replace the model lists (the tests use short ones).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=full
if [ "${1:-}" = "--smoke" ]; then
    MODE=smoke
elif [ -n "${1:-}" ]; then
    echo "error: unknown argument '$1'; allowed: --smoke" >&2
    exit 2
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import recbole" 2>/dev/null; then
    if [ ! -d .gpu/wheels ]; then
        echo "error: recbole is not installed and .gpu/wheels is missing: run benchmarks/gpu_prepare.sh and carry .gpu" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-suite-site .gpu/wheels/*.whl || exit 2
    export PYTHONPATH=/tmp/gpu-suite-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -d .gpu/datasets ]; then DATA=${GPU_SUITE_DATA:-.gpu/datasets}; else DATA=${GPU_SUITE_DATA:-../shared/datasets}; fi

SEQUENTIAL_MODELS=${GPU_SUITE_SEQUENTIAL_MODELS:-DreamRec,DiffuRec,DiQDiff,DimeRec,DiffDiv,DiffRec2,ADRec,PreferDiff,SASRec,GRU4Rec,BERT4Rec}
GENERAL_MODELS=${GPU_SUITE_GENERAL_MODELS:-DiffRec,LDiffRec,TDiffRec}
if [ "$MODE" = smoke ]; then
    OUTPUT=${GPU_SUITE_OUTPUT:-$(mktemp -d)}
    SUITE_SECONDS=${SUITE_SECONDS:-3000}
    SMOKE=benchmarks/gpu-smoke.yaml
    GENERAL=(--dataset=ml-100k "--config_files=properties/protocol/general.yaml $SMOKE")
    SEQUENTIAL=(--dataset=ml-100k "--config_files=$SMOKE")
    DIFFUREC=(--dataset=ml-100k "--config_files=benchmarks/configs/DiffuRec-ml-1m.yaml $SMOKE")
    SEQUENTIAL_SEEDS=(1)
    DIFFUREC_EPOCHS=1
else
    OUTPUT=${GPU_SUITE_OUTPUT:-benchmarks/results/gpu}
    SUITE_SECONDS=${SUITE_SECONDS:-540}
    GENERAL=(--dataset=ml-1m "--data_path=$DATA" --config_files=benchmarks/configs/DiffRec-ml-1m.yaml)
    SEQUENTIAL=(--dataset=ml-100k)
    DIFFUREC=(--dataset=ml-1m "--data_path=$DATA" --config_files=benchmarks/configs/DiffuRec-ml-1m.yaml)
    SEQUENTIAL_SEEDS=(1 3)
    DIFFUREC_EPOCHS=${DIFFUREC_EPOCHS:-20}
fi
mkdir -p "$OUTPUT"
START=$SECONDS

# run_step NAME SHARE_OF_WHAT_IS_LEFT ARGUMENTS...: one comparison under a budget of SHARE percent of the seconds
# left (at least 30), interrupted with SIGINT when it runs out.
run_step() {
    local name=$1 share=$2
    shift 2
    local left=$((SUITE_SECONDS - (SECONDS - START) - 30))
    local budget=$((left * share / 100))
    if [ "$budget" -lt 30 ]; then
        echo "== $name: skipped, ${left}s left" >&2
        return
    fi
    echo "== $name: budget ${budget}s: python run_recbole_diffusion.py $*" >&2
    timeout --signal=INT --kill-after=20 "$budget" "$PYTHON" run_recbole_diffusion.py "$@" --show_progress=False
    local status=$?
    [ "$status" -eq 124 ] && echo "== $name: budget spent; run the suite again to continue" >&2
    [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && echo "== $name: exit status $status" >&2
}

run_step "(a) DiffRec family, ML-1M clean" 35 --model="$GENERAL_MODELS" "${GENERAL[@]}" --seeds=1 \
    --output_dir="$OUTPUT/general"
for seeds in "${SEQUENTIAL_SEEDS[@]}"; do
    run_step "(b) ml-100k sequential, $seeds seed(s)" 70 --model="$SEQUENTIAL_MODELS" "${SEQUENTIAL[@]}" \
        --seeds="$seeds" --output_dir="$OUTPUT/sequential"
done
run_step "(c) DiffuRec and SASRec, ml-1m" 100 --model=DiffuRec,SASRec "${DIFFUREC[@]}" --seeds=1 \
    --epochs="$DIFFUREC_EPOCHS" --output_dir="$OUTPUT/diffurec"

mapfile -t FOLDERS < <(find "$OUTPUT" -mindepth 3 -maxdepth 3 -type d | sort)
"$PYTHON" benchmarks/cells_summary.py "${FOLDERS[@]}" --output="$OUTPUT/summary.md"
echo "== suite: $((SECONDS - START))s; results in $OUTPUT" >&2
if [ -n "${OUT:-}" ]; then
    tar -czf - --exclude=best.pth -C "$(dirname "$OUTPUT")" "$(basename "$OUTPUT")" \
        | split -b 15M -d - "$OUT/gpu-results.tgz.part"
fi
