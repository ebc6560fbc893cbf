"""torch support: 0-d tensors as metric values and the ``torch`` artifact type. CI installs
torch (the CPU build); the test fails rather than skips without it."""

from __future__ import annotations

from conftest import untimed
from mlxpy.rundir.metrics import read_metrics


def test_torch_tensors_and_artifacts(project):
    project.write_main("""
        import torch
        import mlxpy

        @mlxpy.launch(config_path="./configs")
        def my_task(ctx):
            ctx.logger.log_metrics({"loss": torch.tensor(0.25), "n": torch.tensor(3)}, step=0)
            try:
                ctx.logger.log_metrics({"vec": torch.zeros(2)}, step=1)
            except TypeError as exc:
                print("TypeError", exc)
            state = {"w": torch.arange(4.0)}
            ctx.logger.log_artifacts(state, "model", "torch")
            print("loaded", ctx.logger.load_artifacts("model", "torch")["w"].tolist())
            ctx.logger.log_checkpoint({"w": torch.ones(2)})
            print("ckpt", ctx.logger.load_checkpoint()["w"].tolist())

        if __name__ == "__main__":
            my_task()
    """)
    result = project.run()
    assert result.returncode == 0, result.stderr
    assert "TypeError metric 'vec'" in result.stdout
    assert "loaded [0.0, 1.0, 2.0, 3.0]" in result.stdout and "ckpt [1.0, 1.0]" in result.stdout
    (run_dir,) = project.run_dirs()
    records = untimed(read_metrics(run_dir / "metrics" / "train.json"))
    assert records == [{"step": 0, "loss": 0.25, "n": 3}]
    assert (run_dir / "artifacts" / "torch" / "model.pt").is_file()
