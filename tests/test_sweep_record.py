"""The sweep record: every launch of more than one job writes its manifest and journals each
point's run dir when it is claimed; runs know their sweep; the Reader and ``mlxpy sweeps`` /
``mlxpy sweep status`` read it back. Real ``python main.py`` launches throughout."""

from __future__ import annotations

import json
import os

import orjson
import pytest
from mlxpy.launching.record import LaunchRecord, LaunchRecordError
from mlxpy.rundir.layout import RunDir
from mlxpy.sweeping.manifest import SweepManifest, list_sweeps, read_journal, sweep_dir
from mlxpy.testing import ProjectDir

CONFIG = {"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0}


@pytest.fixture
def project(tmp_path):
    project = ProjectDir(tmp_path / "p")
    project.write_config(CONFIG)
    return project


def only_sweep(project: ProjectDir) -> SweepManifest:
    (sweep_id,) = list_sweeps(project.logs)
    return SweepManifest.read(project.logs, sweep_id)


def test_a_sequential_sweep_is_recorded_and_its_runs_know_their_point(project):
    result = project.run("seed=1,2,3", "lr=0.5")
    assert result.returncode == 0, result.stderr
    manifest = only_sweep(project)
    assert manifest.argv[1:] == ["seed=1,2,3", "lr=0.5"]
    assert manifest.cwd == str(project.root)
    assert manifest.project_dir == str(project.root)
    assert manifest.sweeper["name"] == "BasicSweeper"
    assert manifest.scheduler is None
    assert [p.overrides for p in manifest.points] == [
        ["lr=0.5", "seed=1"],
        ["lr=0.5", "seed=2"],
        ["lr=0.5", "seed=3"],
    ]
    journal = read_journal(project.logs, manifest.sweep_id)
    infos = {project.info(d)["sweep_point"]: project.info(d) for d in project.run_dirs()}
    assert sorted(journal) == sorted(infos) == [0, 1, 2]
    for point, info in infos.items():
        assert info["sweep_id"] == manifest.sweep_id
        assert info["overrides"] == manifest.points[point].overrides
        assert journal[point].log_id == info["log_id"]
        assert journal[point].uid == info["uid"]
    # the launch says where each run is, and ends with one summary line
    for info in infos.values():
        assert f"[mlxpy] run {info['log_id']} {info['log_dir']}" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"[mlxpy] sweep {manifest.sweep_id}: 3 runs: 3 COMPLETE in ")


def test_one_job_writes_no_sweep_record(project):
    result = project.run("seed=4")
    assert result.returncode == 0, result.stderr
    (run_dir,) = project.run_dirs()
    info = project.info(run_dir)
    assert "sweep_id" not in info and "sweep_point" not in info
    assert not (project.logs / ".sweeps").exists()
    assert f"[mlxpy] run 1 {run_dir}" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("[mlxpy] 1 run: 1 COMPLETE in ")


def test_the_reader_groups_and_filters_runs_by_sweep(project):
    from mlxpy import Reader

    assert project.run("seed=1,2,3").returncode == 0
    assert project.run("seed=7").returncode == 0
    assert project.run("seed=5,6", "lr=0.2").returncode == 0
    first, second = list_sweeps(project.logs)
    reader = Reader(project.logs)
    runs = reader.filter()
    assert runs.groupby("info.sweep_id").size().to_dict() == {first: 3, second: 2}
    picked = reader.filter(f"info.sweep_id == '{second}'")
    assert sorted(picked["config.seed"]) == [5, 6]
    assert sorted(picked["info.sweep_point"]) == [0, 1]
    lone = runs[runs["info.sweep_id"].isna()]
    assert list(lone["config.seed"]) == [7]


