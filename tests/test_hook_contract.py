"""The hook contract, made true and kept true.

Meta-tests (as datasette's): every hookspec is documented with its exact signature in
docs/writing-plugins.md, called by the core (``hook.<name>(``), and has a ``test_hook_<name>``
here; a hook added without all three fails the suite.

Then a plugin implementing every hook, as module-level hooks and as methods of a selected
logger, scheduler and version manager, records each call (with its arguments' types, checked
against the hookspec's annotations) as JSON lines, across real ``python main.py`` launches: a
launch, a sweep, a failing run, a logger that is not a DefaultLogger, a GitVM launch, and a
LocalScheduler submission with GitVM.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import mlxpy
import pytest
from mlxpy import hookspecs
from mlxpy.testing import ProjectDir

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "mlxcore" / "mlxpy"
DOCS = REPO / "docs" / "writing-plugins.md"

SPECS = {
    name: function
    for spec_class in hookspecs.SPEC_CLASSES
    for name, function in vars(spec_class).items()
    if name.startswith("mlxpy_")
}
REGISTRATION = {n for n in SPECS if n.startswith("mlxpy_register_")}
LIFECYCLE = set(SPECS) - REGISTRATION


def signature_text(name: str) -> str:
    """``name(arg: Type, ...) -> Return``, as the docs must show it (``self`` left out)."""
    sig = inspect.signature(SPECS[name])
    params = [f"{p.name}: {p.annotation}" for p in sig.parameters.values() if p.name != "self"]
    return f"{name}({', '.join(params)}) -> {sig.return_annotation}"


# -- meta-tests ---------------------------------------------------------------------------------


def test_every_hookspec_is_typed():
    for name, function in SPECS.items():
        sig = inspect.signature(function)
        for param in sig.parameters.values():
            if param.name != "self":
                assert param.annotation is not inspect.Parameter.empty, (name, param.name)
                assert param.annotation != "Any" or param.name == "step", (name, param.name)
        assert sig.return_annotation is not inspect.Signature.empty, name
        doc = inspect.getdoc(function) or ""
        assert ("Args:" in doc) == bool(len(sig.parameters) > 1), name
        assert ("Returns:" in doc) == (name in REGISTRATION), name


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_documented_with_its_signature(name):
    assert signature_text(name) in DOCS.read_text(), f"document {signature_text(name)} in {DOCS}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_called_by_the_core(name):
    # a broadcast call, or (registration hooks) each implementation called in isolation
    call = re.compile(rf"\bhook\.{name}(\(|\.get_hookimpls\(\))")
    sources = [p for p in CORE.rglob("*.py") if p.name != "hookspecs.py"]
    assert any(call.search(p.read_text()) for p in sources), f"no hook.{name}( in {CORE}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_has_a_test(name):
    assert callable(globals().get(f"test_hook_{name}")), f"write test_hook_{name}"


def test_the_docs_list_no_hook_that_does_not_exist():
    documented = set(re.findall(r"\b(mlxpy_[a-z_]+)\(", DOCS.read_text()))
    assert documented <= set(SPECS), documented - set(SPECS)


def test_hookspecs_import_their_types_only_for_type_checkers():
    """Importing hookspecs loads no other mlxpy module (cheap, and no import cycle)."""
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    imported = set()
    for node in tree.body:  # top level only: the TYPE_CHECKING block is an ast.If
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported == {"__future__", "collections.abc", "typing", "pluggy"}
    checking = [n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n)]
    assert checking and "mlxpy.context" in ast.unparse(checking[0])


# -- the spy plugin -----------------------------------------------------------------------------

SPY_PLUGIN = '''
"""Implements every mlxpy hook; each call appends one JSON line to $HOOKSPY_LOG."""

import collections.abc
import json
import os
import pickle
import typing
from pathlib import Path

import mlxpy
from mlxpy import hookspecs
from mlxpy.context import Context
from mlxpy.rundir.artifacts import ArtifactType
from mlxpy.rundir.logger import Logger
from mlxpy.rundir.status import RunStatus
from mlxpy.scheduling.base import ScheduledJob, Scheduler
from mlxpy.scheduling.local import LocalScheduler
from mlxpy.sweeping.sweeper import BasicSweeper, Sweeper
from mlxpy.versioning.base import GitVM, VersionManager

# what hookspecs imports under TYPE_CHECKING, to resolve its annotations
NAMES = dict(
    Context=Context, ArtifactType=ArtifactType, Logger=Logger, RunStatus=RunStatus,
    ScheduledJob=ScheduledJob, Scheduler=Scheduler, VersionManager=VersionManager,
    Sweeper=Sweeper,
)
SPECS = {
    name: function
    for spec_class in hookspecs.SPEC_CLASSES
    for name, function in vars(spec_class).items()
    if name.startswith("mlxpy_")
}


def conforms(value, hint):
    """Whether ``value`` is of the annotated type (generics: their origin, one level in)."""
    if hint is typing.Any:
        return True
    origin = typing.get_origin(hint)
    if origin is None:
        return isinstance(value, hint)
    args = typing.get_args(hint)
    if origin is type:
        return isinstance(value, type) and issubclass(value, args[0])
    if not isinstance(value, origin):
        return False
    if origin is collections.abc.Iterable and args:
        return all(conforms(item, args[0]) for item in value)
    return True


def summary(value):
    if isinstance(value, Context):
        return {"log_id": value.info.get("log_id"), "logger": type(value.logger).__name__}
    if isinstance(value, ScheduledJob):
        return {"log_id": value.log_id, "job_id": value.job_id}
    if isinstance(value, BaseException):
        return type(value).__name__
    if isinstance(value, RunStatus):
        return value.value
    if isinstance(value, dict):
        return {str(k): summary(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return repr(value)


def record(by, hook, result=None, **kwargs):
    hints = typing.get_type_hints(SPECS[hook], localns=NAMES)
    types = {k: f"{type(v).__module__}.{type(v).__qualname__}" for k, v in kwargs.items()}
    ok = {k: conforms(v, hints[k]) for k, v in kwargs.items()}
    if hook.startswith("mlxpy_register_"):
        ok["return"] = conforms(result, hints["return"])
    entry = {
        "hook": hook, "by": by, "pid": os.getpid(), "types": types, "conforms": ok,
        "values": {k: summary(v) for k, v in kwargs.items()},
    }
    with open(os.environ["HOOKSPY_LOG"], "a") as fh:
        fh.write(json.dumps(entry) + "\\n")
    return result


class Recorder:
    """Every lifecycle hook, as methods: recorded under ``spy_name``."""

    spy_name = "module"

    @mlxpy.hookimpl
    def mlxpy_before_run(self, ctx):
        record(self.spy_name, "mlxpy_before_run", ctx=ctx)

    @mlxpy.hookimpl
    def mlxpy_after_run(self, ctx, status):
        record(self.spy_name, "mlxpy_after_run", ctx=ctx, status=status)

    @mlxpy.hookimpl
    def mlxpy_on_run_error(self, ctx, error):
        record(self.spy_name, "mlxpy_on_run_error", ctx=ctx, error=error)

    @mlxpy.hookimpl
    def mlxpy_on_run_signal(self, ctx, signame, status):
        record(self.spy_name, "mlxpy_on_run_signal", ctx=ctx, signame=signame, status=status)

    @mlxpy.hookimpl
    def mlxpy_after_metrics_logged(self, ctx, metrics, log_name, step):
        record(
            self.spy_name, "mlxpy_after_metrics_logged",
            ctx=ctx, metrics=metrics, log_name=log_name, step=step,
        )

    @mlxpy.hookimpl
    def mlxpy_after_artifact_logged(self, ctx, name, artifact_type, path):
        record(
            self.spy_name, "mlxpy_after_artifact_logged",
            ctx=ctx, name=name, artifact_type=artifact_type, path=path,
        )

    @mlxpy.hookimpl
    def mlxpy_after_checkpoint_logged(self, ctx, name, path):
        record(self.spy_name, "mlxpy_after_checkpoint_logged", ctx=ctx, name=name, path=path)

    @mlxpy.hookimpl
    def mlxpy_before_job_submit(self, job):
        record(self.spy_name, "mlxpy_before_job_submit", job=job)

    @mlxpy.hookimpl
    def mlxpy_after_job_submit(self, job, job_id):
        record(self.spy_name, "mlxpy_after_job_submit", job=job, job_id=job_id)

    @mlxpy.hookimpl
    def mlxpy_after_workdir_created(self, info):
        record(self.spy_name, "mlxpy_after_workdir_created", info=info)


class SpyLogger(Recorder, mlxpy.DefaultLogger):
    """A DefaultLogger whose override calls super(): the hook must still fire once."""

    spy_name = "SpyLogger"

    def log_metrics(self, metrics, log_name="train", step=None):
        super().log_metrics(metrics, log_name, step)


class BareLogger(Recorder, mlxpy.Logger):
    """A logger that is no DefaultLogger (and keeps no ctx): files in ``parent_log_dir``."""

    spy_name = "BareLogger"

    def __init__(self, parent_log_dir: str = "./bare"):
        self.parent_log_dir = parent_log_dir

    def start_run(self, ctx):
        self.log_id = 0
        self.log_dir = Path(ctx.info.project_dir, self.parent_log_dir, "0")
        self.log_dir.mkdir(parents=True)
        ctx.info.log_id = 0
        ctx.info.log_dir = str(self.log_dir)

    def save_info(self, info):
        (self.log_dir / "info.json").write_text(json.dumps(summary(info)))

    def log_metrics(self, metrics, log_name="train", step=None):
        with open(self.log_dir / f"{log_name}.jsonl", "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\\n")

    def log_artifacts(self, artifact, artifact_name, artifact_type):
        path = self.log_dir / f"{artifact_name}.{artifact_type}"
        path.write_bytes(pickle.dumps(artifact))
        return path

    def log_checkpoint(self, checkpoint, log_name="last_ckpt"):
        path = self.log_dir / f"{log_name}.ckpt"
        path.write_bytes(pickle.dumps(checkpoint))
        return path


class SpyScheduler(Recorder, LocalScheduler):
    """LocalScheduler, with SIGUSR1 as its time-limit warning."""

    spy_name = "SpyScheduler"
    warning_signals = {"SIGUSR1": "TIMEOUT"}


class SpyVM(Recorder, GitVM):
    spy_name = "SpyVM"


class SpySweeper(BasicSweeper):
    """BasicSweeper, selected by name through the registration hook; notes its points."""

    def points(self, space):
        points = super().points(space)
        with open(os.environ["HOOKSPY_LOG"] + ".points", "a") as fh:
            fh.write(f"{len(points)}\\n")
        return points


class TypoLogger(mlxpy.DefaultLogger):
    @mlxpy.hookimpl
    def mlxpy_befor_run(self, ctx):
        pass


class ModulePlugin(Recorder):
    """The plugin itself: the registration hooks and every lifecycle hook."""

    @mlxpy.hookimpl
    def mlxpy_register_loggers(self):
        return record("module", "mlxpy_register_loggers", [SpyLogger, BareLogger, TypoLogger])

    @mlxpy.hookimpl
    def mlxpy_register_schedulers(self):
        return record("module", "mlxpy_register_schedulers", [SpyScheduler])

    @mlxpy.hookimpl
    def mlxpy_register_version_managers(self):
        return record("module", "mlxpy_register_version_managers", [SpyVM])

    @mlxpy.hookimpl
    def mlxpy_register_sweepers(self):
        return record("module", "mlxpy_register_sweepers", [SpySweeper])

    @mlxpy.hookimpl
    def mlxpy_register_artifact_types(self):
        kind = ArtifactType("spytext", lambda obj, path: Path(path).write_text(str(obj)),
                            lambda path: Path(path).read_text(), ".txt")
        return record("module", "mlxpy_register_artifact_types", [kind])


plugin = ModulePlugin()
'''

TASK = """
import os, signal, time
import mlxpy
from mlxpy.plugins import get_plugins
import hookspy

