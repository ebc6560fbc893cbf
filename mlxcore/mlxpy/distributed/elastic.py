"""torchrun's error file: the failing rank's traceback in torchrun's own summary.

torchrun names the first rank to exit as the "Root Cause" of a failed job, and shows the
error file that rank left (``TORCHELASTIC_ERROR_FILE``), or ``<N/A>`` without one. A task
run by mlxpy catches its exception to record it, so torch's ``@record`` never sees it: mlxpy
writes the file in torch's documented format instead (only if the task did not).
"""

from __future__ import annotations

import json
import os
import time

ERROR_FILE_ENV = "TORCHELASTIC_ERROR_FILE"


def write_error_file(error_type: str, message: str, traceback_text: str) -> None:
    path = os.environ.get(ERROR_FILE_ENV)
    if not path or os.path.exists(path):
        return
    data = {
        "message": {
            "message": f"{error_type}: {message}",
            "extraInfo": {"py_callstack": traceback_text, "timestamp": str(int(time.time()))},
        }
    }
    try:
        with open(path, "x") as handle:
            json.dump(data, handle)
    except OSError:  # torch's own summary then says <N/A>: nothing of the run is lost
        pass
