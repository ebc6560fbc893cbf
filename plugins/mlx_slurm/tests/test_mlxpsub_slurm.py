"""``mlxpsub`` end to end on the real SLURM cluster: an MLXP batch script's ``#SBATCH``
directives reach sbatch through SLURMScheduler's option_cmd, its environment line reaches
every job, and its python line's sweep runs as scheduled mlxpy runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlxpy.testing import ProjectDir

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

TASK = """
import os
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    print("MARK", os.environ["MLXPSUB_MARK"], "CPUS", os.environ.get("SLURM_CPUS_PER_TASK"))

if __name__ == "__main__":
    task()
"""


def test_mlxpsub_submits_an_sbatch_script(tmp_path):
    project = ProjectDir(tmp_path / "p", TASK)
    project.write_config({"seed": 0})
    (project.root / "job.sh").write_text(
        textwrap.dedent(
            f"""\
            #!/bin/bash
            #SBATCH --time=5
            #SBATCH --cpus-per-task=1
            export MLXPSUB_MARK=slurm-env-line
            {sys.executable} main.py seed=1,2
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "mlxpy.scheduling.script_import", "job.sh"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    infos = project.wait(2, 300)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 2
    for info, run_dir in zip(infos, project.run_dirs(), strict=True):
        assert info["scheduler"]["name"] == "SLURMScheduler"
        assert info["scheduler"]["settings"]["option_cmd"] == ["--time=5", "--cpus-per-task=1"]
        script = (run_dir / "script.sh").read_text()
        assert "#SBATCH --time=5" in script and "#SBATCH --cpus-per-task=1" in script
        assert "MARK slurm-env-line CPUS 1" in (run_dir / "job.stdout").read_text()
    assert sorted(project.config(r)["seed"] for r in project.run_dirs()) == [1, 2]
