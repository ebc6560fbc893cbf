"""Sweepers turn a launch's search space into its points. ``sweep.name`` in ``mlxpy.yaml``
(or ``+mlxpy.sweep.name=...``) selects one, as loggers and schedulers are selected; the
builtin :class:`BasicSweeper` enumerates the product (or the zip) of the listed values, or
draws random points.

A sweeper either plans every point at launch (:meth:`Sweeper.points`) or, when
``adaptive``, is asked for one trial at a time by workers that run each trial as an ordinary
run and tell it the objective (:meth:`Sweeper.ask`, :meth:`Sweeper.tell`): no worker waits
for another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mlxpy.errors import ConfigError
from mlxpy.hookspecs import hookimpl
from mlxpy.plugins.component import Component
from mlxpy.rundir.status import RunStatus
from mlxpy.sweeping.space import SearchSpace

#: the run statuses ``sweep.only`` (``mlxpy sweep resume --only``) may name, lower-case,
#: besides ``missing`` (a point whose run never started or whose dir is gone)
RESUMABLE = (
    "missing",
    "failed",
    "interrupted",
    "timeout",
    "lost",
    "cancelled",
    "preempted",
    "submit_failed",
)


@dataclass
class Trial:
    """One point an adaptive sweeper proposes: its number in the study (unique across the
    sweep's workers: the run's ``sweep_point``) and its overrides; ``log_id`` is set by the
    worker once the trial's run dir is claimed, before it is told. ``host`` and ``pid``: the
    process that asked it (``socket.gethostname()``, ``os.getpid()``), recorded by
    :meth:`Sweeper.ask` with the trial and given back by :meth:`Sweeper.running`, so that a
    relaunch never takes a live worker's trial, not started as a run yet, for a lost one."""

    number: int
    overrides: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    log_id: int | None = None
    host: str | None = None
    pid: int | None = None


class Sweeper(Component):
    """Base of sweepers. Its settings (the constructor's keywords) are the ``sweep`` block's
    keys every sweeper accepts; a subclass adds its own and passes these on (``**kwargs``).

    ``space``: a YAML file of the search space, relative to the config dir (instead of, or
    besides, sweeps on the command line); ``resume``: run only the points of the same
    command's latest sweep (or of the sweep whose id it is) that did not complete;
    ``only``: which of those (see :data:`RESUMABLE`); ``pack``: points run one after
    another in one scheduler job; ``max_running``: at most this many of the sweep's jobs
    run at once (0: no limit).
    """

    role = "sweeper"
    name = "Sweeper"
    #: ask one trial at a time (workers run them) instead of planning every point at launch
    adaptive: ClassVar[bool] = False

    def __init__(
        self,
        space: str = "",
        resume: bool | str = False,
        only: list[str] | None = None,
        pack: int = 1,
        max_running: int = 0,
    ) -> None:
        if pack < 1:
            raise ValueError("pack must be at least 1 (points per scheduler job)")
        if max_running < 0:
            raise ValueError("max_running must be 0 (no limit) or more")
        unknown = [s for s in (only or []) if s.lower() not in RESUMABLE]
        if unknown:
            raise ValueError(
                f"only names unknown statuses {unknown}: choose from {', '.join(RESUMABLE)}"
            )
        self.space = space
        self.resume = resume
        self.only = [s.lower() for s in only] if only else list(RESUMABLE)
        self.pack = pack
        self.max_running = max_running

    # -- a planning sweeper ---------------------------------------------------------------
    def points(self, space: SearchSpace) -> list[list[str]]:
        """Every point of the sweep, as the override list of its job, in order."""
        raise ConfigError(
            f"sweeper '{self.name}' plans no points: select one that does (sweep.name: "
            "BasicSweeper) or an adaptive one"
        )

    # -- an adaptive sweeper --------------------------------------------------------------
    #: how many workers run trials at once
    workers: int = 1
    #: what a trial's run is judged by: ``<log>.<key>.<min|max|last>`` of its metrics (the
    #: worker computes it, :func:`mlxpy.sweeping.worker.objective_value`)
    objective: str = ""

    #: the most a read-only :meth:`open` reads of a study, in bytes (256 MiB): a bigger
    #: study is refused rather than replayed into the memory of whoever looks at it
    max_read_bytes: int = 256 * 1024**2

    def open(self, sweep_dir: Path, space: SearchSpace, read_only: bool = False) -> None:
        """Create or reopen the study of a sweep; ``sweep_dir`` holds its files (on the
        shared filesystem every worker sees).

        ``read_only`` (``mlxpy sweep status``, which anyone who can read the sweep runs, in
        a sweep dir that may be another user's or not writable): open an existing study
        only to read it (:meth:`best`, :meth:`running`). It creates, writes and locks
        nothing in ``sweep_dir``, and raises :class:`mlxpy.sweeping.manifest.SweepError`
        when the study is missing or bigger than :attr:`max_read_bytes`; :meth:`ask` and
        :meth:`tell` then raise."""
        raise NotImplementedError

    def ask(self) -> Trial | None:
        """The next trial to run, or None when the study has all its trials. The asking
        process's host and pid are stored with the trial in the same critical section as
        the asking (see :class:`Trial`)."""
        raise NotImplementedError

    def tell(self, trial: Trial, value: float | None, status: RunStatus) -> None:
        """How a trial ended: its objective (None when the run did not complete or logged
        no objective). COMPLETE and FAILED (the task raised) use up a trial of the budget;
        any other status (INTERRUPTED, CANCELLED, TIMEOUT, PREEMPTED, LOST: the run was cut
        short) does not, so the study asks another trial in its place. A trial already
        told (by another process) is left as it is, with a warning: never an error, which
        would end the worker."""
        raise NotImplementedError

    def running(self) -> list[Trial]:
        """The trials asked and not told yet, each with the ``host`` and ``pid`` that asked
        it (a trial being asked meanwhile is either absent or complete): a relaunch tells
        those whose run and worker are not alive as LOST, so that the study can ask
        again."""
        return []

    def best(self) -> dict[str, Any] | None:
        """The best trial so far: ``{"number", "value", "params", "log_id"}``, or None."""
        return None


class BasicSweeper(Sweeper):
    """The product of the listed values (``mode: product``) or their zip (``mode: zip``, every
    list of the same length); with ``samples: N``, N random points drawn with ``seed``."""

    def __init__(
        self, mode: str = "product", samples: int = 0, seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("product", "zip"):
            raise ValueError(f"mode must be product or zip, got {mode!r}")
        if samples < 0:
            raise ValueError("samples must be 0 (every point) or more")
        if samples and mode == "zip":
            raise ValueError("samples draws from the whole space, not from a zip: drop one")
        self.mode = mode
        self.samples = samples
        self.seed = seed

    def points(self, space: SearchSpace) -> list[list[str]]:
        if self.samples:
            return space.sample(self.samples, self.seed)
        if self.mode == "zip":
            return space.zip(self.seed)
        return space.product(self.seed)


def make_sweeper(options: Any) -> Sweeper:
    """The sweeper the ``sweep`` block of a launch's options selects, validated and built."""
    from mlxpy.plugins import get_plugins
    from mlxpy.plugins.component import build_component

    block = options.block("sweep")
    name = block.pop("name")
    where = f"{options.where('sweep.name')}: sweep.name"
    cls = get_plugins().resolve("sweeper", name, where=where)
    sweeper: Sweeper = build_component(cls, "sweep", block, options.settings_where("sweep"))
    return sweeper


@hookimpl
def mlxpy_register_sweepers() -> list[type]:
    return [BasicSweeper]