get_plugins().register(hookspy.plugin, name="hookspy")

@mlxpy.launch(config_path="./configs")
def task(ctx):
    print("LOGGER", type(ctx.logger), flush=True)
    ctx.logger.log_metrics({"loss": 0.5}, log_name="train", step=1)
    ctx.logger.log_artifacts("some text", "note", "spytext")
    ctx.logger.log_checkpoint({"step": 1})
    if ctx.config.mode == "fail":
        raise RuntimeError("failing on purpose")
    if ctx.config.mode == "signal":  # stands in for the cluster's time-limit warning
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(10)

if __name__ == "__main__":
    task()
"""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


class Launch:
    """One scenario's project, its launch's result and the hook calls it recorded."""

    def __init__(self, root: Path, site: Path) -> None:
        self.project = ProjectDir(root, TASK)
        self.project.write_config({"seed": 0, "mode": "ok"})
        self.log = root.parent / f"{root.name}-hooks.jsonl"
        pythonpath = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
        self.project.env = {**GIT_ENV, "PYTHONPATH": pythonpath, "HOOKSPY_LOG": str(self.log)}
        self.result: subprocess.CompletedProcess | None = None

    def commit(self) -> None:
        (self.project.root / ".gitignore").write_text("logs/\n.workdir/\n")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "first"]):
            subprocess.run(
                ["git", "-C", str(self.project.root), *args],
                check=True,
                capture_output=True,
                env={**os.environ, **GIT_ENV},
            )

    def run(self, *args: str) -> Launch:
        self.result = self.project.run(*args)
        return self

    def events(self, hook: str | None = None, by: str | None = None) -> list[dict]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        events = [json.loads(line) for line in lines]
        return [
            e
            for e in events
            if (hook is None or e["hook"] == hook) and (by is None or e["by"] == by)
        ]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    path = tmp_path_factory.mktemp("site")
    (path / "hookspy.py").write_text(textwrap.dedent(SPY_PLUGIN))
    return path


@pytest.fixture(scope="module")
def launch(tmp_path_factory, site):
    """A plain launch with the DefaultLogger."""
    return Launch(tmp_path_factory.mktemp("launch") / "p", site).run()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, site):
    """A sweep of two runs with SpyLogger (whose log_metrics override calls super())."""
    return Launch(tmp_path_factory.mktemp("sweep") / "p", site).run(
        "seed=1,2", "+mlxpy.logger.name=SpyLogger", "+mlxpy.sweep.name=SpySweeper"
    )


@pytest.fixture(scope="module")
def failing(tmp_path_factory, site):
    return Launch(tmp_path_factory.mktemp("failing") / "p", site).run(
        "mode=fail", "+mlxpy.logger.name=SpyLogger"
    )


@pytest.fixture(scope="module")
def bare(tmp_path_factory, site):
    """A logger that is a plain mlxpy.Logger, not a DefaultLogger."""
    scenario = Launch(tmp_path_factory.mktemp("bare") / "p", site)
    scenario.project.write_config({"logger": {"name": "BareLogger"}}, "mlxpy.yaml")
    return scenario.run()


@pytest.fixture(scope="module")
def gitvm(tmp_path_factory, site):
    """A launch run from SpyVM's (GitVM's) frozen copy of a real git repository."""
    scenario = Launch(tmp_path_factory.mktemp("gitvm") / "p", site)
    scenario.commit()
    return scenario.run(
        "+mlxpy.use_version_manager=true",
        "+mlxpy.version_manager.name=SpyVM",
        "+mlxpy.version_manager.interactive_mode=false",
        "+mlxpy.logger.name=SpyLogger",
    )


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory, site):
    """A two-job sweep submitted to SpyScheduler (a LocalScheduler) from SpyVM's frozen copy;
    the second job gets the scheduler's warning signal."""
    scenario = Launch(tmp_path_factory.mktemp("scheduled") / "p", site)
    scenario.commit()
    scenario.run(
        "mode=ok,signal",
        "+mlxpy.use_scheduler=true",
        "+mlxpy.scheduler.name=SpyScheduler",
        "+mlxpy.scheduler.use_arrays=false",
        "+mlxpy.use_version_manager=true",
        "+mlxpy.version_manager.name=SpyVM",
        "+mlxpy.version_manager.interactive_mode=false",
        "+mlxpy.logger.name=SpyLogger",
    )
    assert scenario.result.returncode == 0, scenario.result.stderr
    scenario.infos = scenario.project.wait(2, 120)
    return scenario


