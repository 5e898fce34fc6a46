"""`plant grafana push|annotate` against a local HTTP recorder that answers like Grafana's API.

No Grafana can run on this machine (it is not packaged for Debian, PyPI or npm), so a small
HTTP server records every request and answers as Grafana's HTTP API documents it. The command
runs as a real subprocess with grafana-client installed into its own folder (the optional
`[grafana]` extra replaces the `urllib3` module name, so it never enters the test venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.historian.points import convert
from core import topics
from core.audit_chain import AuditChain
from core.payload import Event, encode_event
from dashboards import generate
from testkit.servers import InfluxDB

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "glsa_test_token"


@dataclass
class Recorder:
    """What Grafana was asked, and the little state it needs to answer consistently."""

    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def calls(self, method: str, path: str) -> list[Any]:
        return [body for m, p, _, body in self.requests if m == method and p == path]


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> tuple[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = urlsplit(self.path).path
            recorder.requests.append((self.command, path, dict(self.headers), body))
            return path, body

        def do_GET(self) -> None:
            path, _ = self._record()
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._answer(401, {"message": "Unauthorized"})
            elif path.startswith("/api/folders/"):
                uid = path.rsplit("/", 1)[1]
                if uid in recorder.folders:
                    self._answer(200, {"uid": uid, "title": "PCMM plant"})
                else:
                    self._answer(404, {"message": "folder not found"})
            elif path == "/api/annotations":
                query = parse_qs(urlsplit(self.path).query)
                tags = set(query.get("tags", []))
                self._answer(200, [a for a in recorder.annotations if tags <= set(a["tags"])])
            else:
                self._answer(404, {"message": "not found"})

        def do_POST(self) -> None:
            path, body = self._record()
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._answer(401, {"message": "Unauthorized"})
            elif path == "/api/folders":
                recorder.folders.add(body["uid"])
                self._answer(200, {"uid": body["uid"], "title": body["title"]})
            elif path == "/api/dashboards/db":
                uid = body["dashboard"]["uid"]
                self._answer(
                    200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1}
                )
            elif path == "/api/annotations":
                recorder.annotations.append(body)
                self._answer(200, {"id": len(recorder.annotations), "message": "added"})
            else:
                self._answer(404, {"message": "not found"})

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test asserts on the recorded requests

    return Handler


@pytest.fixture
def grafana() -> Iterator[Recorder]:
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    thread = threading.Thread(target=server.serve_forever, name="grafana-recorder", daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def grafana_client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """grafana-client and its dependencies, in a folder only the subprocess puts on its path."""
    target = tmp_path_factory.mktemp("grafana-client")
    spec = next(
        line.split('"')[1]
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.startswith("grafana = ")
    )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), spec],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        message = f"cannot install {spec}: {result.stderr[-500:]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return target


def _plant(args: list[str], client_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(client_dir), str(ROOT)])}
    env.pop("PLANT_GRAFANA_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "apps.cli", "grafana", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_push_creates_the_folder_and_every_dashboard(
    grafana: Recorder, grafana_client_dir: Path
) -> None:
    result = _plant(["push", "--url", grafana.url, "--token", TOKEN], grafana_client_dir)
    assert result.returncode == 0, result.stderr
    assert grafana.calls("POST", "/api/folders") == [{"title": "PCMM plant", "uid": "pcmm"}]
    posted = grafana.calls("POST", "/api/dashboards/db")
    committed = {p.stem: json.loads(p.read_text()) for p in generate.OUT.glob("*.json")}
    assert {body["dashboard"]["uid"] for body in posted} == {
        model["uid"] for model in committed.values()
    }
    for body in posted:
        assert body["overwrite"] is True and body["folderUid"] == "pcmm"
        assert body["dashboard"]["id"] is None  # matched by uid, so a push replaces
    assert result.stdout.count(f"{grafana.url}/d/") == len(committed)
    # A second push finds the folder and overwrites the same dashboards.
    again = _plant(["push", "--url", grafana.url, "--token", TOKEN], grafana_client_dir)
    assert again.returncode == 0, again.stderr
    assert len(grafana.calls("POST", "/api/folders")) == 1
    assert len(grafana.calls("POST", "/api/dashboards/db")) == 2 * len(committed)


def test_push_can_point_the_dashboards_at_another_datasource(
    grafana: Recorder, grafana_client_dir: Path
) -> None:
    result = _plant(
        ["push", "--url", grafana.url, "--token", TOKEN, "--datasource-uid", "their-influx"],
        grafana_client_dir,
    )
    assert result.returncode == 0, result.stderr
    for body in grafana.calls("POST", "/api/dashboards/db"):
        text = json.dumps(body)
        assert "pcmm-influxdb" not in text and '"uid": "their-influx"' in text


def test_a_refused_token_is_one_line_and_exit_1(
    grafana: Recorder, grafana_client_dir: Path
) -> None:
    result = _plant(["push", "--url", grafana.url, "--token", "wrong"], grafana_client_dir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "error:" in result.stderr


def test_annotate_marks_each_fault_once(
    grafana: Recorder, grafana_client_dir: Path, influxdb: InfluxDB
) -> None:
    start_ns = (int(__import__("time").time()) - 600) * 10**9
    site = topics.SiteTopics("site1")
    lines: list[bytes] = []
    chain = AuditChain("annotate-test")
    for i, (kind, action) in enumerate(
        [("audit", "inject_fault"), ("fault", "fault_active"), ("audit", "write")]
    ):
        event = Event(
            "site1", kind, i + 1, start_ns + i * 10**9, "twin", user="alice",
            action=action, target="bridging@api_feeder", reason="drill",
        )  # fmt: skip
        if kind == "audit":  # audit records are chained and on their source's topic
            event = chain.seal(event)
            lines += convert(site.audit("twin"), encode_event(event))
        else:
            lines += convert(site.event(kind), encode_event(event))
    influxdb.write(b"\n".join(lines).decode())
    args = [
        "annotate", "--url", grafana.url, "--token", TOKEN,
        "--influx-url", influxdb.url, "--bucket", influxdb.db, "--since", "1h",
    ]  # fmt: skip
    result = _plant(args, grafana_client_dir)
    assert result.returncode == 0, result.stderr
    posted = grafana.calls("POST", "/api/annotations")
    assert len(posted) == 2  # the write is not a fault
    assert {tuple(body["tags"]) for body in posted} == {("pcmm", "fault", "site1", "bridging")}
    assert sorted(body["time"] for body in posted) == [start_ns // 10**6, start_ns // 10**6 + 1000]
    assert "2 fault events, 2 new annotations" in result.stdout
    again = _plant(args, grafana_client_dir)
    assert again.returncode == 0, again.stderr
    assert len(grafana.calls("POST", "/api/annotations")) == 2
    assert "0 new annotations" in again.stdout
