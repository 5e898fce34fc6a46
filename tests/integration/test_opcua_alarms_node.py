"""The server's alarms and conditions through a second, independent OPC UA stack: node-opcua.

`node_opcua/alarms_client.js` subscribes to condition events filtered on the standard
AlarmConditionType, asks for ConditionRefresh, acknowledges as a viewer (refused) and as an
operator, confirms, shelves for a time and unshelves, with node-opcua's own helpers where it
has them (callConditionRefresh, acknowledgeCondition, confirmCondition, which look the method
up from the condition's type). node-opcua-client is pinned in node_opcua/package-lock.json;
`npm ci` installs it when node_modules is missing. Node.js and npm missing skip this test on
a developer machine and FAIL it in CI (the rule of `need()` in testkit/servers.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from pathlib import Path

import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from testkit.servers import need

from .conftest import USERS, RunningServer, client
from .test_opcua_alarms import condition
from .test_opcua_server import call, d, s, until

pytestmark = pytest.mark.integration

CLIENT_DIR = Path(__file__).resolve().parent / "node_opcua"
NPM_TIMEOUT_S = 300
RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def node() -> str:
    """node, and node-opcua-client from the lock file (`npm ci` when it is missing)."""
    node = need("node", "Node.js 18+ and npm: apt-get install -y nodejs npm")
    npm = need("npm", "Node.js 18+ and npm: apt-get install -y nodejs npm")
    if not (CLIENT_DIR / "node_modules" / "node-opcua-client").exists():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=CLIENT_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return node


async def trusted_certificate(running: RunningServer, folder: Path) -> tuple[Path, Path, str]:
    """A client certificate (PEM) and key, trusted by the server; and its application URI."""
    uri = "urn:pcmm-twin:test:node-opcua"
    key, der = folder / "node-key.pem", folder / "node-cert.der"
    await setup_self_signed_certificate(
        key, der, uri, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {}
    )
    (running.cert_dir / "trusted" / der.name).write_bytes(der.read_bytes())
    pem = folder / "node-cert.pem"
    pem.write_bytes(x509.load_der_x509_certificate(der.read_bytes()).public_bytes(Encoding.PEM))
    return pem, key, uri


def test_node_opcua_refreshes_acknowledges_confirms_and_shelves_a_condition(
    node: str, opcua: RunningServer, tmp_path: Path
) -> None:
    running = opcua
    alarm = "equipment.feeder_noise"

    async def raise_alarm() -> None:
        async with client(running.url, "alice") as alice:
            result = await call(alice, running, "InjectFault", s("feeder_noise"), s(""), d(3.0))
            assert result.StatusCode.is_good()
            await until(lambda: running.server.conditions.state(alarm).active, what="the alarm")

    asyncio.run(raise_alarm())
    pem, key, uri = asyncio.run(trusted_certificate(running, tmp_path))
    cond = condition(running, alarm)
    result = subprocess.run(
        [
            node,
            str(CLIENT_DIR / "alarms_client.js"),
            running.url,
            cond.to_string(),
            f"alice:{USERS['alice'][1]}",
            f"victor:{USERS['victor'][1]}",
            str(pem),
            str(key),
            uri,
        ],
        cwd=CLIENT_DIR,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"node-opcua client failed:\n{result.stderr[-3000:]}"
    out = json.loads(
        next(line for line in reversed(result.stdout.splitlines()) if line.startswith("{"))
    )
    assert out["calls"] == {
        "refresh": "Good",
        "viewerAcknowledge": "BadUserAccessDenied",
        "acknowledge": "Good",
        "confirm": "Good",
        "timedShelve": "Good",
        "unshelve": "Good",
    }
    events = out["events"]
    acked = next(e for e in events if e["acked"])
    assert (acked["user"], acked["comment"]) == ("alice", "ack from node-opcua")
    assert any(e["shelving"] == "TimedShelved" for e in events)
    audit = [
        (r.user, r.action, r.reason, r.accepted)
        for r in running.audit()
        if r.target == alarm and r.action.startswith("alarm_")
    ]
    assert ("victor", "alarm_acknowledge", "viewer tries", False) in audit
    assert ("alice", "alarm_acknowledge", "ack from node-opcua", True) in audit
    assert ("alice", "alarm_confirm", "confirmed from node-opcua", True) in audit
    assert ("alice", "alarm_shelve", "", True) in audit