ALL = ["launch", "sweep", "failing", "bare", "gitvm", "scheduled"]


@pytest.fixture(params=ALL)
def any_launch(request):
    return request.getfixturevalue(request.param)


def test_every_call_has_the_declared_types(any_launch):
    events = any_launch.events()
    assert events
    for event in events:
        assert all(event["conforms"].values()), event
        if "ctx" in event["types"]:
            assert event["types"]["ctx"] == "mlxpy.context.Context", event
        if "status" in event["types"]:
            assert event["types"]["status"] == "mlxpy.rundir.status.RunStatus", event
        if "job" in event["types"]:
            assert event["types"]["job"] == "mlxpy.scheduling.base.ScheduledJob", event


def test_the_launches_ran(launch, sweep, failing, bare, gitvm, scheduled):
    for ok in (launch, sweep, bare, gitvm):
        assert ok.result.returncode == 0, ok.result.stderr
    assert failing.result.returncode == 1
    assert "<class 'mlxpy.logger.DefaultLogger'>" in launch.result.stdout  # the real class
    assert "<class 'hookspy.SpyLogger'>" in sweep.result.stdout
    assert [i["status"] for i in scheduled.infos] == ["COMPLETE", "TIMEOUT"]


def test_selected_instances_hear_only_their_own_run(sweep):
    for hook in ("mlxpy_before_run", "mlxpy_after_run", "mlxpy_after_metrics_logged"):
        module = sorted(e["values"]["ctx"]["log_id"] for e in sweep.events(hook, "module"))
        selected = sorted(e["values"]["ctx"]["log_id"] for e in sweep.events(hook, "SpyLogger"))
        assert module == selected == [1, 2], hook


