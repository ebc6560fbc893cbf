"""Copy the process's stdout and stderr to files at the file-descriptor level, so output of
C extensions and child processes is captured too, while it still reaches the terminal."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from mlxpy.rundir.layout import STREAM_STDERR, STREAM_STDOUT
from mlxpy.rundir.metrics import block_deferred_signals


class _FdTee:
    """Redirects ``fd`` into a pipe; a thread copies the pipe to the original fd and a file."""

    def __init__(self, fd: int, log_path: Path) -> None:
        self.fd = fd
        self.saved = os.dup(fd)
        self.log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        read_end, write_end = os.pipe()
        self.read_end = read_end
        os.dup2(write_end, fd)
        os.close(write_end)
        self.thread = threading.Thread(target=self._pump, name=f"mlxpy-tee-{fd}", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        block_deferred_signals()
        while True:
            try:
                data = os.read(self.read_end, 65536)
            except OSError:
                break
            if not data:
                break
            for target in (self.saved, self.log):
                try:
                    os.write(target, data)
                except OSError:  # a closed terminal must not break the run
                    pass

    def stop(self) -> None:
        os.dup2(self.saved, self.fd)  # closes the pipe's last write end we hold
        self.thread.join(timeout=5)  # children still holding the pipe: give up waiting
        for fd in (self.saved, self.log, self.read_end):
            try:
                os.close(fd)
            except OSError:
                pass


class StreamCapture:
    """``log.stdout`` / ``log.stderr`` (or the names given) in ``run_dir``, appended to on
    resume."""

    def __init__(
        self, run_dir: Path, names: tuple[str, str] = (STREAM_STDOUT, STREAM_STDERR)
    ) -> None:
        self.run_dir = run_dir
        self.names = names  # a rank of a distributed run has its own (log.rank1.stdout)
        self._tees: list[_FdTee] = []

    def start(self) -> None:
        out, err = self.names
        for stream, fd, name in ((sys.stdout, 1, out), (sys.stderr, 2, err)):
            stream.flush()
            self._tees.append(_FdTee(fd, self.run_dir / name))

    def stop(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for tee in reversed(self._tees):
            tee.stop()
        self._tees.clear()
