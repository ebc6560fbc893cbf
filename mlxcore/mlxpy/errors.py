"""Exceptions raised by mlxpy; every one derives from :class:`MlxpyError`."""

from __future__ import annotations

from mlxpy.rundir.status import RunStatus


class MlxpyError(Exception):
    """Root of every error mlxpy raises on purpose, so callers can catch them all at once."""


class ConfigError(MlxpyError):
    """A config file, an option or a command-line override is wrong."""


class OptionsError(ConfigError):
    """``mlxpy.yaml`` or a ``mlxpy.*`` override does not fit the options schema."""


class PluginError(MlxpyError):
    """A plugin could not be found, loaded or used."""


class UnknownPluginError(PluginError):
    """The name selected in ``mlxpy.yaml`` is provided by no installed plugin."""


class LogDirError(MlxpyError):
    """A run directory could not be claimed or written."""


class DiskFullError(LogDirError, OSError):
    """The disk (or quota) holding a run directory is full; the message says what could not be
    written and how to make room. An ``OSError`` too, so ``except OSError`` still catches it."""


class MlxpyWarning(UserWarning):
    """Base of mlxpy's warnings; on the command line they print as ``mlxpy: warning: ...``."""


class RunInterrupted(BaseException):
    """Raised inside a run when the process receives SIGTERM (a cancelled job, time limits).

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` in user code does
    not swallow the request to stop.
    """

    def __init__(
        self, signum: int, signame: str, status: str = RunStatus.INTERRUPTED.value
    ) -> None:
        super().__init__(f"received {signame}")
        self.signum = signum
        self.signame = signame
        self.status = status