def test_no_hook_fires_twice(launch, sweep, bare, gitvm):
    for scenario in (launch, sweep, bare, gitvm):
        calls = Counter(
            (e["hook"], e["by"], e["pid"], json.dumps(e["values"], sort_keys=True))
            for e in scenario.events()
            if not e["hook"].startswith("mlxpy_register_")
        )
        assert max(calls.values()) == 1, calls.most_common(3)


def test_instances_not_selected_hear_nothing(launch):
    assert {e["by"] for e in launch.events()} == {"module"}


# -- one test per hook (test_hook_has_a_test checks they exist) -----------------------------


def test_hook_mlxpy_register_loggers(launch):
    (event, *_) = launch.events("mlxpy_register_loggers")
    assert event["conforms"] == {"return": True}


def test_hook_mlxpy_register_schedulers(scheduled):
    assert scheduled.events("mlxpy_register_schedulers")[0]["conforms"] == {"return": True}
    # the job processes selected SpyScheduler by name too
    pids = {e["pid"] for e in scheduled.events("mlxpy_register_schedulers")}
    assert len(pids) >= 3


def test_hook_mlxpy_register_version_managers(gitvm):
    assert gitvm.events("mlxpy_register_version_managers")[0]["conforms"] == {"return": True}


def test_hook_mlxpy_register_sweepers(sweep):
    assert sweep.events("mlxpy_register_sweepers")[0]["conforms"] == {"return": True}
    # the sweeper it registered was selected by name and planned the sweep's two points
    assert Path(str(sweep.log) + ".points").read_text().split() == ["2"]


