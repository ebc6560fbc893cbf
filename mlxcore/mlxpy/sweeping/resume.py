"""Where each point of a recorded sweep stands, and which points a resume runs.

A point's run is the one its latest journal line names, if that run dir still holds the same
run (same ``uid``, same ``sweep_id``). Its status is the run's own, with a dead ``RUNNING`` run
told ``LOST`` by the rule the Reader uses (stale heartbeat, process gone). A resume never
re-plans: it runs the manifest's points whose status is resumable, each in its own run dir
(a point that has none gets a new one), and never a point that completed or may still run.

Everything here reads files of a shared log dir: bounded, JSON only, never code.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

from mlxpy.rundir import codec, layout, safe
from mlxpy.rundir.claim import is_locked
from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.status import RunStatus
from mlxpy.sweeping import sweeper
from mlxpy.sweeping.lock import submitter_gone
from mlxpy.sweeping.manifest import (
    JournalTail,
    SweepError,
    SweepManifest,
    list_sweeps,
    read_journal,
)

#: a point with no run yet, or whose run dir is gone or holds another run now
MISSING = "MISSING"
#: a point whose run dir is there but cannot be read: never resumed (it might be alive)
UNREADABLE = "UNREADABLE"
#: what a resume runs unless ``only`` says otherwise (the statuses ``sweep.only`` may name)
RESUMABLE = frozenset(s.upper() for s in sweeper.RESUMABLE)
#: a heartbeat older than this many intervals is stale (as the Reader judges it)
STALE_AFTER_BEATS = 3


@dataclass
class PointState:
    """One point of a sweep and where it stands."""

    index: int
    overrides: list[str]
    status: str  # a RunStatus value, MISSING or UNREADABLE
    log_id: int | None = None
    job_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict, repr=False)


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


def _read_info(parent_fd: int, parent: Path, log_id: int) -> dict[str, Any] | None:
    """The run info of ``parent/<log_id>``, from ``metadata/run.json``; None when the dir is
    gone. Each step is opened relative to the one before and never through a symbolic link,
    the size is bounded, and only JSON is parsed: thousands of runs in well under a second.
    Raises ValueError for a dir that is there but unreadable."""
    fds = []
    try:
        try:
            fds.append(os.open(str(log_id), _DIR, dir_fd=parent_fd))
        except FileNotFoundError:
            return None
        fds.append(os.open(layout.METADATA_DIR, _DIR, dir_fd=fds[-1]))
        try:
            fds.append(os.open(layout.RUN_JSON, _FILE, dir_fd=fds[-1]))
        except FileNotFoundError:  # a run another logger wrote: YAML only
            from mlxpy.rundir.info import read_info

            info = read_info(parent / str(log_id))
            if info is None:
                raise ValueError(f"{parent / str(log_id)} has no readable run info") from None
            return info
        stat = os.fstat(fds[-1])
        if not S_ISREG(stat.st_mode) or stat.st_size > safe.MAX_METADATA_BYTES:
            raise ValueError("run.json is not a regular file of a sensible size")
        chunks, left = [], stat.st_size + 1
        while left > 0:
            chunk = os.read(fds[-1], left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = codec.decode(b"".join(chunks))
    except OSError as exc:
        raise ValueError(str(exc)) from None
    finally:
        for fd in fds:
            os.close(fd)
    info = data.get("info") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        raise ValueError("run.json holds no run info")
    return info


def honest_status(info: dict[str, Any], root: Path, now: float | None = None) -> str:
    """The run's recorded status; ``LOST`` for a ``RUNNING`` run whose process is gone
    (:func:`run_is_alive`)."""
    status = info.get("status")
    if status != RunStatus.RUNNING:
        return str(status) if isinstance(status, str) else UNREADABLE
    return str(RunStatus.RUNNING if run_is_alive(info, root, now) else RunStatus.LOST)


def run_is_alive(info: dict[str, Any], root: Path, now: float | None = None) -> bool:
    """Whether the process of the ``RUNNING`` run in ``root`` (``info``: its run info) lives:
    the one rule of sweeps, for a resume, ``mlxpy sweep status`` and an adaptive sweep's
    reaper. On the run's own host its lock is the truth (the kernel drops it when the
    process dies, even by ``kill -9``: a killed run is gone at once). Elsewhere, or with no
    lock file, its heartbeat: fresh is alive; stale is gone unless its lock is seen held (on
    this host without a lock file: unless its pid lives)."""
    run = RunDir(root)
    locked = is_locked(run.lock)
    same_host = info.get("hostname") == socket.gethostname()
    if same_host and locked is not None:
        return locked
    interval = info.get("heartbeat_interval_s")
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
        interval = 10.0
    try:
        beat = os.lstat(run.heartbeat).st_mtime
    except OSError:
        beat = 0.0
    now = time.time() if now is None else now
    if now - beat <= STALE_AFTER_BEATS * interval:
        return True
    if locked is None:  # no lock file: judge by the pid, on this host only
        return not same_host or pid_alive(info.get("pid"))
    return locked


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` exists on this host (someone else's counts as alive)."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def point_states(
    parent: Path, manifest: SweepManifest, ask_scheduler: bool = True
) -> list[PointState]:
    """Every point of the sweep with its status (adaptive sweeps: every trial journaled);
    ``ask_scheduler``: see :func:`reconcile_with_schedulers`."""
    parent = Path(parent)
    journal = read_journal(parent, manifest.sweep_id)
    planned: list[tuple[int, list[str]]]
    if manifest.adaptive:
        planned = [(i, []) for i in sorted(journal)]
    else:
        planned = [(p.index, p.overrides) for p in manifest.points]
    now = time.time()
    states = []
    try:
        parent_fd = os.open(parent, _DIR)
    except OSError as exc:
        raise SweepError(f"cannot read the log dir {parent}: {exc}") from None
    try:
        for index, overrides in planned:
            states.append(_point_state(parent, parent_fd, manifest, journal, index, overrides, now))
    finally:
        os.close(parent_fd)
    _fail_orphaned_claims(parent, manifest.sweep_id, states)
    if ask_scheduler:
        reconcile_with_schedulers(parent, states)
    return states


def _fail_orphaned_claims(parent: Path, sweep_id: str, states: list[PointState]) -> None:
    """Points claimed (SUBMITTED) but given no job id by a submitter that is gone (killed
    between claiming their run dirs and submitting them) are SUBMIT_FAILED, on disk too:
    no job will ever start them, and a resume submits them again."""
    orphans = [s for s in states if s.status == RunStatus.SUBMITTED and s.job_id is None]
    if not orphans or not submitter_gone(parent, sweep_id):
        return
    from mlxpy.rundir.info import read_yaml, write_info

    for state in orphans:
        run = RunDir(parent / str(state.log_id))
        try:
            info = read_yaml(run.info, run.root) or {}
            if info.get("status") != RunStatus.SUBMITTED or (info.get("scheduler") or {}).get(
                "job_id"
            ):
                continue  # submitted meanwhile: as it says
            info["status"] = str(RunStatus.SUBMIT_FAILED)
            info["error"] = {
                "type": "SubmitterGone",
                "message": "the process submitting this run ended before submitting its job",
            }
            write_info(run.root, info, read_yaml(run.config, run.root) or {})
        except (OSError, ValueError):
            continue  # unchanged on disk; a resume's claim refuses it with the reason
        state.status = str(RunStatus.SUBMIT_FAILED)
        state.info = info


def reconcile_with_schedulers(parent: Path, states: list[PointState]) -> None:
    """Points whose run is SUBMITTED or RUNNING get the status their job's scheduler gives
    (one call per scheduler and settings, never one per job): a job cancelled while queued,
    or that died before its run could say so, makes its point CANCELLED or FAILED, and
    resumable. A run still SUBMITTED is marked so on disk, as ``mlxpy status`` does. Only
    schedulers registered by installed plugins are asked; one that cannot be reached leaves
    the recorded statuses, with a warning."""
    import json
    import warnings

    from mlxpy.errors import MlxpyError, MlxpyWarning
    from mlxpy.scheduling import status as job_status

    live = {str(RunStatus.SUBMITTED), str(RunStatus.RUNNING)}
    groups: dict[tuple[str, str], tuple[Any, list[tuple[PointState, str]]]] = {}
    for state in states:
        recorded = state.info.get("scheduler")
        if state.status not in live or state.job_id is None or not isinstance(recorded, dict):
            continue
        try:
            cls = job_status.scheduler_class(recorded.get("name"))
            settings = recorded.get("settings")
            key = (cls.name, json.dumps(settings, sort_keys=True, default=repr))
            if key not in groups:
                where = f"run {state.log_id}"
                groups[key] = (job_status.build_scheduler(cls, settings, where), [])
            groups[key][1].append((state, job_status.check_job_id(cls, state.job_id)))
        except MlxpyError:
            continue  # not asked: its recorded status stands
    for scheduler, members in groups.values():
        try:
            answers = scheduler.statuses([job_id for _, job_id in members])
        except Exception as exc:  # e.g. its status command is not on this machine
            warnings.warn(
                f"could not ask {scheduler.name} about {len(members)} queued or running "
                f"point(s) ({exc}); their recorded statuses are shown",
                MlxpyWarning,
                2,
            )
            continue
        for state, job_id in members:
            answer = answers.get(job_id)
            status = job_status.reconcile(state.status, answer)
            if state.status == RunStatus.RUNNING and status == RunStatus.FAILED:
                # its job is over but the run never recorded its end: killed without a word,
                # LOST, as this module and the Reader call it once its heartbeat is stale
                # (the same status whenever the sweep is looked at)
                status = str(RunStatus.LOST)
            if status == str(RunStatus.REQUEUED):
                continue  # its job will start it again: still live
            if state.status == RunStatus.SUBMITTED and status != state.status:
                job_status.mark_never_started(parent / str(state.log_id), status, answer)
            state.status = status


def _point_state(
    parent: Path,
    parent_fd: int,
    manifest: SweepManifest,
    journal: dict[int, Any],
    index: int,
    overrides: list[str],
    now: float,
) -> PointState:
    state = PointState(index, list(overrides), MISSING)
    entry = journal.get(index)
    if entry is not None:
        try:
            info = _read_info(parent_fd, parent, entry.log_id)
        except ValueError:
            state.status, state.log_id = UNREADABLE, entry.log_id
            return state
        if (
            info is not None
            and info.get("sweep_id") == manifest.sweep_id
            and info.get("sweep_point") == index
            and (not entry.uid or info.get("uid") == entry.uid)
        ):
            state.log_id, state.info = entry.log_id, info
            status = info.get("status")
            if status == RunStatus.RUNNING:  # alive, or LOST (its dir is only looked at now)
                status = honest_status(info, parent / str(entry.log_id), now)
            state.status = status if isinstance(status, str) else UNREADABLE
            scheduler = info.get("scheduler")
            job_id = scheduler.get("job_id") if isinstance(scheduler, dict) else None
            state.job_id = str(job_id) if job_id is not None else None
            if manifest.adaptive and isinstance(info.get("overrides"), list):
                state.overrides = [str(o) for o in info["overrides"]]
    return state


def counts(states: Iterable[PointState]) -> Counter[str]:
    return Counter(s.status for s in states)


def parse_only(only: Iterable[str] | None) -> frozenset[str]:
    """The statuses ``--only`` / ``sweep.only`` names (any case), checked: only resumable
    ones can be asked for."""
    if not only:
        return RESUMABLE
    wanted = frozenset(str(s).strip().upper() for s in only if str(s).strip())
    wrong = sorted(wanted - RESUMABLE)
    if wrong:
        raise SweepError(
            f"cannot resume points that are {', '.join(wrong)}: a resume runs points that are "
            f"{', '.join(sorted(s.lower() for s in RESUMABLE))} (never complete, running or "
            "queued ones)"
        )
    return wanted


@dataclass
class ResumePlan:
    """The points a resume runs (``todo``, in index order) among every point's state."""

    manifest: SweepManifest
    parent: Path
    states: list[PointState]
    todo: list[PointState]
    wanted: frozenset[str] = RESUMABLE  # the statuses it runs


