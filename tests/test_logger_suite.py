"""DefaultLogger passes the logger conformance suite that plugins reuse."""

from mlxpy.testing import LoggerSuite


class TestDefaultLoggerConformance(LoggerSuite):
    logger_name = "DefaultLogger"