def test_hook_mlxpy_register_artifact_types(launch, bare):
    assert launch.events("mlxpy_register_artifact_types")[0]["conforms"] == {"return": True}
    (event,) = launch.events("mlxpy_after_artifact_logged")
    assert event["values"]["artifact_type"] == "spytext"  # the plugin's type stored the note
    assert Path(event["values"]["path"]).read_text() == "some text"


def test_hook_mlxpy_before_run(launch, sweep, failing, bare, gitvm, scheduled):
    for scenario, runs in ((launch, 1), (sweep, 2), (failing, 1), (bare, 1), (gitvm, 1)):
        assert len(scenario.events("mlxpy_before_run", "module")) == runs
    for by in ("module", "SpyLogger", "SpyScheduler", "SpyVM"):  # in the jobs' processes
        events = scheduled.events("mlxpy_before_run", by)
        assert sorted(e["values"]["ctx"]["log_id"] for e in events) == [1, 2], by
    # run from the frozen copy: the selected logger and version manager hear it
    assert sorted(e["by"] for e in gitvm.events("mlxpy_before_run")) == [
        "SpyLogger",
        "SpyVM",
        "module",
    ]


def test_hook_mlxpy_after_run(launch, sweep, failing, bare, scheduled):
    def statuses(scenario, by="module"):
        return sorted(
            (e["values"]["ctx"]["log_id"], e["values"]["status"])
            for e in scenario.events("mlxpy_after_run", by)
        )

    assert statuses(launch) == [(1, "COMPLETE")]
    assert statuses(sweep) == statuses(sweep, "SpyLogger") == [(1, "COMPLETE"), (2, "COMPLETE")]
    assert statuses(failing) == statuses(failing, "SpyLogger") == [(1, "FAILED")]
    assert statuses(bare) == statuses(bare, "BareLogger") == [(0, "COMPLETE")]
    for by in ("module", "SpyLogger", "SpyScheduler", "SpyVM"):
        assert statuses(scheduled, by) == [(1, "COMPLETE"), (2, "TIMEOUT")], by