class PointCheck:
    """Where a planned point stands just before a resume starts it: another process may
    have run it since the plan (a forced-id run of its dir, a job of an earlier
    submission). The journal is read as it grows, so O(1) per point."""

    def __init__(self, plan: ResumePlan) -> None:
        self.plan = plan
        self.journal = JournalTail(plan.parent, plan.manifest.sweep_id)

    def now(self, index: int, overrides: list[str]) -> PointState:
        latest = self.journal.read()
        try:
            parent_fd = os.open(self.plan.parent, _DIR)
        except OSError as exc:
            raise SweepError(f"cannot read the log dir {self.plan.parent}: {exc}") from None
        try:
            return _point_state(
                self.plan.parent,
                parent_fd,
                self.plan.manifest,
                latest,
                index,
                overrides,
                time.time(),
            )
        finally:
            os.close(parent_fd)

    def still_due(self, state: PointState) -> bool:
        return state.status in self.plan.wanted


def plan_resume(
    parent: Path, manifest: SweepManifest, only: Iterable[str] | None = None
) -> ResumePlan:
    if manifest.adaptive:
        raise SweepError(
            f"sweep {manifest.sweep_id} is adaptive: its trials come from its study, not from "
            "planned points; launch the same command again to continue the study"
        )
    wanted = parse_only(only)
    states = point_states(parent, manifest)
    todo = [s for s in states if s.status in wanted]
    return ResumePlan(manifest, Path(parent), states, todo, wanted)


