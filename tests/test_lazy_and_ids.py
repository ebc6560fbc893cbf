"""Start-up stays light, and simultaneous launches never share a run directory."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "git", "wandb", "hydra", "numpy")


def test_import_mlxpy_is_light():
    code = f"import sys, mlxpy; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_launching_a_task_imports_no_pandas_or_git(seeded):
    seeded.write_main("""
        import sys
        import mlxpy

        @mlxpy.launch(config_path="./configs")
        def my_task(ctx):
            print(sorted(m for m in ("pandas", "git", "wandb") if m in sys.modules))

        if __name__ == "__main__":
            my_task()
    """)
    result = seeded.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_signal_handler_installed_at_import():
    code = (
        "import signal, mlxpy; "
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "
        "signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_simultaneous_launches_get_distinct_ids(seeded):
    seeded.run("--cfg", "job")  # creates mlxpy.yaml once, like a user's first run
    procs = [seeded.popen(f"seed={i}") for i in range(12)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    runs = seeded.run_dirs()
    assert [int(r.name) for r in runs] == list(range(1, 13))
    assert sorted(seeded.config(r)["seed"] for r in runs) == list(range(12))
    assert all(seeded.info(r)["log_id"] == int(r.name) for r in runs)


def test_simultaneous_first_launches_create_config_files_once(project):
    procs = [project.popen() for _ in range(6)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert (project.configs / "config.yaml").read_text() == "seed: null\n"
    assert sorted(p.name for p in project.configs.iterdir()) == ["config.yaml", "mlxpy.yaml"]
    assert len(project.run_dirs()) == 6


def test_existing_dirs_are_skipped_and_forced_id_reuses(seeded):
    (seeded.logs / "5").mkdir(parents=True)
    (seeded.logs / "notes").mkdir()
    assert seeded.run().returncode == 0
    assert [r.name for r in seeded.run_dirs()] == ["5", "6"]
    refused = seeded.run("+mlxpy.logger.forced_log_id=5", "seed=42")  # a dir, not a run
    assert refused.returncode == 2 and "has no run info" in refused.stderr
    assert not any((seeded.logs / "5").iterdir())  # nothing written into it
    assert seeded.run("+mlxpy.logger.forced_log_id=6", "seed=42").returncode == 0
    assert seeded.config(seeded.logs / "6")["seed"] == 42
    assert [r.name for r in seeded.run_dirs()] == ["5", "6"]
