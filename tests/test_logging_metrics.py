"""Metrics: accepted values, errors that write nothing, buffering and its flush policy."""

from __future__ import annotations

import json
import math
import time
import warnings

import pytest
from conftest import untimed
from mlxpy.rundir.metrics import read_metrics

METRICS_TASK = """
import json, math, sys, time
import numpy as np
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    log = ctx.logger.log_metrics
    mode = ctx.config.mode
    if mode == "values":
        log({"i": 1, "f": 0.5, "nan": math.nan, "inf": math.inf, "ninf": -math.inf,
             "b": True, "s": "x", "none": None}, step=0)
        log({"np_f": np.float32(0.25), "np_i": np.int64(7), "np_b": np.bool_(True),
             "np_0d": np.array(3.5)}, log_name="numpy", step=np.int64(1))
        print("numpy imported by user:", "numpy" in sys.modules)
    elif mode == "bad":
        log({"ok": 1}, step=0)
        for bad in ({"vec": [1, 2]}, {"arr": np.zeros(3)}, {"obj": object()}):
            try:
                log({"fine": 1.0, **bad}, step=1)
            except TypeError as exc:
                print("TypeError:", exc)
        for name in ("", "a/b", "..", "../x", ".keys", "x/../y"):
            try:
                log({"ok": 1}, log_name=name)
            except ValueError as exc:
                print("ValueError:", name)
    elif mode == "time":
        before = time.time()
        log({"loss": 0.5}, step=0)
        log({"step": 1, "loss": 0.25})  # step as an ordinary key: still allowed
        for bad in ({"_time": 1.0}, {"_time": 1.0, "step": 2}):
            for step in (None, 3):
                try:
                    log({"loss": 0.1, **bad}, step=step)
                except ValueError as exc:
                    print("ValueError:", exc)
        ctx.logger.flush()
        print("between", before, time.time())
    elif mode == "threads":  # appends race the flushes (every 7 records, every 10 ms)
        import threading
        def worker(k):
            for i in range(3000):
                log({"k": k, "i": i}, log_name="race")
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        worker(4)
        for t in threads:
            t.join()
    elif mode == "idle":
        for step in range(3):
            log({"loss": 1.0 / (step + 1)}, step=step)
        with open(ctx.config.ready, "w") as fh:
            fh.write("go")
        time.sleep(60)

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture
def metrics_project(project):
    project.write_main(METRICS_TASK)
    project.write_config("seed: 0\nmode: values\nready: ''\n")
    return project


def test_accepted_values_round_trip(metrics_project):
    result = metrics_project.run()
    assert result.returncode == 0, result.stderr
    (run_dir,) = metrics_project.run_dirs()
    (record,) = read_metrics(run_dir / "metrics" / "train.json")
    assert record["step"] == 0 and record["i"] == 1 and record["f"] == 0.5
    assert math.isnan(record["nan"]) and record["inf"] == math.inf
    assert record["ninf"] == -math.inf
    assert (record["b"], record["s"], record["none"]) == (True, "x", None)
    (np_record,) = read_metrics(run_dir / "metrics" / "numpy.json")
    assert untimed([np_record]) == [
        {"step": 1, "np_f": 0.25, "np_i": 7, "np_b": True, "np_0d": 3.5}
    ]
    assert all(type(v) in (int, float, bool) for v in np_record.values())
    keys = json.loads((run_dir / "metrics" / ".keys" / "train.json").read_text())
    assert keys == sorted(["step", "i", "f", "nan", "inf", "ninf", "b", "s", "none", "_time"])


def test_bad_values_and_names_raise_and_write_nothing(metrics_project):
    result = metrics_project.run("mode=bad")
    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("TypeError")]
    assert len(errors) == 3
    assert "'vec'" in errors[0] and "'arr'" in errors[1] and "'obj'" in errors[2]
    rejected = [
        line.split(": ", 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("ValueError")
    ]
    assert rejected == ["", "a/b", "..", "../x", ".keys", "x/../y"]
    (run_dir,) = metrics_project.run_dirs()
    assert untimed(read_metrics(run_dir / "metrics" / "train.json")) == [{"step": 0, "ok": 1}]
    assert sorted(p.name for p in (run_dir / "metrics").iterdir()) == [
        ".columns",
        ".keys",
        ".summary",
        "train.json",
    ]


def test_numpy_is_not_imported_by_mlxpy(project):
    project.write_main("""
        import sys
        import mlxpy

        @mlxpy.launch(config_path="./configs")
        def my_task(ctx):
            ctx.logger.log_metrics({"a": 1.0}, step=0)
            print(sorted(m for m in ("numpy", "torch", "pandas") if m in sys.modules))

        if __name__ == "__main__":
            my_task()
    """)
    result = project.run()
    assert result.stdout.strip() == "[]", result.stderr


def test_idle_run_is_flushed_by_time(metrics_project, tmp_path):
    ready = tmp_path / "ready"
    proc = metrics_project.popen(
        "mode=idle", f"ready={ready}", "+mlxpy.logger.flush_interval_s=0.2"
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        (run_dir,) = metrics_project.run_dirs()
        path = run_dir / "metrics" / "train.json"
        deadline = time.monotonic() + 5
        while (not path.exists() or len(read_metrics(path)) < 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r["step"] for r in read_metrics(path)] == [0, 1, 2]
        assert proc.poll() is None  # flushed by the timer, not at exit
    finally:
        proc.kill()
        proc.communicate()


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(b'{"step":0,"loss":1.0}\n{"step":1,"loss":0.5}\n{"step":2,"lo')
    with pytest.warns(UserWarning, match="torn last line"):
        records = read_metrics(path)
    assert [r["step"] for r in records] == [0, 1]


def test_each_record_carries_its_wall_clock_time(metrics_project):
    result = metrics_project.run("mode=time")
    assert result.returncode == 0, result.stderr
    refused = [line for line in result.stdout.splitlines() if line.startswith("ValueError")]
    assert len(refused) == 4, result.stdout
    assert all("'_time'" in line and "rename the metric" in line for line in refused)
    (between,) = [line for line in result.stdout.splitlines() if line.startswith("between")]
    before, after = map(float, between.split()[1:])
    (run_dir,) = metrics_project.run_dirs()
    path = run_dir / "metrics" / "train.json"
    records = read_metrics(path)
    # nothing of a refused record was written; the time is the last key, a float
    assert [list(r) for r in records] == [["step", "loss", "_time"], ["step", "loss", "_time"]]
    assert before <= records[0]["_time"] <= records[1]["_time"] <= after
    assert path.read_bytes().startswith(b'{"step":0,"loss":0.5,"_time":')

    import mlxpy

    runs = mlxpy.Reader(metrics_project.logs).filter()
    long = runs.mlxpy.metrics("train")
    assert list(long.columns) == ["log_id", "step", "loss", "_time"]
    assert str(long["_time"].dtype) == "float64"
    assert long["_time"].tolist() == [r["_time"] for r in records]
    curves = runs.mlxpy.aggregate("train")  # the time is not a metric to average
    assert sorted({name for name, _ in curves.columns}) == ["loss"]


def test_records_logged_from_threads_are_written_once_while_flushes_run(metrics_project):
    settings = ("+mlxpy.logger.flush_every=7", "+mlxpy.logger.flush_interval_s=0.01")
    result = metrics_project.run("mode=threads", *settings)
    assert result.returncode == 0, result.stderr
    (run_dir,) = metrics_project.run_dirs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torn or glued line anywhere
        records = read_metrics(run_dir / "metrics" / "race.json")
    pairs = [(r["k"], r["i"]) for r in records]
    assert sorted(pairs) == [(k, i) for k in range(5) for i in range(3000)]
    for k in range(5):  # each thread's records in its own order
        assert [i for kk, i in pairs if kk == k] == list(range(3000))
