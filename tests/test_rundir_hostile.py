"""A lab's shared logs dir is untrusted input: concurrent and broken indexes, planted
symlinks, FIFOs, devices, huge files, odd names, forged scheduler records and pickles must
neither crash, hang, run code, signal strangers nor write outside a run dir. Every test runs
real processes on real files (real symlinks, FIFOs, a tmpfs mount)."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import mlxpy
import pytest
import yaml
from conftest import tmpfs
from mlxpy.reading.index import IndexWarning
from mlxpy.rundir.info import write_info
from mlxpy.rundir.layout import INDEX_FILE, RunDir
from mlxpy.testing import ProjectDir

WORKTREE_CORE = str(Path(mlxpy.__file__).resolve().parent.parent)


def _env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess that imports this worktree's mlxpy."""
    path = os.pathsep.join(p for p in (WORKTREE_CORE, extra.pop("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> ProjectDir:
    """Four complete runs (seed 1..4) made by one real launch."""
    project = ProjectDir(tmp_path_factory.mktemp("hostile") / "proj")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    result = project.run("seed=1,2,3,4")
    assert result.returncode == 0, result.stderr
    return project


@pytest.fixture
def logs(tmp_path, base) -> Path:
    """A private copy of the four runs, without an index."""
    copy = tmp_path / "logs"
    shutil.copytree(base.logs, copy, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    return copy


def _quiet_reader(path: Path, **kwargs) -> mlxpy.Reader:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlxpy.Reader(path, **kwargs)


def _seeds(reader: mlxpy.Reader) -> dict[int, int]:
    frame = reader.filter()
    return {int(i): int(s) for i, s in zip(frame.index, frame["config.seed"], strict=True)}


# -- 1. the index ---------------------------------------------------------------------------


def _open_index(logs: str, barrier, results) -> None:
    barrier.wait()
    try:
        results.put(len(mlxpy.Reader(logs)))
    except Exception as exc:  # reported to the test, which fails on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_six_readers_open_a_fresh_log_dir_at_once(tmp_path):
    assert mlxpy.Reader  # pandas imported before forking, so the six start together
    context = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(12):
        logs = tmp_path / f"logs{round_}"
        for log_id in (1, 2, 3):
            RunDir(logs / str(log_id)).metadata.mkdir(parents=True)
            write_info(logs / str(log_id), {"format": 1, "status": "COMPLETE"}, {"seed": log_id})
        barrier, results = context.Barrier(6), context.Queue()
        procs = [
            context.Process(target=_open_index, args=(str(logs), barrier, results))
            for _ in range(6)
        ]
        for proc in procs:
            proc.start()
        outcomes += [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join()
    assert outcomes == [3] * len(outcomes)


HOLD_INDEX = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def test_reader_waits_for_another_process_creating_the_index(logs):
    """Another Reader creating the fresh index holds its write lock for a moment (setting WAL
    itself takes one): the Reader waits for it instead of failing with 'database is locked'."""
    (logs / INDEX_FILE).parent.mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_INDEX, str(logs / INDEX_FILE), "1.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        reader = mlxpy.Reader(logs)
        assert time.monotonic() - start >= 0.5  # it did meet the lock
        assert _seeds(reader) == {1: 1, 2: 2, 3: 3, 4: 4}
    finally:
        holder.wait(30)


@pytest.mark.parametrize(
    "garbage",
    [b"\x8f garbage \x00" * 400, b"SQLite format 3\x00" + b"\x10\x00\x02\x02" + b"\xab" * 8000],
    ids=["not-a-database", "broken-pages"],
)
def test_corrupt_index_is_rebuilt(logs, garbage):
    mlxpy.Reader(logs).close()
    index = logs / INDEX_FILE
    for leftover in (logs / (INDEX_FILE + "-wal"), logs / (INDEX_FILE + "-shm")):
        leftover.unlink(missing_ok=True)
    index.write_bytes(garbage)
    with pytest.warns(IndexWarning, match="corrupt"):
        reader = mlxpy.Reader(logs)
    assert _seeds(reader) == {1: 1, 2: 2, 3: 3, 4: 4}
    reader.close()
    # rebuilt for good: the next Reader opens it without a word
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(mlxpy.Reader(logs)) == 4


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted at the end."""
    with tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


def _fill(disk: Path) -> None:
    """Write until the disk refuses, in smaller and smaller pieces."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0


@pytest.mark.root
def test_full_disk_falls_back_like_a_read_only_one(tmp_path, base, tiny_disk, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    logs = tiny_disk / "logs"
    shutil.copytree(base.logs / "1", logs / "1")
    shutil.copytree(base.logs / "2", logs / "2")
    _fill(tiny_disk)
    with pytest.warns(IndexWarning, match="cannot write the index"):
        reader = mlxpy.Reader(logs)  # a fresh index on a full disk
    assert _seeds(reader) == {1: 1, 2: 2}
    assert list((tmp_path / "cache" / "mlxpy" / "index").glob("*.sqlite"))
    reader.close()


@pytest.mark.parametrize("planted", ["link", "file", "linked index", "linked wal", "open to all"])
def test_a_planted_index_dir_is_not_used(tmp_path, logs, monkeypatch, planted):
    """``.mlxpy-index`` is a link to somewhere else, a file, a dir anyone may write, or holds
    a link where the index or its WAL goes: the index goes to the cache dir, nothing is
    written through a link."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    where = logs / INDEX_FILE.split("/")[0]
    shutil.rmtree(where, ignore_errors=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if planted == "link":
        where.symlink_to(outside, target_is_directory=True)
    elif planted == "file":
        where.write_text("not a dir")
    elif planted == "open to all":
        where.mkdir()
        where.chmod(0o777)
        os.symlink(outside / "victim.sqlite", logs / INDEX_FILE)
    else:
        where.mkdir()
        victim = outside / "victim.sqlite"
        suffix = "" if planted == "linked index" else "-wal"
        os.symlink(victim, f"{logs / INDEX_FILE}{suffix}")
    reader = mlxpy.Reader(logs)
    assert _seeds(reader) == {1: 1, 2: 2, 3: 3, 4: 4}
    reader.close()
    assert list(outside.iterdir()) == []
    assert list((tmp_path / "cache" / "mlxpy" / "index").glob("*.sqlite"))


@pytest.mark.root
def test_disk_filling_under_an_existing_index(tmp_path, base, tiny_disk, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    logs = tiny_disk / "logs"
    shutil.copytree(base.logs / "1", logs / "1")
    mlxpy.Reader(logs).close()
    assert (logs / INDEX_FILE).exists()
    shutil.copytree(base.logs / "2", logs / "2")
    shutil.copytree(base.logs / "3", logs / "3")
    _fill(tiny_disk)
    with pytest.warns(IndexWarning, match="cannot write the index"):
        reader = mlxpy.Reader(logs)  # new rows cannot be written beside the runs
    assert _seeds(reader) == {1: 1, 2: 2, 3: 3}
    assert list((tmp_path / "cache" / "mlxpy" / "index").glob("*.sqlite"))


def test_deleted_and_spoiled_runs_leave_no_stale_rows(logs):
    assert len(mlxpy.Reader(logs)) == 4
    shutil.rmtree(logs / "4")
    run_json = RunDir(logs / "3").run_json
    with open(run_json, "r+b") as fh:  # spoiled in place: the metadata dir's mtime is unchanged
        fh.write(b"\xff\xfe garbage")
    run_json = RunDir(logs / "2").run_json
    run_json.unlink()
    os.mkfifo(run_json)
    reader = _quiet_reader(logs)
    assert _seeds(reader) == {1: 1}
    assert {"2", "3"} <= set(reader.skipped)
    assert "4" not in reader.skipped


# -- 2. mlxpy status never imports what a run names -----------------------------------------


def _submitted_run(logs: Path, log_id: int, scheduler: dict) -> None:
    run = RunDir(logs / str(log_id))
    run.metadata.mkdir(parents=True)
    info = {"format": 1, "status": "SUBMITTED", "log_id": log_id, "scheduler": scheduler}
    write_info(run.root, info, {"seed": log_id})


EVIL_MODULE = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("evil_mod ran")
class Evil:
    pass
"""


def test_status_never_imports_a_scheduler_named_by_a_run(tmp_path):
    (tmp_path / "evil_mod.py").write_text(EVIL_MODULE)
    marker = tmp_path / "IMPORTED"
    env = _env(PYTHONPATH=str(tmp_path))
    # the module is importable from where mlxpy runs: the test could fail
    subprocess.run([sys.executable, "-c", "import evil_mod"], cwd=tmp_path, env=env, check=True)
    assert marker.exists()
    marker.unlink()
    logs = tmp_path / "logs"
    _submitted_run(logs, 1, {"name": "evil_mod.Evil", "job_id": "1"})

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "mlxpy.cli", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    status = cli("status", str(logs), "--format", "json")
    assert not marker.exists()
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert row["log_id"] == 1 and row["run_status"] == "SUBMITTED"
    assert "unknown scheduler" in row["scheduler_state"]
    assert "evil_mod.Evil" in row["reason"] and "not imported" in row["reason"]
    cancel = cli("cancel", "1", "-d", str(logs))
    assert not marker.exists()
    assert cancel.returncode == 2
    assert "evil_mod.Evil" in cancel.stderr and "mlxpy: error:" in cancel.stderr


# -- 3. mlxpy cancel: valid job ids, and only our own processes -----------------------------


def _state_root() -> Path:
    from mlxpy.scheduling.local import _state_root

    return _state_root()


def _stranger() -> subprocess.Popen:
    """An unrelated process, leading its own process group (as a job's shell does)."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def _proc_start(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()[19]


@pytest.mark.parametrize("bad", ["../x_0", "-x", "1 2", "", "a/b_0", "\n1"])
def test_cancel_refuses_malformed_job_ids(tmp_path, bad):
    from mlxpy.errors import MlxpyError
    from mlxpy.scheduling import status as job_status

    logs = tmp_path / "logs"
    _submitted_run(logs, 1, {"name": "LocalScheduler", "job_id": bad})
    with pytest.raises(MlxpyError, match="invalid job id"):
        job_status.cancel(str(logs), ["1"])


def test_cancel_never_follows_a_job_id_out_of_the_state_dir(tmp_path):
    """A job id with ``..`` names a state file anywhere; a forged one there would have the
    stranger signalled."""
    stranger = _stranger()
    try:
        forged = tmp_path / "forged"
        forged.mkdir()
        (forged / "0.json").write_text(json.dumps({"state": "RUNNING", "pid": stranger.pid}))
        job_id = os.path.relpath(forged, _state_root()) + "_0"
        logs = tmp_path / "logs"
        _submitted_run(logs, 1, {"name": "LocalScheduler", "job_id": job_id})
        result = subprocess.run(
            [sys.executable, "-m", "mlxpy.cli", "cancel", "1", "-d", str(logs)],
            capture_output=True,
            text=True,
            env=_env(),
        )
        assert result.returncode == 2 and "invalid job id" in result.stderr
        time.sleep(0.3)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_local_cancel_signals_only_a_process_it_started(tmp_path):
    project = ProjectDir(tmp_path / "p")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "sleep", "sleep": 120})
    project.write_config(
        {"scheduler": {"name": "LocalScheduler"}, "use_scheduler": True}, "mlxpy.yaml"
    )
    project.env = {"PYTHONPATH": _env()["PYTHONPATH"]}
    assert project.run().returncode == 0
    (run_dir,) = project.run_dirs()
    deadline = time.monotonic() + 60
    while project.info(run_dir)["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job_id = project.info(run_dir)["scheduler"]["job_id"]
    queue, _, task = job_id.rpartition("_")
    state_file = _state_root() / queue / f"{task}.json"
    real = state_file.read_text()
    assert json.loads(real)["state"] == "RUNNING"
    stranger = _stranger()
    try:
        # a forged record: the stranger's pid, even with its true start time
        forged = {"state": "RUNNING", "pid": stranger.pid, "start": _proc_start(stranger.pid)}
        state_file.write_text(json.dumps(forged))
        cancelled = project.mlxpy("cancel", "1")
        assert cancelled.returncode == 0, cancelled.stderr
        time.sleep(0.5)
        assert stranger.poll() is None, "cancel signalled a process it did not start"
        assert project.info(run_dir)["status"] == "RUNNING"
        state_file.write_text(real)  # the real record: the real job is cancelled
        cancelled = project.mlxpy("cancel", "1")
        assert cancelled.returncode == 0, cancelled.stderr
        (info,) = project.wait(1, 60)
        assert info["status"] in ("INTERRUPTED", "CANCELLED")
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


# -- 4. pickles are loaded only when asked for ----------------------------------------------


class _Trap:
    """Unpickling it creates the marker file (``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


LOAD_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    print("LOADED", ctx.logger.load_artifacts(ctx.config.name), flush=True)

if __name__ == "__main__":
    task()
"""


def test_untyped_artifact_loading_never_unpickles(tmp_path, logs):
    marker = tmp_path / "UNPICKLED"
    for log_id in (1, 2):
        pickles = RunDir(logs / str(log_id)).artifacts / "pickle"
        pickles.mkdir(parents=True)
        (pickles / "x.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    json_dir = RunDir(logs / "2").artifacts / "json"
    json_dir.mkdir(parents=True)
    (json_dir / "x.json").write_text('{"safe": true}')
    runs = mlxpy.Reader(logs).filter("log_id == 2")
    assert runs.mlxpy.artifact("x").tolist() == [{"safe": True}]  # the json, not the pickle
    assert not marker.exists()
    runs = mlxpy.Reader(logs).filter("log_id == 1")  # only a pickle
    with pytest.raises(mlxpy.errors.MlxpyError, match='artifact_type="pickle"'):
        runs.mlxpy.artifact("x")
    assert not marker.exists()
    runs.mlxpy.artifact("x", artifact_type="pickle")  # an explicit choice: it runs
    assert marker.exists()


def test_logger_untyped_load_never_unpickles(tmp_path):
    project = ProjectDir(tmp_path / "p", LOAD_TASK)
    project.write_config({"name": "x"})
    project.env = {"PYTHONPATH": _env()["PYTHONPATH"]}
    assert project.run().returncode == 1  # no artifact x yet
    (run_dir,) = project.run_dirs()
    marker = tmp_path / "UNPICKLED"
    pickles = RunDir(run_dir).artifacts / "pickle"
    pickles.mkdir(parents=True)
    (pickles / "x.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    result = project.run("+mlxpy.logger.forced_log_id=1")
    assert not marker.exists()
    assert result.returncode == 1
    assert 'artifact_type="pickle"' in result.stderr


# -- 5. odd names and symlinks in the logs dir ----------------------------------------------


def test_odd_names_and_symlinks_are_listed_and_never_break_a_launch(tmp_path, base):
    project = ProjectDir(tmp_path / "p")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.env = {"PYTHONPATH": _env()["PYTHONPATH"]}
    logs = project.logs
    logs.mkdir()
    outside = tmp_path / "outside"
    shutil.copytree(base.logs / "3", outside)  # a readable run, reached only through links
    for name in ("²", "1-backup", "notes", "007"):
        (logs / name).mkdir()
    (logs / "5").symlink_to(outside)
    (logs / "6").symlink_to(logs / "6")  # a loop
    (logs / "loop").symlink_to(logs / "loop2")
    (logs / "loop2").symlink_to(logs / "loop")
    assert project.run("seed=11").returncode == 0
    assert project.run("seed=12").returncode == 0
    assert (logs / "1" / "metadata").is_dir() and (logs / "2" / "metadata").is_dir()
    reader = _quiet_reader(logs)
    assert _seeds(reader) == {1: 11, 2: 12}
    skipped = reader.skipped
    for name in ("²", "1-backup", "notes", "007"):
        assert "not a run id" in skipped[name]
    for name in ("5", "6", "loop", "loop2"):
        assert skipped[name] == "symbolic link, not followed"


# -- 6. bounded reads: FIFOs, devices, huge files -------------------------------------------

READ_ALL = """
import json, resource, sys, warnings
import mlxpy
import pandas as pd
warnings.simplefilter("ignore")
reader = mlxpy.Reader(sys.argv[1])
runs = reader.filter()
rows = runs["train.rows"] if "train.rows" in runs else pd.Series(None, index=runs.index)
print(json.dumps({
    "seeds": {str(i): int(s) for i, s in zip(runs.index, runs["config.seed"])},
    "rows": {str(i): (None if pd.isna(r) else int(r)) for i, r in zip(runs.index, rows)},
    "skipped": reader.skipped,
    "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


def _read_all(logs: Path, timeout: float = 60, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", READ_ALL, str(logs)],
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test
        env=_env(**env),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_fifos_and_devices_never_hang_the_reader(logs):
    os.unlink(RunDir(logs / "1").metrics_file("train"))
    os.mkfifo(RunDir(logs / "1").metrics_file("train"))
    os.unlink(RunDir(logs / "2").metrics_file("train"))
    os.symlink("/dev/zero", RunDir(logs / "2").metrics_file("train"))
    run3 = RunDir(logs / "3")
    run3.run_json.unlink()
    os.mkfifo(run3.run_json)
    run4 = RunDir(logs / "4")
    run4.run_json.unlink()  # read from the YAML files, and info.yaml is a FIFO
    run4.info.unlink()
    os.mkfifo(run4.info)
    out = _read_all(logs)
    assert out["seeds"] == {"1": 1, "2": 2}  # the runs stay; their broken logs are skipped
    assert out["rows"] == {"1": None, "2": None}
    skipped = out["skipped"]
    assert "not a regular file" in skipped["1/metrics/train.json"]
    assert "symbolic link" in skipped["2/metrics/train.json"]
    assert "not a regular file" in skipped["3"]
    assert "not a regular file" in skipped["4"]


def test_oversized_metric_log_is_skipped_and_reported(logs):
    with open(RunDir(logs / "1").metrics_file("train"), "a") as fh:
        for step in range(5000):
            fh.write(json.dumps({"step": step, "loss": 0.5}) + "\n")
    out = _read_all(logs, MLXPY_MAX_METRICS_BYTES="100000")
    assert out["seeds"] == {"1": 1, "2": 2, "3": 3, "4": 4}
    assert out["rows"] == {"1": None, "2": 1, "3": 1, "4": 1}
    assert "more than the 100000" in out["skipped"]["1/metrics/train.json"]


def test_one_line_gigabyte_metric_log_keeps_memory_bounded(logs):
    size = 1 << 30
    big = RunDir(logs / "2").metrics_file("train")
    with open(big, "ab") as fh:
        block = b"x" * (8 << 20)
        for _ in range(size // len(block)):
            fh.write(block)
    assert big.stat().st_size > size
    out = _read_all(logs, timeout=300)
    assert out["seeds"] == {"1": 1, "2": 2, "3": 3, "4": 4}
    assert out["rows"] == {"1": 1, "2": 1, "3": 1, "4": 1}  # the record before the line
    assert "longer than" in out["skipped"]["2/metrics/train.json"]
    assert out["maxrss_kib"] * 1024 < 400 << 20  # well below the 1 GiB line


# -- 6b. a distributed run's per-rank metric logs -------------------------------------------

RANKS_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    for step in range(3):
        ctx.logger.log_metrics({"x": 10 * ctx.info.rank + step}, log_name="per", step=step,
                               all_ranks=True)

if __name__ == "__main__":
    task()
"""

READ_RANKS = """
import json, sys, warnings
import mlxpy
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    runs = mlxpy.Reader(sys.argv[1]).filter()
    long = runs.mlxpy.metrics("per")
ranks = long["rank"].tolist() if "rank" in long else [None] * len(long)
print(json.dumps({
    "rows": [[int(i), r, int(x)] for i, r, x in zip(long["log_id"], ranks, long["x"])],
    "warnings": [str(w.message) for w in caught],
}))
"""


@pytest.fixture(scope="module")
def ranked(tmp_path_factory) -> ProjectDir:
    """Run 1: the two ranks of one job (torchrun's variables), each keeping its own log;
    run 2: one process."""
    project = ProjectDir(tmp_path_factory.mktemp("ranked") / "proj", RANKS_TASK)
    project.write_config({"seed": 0})
    for result in project.run_ranks(2):
        assert result.returncode == 0, result.stderr
    assert project.run().returncode == 0
    return project


@pytest.fixture
def ranked_logs(tmp_path, ranked) -> Path:
    copy = tmp_path / "logs"
    shutil.copytree(ranked.logs, copy, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    return copy


def _read_ranks(logs: Path, **env: str) -> tuple[set[tuple[int, int | None]], list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", READ_RANKS, str(logs)],
        capture_output=True,
        text=True,
        timeout=60,  # a hang (a FIFO opened for reading) fails the test
        env=_env(**env),
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    return {(i, r) for i, r, _ in out["rows"]}, out["warnings"]


def _planted_log(where: Path, x: int = 999) -> None:
    where.mkdir(parents=True, exist_ok=True)
    (where / "per.json").write_text(json.dumps({"step": 0, "x": x}) + "\n")


def _say_world_size(run_dir: Path, size: int) -> None:
    """As if the run had ``size`` ranks (its info says how many a reader may read)."""
    run = RunDir(run_dir)
    record = json.loads(run.run_json.read_text())
    record["info"]["world_size"] = size
    run.run_json.write_text(json.dumps(record))


def test_per_rank_links_fifos_and_odd_names_are_never_read(ranked_logs, tmp_path):
    ranks = RunDir(ranked_logs / "1").ranks
    assert _read_ranks(ranked_logs)[0] == {(1, 0), (1, 1), (2, 0)}
    _say_world_size(ranked_logs / "1", 6)
    outside = tmp_path / "outside"
    _planted_log(outside / "metrics")
    shutil.rmtree(ranks / "1" / "metrics")
    os.symlink(outside / "metrics", ranks / "1" / "metrics")  # rank 1's logs: a link out
    os.symlink(outside, ranks / "2")  # a whole rank dir: a link out
    _planted_log(ranks / "3" / "metrics")
    os.unlink(ranks / "3" / "metrics" / "per.json")
    os.symlink("/dev/zero", ranks / "3" / "metrics" / "per.json")
    _planted_log(ranks / "4" / "metrics")
    os.unlink(ranks / "4" / "metrics" / "per.json")
    os.mkfifo(ranks / "4" / "metrics" / "per.json")
    for odd in ("01", "-1", "1 ", "1.0", "\u00b2", "x"):  # not canonical rank numbers
        _planted_log(ranks / odd / "metrics")
    _planted_log(ranks / "5" / "metrics", x=55)  # a real rank's log is still read
    _planted_log(ranks / "6" / "metrics", x=66)  # beyond the run's world size: never read
    (ranked_logs / "2" / "ranks").mkdir()  # a run of one process: its ranks/ is never read
    _planted_log(ranked_logs / "2" / "ranks" / "1" / "metrics")
    rows, caught = _read_ranks(ranked_logs)
    assert rows == {(1, 0), (1, 5), (2, 0)}
    text = "\n".join(caught)
    assert "run 1: rank 1's per metrics skipped" in text and "symbolic link" in text
    assert "rank 2's per metrics skipped" in text
    assert "rank 3's per metrics skipped" in text
    assert "rank 4's per metrics skipped" in text and "not a regular file" in text
    assert len(caught) == 4  # the odd names and the single run's ranks/ are not looked at


def test_a_linked_ranks_dir_is_not_followed(ranked_logs):
    ranks = RunDir(ranked_logs / "1").ranks
    shutil.move(ranks, ranked_logs / "elsewhere")
    os.symlink(ranked_logs / "elsewhere", ranks)
    rows, caught = _read_ranks(ranked_logs)
    assert rows == {(1, None), (2, None)}  # rank 0's log, the run's own; no other rank's
    assert any("run 1: the other ranks' per metrics skipped" in w for w in caught), caught


def test_oversized_per_rank_log_is_skipped_and_reported(ranked_logs):
    with open(RunDir(ranked_logs / "1").rank(1).metrics_file("per"), "a") as fh:
        for step in range(5000):
            fh.write(json.dumps({"step": step, "x": 1}) + "\n")
    rows, caught = _read_ranks(ranked_logs, MLXPY_MAX_METRICS_BYTES="100000")
    assert rows == {(1, None), (2, None)}
    assert any("rank 1's per metrics skipped" in w and "more than the 100000" in w for w in caught)


# -- 7. writes never leave the run dir ------------------------------------------------------

WRITE_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    lg, what = ctx.logger, ctx.config.what
    if what in ("artifact", "all"):
        lg.log_artifacts({"a": 1}, "x", "json")
    if what in ("subdir", "all"):
        lg.log_artifacts({"a": 1}, "sub/x", "json")
    if what in ("checkpoint", "all"):
        lg.log_checkpoint({"a": 1})
    if what in ("metrics", "all"):
        lg.log_metrics({"a": 1}, log_name="new")
        lg.flush()
    print("WROTE", what, flush=True)

if __name__ == "__main__":
    task()
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> ProjectDir:
    """One run that wrote every kind of file (run 1), plus its streams."""
    project = ProjectDir(tmp_path_factory.mktemp("written") / "proj", WRITE_TASK)
    project.write_config({"what": "all"})
    project.write_config({"logger": {"log_streams_to_file": True}}, "mlxpy.yaml")
    result = project.run()
    assert result.returncode == 0, result.stderr
    return project


# planted path (relative to run 1) -> what the resumed task writes
PLANTED = {
    "artifacts": "artifact",
    "artifacts/json": "artifact",
    "artifacts/json/sub": "subdir",
    "checkpoints": "checkpoint",
    "metrics": "metrics",
    "metrics/.keys": "metrics",
    "metrics/new.json": "metrics",
    "metadata": "none",
    "metadata/heartbeat": "none",
    "metadata/.lock": "none",
    "log.stdout": "none",
    "": "none",  # the run dir itself, resumed by id
}


@pytest.mark.parametrize("planted", list(PLANTED), ids=[p or "run-dir" for p in PLANTED])
def test_planted_symlinks_never_lead_writes_outside(tmp_path, written, planted):
    project = ProjectDir(tmp_path / "proj", WRITE_TASK)
    shutil.copytree(written.configs, project.configs, dirs_exist_ok=True)
    shutil.copytree(written.logs, project.logs, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    project.env = {"PYTHONPATH": _env()["PYTHONPATH"]}
    outside = tmp_path / "outside"
    outside.mkdir()
    run = project.logs / "1"
    link = run / planted if planted else run
    assert planted == "artifacts/json/sub" or link.exists()
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink(missing_ok=True)
    target = outside / "target"
    if planted in ("artifacts", "artifacts/json", "artifacts/json/sub", "checkpoints", ""):
        target.mkdir()
    elif planted in ("metrics", "metrics/.keys", "metadata"):
        target.mkdir()
    link.symlink_to(target)  # a directory outside, or a dangling name outside
    result = project.run("+mlxpy.logger.forced_log_id=1", f"what={PLANTED[planted]}")
    assert result.returncode != 0, result.stdout
    assert "symbolic link" in result.stderr, result.stderr
    assert "WROTE" not in result.stdout
    written_outside = [str(p.relative_to(outside)) for p in outside.rglob("*")]
    assert written_outside in ([], ["target"]), written_outside
    assert not target.is_dir() or not any(target.iterdir())


# -- 8. resume deletes only our own temp files ----------------------------------------------


def test_resume_removes_only_our_temp_names(tmp_path, written):
    project = ProjectDir(tmp_path / "proj", WRITE_TASK)
    shutil.copytree(written.configs, project.configs, dirs_exist_ok=True)
    shutil.copytree(written.logs, project.logs)
    project.env = {"PYTHONPATH": _env()["PYTHONPATH"]}
    run = RunDir(project.logs / "1")
    torch_dir = run.artifacts / "torch"
    torch_dir.mkdir()
    users = [run.artifacts / "json" / ".best.tmp", torch_dir / ".model.tmp.pt"]
    ours = [
        run.metadata / ".info.0123456789ab.tmp.yaml",
        run.artifacts / "json" / ".x.0123456789ab.tmp.json",
        run.checkpoints / ".last_ckpt.00000000abcd.tmp.pkl",
    ]
    for path in users + ours:
        path.write_text("left here")
    result = project.run("+mlxpy.logger.forced_log_id=1", "what=none")
    assert result.returncode == 0, result.stderr
    assert [p.exists() for p in users] == [True, True]
    assert [p.exists() for p in ours] == [False, False, False]
    assert yaml.safe_load(run.info.read_text())["restarts"] == 1
