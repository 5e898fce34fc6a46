"""One launcher for every child process of the project: the demo's services, the servers the
tests and benchmarks start (Mosquitto, influxd), the edge and the historian under test.

Each child runs in its own session (process group), so Ctrl-C in the terminal reaches only the
parent, which then stops the children in order; a signal reaches the whole group, so a service's
own children (a wrapper's, `unshare`'s) go with it. On Linux a child also gets SIGTERM when the
thread that started it dies, even by SIGKILL: start children from the main thread (or one that
lives as long as they should). Stopping is bounded: SIGTERM, a wait, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h
KILL_WAIT_S = 10.0  # how long a SIGKILLed child gets to be reaped


class LaunchError(Exception):
    """Something the user can fix (a missing binary, a port in use, a service that exits at
    start); one line says what, the child's log may follow."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """One process in its own process group, logging to a file; can be started again."""

    name: str
    argv: list[str]
    env: dict[str, str] | None  # None: this process's environment
    cwd: Path | None  # made if missing; None: this process's
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.cwd is not None:
            self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the parent only; it stops us in order
                # Safe here: it only calls prctl (looked up in the parent), no lock is taken.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the child's group (its own children too), if it is still running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: what it had not saved is lost."""
        if self.proc is not None and self.running:
            self.signal(signal.SIGKILL)
            self.proc.wait(KILL_WAIT_S)

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait for it (TimeoutExpired past `timeout_s`); its exit code."""
        assert self.proc is not None, f"{self.name} was never started"
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float) -> bool:
        """SIGTERM, up to `timeout_s`, then SIGKILL; True if it had to be killed."""
        return bool(stop_all([self], timeout_s))

    def text(self) -> str:
        """Everything it logged."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        text = self.text()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no log)"


def _load_prctl() -> Callable[[int, int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the normal shutdown path still stops every child


# Looked up here, in the parent: the child between fork and exec only calls it (no dlopen).
_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux only).

    Lost again where a service changes its user (mosquitto started as root): best effort.
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_all(children: Sequence[Child], timeout_s: float) -> list[str]:
    """SIGTERM every group, wait up to `timeout_s` in all, SIGKILL the rest; the names killed."""
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    killed = []
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(child.name)
            child.signal(signal.SIGKILL)
            child.proc.wait(KILL_WAIT_S)
        # A service may have left its own children in the group after it exited itself.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
    return killed


def wait_for_port(child: Child, port: int, timeout_s: float, log_lines: int = 15) -> None:
    """Until something accepts connections on 127.0.0.1:`port`; LaunchError if `child` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.running:
            raise LaunchError(f"{child.name} exited at start:\n{child.tail(log_lines)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise LaunchError(
        f"{child.name} not listening on {port} after {timeout_s:g} s:\n{child.tail(log_lines)}"
    )
