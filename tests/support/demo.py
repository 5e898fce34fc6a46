"""`plant demo` as a child process for the integration tests: its output read as a user would."""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PID_LINE = re.compile(r"^(\S+) pid (\d+):")
ASSIGNMENT = re.compile(r"^PLANT_FAULT_\w+=")


class DemoProcess:
    """`plant demo` as a child process; its stdout lines collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apps.cli", "demo", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.fresh: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.fresh.put(line)

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            for line in list(self.lines):
                if match := compiled.search(line):
                    return match
            if self.proc.poll() is not None:
                pytest.fail(f"demo exited {self.proc.returncode}:\n{self.text()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} after {timeout} s:\n{self.text()}", pytrace=False)
            time.sleep(0.2)

    def wait_for_secret(self, state: Path, name: str, timeout: float = 30) -> str:
        """A secret the demo generated into its state folder, once it is there."""
        path = state / "secrets" / name
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {path}:\n{self.text()}", pytrace=False)
            time.sleep(0.1)
        return path.read_text()

    def pids(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for line in self.lines if (m := PID_LINE.match(line))}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but its table entry.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def demo_command(demo: DemoProcess, site: str) -> tuple[list[str], dict[str, str]]:
    """The `plant fault` command the demo printed for `site`: its argv and its environment."""
    line = demo.wait_for(rf"as operator of {site}: (.*)$", 1).group(1)
    words = shlex.split(line)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_")}
    for word in words:
        if ASSIGNMENT.match(word):
            name, _, value = word.partition("=")
            env[name] = value
    return [w for w in words if not ASSIGNMENT.match(w)], env
