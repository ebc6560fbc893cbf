"""Bad options and overrides fail up front with a message naming where and what, and write
nothing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["+mlxpy.use_loger=true"],
            ["Unknown option 'use_loger'", "override '+mlxpy.use_loger=true'", "'use_logger'"],
        ),
        (
            ["mlxpy.logger.parent_log_dr=x"],
            ["'logger.parent_log_dr'", "Did you mean 'logger.parent_log_dir'"],
        ),
        (["mlxpy.use_logger=3"], ["'use_logger'", "must be true or false"]),
        (["+mlxpy.logger.forced_log_id=abc"], ["logger.forced_log_id", "must be of type int"]),
        (
            ["+mlxpy.logger.name=Foo"],
            ["Unknown logger 'Foo'", "Available loggers:", "DefaultLogger", "GitVM"],
        ),
        (["+mlxpy.logger.name=DefaultLoger"], ["Did you mean 'DefaultLogger'?"]),
        (["+mlxpy.logger.name=mlxpy.GitVM"], ["must be a subclass of mlxpy.logger.Logger"]),
        (["+mlxpy.logger.name=nosuchpkg.Logger"], ["cannot import logger class"]),
        (["optimizer.lrr=3"], ["config.yaml", "optimizer.lrr"]),
        (["~nope"], ["'nope' is not in", "config.yaml"]),
        (["a=[1"], ["invalid override", "[1"]),
        (["--bogus"], ["unknown flag '--bogus'"]),
        (["+mlxpy.logger.forced_log_id=3", "seed=1,2"], ["forced_log_id cannot be used"]),
        (["+mlxpy.use_scheduler=true"], ["use_scheduler"]),
    ],
)
def test_bad_override_is_a_clear_error(seeded, args, expected):
    result = seeded.run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("mlxpy: error: ")
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert seeded.run_dirs() == []
    assert result.stdout == ""


def test_unknown_key_in_file_names_the_file(seeded):
    options = seeded.configs / "mlxpy.yaml"
    seeded.run("--cfg", "job")
    options.write_text(options.read_text().replace("use_logger", "use_loger"))
    result = seeded.run()
    assert result.returncode == 2
    assert str(options) in result.stderr
    assert "Did you mean 'use_logger'?" in result.stderr
    assert seeded.run_dirs() == []


def test_wrong_type_in_file(seeded):
    seeded.write_config("logger:\n  name: DefaultLogger\n  forced_log_id: [1]\n", "mlxpy.yaml")
    result = seeded.run()
    assert result.returncode == 2
    assert "mlxpy.yaml" in result.stderr and "logger.forced_log_id" in result.stderr


@pytest.mark.parametrize("name", ["mlxpy.yaml", "config.yaml"])
def test_malformed_yaml_names_file_and_line(seeded, name):
    seeded.write_config("seed: 1\nmodel:\n  a: [1, 2\n  b: 3\n", name)
    result = seeded.run()
    assert result.returncode == 2
    assert f"malformed YAML in {seeded.configs / name}, line " in result.stderr
    assert seeded.run_dirs() == []


def test_partial_options_file_gets_defaults(seeded):
    seeded.write_config("logger:\n  parent_log_dir: ./other\n", "mlxpy.yaml")
    result = seeded.run()
    assert result.returncode == 0, result.stderr
    assert (seeded.root / "other" / "1" / "metadata" / "info.yaml").exists()


def test_a_value_refused_by_a_plugin_constructor_is_an_options_error(seeded):
    (seeded.root / "picky.py").write_text(
        "import mlxpy\n\n\n"
        "class PickyLogger(mlxpy.DefaultLogger):\n"
        "    def __init__(self, colour: str = 'red', **kwargs):\n"
        "        if colour not in ('red', 'green'):\n"
        "            raise ValueError(f'colour must be red or green, got {colour!r}')\n"
        "        super().__init__(**kwargs)\n"
    )
    result = seeded.run("+mlxpy.logger.name=picky.PickyLogger", "+mlxpy.logger.colour=blue")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("mlxpy: error: logger 'PickyLogger' refused its options")
    assert "(logger.colour='blue' (override '+mlxpy.logger.colour=blue')):" in result.stderr
    assert "colour must be red or green, got 'blue'" in result.stderr
    assert "Traceback" not in result.stderr
    assert seeded.run_dirs() == []
    assert seeded.run("+mlxpy.logger.name=picky.PickyLogger").returncode == 0
