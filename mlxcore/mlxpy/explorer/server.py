"""``mlxpy ui``: the explorer page served live from the index, safe on a shared login node.

Bound to 127.0.0.1 by default, and every request must carry the random token printed at
start (``?token=...``, compared in constant time): another user of the node can reach the
port but cannot read a thing (403). Only GET and HEAD are served (405 otherwise) and no route
writes anything: the server reads the runs, never changes them.

Routes: ``/`` the live page (``render_live_page``), ``/api/payload?since=<generation>`` the
payload (docs/explorer.md), or ``{"generation": g, "unchanged": true}`` when nothing changed
since ``since``. The payload is rebuilt only when the index recorded a change (or a status
changed, e.g. a run found LOST), re-reading only the curves of the runs whose files changed.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: the live page's Content-Security-Policy: its own scripts and its own server, nothing else
CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: polls closer together than this (several tabs) share one look at the index
MIN_CHECK_S = 0.25


class LivePayload:
    """The payload of the runs of ``parent_log_dir`` matching ``query``, kept up to date: each
    :meth:`current` re-opens the Reader (a warm open reads only what changed) and rebuilds
    the payload only when the index's generation or a run's status moved."""

    def __init__(
        self, parent_log_dir: str | os.PathLike, query: str = "", points: int | None = None
    ) -> None:
        self.parent_log_dir = Path(parent_log_dir)
        self.query = query
        self.points = points
        self.generation = 0  # ours: +1 on every rebuild, what the page compares
        self.body = b""
        self._seen: Any = object()  # what the index looked like at the last rebuild
        self._checked = 0.0
        self._curves: dict[Any, Any] = {}  # log_id -> (signature, RunCurves), the builder's
        self._lock = threading.Lock()

    def current(self) -> tuple[int, bytes]:
        """(generation, JSON body), rebuilt first when the runs changed."""
        with self._lock:
            now = time.monotonic()
            if self.generation == 0 or now - self._checked >= MIN_CHECK_S:
                self._checked = now
                self._refresh()
            return self.generation, self.body

    def _refresh(self) -> None:
        from mlxpy.explorer.payload import build_payload, dumps
        from mlxpy.reading.reader import Reader

        reader = Reader(self.parent_log_dir)
        try:
            runs = reader.filter(self.query)
            index_generation = reader.generation
            statuses = tuple(runs["info.status"].tolist())
            seen = (index_generation, tuple(runs.index.tolist()), statuses)
            if index_generation is not None and seen == self._seen:
                return
            payload = build_payload(
                reader,
                runs,
                points=self.points,
                title=f"mlxpy ui: {self.parent_log_dir.name}",
                generation=self.generation + 1,
                curves_cache=self._curves,
            )
        finally:
            reader.close()
        alive = set(payload["runs"]["ids"])
        for log_id in [k for k in self._curves if k not in alive]:  # deleted, archived runs
            del self._curves[log_id]
        self.body = dumps(payload).encode("utf-8")
        self.generation += 1
        self._seen = seen


class ExplorerServer(ThreadingHTTPServer):
    """The HTTP server: one token, one live payload, the page."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        payload: LivePayload,
        token: str | None = None,
        interval: float = 2.0,
    ) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self.payload = payload
        self.interval = interval
        self._page: bytes | None = None
        super().__init__(address, _Handler)

    def page(self) -> bytes:
        if self._page is None:
            from mlxpy.explorer.page import render_live_page

            self._page = render_live_page(self.token, self.interval).encode("utf-8")
        return self._page

    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = socket.getfqdn() if host in ("", "0.0.0.0") else host
        return f"http://{shown}:{port}/?token={self.token}"


class _Handler(BaseHTTPRequestHandler):
    server: ExplorerServer
    server_version = "mlxpy-ui"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass  # no access log: request lines carry the token

    def _send(self, status: int, body: bytes, content_type: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _text(self, status: HTTPStatus, text: str, head: bool = False) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8", head)

    def _authorized(self, params: dict[str, list[str]]) -> bool:
        given = params.get("token", [""])[-1]
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def _get(self, head: bool) -> None:
        parts = urlsplit(self.path)
        params = parse_qs(parts.query)
        if not self._authorized(params):
            self._text(
                HTTPStatus.FORBIDDEN,
                "403 forbidden: open the URL mlxpy ui printed, with its ?token=",
                head,
            )
            return
        if parts.path == "/":
            self._send(HTTPStatus.OK, self.server.page(), "text/html; charset=utf-8", head)
        elif parts.path == "/api/payload":
            try:
                generation, body = self.server.payload.current()
            except Exception as exc:  # the page shows it and polls again
                self._text(HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot read the runs: {exc}", head)
                return
            since = params.get("since", [""])[-1]
            if since == str(generation):
                body = json.dumps({"generation": generation, "unchanged": True}).encode()
            self._send(HTTPStatus.OK, body, "application/json; charset=utf-8", head)
        else:
            self._text(HTTPStatus.NOT_FOUND, "404 not found", head)

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._get(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._get(head=True)

    def _refuse(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        body = b"405 method not allowed: mlxpy ui is read-only (GET, HEAD)\n"
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse  # noqa: N815


def serve(
    parent_log_dir: str | os.PathLike,
    query: str = "",
    host: str = "127.0.0.1",
    port: int = 0,
    points: int | None = None,
    interval: float = 2.0,
) -> int:
    """Run ``mlxpy ui`` until Ctrl-C (exit status 0). The query and the log dir are checked
    (and the first payload built) before the server listens: a bad one is a setup error."""
    try:
        payload = LivePayload(parent_log_dir, query, points)
        payload.current()
    except KeyboardInterrupt:  # while the first payload is built
        return 0
    server = ExplorerServer((host, port), payload, interval=interval)
    try:  # Ctrl-C at any point from here stops it cleanly, even before it serves
        _announce(server, host, Path(parent_log_dir))
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("\nmlxpy ui: stopped", flush=True)
    finally:
        server.server_close()
    return 0


def _announce(server: ExplorerServer, host: str, parent_log_dir: Path) -> None:
    """The URL with its token, the ssh tunnel to use from a laptop, a warning off 127.0.0.1."""
    bound_port = server.server_address[1]
    if host not in ("127.0.0.1", "localhost"):
        print(
            f"mlxpy ui: warning: listening on {host}, not 127.0.0.1: anyone who can reach "
            "this host's port and learns the URL can read the runs; prefer the default and "
            "an ssh tunnel",
            file=sys.stderr,
        )
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "<user>"
    print(f"mlxpy ui: serving {parent_log_dir} (read-only), open:", flush=True)
    print(f"    {server.url()}", flush=True)
    print("from your laptop, tunnel first:", flush=True)
    tunnel = f"ssh -N -L {bound_port}:127.0.0.1:{bound_port} {user}@{socket.getfqdn()}"
    print(f"    {tunnel}", flush=True)
    print("Ctrl-C stops it.", flush=True)