def find_sweep(
    parent: Path, which: str | bool, points: list[list[str]], project_dir: str
) -> SweepManifest | None:
    """The sweep a resume continues: the one named (``which`` is a sweep id), or the latest
    sweep of the same command in ``parent`` (same project, same planned points); None when
    there is none."""
    parent = Path(parent)
    if isinstance(which, str):
        manifest = SweepManifest.read(parent, which)
        if manifest.project_dir != project_dir:
            raise SweepError(
                f"sweep {which} in {parent} was launched from the project {manifest.project_dir}"
                f", not {project_dir}: resume it from there (mlxpy sweep resume {which})"
            )
        return manifest
    for manifest in _newest_first(parent):
        if (
            not manifest.adaptive
            and manifest.project_dir == project_dir
            and len(manifest.points) == len(points)
            and all(p.overrides == q for p, q in zip(manifest.points, points, strict=True))
        ):
            return manifest
    return None


def _newest_first(parent: Path) -> Iterator[SweepManifest]:
    """The readable manifests under ``parent``, newest first (a damaged record is no
    command's: ``mlxpy sweeps`` shows it)."""
    for sweep_id in reversed(list_sweeps(parent)):
        try:
            yield SweepManifest.read(parent, sweep_id)
        except SweepError:
            continue


#: overrides that say how one launch of a sweep ran, not what the sweep is
LAUNCH_ONLY_OVERRIDES = ("mlxpy.sweep.resume", "mlxpy.sweep.only")


def sweep_overrides(argv: list[str]) -> list[str]:
    """The overrides of a sweep's command (``argv`` without the script), less those of
    :data:`LAUNCH_ONLY_OVERRIDES`: what two launches of the same sweep share."""
    return [a for a in argv[1:] if a.lstrip("+").partition("=")[0] not in LAUNCH_ONLY_OVERRIDES]


def find_adaptive_sweep(parent: Path, argv: list[str], project_dir: str) -> str | None:
    """The newest adaptive sweep under ``parent`` of the same command: same project, same
    overrides (:func:`sweep_overrides`; the script may be named another way)."""
    wanted = sweep_overrides(argv)
    for manifest in _newest_first(parent):
        if (
            manifest.adaptive
            and manifest.project_dir == project_dir
            and sweep_overrides(manifest.argv) == wanted
        ):
            return manifest.sweep_id
    return None
