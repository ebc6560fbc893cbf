"""OptunaSweeper passes the sweeper conformance suite, with each of its samplers."""

from __future__ import annotations

from mlxpy.testing import AdaptiveSweeperSuite


class TestOptunaSweeperConformance(AdaptiveSweeperSuite):
    sweeper_name = "OptunaSweeper"


class TestOptunaRandomSamplerConformance(AdaptiveSweeperSuite):
    sweeper_name = "OptunaSweeper"
    sweeper_settings = {"sampler": "random", "seed": 3}
