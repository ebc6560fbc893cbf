""":class:`SweeperSuite`: the conformance tests every sweeper (builtin or plugin) passes.

A planning sweeper's points are deterministic and stay in the space. An adaptive sweeper
follows the ask/tell protocol up to its budget, resumes from its study's folder (a new
instance, as a relaunch builds one), asks again in place of the trials cut short, never gives
one trial number twice to concurrent workers (real processes), reports its best trial, and
runs a real ``python main.py`` launch end to end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from mlxpy.rundir.status import RunStatus
from mlxpy.sweeping.space import Choice, Interval, SearchSpace
from mlxpy.sweeping.sweeper import Sweeper, Trial
from mlxpy.testing.project import COMPLETE, ProjectDir

#: a task whose objective (``val.loss``) is smallest at ``lr = 0.01``
OBJECTIVE_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    lr = float(ctx.config.lr)
    ctx.logger.log_metrics({"loss": (lr - 0.01) ** 2 + 1.0}, step=0, log_name="val")
    ctx.logger.log_metrics({"loss": (lr - 0.01) ** 2}, step=1, log_name="val")

if __name__ == "__main__":
    task()
"""


def build_sweeper(name: str, settings: dict[str, Any]) -> Sweeper:
    """A sweeper by its registered name, built the way ``sweep.name`` builds it."""
    from mlxpy.plugins import get_plugins
    from mlxpy.plugins.component import build_component

    cls = get_plugins().resolve("sweeper", name, where="the sweeper suite")
    sweeper: Sweeper = build_component(cls, "sweep", dict(settings), lambda key: "the suite")
    return sweeper


def space_to_json(space: SearchSpace) -> str:
    dims = [{"kind": type(d).__name__, **asdict(d)} for d in space.dimensions]
    return json.dumps({"fixed": space.fixed, "dimensions": dims})


def space_from_json(text: str) -> SearchSpace:
    data = json.loads(text)
    dims: list[Choice | Interval] = []
    for raw in data["dimensions"]:
        kind = raw.pop("kind")
        if kind == "Choice":
            dims.append(Choice(raw["prefix"], raw["key"], tuple(raw["values"])))
        else:
            dims.append(Interval(**raw))
    return SearchSpace(list(data["fixed"]), dims)


def toy_value(trial: Trial) -> float:
    """A deterministic objective of a suite trial's parameters."""
    lr = float(trial.params.get("lr", 0.01))
    return (math.log10(lr) + 2.0) ** 2 + float(trial.params.get("layers", 1))


class SweeperSuite:
    """What every sweeper's tests share. A plugin's tests subclass
    :class:`PlanningSweeperSuite` or :class:`AdaptiveSweeperSuite` and set ``sweeper_name``
    (and ``sweeper_settings``); an adaptive sweeper whose budget and objective settings are
    not ``trials`` and ``objective`` overrides :meth:`adaptive_settings`."""

    sweeper_name: str = ""
    sweeper_settings: dict[str, Any] = {}
    adaptive: bool = False
    timeout: float = 180

    def make(self, **settings: Any) -> Sweeper:
        return build_sweeper(self.sweeper_name, {**self.sweeper_settings, **settings})

    def adaptive_settings(self, trials: int) -> dict[str, Any]:
        return {"trials": trials, "objective": "val.loss.min"}

    def planning_space(self) -> SearchSpace:
        return SearchSpace(
            fixed=["seed=1"],
            dimensions=[Choice("", "lr", ("0.1", "0.01")), Choice("+", "opt", ("a", "'b c'"))],
        )

    def adaptive_space(self) -> SearchSpace:
        return SearchSpace(
            fixed=["seed=0"],
            dimensions=[
                Interval("", "lr", 1e-4, 1e-1, log=True),
                Interval("+", "layers", 1, 4, integer=True),
                Choice("", "opt", ("sgd", "adam")),
            ],
        )

    def test_registered_as_a_sweeper(self) -> None:
        sweeper = self.make(**(self.adaptive_settings(1) if self.adaptive else {}))
        assert isinstance(sweeper, Sweeper) and sweeper.role == "sweeper"
        assert type(sweeper).adaptive is self.adaptive

    # -- helpers ---------------------------------------------------------------------------
    def _check_point(self, overrides: list[str], space: SearchSpace) -> None:
        assert overrides[: len(space.fixed)] == space.fixed, overrides
        varying = overrides[len(space.fixed) :]
        assert len(varying) == len(space.dimensions), overrides
        for text, dim in zip(varying, space.dimensions, strict=True):
            head = f"{dim.prefix}{dim.key}="
            assert text.startswith(head), (text, dim)
            value = text[len(head) :]
            if isinstance(dim, Choice):
                assert value in dim.values, (text, dim)
            else:
                number = float(value)
                assert dim.low <= number <= dim.high, (text, dim)
                if dim.integer:
                    assert number == int(number), text

    def _open(self, folder: Path, trials: int, space: SearchSpace | None = None) -> Sweeper:
        sweeper = self.make(**self.adaptive_settings(trials))
        assert sweeper.adaptive
        sweeper.open(folder, self.adaptive_space() if space is None else space)
        return sweeper


