"""Weights & Biases logger for mlxpy (``logger.name: WandbLogger``)."""

__version__ = "0.2.0"
