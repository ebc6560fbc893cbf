"""Sweeps: the search space of a launch, the sweepers that draw its points, the sweep's
record under the parent log dir, and resuming what did not finish."""
