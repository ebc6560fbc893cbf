"""The Reader: index, queries, honest status, pandas accessor, on runs made by real launches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import mlxpy
import pytest
from mlxpy.reading import index as index_module
from mlxpy.rundir.layout import INDEX_FILE

TASK = """
import time
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    c = ctx.config
    for step in range(4):
        ctx.logger.log_metrics({"loss": c.lr * step + c.seed, "acc": step / 4}, step=step)
    ctx.logger.log_metrics({"score": c.seed * 10.0}, log_name="test")
    ctx.logger.log_artifacts({"seed": c.seed}, "summary", "json")
    if c.mode == "fail":
        raise RuntimeError("bad run")
    if c.mode == "hang":
        open(c.ready, "w").close()
        time.sleep(60)

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Six complete runs (lr x seed) and one failed run, made by real launches."""
    from conftest import Project

    root = tmp_path_factory.mktemp("reader")
    project = Project(root, root)
    project.write_main(TASK)
    project.write_config("seed: 0\nlr: 0.1\nmodel: small\nmode: ok\nready: ''\n")
    result = project.run("lr=0.1,0.01", "seed=1,2,3")
    assert result.returncode == 0, result.stderr
    failed = project.run("mode=fail", "model=big")
    assert failed.returncode == 1
    return project


def test_filter_and_fields(sweep):
    reader = mlxpy.Reader(sweep.logs)
    assert len(reader) == 7
    done = reader.filter("info.status == 'COMPLETE'")
    assert list(done.index) == [1, 2, 3, 4, 5, 6]
    assert done.loc[1, "config.lr"] == 0.1 and done.loc[6, "config.seed"] == 3
    small_lr = reader.filter("config.lr < 1e-1 and config.seed >= 2")
    assert list(small_lr.index) == [5, 6]
    assert reader.fields["config.lr"] == "float" and reader.fields["info.status"] == "str"
    assert "train.loss.last" in reader.fields and "test.score.max" in reader.fields
    # metric summaries kept in the index
    row = reader.filter("log_id == 2").iloc[0]
    assert row["train.loss.last"] == pytest.approx(0.1 * 3 + 2)
    assert row["train.loss.min"] == 2 and row["train.rows"] == 4
    assert list(reader.filter("train.loss.last < 1.5").index) == [1, 4, 7]
    assert list(reader.filter("info.status == 'FAILED'")["info.error.type"]) == ["RuntimeError"]
    records = reader.filter("config.model == 'big'", result_format="records")
    assert records[0]["log_id"] == 7


QUERIES = [  # (query, expected log ids) over the sweep fixture
    ("", [1, 2, 3, 4, 5, 6, 7]),
    ("info.status == 'COMPLETE' & config.lr == 0.1", [1, 2, 3]),
    ('info.status == "COMPLETE" & config.lr <= 1.', [1, 2, 3, 4, 5, 6]),
    ("config.seed in [1, 3]", [1, 3, 4, 6]),
    ("config.seed not in [1, 3]", [2, 5, 7]),
    ("~(config.seed == 1)", [2, 3, 5, 6, 7]),
    ("not config.seed == 1 and config.lr == 1e-2", [5, 6]),
    ("config.seed == 1 | config.model == 'big'", [1, 4, 7]),
    ("config.seed == 1 or (config.seed == 2 and config.lr > 0.05)", [1, 2, 4]),
    ("0.05 < config.lr", [1, 2, 3, 7]),
    ("config.lr == config.lr", [1, 2, 3, 4, 5, 6, 7]),
    ("info.error.type", [7]),
    ("info.error.type == None", [1, 2, 3, 4, 5, 6]),
    ("info.error.type != null", [7]),
    ("config.model != 'small'", [7]),
    ("config.mode == 'ok' && config.seed == 3", [3, 6]),
    ("config.lr >= 1E-2 & config.lr < 2.5e-2", [4, 5, 6]),
    ("train.acc.max == 0.75 & test.score.last > 15", [2, 3, 5, 6]),
    ("config.seed == True", []),
    ("config.seed == '1'", []),
    ("log_id > 5", [6, 7]),
]


@pytest.mark.parametrize("query, expected", QUERIES)
def test_query_language(sweep, query, expected):
    reader = mlxpy.Reader(sweep.logs)
    assert list(reader.filter(query).index) == expected


@pytest.mark.parametrize(
    "query, position, message",
    [
        ("config.lr <", 11, "expected a key, a number"),
        ("config.lr < 0.1 &", 17, "expected a key, a number"),
        ("(config.lr < 0.1", 16, "expected ')'"),
        ("config.lr = 0.1", 10, "unexpected character '='"),
        ("config.lr < 0.1 config.seed", 16, "expected '&', '|'"),
        ("config.lrr < 0.1", 0, "no run has the key 'config.lrr'; did you mean 'config.lr'"),
        ("1 < 2", 0, "a comparison needs a key on one side"),
        ("config.seed in [1, config]", 19, "expected a number, a string"),
        ("__import__('os').system('touch pwned')", 16, "unexpected character '.'"),
    ],
)
def test_bad_queries_point_at_the_token(sweep, query, position, message):
    reader = mlxpy.Reader(sweep.logs)
    with pytest.raises(mlxpy.QueryError) as err:
        reader.filter(query)
    assert message in str(err.value)
    assert err.value.position == position
    caret_line = str(err.value).splitlines()[-1]
    assert caret_line == "  " + " " * position + "^"
    assert not (sweep.cwd / "pwned").exists()


def test_accessor_metrics_and_aggregate(sweep):
    runs = mlxpy.Reader(sweep.logs).filter("info.status == 'COMPLETE'")
    long = runs.mlxpy.metrics("train")
    assert len(long) == 6 * 4
    assert set(long.columns) >= {"log_id", "step", "loss", "acc", "config.lr", "config.seed"}
    row = long[(long.log_id == 5) & (long.step == 2)].iloc[0]
    assert row["loss"] == pytest.approx(0.01 * 2 + 2) and row["config.seed"] == 2
    agg = runs.mlxpy.aggregate("train", by=["config.lr"], over="config.seed")
    # by hand: mean over seeds 1, 2, 3 of lr * step + seed = lr * step + 2; std = 1
    for lr in (0.1, 0.01):
        for step in range(4):
            cell = agg.loc[(lr, step), "loss"]
            assert cell["mean"] == pytest.approx(lr * step + 2)
            assert cell["std"] == pytest.approx(1.0) and cell["count"] == 3
    summaries = runs.mlxpy.artifact("summary")
    assert summaries.to_dict() == {i: {"seed": [1, 2, 3][(i - 1) % 3]} for i in range(1, 7)}


def test_readme_best_lr_question(sweep):
    runs = mlxpy.Reader(sweep.logs).filter("info.status == 'COMPLETE'")
    mean_final = runs.groupby(["config.model", "config.lr"])["train.loss.last"].mean()
    best_lr = mean_final.groupby(level="config.model").idxmin()
    assert best_lr["small"] == ("small", 0.01)  # final loss 0.03 + 2 beats 0.3 + 2


def test_incremental_index(tmp_path, sweep, monkeypatch):
    logs = tmp_path / "logs"
    shutil.copytree(sweep.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    reads = []
    original = index_module.read_run
    monkeypatch.setattr(
        index_module, "read_run", lambda d, **kw: reads.append(d) or original(d, **kw)
    )
    (logs / INDEX_FILE).parent.mkdir()
    past = time.time() - 60  # the listing is trusted once the parent's mtime is seconds old
    os.utime(logs, (past, past))
    assert len(mlxpy.Reader(logs)) == 7 and len(reads) == 7
    assert (logs / INDEX_FILE).is_file()
    reads.clear()
    before = os.stat(logs).st_mtime_ns
    listings = []
    original_listing = index_module.RunIndex._listing
    monkeypatch.setattr(
        index_module.RunIndex,
        "_listing",
        lambda self: listings.append(1) or original_listing(self),
    )
    assert len(mlxpy.Reader(logs)) == 7 and reads == []  # warm: nothing read again
    # the index's own files (SQLite's -wal/-shm come and go at each open) leave the parent's
    # mtime alone, so a warm open does not even list the parent
    assert os.stat(logs).st_mtime_ns == before and listings == []
    shutil.copytree(logs / "1", logs / "8")  # a new run
    shutil.rmtree(logs / "3")  # a deleted run
    with open(logs / "2" / "metrics" / "train.json", "a") as fh:  # a run still logging
        fh.write(json.dumps({"step": 4, "loss": -1.0}) + "\n")
    reader = mlxpy.Reader(logs)
    assert sorted(os.path.basename(d) for d in reads) == ["2", "8"]
    assert list(reader.filter().index) == [1, 2, 4, 5, 6, 7, 8]
    assert reader.filter("log_id == 2").iloc[0]["train.loss.last"] == -1.0
    reads.clear()
    assert len(mlxpy.Reader(logs, reload=True)) == 7 and len(reads) == 7


def test_a_long_build_right_after_the_parent_changed_still_trusts_its_listing(
    tmp_path, sweep, monkeypatch
):
    """A cold build that starts right after the parent changed (here: the index's own dir
    made) lists again at its end; the next open then lists nothing."""
    logs = tmp_path / "logs"
    shutil.copytree(sweep.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    real = time.time
    calls = []

    class Clock:  # the build "takes" 3 s: every reading after the first is 3 s later
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def time():
            calls.append(1)
            return real() + (3.0 if len(calls) > 1 else 0.0)

    with monkeypatch.context() as m:
        m.setattr(index_module, "time", Clock())
        assert len(mlxpy.Reader(logs)) == 7
    listings = []
    original = index_module.RunIndex._listing
    monkeypatch.setattr(
        index_module.RunIndex, "_listing", lambda self: listings.append(1) or original(self)
    )
    assert len(mlxpy.Reader(logs)) == 7 and listings == []


def test_corrupt_runs_are_skipped_and_counted(tmp_path, sweep):
    logs = tmp_path / "logs"
    shutil.copytree(sweep.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    (logs / "2" / "metadata" / "run.json").write_text('{"config": {"lr"')
    (logs / "9" / "metadata").mkdir(parents=True)  # claimed, nothing written yet
    (logs / "notes").mkdir()
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable run dir\(s\).*: 2, 9"):
        reader = mlxpy.Reader(logs)
    assert sorted(reader.skipped) == ["2", "9", "notes"]
    assert list(reader.filter().index) == [1, 3, 4, 5, 6, 7]


def test_torn_metric_line_is_read_up_to_the_tear(tmp_path, sweep):
    logs = tmp_path / "logs"
    shutil.copytree(sweep.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    with open(logs / "1" / "metrics" / "train.json", "a") as fh:
        fh.write('{"step": 9, "lo')
    runs = mlxpy.Reader(logs).filter("log_id == 1")
    assert runs.iloc[0]["train.rows"] == 4
    assert len(runs.mlxpy.metrics("train")) == 4


def test_read_only_log_dir_uses_the_cache(tmp_path, sweep, monkeypatch):
    logs = tmp_path / "logs"
    shutil.copytree(sweep.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(index_module.os, "access", lambda path, mode: False)
    assert len(mlxpy.Reader(logs)) == 7
    assert not (logs / INDEX_FILE).exists()
    assert list((tmp_path / "cache" / "mlxpy" / "index").glob("*.sqlite"))


def test_killed_run_is_reported_lost(tmp_path, sweep):
    from conftest import Project

    project = Project(tmp_path, tmp_path)
    project.write_main(TASK)
    project.write_config("seed: 0\nlr: 0.1\nmodel: small\nmode: hang\nready: ''\n")
    ready = tmp_path / "ready"
    proc = project.popen(
        f"ready={ready}",
        "+mlxpy.logger.heartbeat_interval_s=0.1",
        "+mlxpy.logger.flush_interval_s=0.1",
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert mlxpy.Reader(project.logs).filter().iloc[0]["info.status"] == "RUNNING"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    time.sleep(0.5)
    reader = mlxpy.Reader(project.logs)
    assert list(reader.filter("info.status == 'LOST'").index) == [1]
    assert project.info(project.logs / "1")["status"] == "RUNNING"  # files not rewritten


def test_reader_while_runs_are_written(tmp_path):
    """A reader refreshing in a loop while a sweep writes runs never fails or sees junk."""
    from conftest import Project

    project = Project(tmp_path, tmp_path)
    project.write_main(TASK)
    project.write_config("seed: 0\nlr: 0.1\nmodel: small\nmode: ok\nready: ''\n")
    project.run("--cfg", "job")
    writer = project.popen("seed=range(0,12)", "+mlxpy.logger.flush_every=1")
    project.logs.mkdir(exist_ok=True)
    counts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a run caught half-claimed is skipped with a warning
        while writer.poll() is None:
            reader = mlxpy.Reader(project.logs)
            counts.append(len(reader))
            runs = reader.filter()
            assert runs.index.name == "log_id" and runs.index.is_unique
    assert writer.returncode == 0
    assert counts == sorted(counts)  # runs only ever appear
    final = mlxpy.Reader(project.logs)
    assert len(final) == 12 and set(final.filter()["info.status"]) == {"COMPLETE"}


def test_cli_runs_and_show(sweep):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "mlxpy.cli", *args],
            capture_output=True,
            text=True,
            cwd=sweep.root,
        )

    table = cli("runs", "-q", "config.seed == 1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "info.status",
        "config.lr",  # only the config that varies
        "test.score.last",
        "train.acc.last",
        "train.loss.last",
    ]
    assert len(lines) == 4  # header, index name, runs 1 and 4
    as_json = json.loads(
        cli(
            "runs", "-q", "config.seed == 1", "--format", "json", "-c", "config.lr,train.loss.last"
        ).stdout
    )
    assert as_json == [
        {"log_id": 1, "config.lr": 0.1, "train.loss.last": pytest.approx(1.3)},
        {"log_id": 4, "config.lr": 0.01, "train.loss.last": pytest.approx(1.03)},
    ]
    csv = cli("runs", "--format", "csv", "-c", "config.*", "-q", "log_id == 7").stdout
    assert (
        csv.splitlines()[0] == "log_id,config.lr,config.mode,config.model,config.ready,config.seed"
    )
    grouped = cli(
        "runs",
        "-q",
        "info.status == 'COMPLETE'",
        "--group-by",
        "config.lr",
        "-c",
        "train.loss.last",
        "--format",
        "csv",
    ).stdout.splitlines()
    assert grouped[0] == "config.lr,runs,train.loss.last.mean,train.loss.last.std"
    assert grouped[1].startswith("0.01,3,2.03") and grouped[2].startswith("0.1,3,2.3")
    bad = cli("runs", "-q", "config.lr <")
    assert bad.returncode == 2 and bad.stderr.rstrip().endswith("^")
    show = cli("show", "1")
    assert show.returncode == 0
    assert "# config" in show.stdout and "lr: 0.1" in show.stdout
    assert "train.loss.last: 1.3" in show.stdout and "json/summary.json" in show.stdout
