"""Fixtures for the OPC UA integration tests: a real server on 127.0.0.1, real clients.

The server runs on its own event loop in a background thread, as it would in its own process;
tests talk to it over loopback with asyncua clients on their own loop (`asyncio.run`). The
twin runs accelerated so that minutes of plant time pass in seconds.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asyncua import Client
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from apps.launcher import free_port
from bridge.operator import sign_and_encrypt
from opcua_server import OpcUaSettings, PlantServer
from opcua_server.security import hash_password
from twin import Plant

T = TypeVar("T")

USERS = {
    "alice": ("operator", "alice-secret"),
    "victor": ("viewer", "victor-secret"),
    "gina": ("gateway", "gina-secret"),  # a gateway: its OnBehalfOf is honoured
}
SPEED = 100.0  # plant seconds per wall second


def write_users(path: Path) -> Path:
    lines = []
    for name, (role, password) in USERS.items():
        lines += [
            f"[users.{name}]",
            f'role = "{role}"',
            f'password_hash = "{hash_password(password)}"',
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class RunningServer:
    """A PlantServer serving on a background thread's event loop."""

    server: PlantServer
    loop: asyncio.AbstractEventLoop
    cert_dir: Path

    @property
    def url(self) -> str:
        return self.server.endpoint

    @property
    def plant(self) -> Plant:
        return self.server.plant

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the server's loop (to look at the twin between two ticks)."""

        async def wrapped() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=10)

    def audit(self) -> list[Any]:
        async def records() -> list[Any]:
            return list(self.plant.audit)

        return self.run(records)


@contextmanager
def serve(tmp_path: Path, **overrides: Any) -> Iterator[RunningServer]:
    """Start a PlantServer on a free port in a background thread; stop it afterwards."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "cert_dir": tmp_path / "pki",
        "users_file": write_users(tmp_path / "users.toml"),
        "speed": SPEED,
        "publish_period_s": 0.05,
        "allow_insecure": True,
        "warm_start": True,
        "history_window_s": 3600.0,
    }
    values.update(overrides)
    settings = OpcUaSettings(**values)
    server = PlantServer(settings)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with server:
                started.set()
                await stop.wait()
        except BaseException as error:  # report start-up failures to the test
            failure.append(error)
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield RunningServer(server, loop, settings.cert_dir)
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()


@pytest.fixture
def opcua(tmp_path: Path) -> Iterator[RunningServer]:
    """A fresh server for a test that changes the plant."""
    with serve(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_opcua(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the tests that only read."""
    with serve(tmp_path_factory.mktemp("opcua")) as running:
        yield running


def client(url: str, user: str | None = None) -> Client:
    """An asyncua client, as a named user (password from USERS) or anonymous."""
    c = Client(url, timeout=10)
    if user is not None:
        c.set_user(user)
        c.set_password(USERS[user][1])
    return c


async def secure_client(
    running: RunningServer, client_dir: Path, name: str, trusted: bool, user: str | None = None
) -> Client:
    """A client on the Basic256Sha256 SignAndEncrypt endpoint with its own certificate,
    copied into the server's trusted folder when `trusted`."""
    app_uri = f"urn:pcmm-twin:test:{name}"
    key, cert = client_dir / f"{name}-key.pem", client_dir / f"{name}-cert.der"
    await setup_self_signed_certificate(
        key, cert, app_uri, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {}
    )
    if trusted:
        (running.cert_dir / "trusted" / cert.name).write_bytes(cert.read_bytes())
    url = running.url
    c = client(url, user)
    await sign_and_encrypt(c, cert, key)  # the product's own setup: the URI from the certificate
    assert c.application_uri == app_uri
    return c
