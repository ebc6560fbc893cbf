"""Launching: the ``@mlxpy.launch`` decorator, options, configs, overrides, jobs and runs,
and the re-exec from a frozen snapshot."""
