"""`plant stack influx-tokens`: Grafana's token may only read the bucket, the historian's only
write it, and a token is kept across restarts while InfluxDB still has it.

No InfluxDB 2 runs here (Debian's 1.6.7 has no authorizations API), so the server is a
stand-in: a few dozen lines serving the four InfluxDB 2 API calls the command makes (GET
/api/v2/orgs, /api/v2/buckets and /api/v2/authorizations, POST /api/v2/authorizations) with
the shapes of InfluxDB 2's OpenAPI contract, and 401 for any token but the all-access one. The
command itself runs for real, through influxdb-client, as the stack runs it.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from apps import stack

pytestmark = pytest.mark.integration
ADMIN = "all-access-token"
ORG, ORG_ID, BUCKET, BUCKET_ID = "pcmm", "0a1b2c3d4e5f6a7b", "pcmm", "1a2b3c4d5e6f7a8b"


class InfluxV2Authorizations:
    """The stand-in InfluxDB 2: one org, one bucket, and the authorizations made."""

    def __init__(self) -> None:
        self.authorizations: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                server.requests.append((self.command, self.path))
                if self.headers.get("Authorization") == f"Token {ADMIN}":
                    return True
                self._reply(401, {"code": "unauthorized", "message": "unauthorized access"})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/v2/orgs":
                    orgs = [{"id": ORG_ID, "name": ORG}] if query.get("org") == ORG else []
                    self._reply(200, {"orgs": orgs})
                elif url.path == "/api/v2/buckets":
                    match = query.get("name") == BUCKET
                    bucket = {
                        "id": BUCKET_ID,
                        "name": BUCKET,
                        "orgID": ORG_ID,
                        "retentionRules": [],
                    }
                    buckets = [bucket] if match else []
                    self._reply(200, {"buckets": buckets})
                elif url.path == "/api/v2/authorizations":
                    mine = [a for a in server.authorizations if a["orgID"] == query.get("orgID")]
                    self._reply(200, {"authorizations": mine})
                else:
                    self._reply(404, {"code": "not found", "message": url.path})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                made = {
                    "id": secrets.token_hex(8),
                    "token": secrets.token_urlsafe(32),
                    "status": body.get("status", "active"),
                    "orgID": body["orgID"],
                    "permissions": body["permissions"],
                }
                server.authorizations.append(made)
                self._reply(201, made)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def influx() -> Iterator[InfluxV2Authorizations]:
    server = InfluxV2Authorizations()
    yield server
    server.httpd.shutdown()


def run(server: InfluxV2Authorizations, tmp_path: Path, admin: str = ADMIN) -> tuple[int, str]:
    (tmp_path / "admin").write_text(admin + "\n")
    result = CliRunner().invoke(
        stack.app,
        ["influx-tokens", "--url", server.url, "--admin-token-file", str(tmp_path / "admin"),
         "--org", ORG, "--bucket", BUCKET,
         "--grant", f"read:{tmp_path / 'grafana_token'}:472",
         "--grant", f"write:{tmp_path / 'historian_token'}:10001"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    return result.exit_code, result.stderr


def permissions(server: InfluxV2Authorizations, token: str) -> list[tuple[str, str, str]]:
    (auth,) = [a for a in server.authorizations if a["token"] == token]
    return [(p["action"], p["resource"]["type"], p["resource"]["id"]) for p in auth["permissions"]]


def test_a_read_only_and_a_write_only_token_for_the_bucket(
    influx: InfluxV2Authorizations, tmp_path: Path
) -> None:
    code, stderr = run(influx, tmp_path)
    assert code == 0, stderr
    read, write = (
        (tmp_path / "grafana_token").read_text(),
        (tmp_path / "historian_token").read_text(),
    )
    assert permissions(influx, read) == [("read", "buckets", BUCKET_ID)]
    assert permissions(influx, write) == [("write", "buckets", BUCKET_ID)]
    assert {
        (tmp_path / n).stat().st_mode & 0o777 for n in ("grafana_token", "historian_token")
    } == {0o400}
    assert ADMIN not in read + write
    # Every `up` runs it again: the tokens InfluxDB still has are kept.
    assert run(influx, tmp_path)[0] == 0
    assert (tmp_path / "grafana_token").read_text() == read
    assert len(influx.authorizations) == 2
    # A token revoked in InfluxDB (inactive) is replaced.
    influx.authorizations[0]["status"] = "inactive"
    assert run(influx, tmp_path)[0] == 0
    assert (tmp_path / "grafana_token").read_text() != read
    assert (tmp_path / "historian_token").read_text() == write


def test_a_refused_admin_token_is_one_clear_line(
    influx: InfluxV2Authorizations, tmp_path: Path
) -> None:
    code, stderr = run(influx, tmp_path, admin="wrong")
    assert code == 2
    assert stderr.startswith("error: InfluxDB") and "401" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "grafana_token").exists()
