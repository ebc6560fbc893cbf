"""Bayesian search for mlxpy (``sweep.name: OptunaSweeper``)."""

__version__ = "0.2.0"