def test_hook_mlxpy_on_run_error(launch, failing, scheduled):
    assert launch.events("mlxpy_on_run_error") == []
    for by in ("module", "SpyLogger"):
        (event,) = failing.events("mlxpy_on_run_error", by)
        assert event["values"]["error"] == "RuntimeError"
    (event,) = scheduled.events("mlxpy_on_run_error", "SpyScheduler")
    assert (event["values"]["error"], event["values"]["ctx"]["log_id"]) == ("RunInterrupted", 2)
    hooks = [e["hook"] for e in failing.events(by="module")]
    assert hooks.index("mlxpy_on_run_error") < hooks.index("mlxpy_after_run")


def test_hook_mlxpy_on_run_signal(launch, scheduled):
    assert launch.events("mlxpy_on_run_signal") == []
    for by in ("module", "SpyLogger", "SpyScheduler", "SpyVM"):
        (event,) = scheduled.events("mlxpy_on_run_signal", by)
        values = event["values"]
        assert (values["signame"], values["status"], values["ctx"]["log_id"]) == (
            "SIGUSR1",
            "TIMEOUT",
            2,
        ), by


def test_hook_mlxpy_after_metrics_logged(launch, sweep, bare):
    (event,) = launch.events("mlxpy_after_metrics_logged")
    assert event["values"] == {
        "ctx": {"log_id": 1, "logger": "DefaultLogger"},
        "metrics": {"loss": 0.5},
        "log_name": "train",
        "step": 1,
    }
    assert event["types"]["metrics"] == "builtins.dict"
    # SpyLogger's override calls super(): once per call, in the plugin and in SpyLogger
    assert len(sweep.events("mlxpy_after_metrics_logged", "module")) == 2
    assert len(sweep.events("mlxpy_after_metrics_logged", "SpyLogger")) == 2
    # a logger that is no DefaultLogger (and never kept ctx): fired by the core all the same
    for by in ("module", "BareLogger"):
        (event,) = bare.events("mlxpy_after_metrics_logged", by)
        assert event["values"]["ctx"]["logger"] == "BareLogger"


def test_hook_mlxpy_after_artifact_logged(launch, bare):
    (event,) = launch.events("mlxpy_after_artifact_logged")
    assert event["values"]["name"] == "note"
    assert Path(event["values"]["path"]).is_file()
    for by in ("module", "BareLogger"):
        (event,) = bare.events("mlxpy_after_artifact_logged", by)
        assert event["values"]["path"].endswith("note.spytext")


def test_hook_mlxpy_after_checkpoint_logged(launch, bare, failing):
    (event,) = launch.events("mlxpy_after_checkpoint_logged")
    assert event["values"]["name"] == "last_ckpt"
    assert event["values"]["path"].endswith("checkpoints/last_ckpt.pkl")
    assert Path(event["values"]["path"]).is_file()
    assert len(bare.events("mlxpy_after_checkpoint_logged")) == 2  # module and BareLogger
    assert len(failing.events("mlxpy_after_checkpoint_logged")) == 2  # before it failed


def submitting_pid(scenario: Launch) -> int:
    (event,) = scenario.events("mlxpy_after_workdir_created", "module")
    return event["pid"]


def test_hook_mlxpy_before_job_submit(scheduled, launch):
    assert launch.events("mlxpy_before_job_submit") == []
    pid = submitting_pid(scheduled)
    for by in ("module", "SpyScheduler", "SpyVM", "SpyLogger"):
        events = scheduled.events("mlxpy_before_job_submit", by)
        assert [e["values"]["job"] for e in events] == [
            {"log_id": 1, "job_id": None},
            {"log_id": 2, "job_id": None},
        ], by
        assert {e["pid"] for e in events} == {pid}  # in the launching process


def test_hook_mlxpy_after_job_submit(scheduled):
    ids = [i["scheduler"]["job_id"] for i in scheduled.infos]
    for by in ("module", "SpyScheduler", "SpyVM", "SpyLogger"):
        events = scheduled.events("mlxpy_after_job_submit", by)
        assert [e["values"]["job_id"] for e in events] == ids, by
        assert [e["values"]["job"]["job_id"] for e in events] == ids, by
        assert {e["types"]["job_id"] for e in events} == {"builtins.str"}