def test_a_submitted_sweep_records_job_ids_and_tells_jobs_their_point(project):
    project.write_config(
        {"scheduler": {"name": "LocalScheduler", "max_workers": 2}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    result = project.run("seed=1,2,3")
    assert result.returncode == 0, result.stderr
    manifest = only_sweep(project)
    assert manifest.scheduler["name"] == "LocalScheduler"
    assert f"mlxpy sweep status {manifest.sweep_id}" in result.stderr
    assert f"sweep {manifest.sweep_id}: 3 jobs: 3 SUBMITTED" in result.stderr
    infos = project.wait(3, 60)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    journal = read_journal(project.logs, manifest.sweep_id)
    for info in infos:
        point = manifest.points[info["sweep_point"]]
        assert info["sweep_id"] == manifest.sweep_id
        assert point.log_id == info["log_id"] == journal[point.index].log_id
        assert point.job_id == info["scheduler"]["job_id"]
        record = LaunchRecord.read(RunDir(info["log_dir"]).launch_record)
        assert (record.sweep_id, record.sweep_point) == (manifest.sweep_id, point.index)
        # the job's command line holds its point's overrides, no sweep option
        assert info["overrides"] == point.overrides


def test_a_launch_record_with_a_bad_sweep_point_is_refused(tmp_path):
    good = {
        "format": 1,
        "project_dir": "/p",
        "config_dir": "/p/configs",
        "argv": ["main.py"],
        "sweep_id": "20261201-171300-a1b2c3",
        "sweep_point": 2,
    }
    path = tmp_path / "launch.json"
    path.write_text(json.dumps(good))
    assert LaunchRecord.read(path).sweep_point == 2
    for bad in (
        {"sweep_point": -1},
        {"sweep_point": True},
        {"sweep_id": "../x"},
        {"sweep_id": None},
    ):
        path.write_text(json.dumps({**good, **bad}))
        with pytest.raises(LaunchRecordError, match="malformed"):
            LaunchRecord.read(path)


def test_mlxpy_sweeps_and_sweep_status_show_the_points(project):
    assert project.run("seed=1,2", "mode=ok").returncode == 0
    result = project.run("seed=3,4", "mode=fail")
    assert result.returncode == 1
    first, second = list_sweeps(project.logs)
    listing = project.mlxpy("sweeps")
    assert listing.returncode == 0, listing.stderr
    assert f"{first}  2 points: 2 COMPLETE" in listing.stdout
    assert f"{second}  2 points: 2 FAILED" in listing.stdout
    rows = json.loads(project.mlxpy("sweeps", "--format", "json").stdout)
    assert [(r["sweep_id"], r["counts"]) for r in rows] == [
        (first, {"COMPLETE": 2}),
        (second, {"FAILED": 2}),
    ]
    status = project.mlxpy("sweep", "status", second)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"sweep {second}: 2 points: 2 FAILED"
    assert lines[3].split()[:4] == ["0", "3", "FAILED", "-"]
    assert lines[4].split()[:4] == ["1", "4", "FAILED", "-"]
    assert lines[4].endswith("mode=fail seed=4")


def test_unknown_or_malformed_sweeps_are_setup_errors(project):
    assert project.run("seed=1,2").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    for args in (
        ("sweep", "status", "20000101-000000-000000"),
        ("sweep", "resume", "20000101-000000-000000"),
        ("sweep", "status", "../../etc"),
    ):
        result = project.mlxpy(*args)
        assert result.returncode == 2, result
        assert result.stderr.startswith("mlxpy: error: ") and "mlxpy sweeps" in result.stderr
    manifest = sweep_dir(project.logs, sweep_id) / "sweep.json"
    data = orjson.loads(manifest.read_bytes())
    data["points"][1]["overrides"] = "seed=2; rm -rf /"
    manifest.write_bytes(orjson.dumps(data))
    for args in (("sweep", "status", sweep_id), ("sweep", "resume", sweep_id)):
        result = project.mlxpy(*args)
        assert result.returncode == 2
        assert "malformed" in result.stderr and str(manifest) in result.stderr
    listing = project.mlxpy("sweeps")  # one damaged record does not hide the others
    assert listing.returncode == 0 and "unreadable" in listing.stdout


def test_a_torn_or_foreign_journal_line_is_skipped(project):
    assert project.run("seed=1,2,3").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    journal = sweep_dir(project.logs, sweep_id) / "points.jsonl"
    with open(journal, "ab") as handle:  # a point claimed by a stranger, garbage, a torn line
        handle.write(b'{"point": 1, "log_id": 99}\nnot json\n{"point": 2, "log_')
    status = json.loads(project.mlxpy("sweep", "status", sweep_id, "--format", "json").stdout)
    got = [(p["index"], p["log_id"], p["status"]) for p in status["points"]]
    assert got == [(0, 1, "COMPLETE"), (1, None, "MISSING"), (2, 3, "COMPLETE")]


@pytest.mark.root
def test_resume_refuses_a_manifest_written_by_another_user(project):
    assert project.run("seed=1,2").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    os.chown(sweep_dir(project.logs, sweep_id) / "sweep.json", 54321, -1)
    before = len(project.run_dirs())
    result = project.mlxpy("sweep", "resume", sweep_id)
    assert result.returncode == 2
    assert "another user (uid 54321)" in result.stderr
    assert len(project.run_dirs()) == before


def test_status_of_an_adaptive_sweep_never_imports_a_class_its_manifest_names(project, tmp_path):
    """The manifest is data from a shared dir: a sweeper named by a dotted path is not
    imported to ask it for the best trial; the points are still shown."""
    from mlxpy.sweeping.manifest import new_sweep_id

    marker = tmp_path / "imported"
    (project.root / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nclass Sweeper: pass\n"
    )
    assert project.run("seed=1,2").returncode == 0
    manifest = only_sweep(project)
    manifest.sweep_id = new_sweep_id()
    manifest.adaptive = True
    manifest.sweeper = {"name": "evil.Sweeper", "settings": {}}
    manifest.write(project.logs)
    result = project.mlxpy("sweep", "status", manifest.sweep_id)
    assert result.returncode == 0, result.stderr
    assert "best: \"(sweeper 'evil.Sweeper' is not installed here)\"" in result.stdout
    assert not marker.exists()


def test_a_run_dir_reached_through_a_link_is_never_read(project):
    """A planted link in a shared logs dir does not make a point look complete: the point is
    UNREADABLE, neither trusted nor run again."""
    import shutil

    assert project.run("seed=1,2").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    metadata = project.logs / "2" / "metadata"
    shutil.rmtree(metadata)
    metadata.symlink_to(project.logs / "1" / "metadata")
    status = json.loads(project.mlxpy("sweep", "status", sweep_id, "--format", "json").stdout)
    assert [(p["log_id"], p["status"]) for p in status["points"]] == [
        (1, "COMPLETE"),
        (2, "UNREADABLE"),
    ]
    resume = project.mlxpy("sweep", "resume", sweep_id)
    assert resume.returncode == 0 and "nothing to resume" in resume.stderr
