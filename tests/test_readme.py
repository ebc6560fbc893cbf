"""The README stays true: its code blocks are the files the tests run."""

from __future__ import annotations

import re

from conftest import REPO
from mlxpy.launching.options import DEFAULT_OPTIONS_YAML

README = (REPO / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_quickstart_block_is_the_example_file():
    example = (REPO / "examples" / "quickstart" / "main.py").read_text()
    assert blocks("python")[0] == example


def test_default_options_block_is_what_mlxpy_writes():
    assert DEFAULT_OPTIONS_YAML in blocks("yaml")


def test_seed_config_block_is_the_example_config():
    config = (REPO / "examples" / "quickstart" / "configs" / "config.yaml").read_text()
    assert blocks("yaml")[0] == config
