"""OptunaSweeper: an Optuna study kept in the sweep's folder, in Optuna's journal file
storage (one append-only file, locked by ``O_EXCL`` lock files: it works on a shared
filesystem, NFSv3 or later, without a database server), asked for one trial at a time by
mlxpy's workers.

The study's budget is ``trials``: a trial counts once it is asked, unless it ends cut short
(its run INTERRUPTED, CANCELLED, TIMEOUT, PREEMPTED or LOST: its worker was stopped), in
which case it is failed in the study and another is asked in its place. A trial whose task
failed, or that logged no objective, counts (a task that always fails must not be retried
for ever). Asking is serialised by a lock of its own, so concurrent workers never exceed the
budget and never share a trial number.

``mlxpy sweep status`` opens the study read-only: with ``optuna.load_study`` on a journal
read as it was when opened, never written nor locked, at most ``max_read_bytes`` (256 MiB)
of it; a missing or bigger journal is refused.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlxpy import (
    Choice,
    ConfigError,
    Interval,
    MlxpyWarning,
    RunStatus,
    SearchSpace,
    Sweeper,
    Trial,
)

STUDY_NAME = "mlxpy"
JOURNAL_FILE = "optuna.journal"
ASK_LOCK = "ask"  # the lock file is ask.lock
SAMPLERS = ("tpe", "random")
DIRECTIONS = ("minimize", "maximize")
#: what a trial keeps in its user attributes
OVERRIDES, LOG_ID, STATUS, COUNTED, SPACE, WORKER = (
    "overrides",
    "log_id",
    "status",
    "counted",
    "mlxpy_space",
    "worker",  # [host, pid] of the process that asked it
)


class OptunaSweeper(Sweeper):
    """Bayesian search (TPE, or random) over the launch's search space: ``key=a,b`` choices
    are categorical, ``interval(a,b)`` floats, ``tag(int, ...)`` integers, ``tag(log, ...)``
    on a log scale.

    ``trials``: how many trials the study runs; ``workers``: how many run at once (one
    array of that many jobs, with a scheduler); ``objective``:
    ``<log>.<key>.<min|max|last>``; ``direction``: ``minimize`` or ``maximize``, needed with
    ``last`` (``min`` minimises, ``max`` maximises); ``sampler``: ``tpe`` or ``random``;
    ``seed``: trial ``n`` samples with ``seed + n`` (random search is then reproducible;
    TPE also depends on which trials have ended when it asks).
    """

    name = "OptunaSweeper"
    adaptive = True

    def __init__(
        self,
        trials: int,
        objective: str,
        workers: int = 1,
        direction: str = "",
        sampler: str = "tpe",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        from mlxpy import Objective  # here, not at import: registering needs no new core

        super().__init__(**kwargs)
        if trials < 1:
            raise ValueError("trials must be at least 1: how many trials the study runs")
        if workers < 1:
            raise ValueError("workers must be at least 1: how many trials run at once")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if self.pack != 1:
            raise ValueError(
                "pack does not apply to OptunaSweeper: each worker already runs its trials one "
                "after another in one job"
            )
        if self.max_running:
            raise ValueError(
                "max_running does not apply to OptunaSweeper: workers is how many trials run "
                "at once"
            )
        parsed = Objective.parse(objective)
        if direction and direction not in DIRECTIONS:
            raise ValueError(f"direction must be minimize or maximize, got {direction!r}")
        if parsed.direction is None and not direction:
            raise ValueError(
                f"objective {objective!r} takes the last value: set direction (+mlxpy.sweep."
                "direction=minimize or maximize)"
            )
        if parsed.direction and direction and direction != parsed.direction:
            raise ValueError(
                f"objective {objective!r} asks to {parsed.direction} but direction is "
                f"{direction!r}: drop direction, or end the objective with .last"
            )
        self.trials = trials
        self.workers = workers
        self.objective = objective
        self.direction = direction or str(parsed.direction)
        self.sampler = sampler
        self.seed = seed
        self._study: Any = None
        self._space = SearchSpace()
        self._distributions: dict[str, Any] = {}
        self._folder = Path()
        self._asked: dict[int, Any] = {}  # number -> optuna.trial.Trial asked by this process
        self._read_only = False

    # -- the study ------------------------------------------------------------------------
    def open(self, sweep_dir: Path, space: SearchSpace, read_only: bool = False) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the worker prints each trial
        self._folder = Path(sweep_dir)
        self._read_only = read_only
        if read_only:
            self._study = _load_read_only(self._folder / JOURNAL_FILE, self.max_read_bytes)
            return
        self._folder.mkdir(parents=True, exist_ok=True)
        path = str(self._folder / JOURNAL_FILE)
        storage = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
        self._study = optuna.create_study(
            storage=storage,
            study_name=STUDY_NAME,
            direction=self.direction,  # type: ignore[arg-type]
            load_if_exists=True,
        )
        if self._study.direction.name.lower() != self.direction:
            raise ConfigError(
                f"the study in {path} was created to {self._study.direction.name.lower()}, "
                f"this launch asks to {self.direction}: keep the objective and direction of "
                "the sweep it continues, or start a new sweep"
            )
        self._space = space
        self._distributions = {d.key: _distribution(d) for d in space.dimensions}
        if space.dimensions:
            self._check_space(space, path)

    def _check_space(self, space: SearchSpace, path: str) -> None:
        described = json.dumps([_describe(d) for d in space.dimensions])
        known = self._study.user_attrs.get(SPACE)
        if known is None:
            self._study.set_user_attr(SPACE, described)
        elif known != described:
            raise ConfigError(
                f"the study in {path} searches another space ({known}) than this launch "
                f"({described}): continue it with the same search space, or start a new sweep"
            )

    def _lock(self) -> Any:
        from optuna.storages.journal import JournalFileOpenLock

        return JournalFileOpenLock(str(self._folder / ASK_LOCK))

    def _new_sampler(self, number: int) -> Any:
        import optuna

        seed = None if self.seed is None else self.seed + number
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # constant liar: a running trial counts as a bad one, so concurrent workers spread out
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    # -- ask and tell -----------------------------------------------------------------------
    def ask(self) -> Trial | None:
        study = self._require_writable()
        lock = self._lock()
        lock.acquire()
        try:
            trials = study.get_trials(deepcopy=False)
            if sum(1 for t in trials if _counts(t)) >= self.trials:
                return None
            # the next trial's number is len(trials): no one else asks while we hold the lock
            study.sampler = self._new_sampler(len(trials))
            asked = study.ask(self._distributions)
            params = dict(asked.params)
            overrides = [*self._space.fixed]
            for dimension in self._space.dimensions:
                value = params[dimension.key]
                overrides.append(SearchSpace.override(dimension, _as_text(value)))
            asked.set_user_attr(OVERRIDES, overrides)
            host, pid = socket.gethostname(), os.getpid()
            asked.set_user_attr(WORKER, [host, pid])  # under the lock: see running()
        finally:
            lock.release()
        self._asked[asked.number] = asked
        return Trial(asked.number, overrides, params, host=host, pid=pid)

    def tell(self, trial: Trial, value: float | None, status: RunStatus) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import Trial as OptunaTrial
        from optuna.trial import TrialState

        study = self._require_writable()
        handle = self._asked.pop(trial.number, None)
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial.number]
        if not found:
            raise ValueError(f"the study has no trial {trial.number}")
        status = RunStatus(status)
        if found[0].state.is_finished():
            self._warn_told(trial, found[0].state.name, status)
            return
        if handle is None:  # a trial another process asked (a relaunch telling it LOST)
            handle = OptunaTrial(study, found[0]._trial_id)
        try:
            if trial.log_id is not None:
                handle.set_user_attr(LOG_ID, int(trial.log_id))
            handle.set_user_attr(STATUS, status.value)
            if status is RunStatus.COMPLETE and value is not None:
                study.tell(handle, float(value), skip_if_finished=True)
                return
            if status in (RunStatus.COMPLETE, RunStatus.FAILED):
                handle.set_user_attr(COUNTED, True)  # the task ran: it uses up its trial
            study.tell(handle, state=TrialState.FAIL, skip_if_finished=True)
        except UpdateFinishedTrialError:  # told by another process between the two
            self._warn_told(trial, "finished", status)

    def _warn_told(self, trial: Trial, state: str, status: RunStatus) -> None:
        warnings.warn(
            f"trial {trial.number} of the study in {self._folder} was already told "
            f"({state}) by another process, so it is not told {status} (run "
            f"{trial.log_id}) again: a relaunch took its worker for dead? Its run dir "
            "keeps the result; the study keeps what it was told first",
            MlxpyWarning,
            stacklevel=2,
        )

    def running(self) -> list[Trial]:
        from optuna.trial import TrialState

        study = self._require_open()
        lock = None if self._read_only else self._lock()
        if lock is not None:  # no trial half asked (created, its worker not yet recorded)
            lock.acquire()
        try:
            trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        finally:
            if lock is not None:
                lock.release()
        found = []
        for t in trials:
            worker = t.user_attrs.get(WORKER)
            host, pid = worker if isinstance(worker, list) and len(worker) == 2 else (None, None)
            overrides = list(t.user_attrs.get(OVERRIDES, []))
            found.append(Trial(t.number, overrides, dict(t.params), host=host, pid=pid))
        return found

    def best(self) -> dict[str, Any] | None:
        from optuna.trial import TrialState

        study = self._require_open()
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return None
        best = study.best_trial
        return {
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "log_id": best.user_attrs.get(LOG_ID),
        }

    def _require_open(self) -> Any:
        if self._study is None:
            raise RuntimeError("OptunaSweeper.open(sweep_dir, space) must come first")
        return self._study

    def _require_writable(self) -> Any:
        study = self._require_open()
        if self._read_only:
            raise RuntimeError(f"the study in {self._folder} was opened read-only")
        return study


def _load_read_only(path: Path, limit: int) -> Any:
    """The study in the journal ``path``, loaded without writing or locking anything."""
    import optuna
    from mlxpy import SweepError, open_regular
    from optuna.storages import JournalStorage

    try:
        fd = open_regular(path, limit)  # no FIFO, no symlink, at most limit bytes
    except FileNotFoundError:
        raise SweepError(
            f"no Optuna study in {path.parent}: its journal {path.name} is missing (the "
            "sweep's workers never started, or its folder was moved)"
        ) from None
    except OSError as exc:
        raise SweepError(f"cannot read the Optuna study {path}: {exc}") from None
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    # a journal backend by its two methods (subclassing Optuna's would import it with us)
    backend: Any = _ReadOnlyJournal(path, size, limit)
    storage = JournalStorage(backend)
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError:
        raise SweepError(f"the journal {path} holds no study named {STUDY_NAME!r}") from None


class _ReadOnlyJournal:
    """Optuna's journal file as it was when opened (its first ``size`` bytes: a line still
    being written is not part of it), read without a lock (appends are whole lines, so a
    reader never needs one) and never written."""

    def __init__(self, path: Path, size: int, limit: int) -> None:
        self._path, self._size, self._limit = path, size, limit
        self._done = (0, 0)  # how many logs were read, and the byte offset after them

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        from mlxpy import open_regular

        number, offset = self._done if log_number_from >= self._done[0] else (0, 0)
        with os.fdopen(open_regular(self._path, self._limit), "rb") as f:
            f.seek(offset)
            while offset < self._size:
                line = f.readline(self._size - offset)
                if not line.endswith(b"\n"):
                    return  # cut by the end of the snapshot
                offset += len(line)
                number += 1
                if number > self._done[0]:
                    self._done = (number, offset)
                if number > log_number_from:
                    yield json.loads(line)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise RuntimeError(f"the study in {self._path} was opened read-only")


def _counts(trial: Any) -> bool:
    """Whether a trial uses up one of the budget's trials (see the module's docstring)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return bool(trial.user_attrs.get(COUNTED))
    return True  # COMPLETE, PRUNED, RUNNING, WAITING


def _distribution(dimension: Choice | Interval) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    where = f"{dimension.prefix}{dimension.key}"
    try:
        if isinstance(dimension, Choice):
            return CategoricalDistribution(list(dimension.values))
        if dimension.integer:
            return IntDistribution(int(dimension.low), int(dimension.high), log=dimension.log)
        return FloatDistribution(dimension.low, dimension.high, log=dimension.log)
    except ValueError as exc:
        raise ConfigError(f"cannot search '{where}' with Optuna: {exc}") from None


def _describe(dimension: Choice | Interval) -> list[Any]:
    if isinstance(dimension, Choice):
        return [dimension.key, "choice", list(dimension.values)]
    kind = "int" if dimension.integer else "float"
    return [dimension.key, kind, dimension.low, dimension.high, dimension.log]


def _as_text(value: Any) -> str:
    """A sampled value as override text: a choice is already text; a number's ``repr``
    reads back as the same number."""
    if isinstance(value, str):
        return value
    return repr(value)
