"""Where runs live: the one rule that turns a ``parent_log_dir`` string into a directory,
shared by the logger that writes runs, the Reader and the ``mlxpy`` commands that read them.

A relative parent log dir is relative to a *project dir*, never to whichever directory a
command happens to run in: launching, the project dir is the directory of the task's file
(``info.project_dir``; a snapshot run keeps the original one); reading, mlxpy cannot know the
task, so the project dir is the one given (``Reader(..., project_dir=...)``, ``mlxpy runs
--project-dir DIR``), or the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PARENT_LOG_DIR = "./logs"


def resolve_parent_log_dir(
    parent_log_dir: str | os.PathLike[str], project_dir: str | os.PathLike[str] | None = None
) -> Path:
    """``parent_log_dir`` as an absolute path: ``~`` is expanded, an absolute path is kept, a
    relative one is joined to ``project_dir`` (the current directory when None). Links are
    not resolved here: callers that need the real path resolve it."""
    path = Path(os.path.expanduser(os.fspath(parent_log_dir)))
    if path.is_absolute():
        return path
    base = Path.cwd() if project_dir is None else Path(os.path.expanduser(os.fspath(project_dir)))
    return base.absolute() / path
