"""Every status a run can have, as the run info records it."""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """A run's status. Members are ``str``, so ``info["status"] == RunStatus.COMPLETE`` works
    on what is read back from disk; writers store the plain value."""

    #: the run's process is alive (or was killed without a word: the Reader then says LOST)
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    #: the task raised, or called ``sys.exit(n)`` with n != 0
    FAILED = "FAILED"
    #: SIGTERM, SIGINT (Ctrl-C), or a signal the scheduler did not announce as a time limit
    INTERRUPTED = "INTERRUPTED"
    #: the scheduler's time-limit warning arrived
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    #: claimed and handed to a scheduler, not started yet
    SUBMITTED = "SUBMITTED"
    #: the scheduler refused the job
    SUBMIT_FAILED = "SUBMIT_FAILED"
    #: an attempt ended and the scheduler will start the run again (``mlxpy status`` only)
    REQUEUED = "REQUEUED"
    CANCELLED = "CANCELLED"
    #: RUNNING on disk, but its heartbeat is stale and its process is gone
    LOST = "LOST"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """Whether the run has ended for good (it may still be resumed by hand)."""
        return self in FINAL


FINAL = frozenset(
    {
        RunStatus.COMPLETE,
        RunStatus.FAILED,
        RunStatus.INTERRUPTED,
        RunStatus.TIMEOUT,
        RunStatus.PREEMPTED,
        RunStatus.CANCELLED,
        RunStatus.SUBMIT_FAILED,
        RunStatus.LOST,
    }
)
#: a run whose job may still be running or waiting
LIVE = frozenset({RunStatus.SUBMITTED, RunStatus.RUNNING})
