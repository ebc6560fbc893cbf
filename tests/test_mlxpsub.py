"""``mlxpsub script.sh`` / ``mlxpy sub``: MLXP batch scripts read into scheduler options and
mlxpy launches (the parse of real script texts), and one real submission through the
LocalScheduler (the SLURM end to end test is in plugins/mlx_slurm/tests)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mlxpy
import pytest
from conftest import REPO
from mlxpy.launching.overrides import split_job
from mlxpy.plugins.registry import PluginRegistry
from mlxpy.rundir.layout import RunDir
from mlxpy.scheduling.script_import import ScriptError, parse_script
from mlxpy.testing import ProjectDir

# MLXP's own documented example script (mlxp.mlxpsub's docstring), with an environment line
MLXP_EXAMPLE = """\
#!/bin/bash

#OAR -l core=1, walltime=6:00:00
#OAR -t besteffort
#OAR -t idempotent
#OAR -p gpumem>'16000'

source ~/envs/mlxp/bin/activate   # the env every job needs

python main.py  optimizer.lr=10.,1.,0.1 seed=1,2,3,4
python main.py  model.num_units=100,200 seed=1,2,3,4
"""

SLURM_SCRIPT = """\
#!/bin/bash
#SBATCH --time=01:00:00
#SBATCH --cpus-per-task=4 --mem=8G
#SBATCH --gres=gpu:1
module purge
module load python/3.11 cuda
export OMP_NUM_THREADS=4
LRS=1e-3,1e-2
cd "$HOME/project"
python3 main.py optimizer.lr=$LRS \\
    'seed=range(0,3)' \\
    +mlxpy.logger.parent_log_dir=./logs   # continued lines
"""


def options_of(script) -> dict:
    """The mlxpy options a launch line's appended overrides set, as Hydra and mlxpy read
    them (the real override parser, not a string comparison)."""
    split = split_job(script.overrides(), config_dir=Path("."))  # mlxpy options only
    return {".".join(o.path): o.value for o in split.options}


def test_mlxp_example_maps_directives_env_and_python_lines():
    script = parse_script(MLXP_EXAMPLE, "job.sh")
    assert script.scheduler == "OARScheduler"
    assert script.option_cmd == [
        "-l core=1, walltime=6:00:00",
        "-t besteffort",
        "-t idempotent",
        "-p gpumem>'16000'",
    ]
    assert script.env_cmd == ["source ~/envs/mlxp/bin/activate"]  # the comment is dropped
    assert [c.line for c in script.commands] == [10, 11]
    assert options_of(script) == {
        "use_scheduler": True,
        "scheduler.name": "OARScheduler",
        "scheduler.option_cmd": script.option_cmd,  # quotes and commas intact
        "scheduler.shell_path": "/bin/bash",
        "scheduler.env_cmd": "source ~/envs/mlxp/bin/activate",
    }
    launches = script.launch_lines()
    assert launches[0].startswith("python main.py  optimizer.lr=10.,1.,0.1 seed=1,2,3,4 +mlxpy.")


def test_slurm_script_with_continuations_variables_and_cd():
    script = parse_script(SLURM_SCRIPT, "train.sh")
    assert script.scheduler == "SLURMScheduler"
    assert script.option_cmd == ["--time=01:00:00", "--cpus-per-task=4 --mem=8G", "--gres=gpu:1"]
    # `module load python/...` names python but is an environment line; LRS= and cd stay
    # in the submitting shell (as in MLXP), never in the jobs
    assert script.env_cmd == [
        "module purge",
        "module load python/3.11 cuda",
        "export OMP_NUM_THREADS=4",
    ]
    (command,) = script.commands
    assert command.line == 10 and "# continued" not in command.text
    assert command.text.split() == [
        "python3",
        "main.py",
        "optimizer.lr=$LRS",
        "'seed=range(0,3)'",
        "+mlxpy.logger.parent_log_dir=./logs",
    ]
    assert options_of(script)["scheduler.env_cmd"] == "\n".join(script.env_cmd)


def test_submission_script_runs_the_lines_in_order_with_the_options_appended(tmp_path):
    """The shell at submission expands the script's variables into the python line: checked
    by running the generated script with a stand-in `python` that prints its argv (a fake
    only for the interpreter, so the shell's own expansion is what is tested)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(f"#!{sys.executable}\nimport sys, json\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    script = parse_script(SLURM_SCRIPT.replace("module ", "true module "), "train.sh")
    result = subprocess.run(
        ["/bin/bash", "-c", script.submission_script(), "train.sh"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home)},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout)
    assert argv[:4] == [
        "main.py",
        "optimizer.lr=1e-3,1e-2",
        "seed=range(0,3)",
        "+mlxpy.logger.parent_log_dir=./logs",
    ]
    assert argv[4:] == script.overrides()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "#SBATCH --time=1:00:00\n#OAR -l core=1\npython main.py\n",
            r"two schedulers, #SBATCH \(line 1\), #OAR \(line 2\)",
        ),
        ("#SBATCH --time=1:00:00\nmodule load cuda\n", "no python line"),
        ("#SBATCH --output=out.txt\npython main.py\n", "--output is set by mlxpy .*run dir"),
        ("#SBATCH -o out.txt\npython main.py\n", "-o is set by mlxpy"),
        ("#SBATCH --array=0-9\npython main.py\n", "--array is set by mlxpy .*array"),
        ("#SBATCH -J name\npython main.py\n", "-J is set by mlxpy"),
        ("#OAR -O out.%jobid%\npython main.py\n", "-O is set by mlxpy"),
        ("#OAR --array 10\npython main.py\n", "--array is set by mlxpy"),
        ("#OAR -n myjob\npython main.py\n", "-n is set by mlxpy"),
        ("#SBATCH --signal=B:USR1@60\npython main.py\n", "--signal is set .*signal_grace_s"),
        (
            "#!/bin/bash\n#PBS -l walltime=1:00:00\npython main.py\n",
            r"job.sh, line 2: '#PBS -l walltime=1:00:00': no installed scheduler writes "
            r"'#PBS' directives: install the scheduler plugin for your cluster; "
            r"`mlxpy plugins` lists what is installed \(.*#SBATCH \(SLURMScheduler\)",
        ),
        ("python main.py a=1 && echo done\n", r"'&' out of quotes"),
        ("python main.py seed=range(0,3)\n", r"'\(' out of quotes.*quote sweeps"),
        ("python main.py > out.txt\n", r"'>' out of quotes"),
        ("srun python main.py\n", "command in front of python"),
        ("CUDA_VISIBLE_DEVICES=0 python main.py\n", "command in front of python"),
        ("for s in 1 2; do python main.py seed=$s; done\n", "a loop"),
        ("python main.py\necho done\n", "line 2: 'echo done' follows a python line"),
        ("python\n", "without a script"),
        ("python main.py name='unclosed\n", "quote is never closed"),
    ],
)
def test_refusals_name_the_line_and_the_fix(text, message):
    with pytest.raises(ScriptError, match=message):
        parse_script(text, "job.sh")


