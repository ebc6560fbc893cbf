"""mlxpy's version, in a module of its own: the run directory and the plugin registry read it
without importing the ``mlxpy`` package (which imports the launcher and the schedulers)."""

__version__ = "0.2.0"
