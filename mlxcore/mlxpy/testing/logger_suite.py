""":class:`LoggerSuite`: the ``Logger`` contract, checked through real launches and the
public reading API (``mlxpy.Reader``, ``runs.mlxpy.metrics``/``artifact``/``checkpoint``),
never through a logger's own file names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlxpy.rundir.layout import OPTIONS_FILE
from mlxpy.testing.project import COMPLETE, FAILED, ProjectDir

LOGGER_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    lg = ctx.logger
    print("LOGGER", type(lg).name, flush=True)
    state = lg.load_checkpoint() or {"step": 0}
    for step in range(state["step"], ctx.config.steps):
        lg.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
        lg.log_checkpoint({"step": step + 1})
    lg.log_metrics({"score": 0.5}, log_name="test")
    lg.log_artifacts({"answer": 42}, "result", "json")
    print("LOADED", lg.load_artifacts("result", "json"), flush=True)
    if ctx.config.fail:
        raise RuntimeError("asked to fail")

if __name__ == "__main__":
    task()
"""


class LoggerSuite:
    """Conformance tests for a logger: what a run logged can be read back by the Reader.
    Subclass it with ``logger_name``, ``logger_settings`` and ``env``."""

    logger_name: str = "DefaultLogger"
    logger_settings: dict[str, Any] = {}
    env: dict[str, str] = {}

    @pytest.fixture
    def logged(self, tmp_path: Path) -> ProjectDir:
        project = ProjectDir(tmp_path / "proj", LOGGER_TASK)
        project.env = dict(self.env)
        project.write_config({"seed": 0, "steps": 5, "fail": False})
        project.write_config(
            {"logger": {"name": self.logger_name, **self.logger_settings}}, OPTIONS_FILE
        )
        return project

    @staticmethod
    def runs(project: ProjectDir, query: str = "") -> Any:
        """The project's runs as the Reader gives them (a fresh reader: a fresh index)."""
        import mlxpy

        return mlxpy.Reader(project.logs).filter(query)

    def test_selected_by_name(self, logged: ProjectDir) -> None:
        result = logged.run()
        assert result.returncode == 0, result.stderr
        assert f"LOGGER {self.logger_name}\n" in result.stdout
        (status,) = self.runs(logged)["info.status"]
        assert status == COMPLETE

    def test_metrics_artifacts_and_checkpoint_read_back(self, logged: ProjectDir) -> None:
        result = logged.run()
        assert result.returncode == 0, result.stderr
        assert "LOADED {'answer': 42}" in result.stdout  # the task reads its own artifact
        runs = self.runs(logged, f"info.status == '{COMPLETE}'")
        (log_id,) = runs.index
        (row,) = runs.to_dict("records")
        assert row["train.loss.last"] == 0.2 and row["test.score.last"] == 0.5
        assert row["train.rows"] == 5
        train = runs.mlxpy.metrics("train")
        assert train["step"].tolist() == list(range(5))
        assert train["loss"].tolist() == [1.0 / (s + 1) for s in range(5)]
        assert train["acc"].tolist() == [s / 10 for s in range(5)]
        assert runs.mlxpy.metrics("test")["score"].tolist() == [0.5]
        assert runs.mlxpy.artifact("result")[log_id] == {"answer": 42}
        assert runs.mlxpy.checkpoint()[log_id] == {"step": 5}
        again = logged.run(f"+mlxpy.logger.forced_log_id={log_id}")  # a later attempt
        assert again.returncode == 0, again.stderr
        assert "LOADED {'answer': 42}" in again.stdout

    def test_failure_and_resume(self, logged: ProjectDir) -> None:
        first = logged.run("fail=true", "steps=3")
        assert first.returncode == 1
        runs = self.runs(logged)
        (log_id,) = runs.index
        assert runs.loc[log_id, "info.status"] == FAILED
        assert runs.loc[log_id, "info.error.message"] == "asked to fail"
        assert runs.mlxpy.metrics("train")["step"].tolist() == [0, 1, 2]
        again = logged.run(f"+mlxpy.logger.forced_log_id={log_id}", "steps=6")
        assert again.returncode == 0, again.stderr
        runs = self.runs(logged)
        assert list(runs.index) == [log_id]  # the same run, resumed
        assert runs.loc[log_id, "info.status"] == COMPLETE
        assert runs.loc[log_id, "info.restarts"] == 1
        steps = runs.mlxpy.metrics("train")["step"].tolist()
        assert steps == list(range(6))  # resumed from the checkpoint: no step repeated
        assert runs.mlxpy.metrics("train", attempts="all")["step"].tolist() == list(range(6))