class PlanningSweeperSuite(SweeperSuite):
    """A sweeper that plans every point at launch (:meth:`Sweeper.points`)."""

    def test_points_are_deterministic(self) -> None:
        first = self.make().points(self.planning_space())
        assert first, "no points planned"
        assert self.make().points(self.planning_space()) == first

    def test_points_stay_in_the_space(self) -> None:
        space = self.planning_space()
        points = self.make().points(space)
        for point in points:
            self._check_point(point, space)
        assert len({tuple(p) for p in points}) == len(points), "a point planned twice"


class AdaptiveSweeperSuite(SweeperSuite):
    """A sweeper asked one trial at a time by workers (``adaptive = True``)."""

    adaptive = True

    def test_ask_tell_up_to_the_budget(self, tmp_path: Path) -> None:
        space = self.adaptive_space()
        sweeper = self._open(tmp_path / "study", 5, space)
        assert sweeper.best() is None  # nothing told yet
        told: dict[int, float] = {}
        while (trial := sweeper.ask()) is not None:
            assert trial.number not in told
            self._check_point(trial.overrides, space)
            trial.log_id = 100 + trial.number
            told[trial.number] = toy_value(trial)
            sweeper.tell(trial, told[trial.number], RunStatus.COMPLETE)
            assert len(told) <= 5
        assert len(told) == 5
        assert sweeper.ask() is None
        best = sweeper.best()
        assert best is not None
        number = min(told, key=lambda n: told[n])
        assert best["value"] == pytest.approx(told[number])
        assert best["number"] == number and best["log_id"] == 100 + number

    def test_failed_trials_count_cut_short_ones_are_asked_again(self, tmp_path: Path) -> None:
        sweeper = self._open(tmp_path / "study", 4)
        statuses = [RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED]
        seen = []
        while (trial := sweeper.ask()) is not None:
            seen.append(trial.number)
            status = statuses.pop(0) if statuses else RunStatus.COMPLETE
            value = toy_value(trial) if status is RunStatus.COMPLETE else None
            sweeper.tell(trial, value, status)
            assert len(seen) <= 6
        # 4 trials used up: one FAILED and three COMPLETE; the two cut short were replaced
        assert len(seen) == 6 and len(set(seen)) == 6
        best = sweeper.best()
        assert best is not None and best["number"] in seen[3:]

    def test_resumes_from_its_folder(self, tmp_path: Path) -> None:
        folder = tmp_path / "study"
        first = self._open(folder, 4)
        done = []
        for _ in range(2):
            trial = first.ask()
            assert trial is not None
            first.tell(trial, toy_value(trial), RunStatus.COMPLETE)
            done.append(trial.number)
        orphan = first.ask()  # its worker is killed: never told
        assert orphan is not None
        again = self._open(folder, 4)  # a relaunch: a new instance on the same folder
        assert [t.number for t in again.running()] == [orphan.number]
        lost = again.running()[0]
        assert lost.overrides == orphan.overrides
        again.tell(lost, None, RunStatus.LOST)
        assert again.running() == []
        while (trial := again.ask()) is not None:
            assert trial.number not in (*done, orphan.number)
            again.tell(trial, toy_value(trial), RunStatus.COMPLETE)
            done.append(trial.number)
        assert len(done) == 4  # the budget, the LOST trial asked again
        best = again.best()
        assert best is not None and best["number"] in done

    def test_running_trials_name_the_process_that_asked_them(self, tmp_path: Path) -> None:
        import socket

        folder = tmp_path / "study"
        trial = self._open(folder, 2).ask()
        assert trial is not None
        assert (trial.host, trial.pid) == (socket.gethostname(), os.getpid())
        [running] = self._open(folder, 2).running()  # a relaunch's view
        assert (running.number, running.host, running.pid) == (
            trial.number,
            socket.gethostname(),
            os.getpid(),
        )

    def test_a_trial_told_twice_warns_and_keeps_the_first(self, tmp_path: Path) -> None:
        folder = tmp_path / "study"
        worker = self._open(folder, 2)
        trial = worker.ask()
        assert trial is not None
        relaunch = self._open(folder, 2)
        relaunch.tell(relaunch.running()[0], None, RunStatus.LOST)  # took it for dead
        trial.log_id = 7
        with pytest.warns(Warning, match=f"trial {trial.number}"):
            worker.tell(trial, toy_value(trial), RunStatus.COMPLETE)  # must not raise
        assert worker.best() is None  # the study keeps LOST: a trial asked in its place
        numbers = []
        while (again := worker.ask()) is not None:
            numbers.append(again.number)
            worker.tell(again, toy_value(again), RunStatus.COMPLETE)
        assert len(numbers) == 2 and trial.number not in numbers

    def test_a_read_only_open_reads_the_study_and_writes_nothing(self, tmp_path: Path) -> None:
        folder = tmp_path / "study"
        writer = self._open(folder, 4)
        for _ in range(2):
            trial = writer.ask()
            assert trial is not None
            trial.log_id = 100 + trial.number
            writer.tell(trial, toy_value(trial), RunStatus.COMPLETE)
        left = writer.ask()  # still running
        assert left is not None
        before = _tree(folder)
        os.chmod(folder, 0o555)  # (root writes anyway: the tree compared below is the proof)
        try:
            reader = self.make(**self.adaptive_settings(4))
            reader.open(folder, SearchSpace(), read_only=True)
            assert reader.best() == writer.best() and reader.best() is not None
            assert [t.number for t in reader.running()] == [left.number]
            with pytest.raises(Exception):  # noqa: B017 - any error: it must not ask
                reader.ask()
            with pytest.raises(Exception):  # noqa: B017
                reader.tell(left, None, RunStatus.LOST)
        finally:
            os.chmod(folder, 0o755)
        assert _tree(folder) == before  # nothing created, written or locked
        assert [t.number for t in writer.running()] == [left.number]

    def test_a_read_only_open_refuses_a_missing_or_oversized_study(self, tmp_path: Path) -> None:
        from mlxpy.sweeping.manifest import SweepError

        missing = tmp_path / "never"
        with pytest.raises(SweepError):
            self.make(**self.adaptive_settings(2)).open(missing, SearchSpace(), read_only=True)
        assert not missing.exists()  # not created
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(SweepError):
            self.make(**self.adaptive_settings(2)).open(empty, SearchSpace(), read_only=True)
        assert list(empty.iterdir()) == []
        folder = tmp_path / "study"
        writer = self._open(folder, 2)
        trial = writer.ask()
        assert trial is not None
        writer.tell(trial, toy_value(trial), RunStatus.COMPLETE)
        before = _tree(folder)
        reader = self.make(**self.adaptive_settings(2))
        reader.max_read_bytes = 1  # any study is bigger than that
        with pytest.raises(SweepError):
            reader.open(folder, SearchSpace(), read_only=True)
        assert _tree(folder) == before

    def test_concurrent_workers_never_share_a_trial(self, tmp_path: Path) -> None:
        folder, trials, workers = tmp_path / "study", 12, 3
        settings = {**self.sweeper_settings, **self.adaptive_settings(trials)}
        self._open(folder, trials)  # created by the launch, before its workers start
        args = [
            sys.executable,
            "-m",
            "mlxpy.testing.sweeper_suite",
            self.sweeper_name,
            json.dumps(settings),
            str(folder),
            space_to_json(self.adaptive_space()),
        ]
        procs = [
            subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(workers)
        ]
        numbers: list[int] = []
        for proc in procs:
            out, err = proc.communicate(timeout=self.timeout)
            assert proc.returncode == 0, err
            mine = json.loads(out.strip().splitlines()[-1])
            numbers += mine
        assert sorted(numbers) == list(range(trials)), numbers  # no number twice, none lost
        assert self._open(folder, trials).ask() is None

    def test_a_launch_runs_the_trials_as_runs(self, tmp_path: Path) -> None:
        project = ProjectDir(tmp_path / "proj", OBJECTIVE_TASK)
        project.write_config({"lr": 0.1})
        settings = self.adaptive_settings(3)
        extra = [f"+mlxpy.sweep.{k}={v}" for k, v in {**self.sweeper_settings, **settings}.items()]
        result = project.run("lr=0.1,0.01,0.001", f"+mlxpy.sweep.name={self.sweeper_name}", *extra)
        assert result.returncode == 0, result.stderr
        infos = [project.info(d) for d in project.run_dirs()]
        assert [i["status"] for i in infos] == [COMPLETE] * 3
        assert len({i["sweep_id"] for i in infos}) == 1
        assert sorted(i["sweep_point"] for i in infos) == [0, 1, 2]
        sweep_id = infos[0]["sweep_id"]
        manifest = json.loads((project.logs / ".sweeps" / sweep_id / "sweep.json").read_text())
        assert manifest["adaptive"] is True
        assert manifest["sweeper"]["name"] == self.sweeper_name
        for info in infos:
            assert any(o in ("lr=0.1", "lr=0.01", "lr=0.001") for o in info["overrides"])
        # the journal: one line per trial's run (written once, when its run dir is claimed)
        lines = (project.logs / ".sweeps" / sweep_id / "points.jsonl").read_text().splitlines()
        entries = sorted((e["point"], e["log_id"]) for e in map(json.loads, lines))
        assert entries == sorted((i["sweep_point"], i["log_id"]) for i in infos), lines


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: its size and modification time (ns)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


def _worker_main(argv: list[str]) -> int:
    """``python -m mlxpy.testing.sweeper_suite NAME SETTINGS FOLDER SPACE``: one worker of
    :meth:`SweeperSuite.test_concurrent_workers_never_share_a_trial`; prints its trials."""
    name, settings, folder, space = argv
    sweeper = build_sweeper(name, json.loads(settings))
    sweeper.open(Path(folder), space_from_json(space))
    numbers = []
    while (trial := sweeper.ask()) is not None:
        numbers.append(trial.number)
        trial.log_id = os.getpid()
        sweeper.tell(trial, toy_value(trial), RunStatus.COMPLETE)
    print(json.dumps(numbers))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main(sys.argv[1:]))
