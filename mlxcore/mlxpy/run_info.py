"""What is recorded about each run, so it can be understood and reproduced later."""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import sys
import traceback
from datetime import datetime, timezone

from mlxpy.context import RunInfo
from mlxpy.rundir.status import RunStatus


def now_iso() -> str:
    """Current time, ISO 8601 with the local UTC offset."""
    return iso_time(datetime.now(timezone.utc).timestamp())


def iso_time(timestamp: float) -> str:
    """A POSIX time as the run info writes times: ISO 8601, local offset, milliseconds."""
    return (
        datetime.fromtimestamp(timestamp, timezone.utc)
        .astimezone()
        .isoformat(timespec="milliseconds")
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still identifies the user
        return str(os.getuid())


#: one id per launch (a sweep shares it), e.g. to group runs in trackers
LAUNCH_ID = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def new_run_info(
    script_path: str, project_dir: str, overrides: list[str], plugin_versions: dict[str, str]
) -> RunInfo:
    from mlxpy import __version__

    return RunInfo(
        status=RunStatus.RUNNING.value,
        log_id=None,
        log_dir=None,
        start_time=now_iso(),
        end_time=None,
        duration_s=None,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        user=_user(),
        python_executable=sys.executable,
        python_version=sys.version.split()[0],
        command=shlex.join([sys.executable, *sys.argv]),
        argv=list(sys.argv),
        overrides=list(overrides),
        cwd=os.getcwd(),
        script_path=script_path,
        project_dir=project_dir,
        mlxpy_version=__version__,
        launch_id=LAUNCH_ID,
        plugins=dict(plugin_versions),
    )


def finish(info: RunInfo, status: str, started: float, ended: float) -> None:
    info.status = str(status)
    info.end_time = now_iso()
    info.duration_s = round(ended - started, 6)


def safe_text(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes, e.g. from a file name) spelled out as
    ``\\udcff``: YAML, JSON and UTF-8 files refuse them, and a run's record must not fail."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_message(error: BaseException) -> str:
    """``str(error)``, safe to store; an exception whose ``__str__`` raises still gets a
    message, so that recording it never fails in its place."""
    try:
        message = str(error)
    except Exception as exc:
        message = f"<str() raised {type(exc).__name__}>"
    return safe_text(message)


def exit_status(error: SystemExit) -> int:
    """The status ``sys.exit(code)`` gives the process, as Python decides it: an int is the
    status, None is 0, anything else (a message) is 1."""
    if error.code is None:
        return 0
    return error.code if isinstance(error.code, int) else 1


def describe_error(info: RunInfo, error: BaseException) -> str:
    """Record the error in ``info``; return the full traceback text for the run dir. Both
    are safe to write, whatever the exception's message holds."""
    info.error = {"type": safe_text(type(error).__name__), "message": error_message(error)}
    try:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception as exc:  # a broken exception must still leave its record
        summary = f"{info.error['type']}: {info.error['message']}"
        text = f"{summary}\n(no traceback: formatting it raised {type(exc).__name__})\n"
    return safe_text(text)
