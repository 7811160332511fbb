"""What the run scripts share: a fault of the user's input is one line on stderr and exit status 2; an interruption
(Ctrl-C, SIGINT) one line and status 130; a bug keeps its traceback. ``--debug`` (or the environment variable
``RECBOLE_DIFFUSION_DEBUG=1``) shows the traceback of all three."""

import os
import sys

from recbole_diffusion.data import DatasetNotFoundError
from recbole_diffusion.utils import ModelNotFoundError
from recbole_diffusion.validation import InputError

DEBUG_VARIABLE = "RECBOLE_DIFFUSION_DEBUG"
INPUT_ERRORS = (InputError, DatasetNotFoundError, ModelNotFoundError)
INPUT_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130  # the shell's status of a command ended by SIGINT
INTERRUPTED = (
    "interrupted: what was stored stays; run the same command again to continue a comparison, or add "
    "--resume=<its checkpoint> to continue a single run"
)


def debugging(debug_flag):
    """Whether tracebacks are wanted: ``--debug`` or ``RECBOLE_DIFFUSION_DEBUG`` set to anything but 0 or empty."""
    return debug_flag or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def exit_status(command, debug_flag=False):
    """Run ``command()``; 0 when it returns, 2 after printing ``error: <message>`` for a fault of the input, 130 after
    one line for an interruption."""
    try:
        command()
    except INPUT_ERRORS as error:
        if debugging(debug_flag):
            raise
        print(f"error: {error}", file=sys.stderr)
        return INPUT_ERROR_STATUS
    except KeyboardInterrupt:
        if debugging(debug_flag):
            raise
        print(INTERRUPTED, file=sys.stderr)
        return INTERRUPTED_STATUS
    return 0