def test_hook_mlxpy_after_workdir_created(gitvm, scheduled, launch):
    assert launch.events("mlxpy_after_workdir_created") == []
    for scenario in (gitvm, scheduled):
        by = ["module", "SpyVM"] + (["SpyScheduler"] if scenario is scheduled else [])
        events = scenario.events("mlxpy_after_workdir_created")
        assert sorted(e["by"] for e in events) == sorted(by)
        info = events[0]["values"]["info"]
        assert info["name"] == "SpyVM" and len(info["commit"]) == 40
        assert Path(info["snapshot_path"]).is_dir()
    # in the launching process, before any job (GitVM's launch execs the copy: same pid)
    pid = submitting_pid(scheduled)
    assert all(e["pid"] != pid for e in scheduled.events("mlxpy_before_run"))
    lifecycle = [e["hook"] for e in gitvm.events(by="module") if e["hook"] in LIFECYCLE]
    assert lifecycle[0] == "mlxpy_after_workdir_created"


def test_mlxpy_public_names_are_the_annotated_types():
    assert mlxpy.Context.__module__ == "mlxpy.context"
    assert mlxpy.ScheduledJob.__module__ == "mlxpy.scheduling.base"
    assert mlxpy.RunStatus.__module__ == "mlxpy.rundir.status"


def test_a_selected_class_with_a_misspelled_hook_fails_before_its_run(tmp_path, site):
    scenario = Launch(tmp_path / "p", site).run("+mlxpy.logger.name=TypoLogger")
    assert scenario.result.returncode == 2
    assert "implements unknown hook(s) 'mlxpy_befor_run'" in scenario.result.stderr
    assert "did you mean 'mlxpy_before_run'" in scenario.result.stderr
    assert scenario.project.run_dirs() == []
    assert scenario.events("mlxpy_before_run") == []


def test_a_logger_that_cannot_claim_in_advance_cannot_submit(tmp_path, site):
    scenario = Launch(tmp_path / "p", site)
    scenario.project.write_config(
        {"logger": {"name": "BareLogger"}, "scheduler": {"name": "LocalScheduler"}},
        "mlxpy.yaml",
    )
    result = scenario.run("+mlxpy.use_scheduler=true").result
    assert result.returncode == 2
    assert "logger 'BareLogger' cannot claim run dirs in advance" in result.stderr
    assert scenario.events("mlxpy_before_job_submit") == []


def test_logging_hooks_report_a_subclass_s_own_defaults(tmp_path):
    """A Logger whose methods have defaults of their own (``log_name="metrics"``) reports
    those to the hooks, not the base class's, whether called positionally or by keyword."""
    from mlxpy.context import Context, as_config
    from mlxpy.plugins import PluginRegistry

    fired = []

    class Spy:
        @mlxpy.hookimpl
        def mlxpy_after_metrics_logged(self, metrics, log_name, step):
            fired.append(("metrics", log_name, step))

        @mlxpy.hookimpl
        def mlxpy_after_checkpoint_logged(self, name, path):
            fired.append(("checkpoint", name, path))

    class Quiet(mlxpy.Logger):
        name = "Quiet"

        def start_run(self, ctx): ...

        def end_run(self, ctx, status): ...

        def save_info(self, info): ...

        def log_metrics(self, metrics, log_name="metrics", step=7):
            return None

        def log_checkpoint(self, checkpoint, log_name="state"):
            return tmp_path / f"{log_name}.bin"

    registry = PluginRegistry(load_entry_points=False)
    registry.register(Spy(), name="spy")
    logger = Quiet()
    logger.ctx = Context(config=as_config({}), mlxpy=as_config({}), hook=registry.hook)
    logger.log_metrics({"loss": 1.0})
    logger.log_metrics({"loss": 2.0}, step=3)
    logger.log_metrics({"loss": 3.0}, "val", 4)
    logger.log_checkpoint({"epoch": 1})
    assert fired == [
        ("metrics", "metrics", 7),
        ("metrics", "metrics", 3),
        ("metrics", "val", 4),
        ("checkpoint", "state", str(tmp_path / "state.bin")),
    ]
