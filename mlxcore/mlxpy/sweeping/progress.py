"""What a launch tells the user on stderr while it runs: each run's id and dir as it starts,
a sweep's progress (ended / failed / running of N, elapsed, ETA), and the one-line summary
that ends every launch. stdout is left to the task.

On a terminal the progress is one status line, redrawn at each event; elsewhere (CI, batch
logs) every event is a plain line of its own, so logs read in order and never hold ``\\r``.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

from mlxpy.rundir.status import RunStatus

_active: SweepProgress | None = None  # the progress being shown, if any


def say(line: str) -> None:
    """Print one ``[mlxpy]`` line on stderr, around the live status line if one is shown."""
    if _active is not None:
        _active.event(line)
    else:
        print(line, file=sys.stderr, flush=True)


def announce_run(log_id: Any, log_dir: Any) -> None:
    """The line every run prints as it starts: how to find it."""
    say(f"[mlxpy] run {log_id} {log_dir}")


def counts_text(counts: Counter[str] | dict[str, int]) -> str:
    """``3 COMPLETE, 1 FAILED``: statuses in :class:`RunStatus` order, then any others."""
    order = {str(s): n for n, s in enumerate(RunStatus)}
    items = sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: order.get(kv[0], 99))
    return ", ".join(f"{v} {k}" for k, v in items) or "nothing"


def summary_line(
    counts: Counter[str] | dict[str, int],
    elapsed: float | None = None,
    sweep_id: str | None = None,
    noun: str = "run",
) -> str:
    """The line a launch ends with, e.g. ``[mlxpy] sweep <id>: 4 runs: 3 COMPLETE, 1 FAILED
    in 2.1 s``."""
    total = sum(counts.values())
    head = f"[mlxpy] sweep {sweep_id}: " if sweep_id else "[mlxpy] "
    tail = f" in {elapsed:.1f} s" if elapsed is not None else ""
    plural = "" if total == 1 else "s"
    return f"{head}{total} {noun}{plural}: {counts_text(counts)}{tail}"


def report_line(parent: Any, sweep_id: str) -> str:
    """The command that writes the sweep's report (``mlxpy report``), shown as a sweep ends."""
    import shlex

    query = f'info.sweep_id == "{sweep_id}"'
    return f"[mlxpy] report: mlxpy report {shlex.quote(str(parent))} -q {shlex.quote(query)}"


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class SweepProgress:
    """The progress of the runs of one launch, as they start and end (in this process)."""

    def __init__(
        self,
        total: int,
        sweep_id: str | None = None,
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.total = total
        self.sweep_id = sweep_id
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.counts: Counter[str] = Counter()
        self.running = 0
        self.started = time.monotonic()
        self._drawn = False

    def __enter__(self) -> SweepProgress:
        global _active
        _active = self
        self._draw()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        global _active
        _active = None
        self._clear()

    # -- events --------------------------------------------------------------------------
    def job_started(self) -> None:
        self.running += 1
        self._draw()

    def job_ended(self, status: str, line: str | None = None) -> None:
        self.running = max(0, self.running - 1)
        self.counts[str(status)] += 1
        if line is not None:
            self.event(line)
        if not self.tty:  # one progress line per ended job in a log
            self._write(self.status_text() + "\n")
        self._draw()

    def event(self, line: str) -> None:
        self.write(line + "\n")

    def write(self, text: str) -> None:
        """Text of its own (a traceback, a message), not glued to the status line."""
        self._clear()
        self._write(text)
        self._draw()

    # -- figures -------------------------------------------------------------------------
    @property
    def ended(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return self.ended - self.counts[str(RunStatus.COMPLETE)]

    def eta(self) -> float | None:
        """Seconds left at the pace so far (None until a job has ended)."""
        if not self.ended:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.ended * max(0, self.total - self.ended)

    def status_text(self) -> str:
        elapsed = time.monotonic() - self.started
        eta = self.eta()
        return (
            f"[mlxpy] {self.ended}/{self.total} ended ({self.failed} failed), "
            f"{self.running} running, {clock(elapsed)} elapsed, "
            f"ETA {clock(eta) if eta is not None else '?'}"
        )

    def summary(self) -> str:
        return summary_line(self.counts, time.monotonic() - self.started, self.sweep_id)

    # -- drawing -------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the sweep
            pass

    def _draw(self) -> None:
        if self.tty:
            self._write("\r\x1b[K" + self.status_text())
            self._drawn = True

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False
