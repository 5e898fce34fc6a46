"""The one launcher (apps/launcher.py): process groups, a bounded stop, a clear start error."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from apps.launcher import Child, LaunchError, free_port, stop_all, wait_for_port

SLEEPS = "import time; time.sleep(60)"
# Says "ready" in its log once SIGTERM is ignored.
IGNORES_SIGTERM = (
    f"import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    f"{SLEEPS}"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for every purpose but its table entry
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_a_child_that_ignores_sigterm_is_killed_within_the_bound(tmp_path: Path) -> None:
    python = sys.executable
    stubborn = Child("stubborn", [python, "-c", IGNORES_SIGTERM], None, None, tmp_path / "s.log")
    polite = Child("polite", [python, "-c", SLEEPS], None, None, tmp_path / "p.log")
    for child in (stubborn, polite):
        child.start()
    deadline = time.monotonic() + 20
    while "ready" not in stubborn.text():
        assert time.monotonic() < deadline, "the stubborn child never started"
        time.sleep(0.05)
    began = time.monotonic()
    assert stop_all([stubborn, polite], 1.0) == ["stubborn"]
    assert time.monotonic() - began < 5
    assert not stubborn.running and not polite.running


def test_a_signal_reaches_the_childs_own_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    child = Child("shell", ["sh", "-c", script], None, tmp_path / "work", tmp_path / "sh.log")
    child.start()
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the shell never started its child"
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert child.terminate(10) != 0
    deadline = time.monotonic() + 5
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived the group's SIGTERM"
        time.sleep(0.05)
    assert (tmp_path / "work").is_dir()


def test_a_child_that_exits_at_start_is_one_clear_error_with_its_log(tmp_path: Path) -> None:
    child = Child("broken", ["sh", "-c", "echo no config; exit 3"], None, None, tmp_path / "b.log")
    child.start()
    with pytest.raises(LaunchError, match="broken exited at start:\nno config"):
        wait_for_port(child, free_port(), 10)
