"""TEST-ONLY: an InfluxDB v2 write endpoint in front of InfluxDB 1.x. Never deploy this.

No InfluxDB 2 server can run on the test machines (only the Debian influxdb 1.6 package), and
1.6 answers 404 on /api/v2/*. The historian writes with influxdb-client's v2 API, so that the
tests exercise the real client code path, this proxy translates

    POST /api/v2/write?org=O&bucket=B&precision=ns|us|ms|s   (gzip body allowed)
      -> POST /write?db=B&precision=n|u|ms|s                 (plain body)

and passes the status code and body back unchanged; an unreachable 1.x server becomes a
503, as a v2 server behind a load balancer would answer. GET /ping and /health answer from
the 1.x /ping. `fail_next` makes the next writes fail with a chosen status (for the
reject / retry paths). It is a few dozen lines on purpose: it must not hide server behaviour.

Tokens: 1.6 has no tokens at all, so with `token` set the proxy stands in for 2.x's
authentication: a write without `Authorization: Token <token>` is answered as 2.x answers
an unknown token, 401 `{"code":"unauthorized","message":"unauthorized access"}`, before
anything else is looked at (2.x authenticates in a middleware, before the write handler).
Without `token` (the default) any token or none is accepted, as before. Permissions (a
read-only token's 403) are not modelled.

An empty write is forwarded like any other: 1.6 answers it 204, as 2.x does since 2.0.9 and
2.1.0 (influxdata/influxdb#22573), and 404 for an unknown bucket, as 2.x does.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}


@dataclass
class _Fault:
    status: int
    count: int
    body: bytes


class InfluxV2Proxy:
    """Serve the v2 write API on a free loopback port, forwarding to `upstream` (1.x)."""

    def __init__(self, upstream: str, token: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token  # None: any token (or none) is accepted
        self.writes = 0  # write requests seen (authenticated ones, when a token is set)
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: pytest shows the servers' own logs on failure

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                if path in ("/ping", "/health", "/ready"):
                    status, _ = proxy._forward("GET", "/ping", b"")
                    ok = status in (200, 204)
                    text = b'{"status":"pass"}' if ok else b'{"status":"fail"}'
                    self._reply(204 if path == "/ping" and ok else (200 if ok else 503), text)
                else:
                    self._reply(404, b'{"code":"not found"}')

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if url.path != "/api/v2/write":
                    self._reply(404, b'{"code":"not found"}')
                    return
                wanted = f"Token {proxy.token}"
                if proxy.token is not None and self.headers.get("Authorization") != wanted:
                    self._reply(401, b'{"code":"unauthorized","message":"unauthorized access"}')
                    return
                with proxy._lock:
                    proxy.writes += 1
                    fault = proxy._faults[0] if proxy._faults else None
                    if fault:
                        fault.count -= 1
                        if fault.count <= 0:
                            proxy._faults.pop(0)
                if fault:
                    self._reply(fault.status, fault.body)
                    return
                query = urllib.parse.parse_qs(url.query)
                bucket = query.get("bucket", [""])[0]
                precision = PRECISION.get(query.get("precision", ["ns"])[0])
                if not bucket or precision is None:
                    self._reply(400, b'{"code":"invalid","message":"bucket or precision"}')
                    return
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)  # forwarded decoded, without the header
                target = "/write?" + urllib.parse.urlencode({"db": bucket, "precision": precision})
                status, reply = proxy._forward("POST", target, body)
                self._reply(status, reply)

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _forward(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.upstream + target, data=body if method == "POST" else None, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return int(reply.status), reply.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()
        except OSError as error:  # upstream down
            return 503, f'{{"code":"unavailable","message":"{type(error).__name__}"}}'.encode()

    def fail_next(self, status: int, count: int = 1, body: bytes = b"{}") -> None:
        """Answer the next `count` writes with `status` instead of forwarding them."""
        with self._lock:
            self._faults.append(_Fault(status, count, body))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
