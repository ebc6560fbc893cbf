"""GitVM against real git repositories in temp dirs, with real launches (and a pseudo-terminal
for the questions)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import mlxpy
import pytest
import yaml
from mlxpy.testing import VersionManagerSuite

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}

MAIN = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    print("VERSION", VERSION, "seed", ctx.config.seed, flush=True)

VERSION = "committed"

if __name__ == "__main__":
    my_task()
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


@pytest.fixture
def repo(project):
    """A committed project (main.py, configs, .gitignore) with the version manager on."""
    project.write_main(MAIN)
    project.write_config("seed: 0\n")
    project.run("--cfg", "job")  # creates mlxpy.yaml
    options = yaml.safe_load((project.configs / "mlxpy.yaml").read_text())
    options["use_version_manager"] = True
    options["version_manager"]["interactive_mode"] = False
    (project.configs / "mlxpy.yaml").write_text(yaml.safe_dump(options, sort_keys=False))
    (project.root / ".gitignore").write_text("logs/\n")
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "first")
    project.env = GIT_ENV
    return project


def edit(project):
    main = project.root / "main.py"
    main.write_text(main.read_text().replace('VERSION = "committed"', 'VERSION = "edited"'))


def snapshots(project) -> list[Path]:
    base = project.root / ".workdir" / project.root.name
    return sorted(p for p in base.iterdir() if not p.name.startswith(".")) if base.exists() else []


def test_clean_repo_runs_from_the_snapshot(repo):
    git(repo.root, "remote", "add", "origin", "https://example.com/team/proj.git")
    result = repo.run("seed=3", env=GIT_ENV)
    assert result.returncode == 0, result.stderr
    assert "VERSION committed seed 3" in result.stdout
    sha = git(repo.root, "rev-parse", "HEAD")
    (snapshot,) = snapshots(repo)
    assert snapshot.name == sha and (snapshot / ".mlxpy-snapshot").is_file()
    assert (snapshot / "main.py").read_text() == (repo.root / "main.py").read_text()
    assert not (snapshot / ".git").exists()
    (run_dir,) = repo.run_dirs()  # logs in the project, not in the snapshot
    info = repo.info(run_dir)
    vm = info["version_manager"]
    assert (vm["commit"], vm["branch"], vm["dirty"]) == (sha, "main", False)
    assert vm["remote_url"] == "https://example.com/team/proj.git"
    assert vm["repo_path"] == str(repo.root) and vm["snapshot_path"] == str(snapshot)
    assert vm["untracked_files"] == [] and vm["script"] == "main.py"
    assert info["script_path"] == str(snapshot / "main.py")
    assert info["project_dir"] == str(repo.root) and info["cwd"] == str(repo.cwd)
    assert info["argv"] == [str(repo.root / "main.py"), "seed=3"]
    requirements = (run_dir / "metadata" / "requirements.txt").read_text()
    assert requirements.startswith(f"# Python {sys.version.split()[0]}")
    assert f"mlxpy=={mlxpy.__version__}" in requirements and "omegaconf==" in requirements
    assert not (run_dir / "metadata" / "uncommitted.patch").exists()
    again = repo.run("seed=4", env=GIT_ENV)
    assert again.returncode == 0 and snapshots(repo) == [snapshot]  # reused


def test_uncommitted_edits_never_run_without_a_terminal(repo):
    edit(repo)
    (repo.root / "notes.txt").write_text("untracked idea\n")
    result = repo.run("seed=1,2", env=GIT_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("VERSION committed") == 2 and "edited" not in result.stdout
    assert "mlxpy: warning: GitVM runs the last commit" in result.stderr
    assert "main.py, notes.txt" in result.stderr
    assert "Traceback" not in result.stderr
    for run_dir in repo.run_dirs():
        vm = repo.info(run_dir)["version_manager"]
        assert vm["dirty"] is True and vm["changed_files"] == ["main.py"]
        assert vm["untracked_files"] == ["notes.txt"]
        patch = (run_dir / "metadata" / "uncommitted.patch").read_text()
        assert '+VERSION = "edited"' in patch and "+untracked idea" in patch
    # nothing committed behind the user's back, and the work dir does not show up
    assert git(repo.root, "status", "--porcelain").splitlines() == ["M main.py", "?? notes.txt"]


def test_require_clean_refuses(repo):
    edit(repo)
    result = repo.run("+mlxpy.version_manager.require_clean=true", env=GIT_ENV)
    assert result.returncode == 2
    assert "not clean (require_clean: true): main.py" in result.stderr
    assert repo.run_dirs() == [] and snapshots(repo) == []


def test_not_a_git_repository(project):
    project.write_config("seed: 0\n")
    result = project.run("+mlxpy.use_version_manager=true")
    assert result.returncode == 2
    assert f"{project.root / 'main.py'} is not inside a git repository" in result.stderr
    assert "+mlxpy.use_version_manager=false" in result.stderr
    assert project.run_dirs() == []


def test_concurrent_launches_build_one_snapshot(repo):
    procs = [repo.popen(f"seed={i}", env=GIT_ENV) for i in range(10)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "VERSION committed" in out
    (snapshot,) = snapshots(repo)
    base = snapshot.parent
    assert [p.name for p in base.iterdir() if p.name.endswith(".tmp")] == []
    assert {repo.info(r)["version_manager"]["snapshot_path"] for r in repo.run_dirs()} == {
        str(snapshot)
    }
    assert len(repo.run_dirs()) == 10


def test_submodules_are_in_the_snapshot(repo, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper.py").write_text("VALUE = 42\n")
    git(lib, "init", "-q", "-b", "main")
    git(lib, "add", "-A")
    git(lib, "commit", "-qm", "lib")
    git(repo.root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    main = repo.root / "main.py"
    main.write_text(
        main.read_text().replace(
            'print("VERSION"', 'import lib.helper; print("LIB", lib.helper.VALUE); print("VERSION"'
        )
    )
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "with submodule")
    result = repo.run(env=GIT_ENV)
    assert result.returncode == 0, result.stderr
    assert "LIB 42" in result.stdout
    (snapshot,) = snapshots(repo)
    assert (snapshot / "lib" / "helper.py").read_text() == "VALUE = 42\n"


def test_uncommitted_configs_are_read_from_the_working_copy(repo):
    git(repo.root, "rm", "-q", "--cached", "-r", "configs")
    (repo.root / ".gitignore").write_text("logs/\nconfigs/\n")
    git(repo.root, "commit", "-qam", "configs untracked")
    result = repo.run("seed=5", env=GIT_ENV)
    assert result.returncode == 0, result.stderr
    assert "VERSION committed seed 5" in result.stdout
    assert "is not committed, so jobs read their config from the working copy" in result.stderr
    (snapshot,) = snapshots(repo)
    assert not (snapshot / "configs").exists()  # nothing was created in the snapshot


# -- questions on a terminal -------------------------------------------------------------


def run_in_pty(project, answers: list[str], *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run main.py with a pseudo-terminal as stdin/stdout; answer each question in turn."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(project.root / "main.py"), *args],
        cwd=project.cwd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **GIT_ENV},
        close_fds=True,
    )
    os.close(slave)
    output, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if pending and output.rstrip().endswith(b"]"):
                os.write(master, (pending.pop(0) + "\n").encode())
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    return proc.returncode, output.decode(errors="replace")


@pytest.fixture
def interactive(repo):
    options = yaml.safe_load((repo.configs / "mlxpy.yaml").read_text())
    options["version_manager"]["interactive_mode"] = True
    (repo.configs / "mlxpy.yaml").write_text(yaml.safe_dump(options, sort_keys=False))
    git(repo.root, "commit", "-qam", "interactive")
    return repo


def test_interactive_commit_runs_the_new_code(interactive):
    edit(interactive)
    (interactive.root / "extra.py").write_text("X = 1\n")
    (interactive.root / "scratch.txt").write_text("no\n")
    code, out = run_in_pty(interactive, ["what?", "c", "y", "n", "maybe", "c"], "seed=1,2")
    assert code == 0, out
    assert "Please answer one of" in out  # invalid answers ask again
    assert out.count("Commit them and run the new commit") == 2  # re-asked once, one launch
    assert out.count("VERSION edited") == 2
    assert git(interactive.root, "log", "-1", "--format=%s") == (
        "mlxpy: automatic commit before launch"
    )
    assert git(interactive.root, "status", "--porcelain") == "?? scratch.txt"
    files = git(interactive.root, "show", "--name-only", "--format=", "HEAD").splitlines()
    assert sorted(files) == ["extra.py", "main.py"]
    vm = interactive.info(interactive.run_dirs()[0])["version_manager"]
    assert vm["commit"] == git(interactive.root, "rev-parse", "HEAD") and vm["dirty"] is False


def test_interactive_last_commit_and_abort(interactive):
    edit(interactive)
    code, out = run_in_pty(interactive, ["l"])
    assert code == 0, out
    assert "VERSION committed" in out
    assert interactive.info(interactive.run_dirs()[0])["version_manager"]["dirty"] is True
    code, out = run_in_pty(interactive, ["a"])
    assert code == 2 and "launch aborted" in out
    assert len(interactive.run_dirs()) == 1


class TestGitVMConformance(VersionManagerSuite):
    version_manager_name = "GitVM"
    version_manager_settings = {"interactive_mode": False}


def test_every_rank_of_a_distributed_job_runs_the_same_snapshot(repo):
    """Two ranks (torchrun's environment, real processes) each freeze the code: they get the
    one snapshot of the commit, run from it, and make one run."""
    import uuid

    repo.write_main(MAIN.replace('print("VERSION"', 'print("FILE", __file__, "VERSION"'))
    git(repo.root, "commit", "-qam", "print the file")
    run_id = str(uuid.uuid4())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, **GIT_ENV, "RANK": str(rank), "WORLD_SIZE": "2"}
        env.update({"LOCAL_RANK": str(rank), "TORCHELASTIC_RUN_ID": run_id})
        procs.append(
            subprocess.Popen(
                [sys.executable, str(repo.root / "main.py")],
                cwd=repo.cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    (snapshot,) = snapshots(repo)
    files = {line.split()[1] for out, _ in outputs for line in out.splitlines() if "FILE" in line}
    assert files == {str(snapshot / "main.py")}
    (run_dir,) = repo.run_dirs()
    info = repo.info(run_dir)
    assert info["world_size"] == 2 and info["version_manager"]["snapshot_path"] == str(snapshot)
    assert (run_dir / "ranks" / "1" / "status.json").is_file()