def test_comments_and_disabled_directives_stay_comments():
    text = (
        "#!/bin/bash\n"
        "# SBATCH --time=1:00:00   (a space after #: disabled, as the schedulers read it)\n"
        "##SBATCH --gres=gpu:1\n"
        "#TODO try lr=1e-4\n"
        "#!/not/a/shebang on line 4\n"
        "#SBATCH\n"  # a prefix without options: nothing to pass on
        "python main.py\n"
    )
    script = parse_script(text, "job.sh")
    assert script.scheduler is None and script.option_cmd == []
    assert script.plan[:-1] == text.splitlines()[:-1]  # kept as written, run at submission


class _Scheduler(mlxpy.Scheduler):
    """A scheduler registered only in this test's registry (never submits: parse only)."""

    directive_prefix = "#JOBS"
    reserved_directives = {"--log": "mlxpy writes the log into the run dir"}


class JobsScheduler(_Scheduler):
    name = "JobsScheduler"


class OtherJobsScheduler(_Scheduler):
    name = "OtherJobsScheduler"


class _Provides:
    def __init__(self, *schedulers: type) -> None:
        self.schedulers = list(schedulers)

    @mlxpy.hookimpl
    def mlxpy_register_schedulers(self) -> list[type]:
        return self.schedulers


def registry_with(*schedulers: type) -> PluginRegistry:
    """A real registry holding the builtins and ``schedulers`` (no installed plugin)."""
    registry = PluginRegistry(load_entry_points=False)
    if schedulers:
        registry.register(_Provides(*schedulers), "test-schedulers")
    return registry


def test_the_registrys_schedulers_say_which_directives_they_write():
    registry = registry_with(JobsScheduler)
    script = parse_script("#JOBS --nodes=2\n#JOBS -q fast\npython main.py\n", "j.sh", registry)
    assert (script.scheduler, script.option_cmd) == ("JobsScheduler", ["--nodes=2", "-q fast"])
    with pytest.raises(ScriptError, match=r"j.sh, line 2: .*--log is set by mlxpy \(mlxpy wr"):
        parse_script("#JOBS --nodes=2\n#JOBS --log=x\npython main.py\n", "j.sh", registry)
    # without their plugins, directives are refused, never dropped as comments
    sbatch = "#SBATCH --time=1:00:00\npython main.py\n"
    with pytest.raises(ScriptError, match=r"writes '#SBATCH'.*write: #JOBS \(JobsScheduler\)\)$"):
        parse_script(sbatch, "j.sh", registry)
    with pytest.raises(ScriptError, match="writes '#SBATCH'.*write: no directives"):
        parse_script(sbatch, "j.sh", registry_with())  # the builtins only


