"""The run context handed to the task: ``config``, ``mlxpy``, ``info`` and ``logger``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlxpy.distributed.detect import SINGLE, DistInfo


class Config(DictConfig):
    """An OmegaConf ``DictConfig`` that prints as YAML, as the config file reads."""

    def __str__(self) -> str:
        return OmegaConf.to_yaml(self).rstrip("\n")


def as_config(data: Any, struct: bool = True) -> Config:
    # a mapping is wrapped once (OmegaConf.create, then Config, would build it twice: a
    # sweep's launch builds two per point)
    base = data if isinstance(data, (DictConfig, dict)) else OmegaConf.create(data)
    return Config(base, flags={"struct": struct})


class RunInfo(dict):
    """Run information; readable as ``info["status"]`` or ``info.status``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"run info has no field '{key}'") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


class _NoHook:
    """A hook with no implementation: calling it does nothing."""

    def __call__(self, **kwargs: Any) -> list[Any]:
        return []

    def get_hookimpls(self) -> list[Any]:
        return []


class _NoHooks:
    """Stands in for the plugin hook relay when a context is built by hand (in tests)."""

    def __getattr__(self, name: str) -> _NoHook:
        return _NO_HOOK


_NO_HOOK = _NoHook()


@dataclass
class Context:
    """Everything a task needs to know about its run."""

    config: Config
    mlxpy: Config
    info: RunInfo = field(default_factory=RunInfo)
    logger: Any = None
    hook: Any = field(default_factory=_NoHooks, repr=False)
    #: this process's place in a distributed job (rank 0 of 1 without one)
    dist: DistInfo = field(default=SINGLE, repr=False)

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0, the one that writes the run's own files."""
        return self.dist.rank == 0

    def config_dict(self) -> dict[str, Any]:
        return OmegaConf.to_container(self.config, resolve=True)  # type: ignore[return-value]

    def mlxpy_dict(self) -> dict[str, Any]:
        return OmegaConf.to_container(self.mlxpy, resolve=True)  # type: ignore[return-value]
