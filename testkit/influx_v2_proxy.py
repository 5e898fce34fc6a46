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

Whole batches (`whole_batch = True`): 2.x refuses a whole request with 400 when one line does
not parse, where 1.6 writes the good lines and answers 400 "partial write". In this mode the
proxy never forwards a batch with a bad line: it first writes the batch to a scratch database
(`<bucket>_scratch`) of the same server, and forwards it to the real one only if the scratch
write succeeded; otherwise it answers 400 in 2.x's shape with 1.6's reason, and nothing
reaches the real database (`refused` lists the line count of each such batch). The scratch
write uses the server's own parser, so whatever it refuses (syntax, a time out of range) is
found without a second parser here that could disagree with it. Every batch the proxy
forwards was written to the scratch database first, so it has the real one's field types and
a type conflict is refused whole too; a test that writes around the proxy (`InfluxDB.write`)
must write the same lines through `mirror` for that to hold. One write of a whole batch, not
one per line: the check costs a second request, not thousands.
"""

from __future__ import annotations

import gzip
import http.server
import json
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
    containing: bytes = b""  # answer only writes whose body holds this (count is ignored)


class InfluxV2Proxy:
    """Serve the v2 write API on a free loopback port, forwarding to `upstream` (1.x)."""

    def __init__(self, upstream: str, token: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token  # None: any token (or none) is accepted
        self.writes = 0  # write requests seen (authenticated ones, when a token is set)
        self.whole_batch = False  # True: refuse a batch with any bad line whole, as 2.x does
        self.refused: list[int] = []  # lines of each batch refused whole
        self._faults: list[_Fault] = []
        self._scratch_made: set[str] = set()
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
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)  # forwarded decoded, without the header
                with proxy._lock:
                    proxy.writes += 1
                    fault = proxy._fault_for(body)
                if fault:
                    self._reply(fault.status, fault.body)
                    return
                query = urllib.parse.parse_qs(url.query)
                bucket = query.get("bucket", [""])[0]
                precision = PRECISION.get(query.get("precision", ["ns"])[0])
                if not bucket or precision is None:
                    self._reply(400, b'{"code":"invalid","message":"bucket or precision"}')
                    return
                if proxy.whole_batch:
                    status, reply = proxy._check(bucket, precision, body)
                    if status != 204:
                        self._reply(status, reply)
                        return
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

    def _fault_for(self, body: bytes) -> _Fault | None:
        """The fault that answers this write, if any (under the lock)."""
        for fault in self._faults:
            if fault.containing:
                if fault.containing in body:
                    return fault
                continue
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def _check(self, bucket: str, precision: str, body: bytes) -> tuple[int, bytes]:
        """Write `body` to the scratch database: 204, or 2.x's answer to a bad batch."""
        scratch = f"{bucket}_scratch"
        if scratch not in self._scratch_made:
            query = urllib.parse.urlencode({"q": f'CREATE DATABASE "{scratch}"'})
            status, reply = self._forward("POST", f"/query?{query}", b"")
            if status != 200:
                return status, reply
            self._scratch_made.add(scratch)
        target = "/write?" + urllib.parse.urlencode({"db": scratch, "precision": precision})
        status, reply = self._forward("POST", target, body)
        if status != 400:
            return status, reply
        try:
            reason = str(json.loads(reply).get("error", reply.decode()))
        except ValueError:
            reason = reply.decode(errors="replace")
        with self._lock:
            self.refused.append(body.count(b"\n") + 1)
        return 400, json.dumps({"code": "invalid", "message": reason}).encode()

    def mirror(self, lines: str, bucket: str = "pcmm") -> None:
        """Write lines to the scratch database as well (see the module docstring)."""
        self._check(bucket, "n", lines.encode())

    def fail_next(self, status: int, count: int = 1, body: bytes = b"{}") -> None:
        """Answer the next `count` writes with `status` instead of forwarding them."""
        with self._lock:
            self._faults.append(_Fault(status, count, body))

    def refuse_containing(self, needle: bytes, status: int = 400, body: bytes = b"{}") -> None:
        """Answer every write whose body holds `needle` with `status`, until `clear_faults`."""
        with self._lock:
            self._faults.append(_Fault(status, 0, body, containing=needle))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