def test_a_prefix_several_schedulers_write_is_refused_naming_them():
    registry = registry_with(JobsScheduler, OtherJobsScheduler)
    with pytest.raises(ScriptError) as caught:
        parse_script("#!/bin/bash\n#JOBS --nodes=2\npython main.py\n", "j.sh", registry)
    message = str(caught.value)
    assert "j.sh, line 2: several installed schedulers write '#JOBS' directives" in message
    assert f"JobsScheduler ({__name__}.JobsScheduler)" in message
    assert f"OtherJobsScheduler ({__name__}.OtherJobsScheduler)" in message
    assert "uninstall the plugins you do not use" in message
    script = parse_script("python main.py\n", "j.sh", registry)  # no directive: no matter
    assert script.scheduler is None

    registry = registry_with(JobsScheduler)  # one name two plugins provide: told, not hidden
    registry.register(_Provides(JobsScheduler), "more-schedulers")
    with pytest.raises(ScriptError, match="writes '#JOBS'.*could not look at: .*'JobsScheduler'"):
        parse_script("#JOBS --nodes=2\npython main.py\n", "j.sh", registry)


def test_a_backslash_continues_code_only():
    text = "python main.py a=1  # not continued \\\npython main.py 'b=x\\' c=2 \\\n  d=3\n"
    script = parse_script(text)
    assert [c.text.split() for c in script.commands] == [
        ["python", "main.py", "a=1"],
        ["python", "main.py", "'b=x\\'", "c=2", "d=3"],
    ]


def test_a_script_without_directives_uses_mlxpy_yamls_scheduler():
    script = parse_script("export A=1\npython main.py seed=1,2\n")
    assert script.scheduler is None
    assert options_of(script) == {"use_scheduler": True, "scheduler.env_cmd": "export A=1"}


TASK = """
import json
import os
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    ctx.logger.log_metrics({"seed": ctx.config.seed, "mark": os.environ["MLXPSUB_MARK"]}, "env")
    print("cwd", os.getcwd(), flush=True)

if __name__ == "__main__":
    task()
"""


def run_mlxpsub(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlxpy.scheduling.script_import", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_mlxpsub_submits_each_python_line_with_the_local_scheduler(tmp_path):
    project = ProjectDir(tmp_path / "p", TASK)
    project.write_config({"seed": 0})
    project.write_config(
        {"scheduler": {"name": "LocalScheduler", "max_workers": 2}}, "mlxpy.yaml"
    )  # use_scheduler stays false there: mlxpsub turns it on
    (project.root / "job.sh").write_text(
        textwrap.dedent(
            f"""\
            #!/bin/bash
            export MLXPSUB_MARK="from the env line of job.sh"
            SEEDS=1,2
            {sys.executable} main.py seed=$SEEDS
            {sys.executable} main.py seed=7
            """
        )
    )
    dry = run_mlxpsub("--dry-run", "job.sh", cwd=project.root)
    assert dry.returncode == 0 and "2 launch(es)" in dry.stdout and project.run_dirs() == []
    result = run_mlxpsub("job.sh", cwd=project.root)
    assert result.returncode == 0, result.stderr
    infos = project.wait(3, 120)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    assert all(i["scheduler"]["name"] == "LocalScheduler" for i in infos)
    seeds = sorted(project.config(r)["seed"] for r in project.run_dirs())
    assert seeds == [1, 2, 7]
    script = (project.run_dirs()[0] / "script.sh").read_text()
    assert 'export MLXPSUB_MARK="from the env line of job.sh"' in script  # env_cmd in the job
    for run_dir in project.run_dirs():  # and the job saw it: not from the submitting shell
        metrics = RunDir(run_dir).metrics_file("env").read_text()
        assert "from the env line of job.sh" in metrics


def test_mlxpy_sub_errors_exit_2(tmp_path):
    (tmp_path / "both.sh").write_text("#SBATCH -t 1\n#OAR -l core=1\npython main.py\n")
    for command in (
        [sys.executable, "-m", "mlxpy.cli", "sub", "both.sh"],
        [sys.executable, "-m", "mlxpy.scheduling.script_import", "both.sh"],
    ):
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 2
        assert "two schedulers" in result.stderr and "both.sh" in result.stderr
    missing = run_mlxpsub("nope.sh", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read the script nope.sh" in missing.stderr


def test_readme_example_script_parses_as_documented():
    readme = (REPO / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", readme, flags=re.S) if "#SBATCH" in b]
    script = parse_script(block, "README")
    assert script.scheduler == "SLURMScheduler"
    assert script.option_cmd == ["--time=06:00:00", "--gres=gpu:1"]
    assert script.env_cmd == ["module load cuda", "source ~/envs/ml/bin/activate"]
    assert len(script.commands) == 2
