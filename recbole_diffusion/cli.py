"""What the run scripts share: a fault of the user's input is one line on stderr and exit status 2; a bug keeps its
traceback. ``--debug`` (or the environment variable ``RECBOLE_DIFFUSION_DEBUG=1``) shows the traceback of both."""

import os
import sys

from recbole_diffusion.data import DatasetNotFoundError
from recbole_diffusion.utils import ModelNotFoundError
from recbole_diffusion.validation import InputError

DEBUG_VARIABLE = "RECBOLE_DIFFUSION_DEBUG"
INPUT_ERRORS = (InputError, DatasetNotFoundError, ModelNotFoundError)
INPUT_ERROR_STATUS = 2


def debugging(debug_flag):
    """Whether tracebacks are wanted: ``--debug`` or ``RECBOLE_DIFFUSION_DEBUG`` set to anything but 0 or empty."""
    return debug_flag or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def exit_status(command, debug_flag=False):
    """Run ``command()``; 0 when it returns, 2 after printing ``error: <message>`` for a fault of the input."""
    try:
        command()
    except INPUT_ERRORS as error:
        if debugging(debug_flag):
            raise
        print(f"error: {error}", file=sys.stderr)
        return INPUT_ERROR_STATUS
    return 0
