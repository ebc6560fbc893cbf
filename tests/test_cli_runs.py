"""Comparing, tagging, archiving, tailing and re-running runs from the terminal, on stores made
by real launches (``python main.py``) and read back by real ``python -m mlxpy.cli`` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml
from mlxpy.reading.reader import Reader
from mlxpy.rundir.layout import ARCHIVE_DIR, RunDir
from mlxpy.rundir.tags import read_tags, update_tags
from mlxpy.testing import ProjectDir

TAGGING_TASK = """
import sys, time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    print("OUT", c.lr, flush=True)
    print("ERR", c.lr, file=sys.stderr, flush=True)
    ctx.logger.add_tags("from-task", ["lr-" + str(c.lr)])
    for step in range(3):
        ctx.logger.log_metrics({"loss": c.lr / (step + 1)}, step=step)
    if c.wait_for:  # a live run: waits for a file, printing meanwhile
        import pathlib
        n = 0
        while not pathlib.Path(c.wait_for).exists():
            print("tick", n, flush=True)
            n += 1
            time.sleep(0.1)
        ctx.logger.add_tags("late")
        print("LAST LINE", flush=True)

if __name__ == "__main__":
    task()
"""
CONFIG = {"lr": 0.1, "seed": 1, "wait_for": ""}


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def project(tmp_path) -> ProjectDir:
    project = ProjectDir(tmp_path / "proj", TAGGING_TASK)
    project.write_config(CONFIG)
    project.configs.joinpath("mlxpy.yaml").write_text("logger:\n  log_streams_to_file: true\n")
    return project


@pytest.fixture
def three(project) -> ProjectDir:
    for args in ((), ("lr=0.2",), ("lr=0.3", "seed=2")):
        ok(project.run(*args))
    return project


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> ProjectDir:
    """Two runs, for tests that change nothing."""
    project = ProjectDir(tmp_path_factory.mktemp("shared") / "proj", TAGGING_TASK)
    project.write_config(CONFIG)
    ok(project.run())
    ok(project.run("lr=0.2"))
    return project


def test_diff_shows_only_differing_config_keys_and_metrics_side_by_side(three):
    result = json.loads(ok(three.mlxpy("diff", "1", "2", "3", "--json")).stdout)
    assert result["runs"] == [1, 2, 3]
    assert result["config"] == {"lr": [0.1, 0.2, 0.3], "seed": [1, 1, 2]}  # not wait_for
    assert result["summaries"]["train.loss.min"] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])
    assert result["summaries"]["train.loss.last"] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])
    assert result["info"]["status"] == ["COMPLETE"] * 3
    two = json.loads(ok(three.mlxpy("diff", "1", "2", "--json")).stdout)
    assert two["config"] == {"lr": [0.1, 0.2]}
    table = ok(three.mlxpy("diff", "1", "3")).stdout
    lines = {line.split()[0]: line.split()[1:] for line in table.splitlines() if line.strip()}
    assert lines["lr"] == ["0.1", "0.3"] and lines["seed"] == ["1", "2"]
    assert "wait_for" not in lines and "msg" not in lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["diff", "1", "9"], "no run 9 in "),
        (["diff", "1", "1"], "mlxpy diff compares two runs or more"),
        (["diff", "1", "x"], "'x' is not a run id"),
        (["tag", "9", "+a"], "no run 9 in "),
        (["tag", "1", "+bad tag"], "'bad tag' is not a tag"),
        (["tag", "+a"], "name the runs to tag"),
        (["note", "9", "x"], "no run 9 in "),
        (["archive", "1", "9"], "no run 9 in "),
        (["restore", "7"], "no archived run 7 in "),
        (["rm", "9", "--yes"], "no run 9 in "),
        (["tail", "9"], "no run 9 in "),
        (["rerun", "9"], "no run 9 in "),
        (["diff", "1", "2", "-d", "nowhere"], "no log directory at "),
    ],
)
def test_unknown_runs_and_bad_input_are_setup_errors(shared, args, message):
    result = shared.mlxpy(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"mlxpy: error: {message}"), result.stderr
    assert "Traceback" not in result.stderr


def test_tags_from_the_task_and_the_cli_are_queryable(three):
    reader = Reader(three.logs)
    assert reader.filter("tags contains 'from-task'").index.tolist() == [1, 2, 3]
    assert reader.filter("tags contains 'lr-0.2'").index.tolist() == [2]
    out = ok(three.mlxpy("tag", "1", "3", "+good", "-from-task")).stdout
    assert out.splitlines() == ["run 1: good, lr-0.1", "run 3: good, lr-0.3"]
    ok(three.mlxpy("tag", "3", "-good", "+bad"))
    reader.refresh()  # finished runs whose tags changed are read again
    assert reader.filter('tags contains "good"').index.tolist() == [1]
    assert reader.filter("tags not contains 'from-task'").index.tolist() == [1, 3]
    assert reader.filter("'bad' in tags").index.tolist() == [3]
    listed = json.loads(
        ok(three.mlxpy("runs", "-q", "tags contains 'good'", "--format", "json")).stdout
    )
    assert [row["log_id"] for row in listed] == [1]
    assert ok(three.mlxpy("tag", "2")).stdout.strip() == "run 2: from-task, lr-0.2"


def test_concurrent_taggers_lose_no_update(three):
    """Many processes tag one run at once: every tag is kept (a lock, not a last-writer-wins
    rewrite)."""
    run = three.logs / "1"
    code = (
        "import sys; from mlxpy.rundir.tags import update_tags\n"
        "for i in range(10): update_tags(sys.argv[1], add=[f'{sys.argv[2]}-{i}'])\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(run), f"p{k}"], env=os.environ)
        for k in range(6)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * 6
    tags = read_tags(run)
    assert {f"p{k}-{i}" for k in range(6) for i in range(10)} <= set(tags)
    assert "from-task" in tags


def test_a_live_runs_tags_do_not_clobber_cli_tags(project, tmp_path):
    go = tmp_path / "go"
    live = subprocess.Popen(
        [sys.executable, str(project.root / "main.py"), f"wait_for={go}"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = project.logs / "1"
        deadline = time.monotonic() + 60
        while "from-task" not in read_tags(run):
            assert time.monotonic() < deadline and live.poll() is None
            time.sleep(0.05)
        ok(project.mlxpy("tag", "1", "+cli"))
        go.touch()
        live.wait(timeout=60)
    finally:
        live.kill()
    assert set(read_tags(run)) == {"from-task", "lr-0.1", "cli", "late"}
    assert project.info(run)["status"] == "COMPLETE"


def test_notes_are_appended_and_shown(three):
    ok(three.mlxpy("note", "2", "diverged after step 2"))
    ok(three.mlxpy("note", "2", "second look: fine"))
    notes = ok(three.mlxpy("note", "2")).stdout
    assert notes.index("diverged after step 2") < notes.index("second look: fine")
    assert notes.count("## ") == 2
    shown = ok(three.mlxpy("show", "2")).stdout
    assert "# tags\nfrom-task, lr-0.2\n" in shown and "second look: fine" in shown
    assert three.mlxpy("note", "2", "  ").returncode == 2


def test_archive_hides_a_run_and_restore_brings_it_back(three):
    uid = three.info(three.logs / "2")["uid"]
    out = ok(three.mlxpy("archive", "2")).stdout
    archived = three.logs / ARCHIVE_DIR / f"2-{uid}"
    assert str(archived) in out and archived.is_dir() and not (three.logs / "2").exists()
    assert Reader(three.logs).filter().index.tolist() == [1, 3]
    assert ok(three.mlxpy("restore")).stdout.split() == [f"2-{uid}"]
    ok(three.mlxpy("restore", "2"))
    assert Reader(three.logs).filter().index.tolist() == [1, 2, 3]
    assert Reader(three.logs).filter("config.lr == 0.2").index.tolist() == [2]


def test_restore_never_replaces_a_run_that_took_the_id(three):
    ok(three.mlxpy("archive", "3"))
    ok(three.run("lr=0.9"))  # claims id 3 again
    result = three.mlxpy("restore", "3")
    assert result.returncode == 2 and "run id 3 is taken by another run" in result.stderr
    assert three.config(three.logs / "3")["lr"] == 0.9
    assert len(list((three.logs / ARCHIVE_DIR).iterdir())) == 1


def test_rm_asks_and_deletes_only_when_confirmed(three):
    declined = subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", "rm", "1", "2"],
        cwd=three.root,
        input="n\n",
        capture_output=True,
        text=True,
    )
    assert declined.returncode == 1 and "for good?" in declined.stderr
    assert (three.logs / "1").is_dir() and (three.logs / "2").is_dir()
    confirmed = subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", "rm", "1"],
        cwd=three.root,
        input="y\n",
        capture_output=True,
        text=True,
    )
    assert confirmed.returncode == 0 and "removed run 1" in confirmed.stdout
    out = ok(three.mlxpy("rm", "2", "--yes")).stdout
    assert "removed run 2" in out
    assert [p.name for p in three.run_dirs()] == ["3"]
    assert not [p for p in (three.logs / ARCHIVE_DIR).iterdir()]  # nothing half-removed left


def test_a_link_is_never_followed_by_rm_or_archive(three, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("x")
    os.symlink(outside, three.logs / "7")
    for args in (["rm", "7", "--yes"], ["archive", "7"], ["tag", "7", "+a"], ["tail", "7"]):
        result = three.mlxpy(*args)
        assert result.returncode == 2 and "symbolic link" in result.stderr, result.stderr
    assert (outside / "keep").read_text() == "x"


def test_a_live_run_is_neither_archived_nor_removed_and_tail_follows_it(project, tmp_path):
    go = tmp_path / "go"
    live = subprocess.Popen(
        [sys.executable, str(project.root / "main.py"), f"wait_for={go}"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run = RunDir(project.logs / "1")
        deadline = time.monotonic() + 60
        while (
            not (run.root / "log.stdout").exists()
            or "tick 3" not in (run.root / "log.stdout").read_text()
        ):
            assert time.monotonic() < deadline and live.poll() is None
            time.sleep(0.05)
        for args in (["archive", "1"], ["rm", "1", "--yes"], ["rerun", "1", "--resume"]):
            result = project.mlxpy(*args)
            assert result.returncode == 2 and "running" in result.stderr, (args, result.stderr)
        assert run.root.is_dir()
        tail = ok(project.mlxpy("tail", "1", "-n", "2", "--stdout")).stdout
        assert len(tail.splitlines()) == 2 and tail.splitlines()[-1].startswith("tick")
        follower = subprocess.Popen(
            [sys.executable, "-m", "mlxpy.cli", "tail", "1", "-f", "-n", "1"],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # the run ends while it is followed: once the follower has shown a few live ticks (on
        # a loaded machine its start alone can take a second), or after 10 s whatever it shows
        seen: list[str] = []

        def follow() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                seen.append(line)
                if sum(x.startswith("tick") for x in seen) >= 6:
                    go.touch()

        timer = threading.Timer(10.0, go.touch)
        timer.start()
        reading = threading.Thread(target=follow)
        reading.start()
        follower.wait(timeout=60)
        reading.join(timeout=30)
        timer.cancel()
        out, err = "".join(seen), follower.stderr.read() if follower.stderr else ""
        assert follower.returncode == 0, err
        assert live.wait(timeout=30) == 0
    finally:
        live.kill()
    assert "==> log.stdout <==" in out and "==> log.stderr <==" in out
    assert out.rstrip().endswith("LAST LINE") or "LAST LINE" in out.split("==> log.stderr")[0]
    ticks = [int(line.split()[1]) for line in out.splitlines() if line.startswith("tick")]
    assert len(ticks) >= 5 and ticks == sorted(ticks)  # live output, in order, as it came
    assert "ERR 0.1" in out  # the last line of stderr at the start
    # once the run ended: everything can be archived
    ok(project.mlxpy("archive", "1"))


def test_rerun_runs_the_recorded_command_into_a_new_run(three):
    ok(three.mlxpy("tag", "3", "+keep"))
    three.write_config({**CONFIG, "lr": 0.5})  # the project moved on: overrides still apply
    result = ok(three.mlxpy("rerun", "3"))
    assert "re-running run 3" in result.stderr
    new = three.logs / "4"
    original = three.info(three.logs / "3")
    info = three.info(new)
    assert info["rerun_of"] == original["uid"] and info["uid"] != original["uid"]
    assert info["overrides"] == ["lr=0.3", "seed=2"]
    assert three.config(new)["lr"] == 0.3 and three.config(new)["seed"] == 2
    assert info["status"] == "COMPLETE"
    assert Reader(three.logs).filter(f"info.rerun_of == '{original['uid']}'").index.tolist() == [4]


def test_rerun_resume_continues_the_same_run(three):
    ok(three.mlxpy("rerun", "2", "--resume"))
    info = three.info(three.logs / "2")
    assert info["restarts"] == 1 and info["status"] == "COMPLETE"
    assert "rerun_of" not in info
    assert [p.name for p in three.run_dirs()] == ["1", "2", "3"]


def test_rerun_refuses_a_run_whose_python_is_gone(three):
    run = RunDir(three.logs / "1")
    info = yaml.safe_load(run.info.read_text())
    info["python_executable"] = "/nonexistent/python"
    run.info.write_text(yaml.safe_dump(info))
    run.run_json.unlink()
    result = three.mlxpy("rerun", "1")
    assert result.returncode == 2 and "/nonexistent/python" in result.stderr


def test_update_tags_refuses_links_inside_the_run(three, tmp_path):
    run = RunDir(three.logs / "1")
    target = tmp_path / "elsewhere.json"
    target.write_text("[]")
    run.tags.unlink()
    os.symlink(target, run.tags)
    assert read_tags(run.root) == []  # a reader never follows it
    with pytest.raises(OSError):
        update_tags(run.root, add=["x"])
    assert target.read_text() == "[]"


def test_rerun_of_a_gitvm_run_runs_the_recorded_commit_from_its_snapshot(tmp_path):
    from mlxpy.testing import SUITE_TASK

    project = ProjectDir(tmp_path / "proj", SUITE_TASK)
    project.write_config({"lr": 0.1, "seed": 1, "msg": "hi", "mode": "ok", "sleep": 0})
    project.configs.joinpath("mlxpy.yaml").write_text(
        "use_version_manager: true\nversion_manager:\n  interactive_mode: false\n"
        "  skip_requirements: true\n"
    )
    (project.root / ".gitignore").write_text("logs/\n.workdir/\n")
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "."],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one"],
    ):
        subprocess.run(command, cwd=project.root, check=True)
    assert "RUN committed 0.4" in ok(project.run("lr=0.4")).stdout
    main = project.root / "main.py"
    main.write_text(main.read_text().replace('"committed"', '"edited"'))  # not committed
    result = ok(project.mlxpy("rerun", "1"))
    assert "RUN committed 0.4 1" in result.stdout  # the recorded commit's code, not the edit
    first, second = project.info(project.logs / "1"), project.info(project.logs / "2")
    assert second["rerun_of"] == first["uid"]
    assert second["version_manager"]["commit"] == first["version_manager"]["commit"]
    assert second["config_dir"] == first["config_dir"]
    assert second["config_dir"].startswith(first["version_manager"]["snapshot_path"])
