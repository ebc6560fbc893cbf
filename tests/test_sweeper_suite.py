"""The builtin BasicSweeper passes the sweeper conformance suite (the one sweeper plugins
reuse, :class:`mlxpy.testing.PlanningSweeperSuite`)."""

from __future__ import annotations

from mlxpy.testing import PlanningSweeperSuite


class TestBasicSweeperConformance(PlanningSweeperSuite):
    sweeper_name = "BasicSweeper"
