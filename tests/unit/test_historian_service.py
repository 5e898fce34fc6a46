"""bridge.historian.service: a thread that dies ends the historian, and the command line exits
non-zero with one line, so that the supervisor restarts it (no servers: nothing answers)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import typer

from bridge import cli
from bridge.historian import service
from bridge.historian.settings import HistorianSettings
from bridge.runner import RunningOutput
from bridge.spool import DiskFullError, Spool
from testkit.servers import free_port


def settings(tmp_path: Path) -> HistorianSettings:
    return HistorianSettings(
        mqtt_port=free_port(),  # nothing listens: the ingest thread keeps retrying
        influx_url=f"http://127.0.0.1:{free_port()}",
        spool_path=tmp_path / "h.spool.sqlite",
        metrics_period_s=0.05,
        retry_initial_s=0.05,
        retry_max_s=0.1,
    )


def run_until_it_ends(s: HistorianSettings) -> tuple[BaseException | None, float]:
    stop = threading.Event()
    failure: list[BaseException] = []
    started = time.monotonic()

    def target() -> None:
        try:
            service.run(s, stop)
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(20)
    stop.set()
    thread.join(10)
    return (failure[0] if failure else None), time.monotonic() - started


def test_a_thread_that_dies_ends_the_historian(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: RunningOutput, stop: threading.Event) -> None:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(RunningOutput, "run", broken)
    error, took = run_until_it_ends(settings(tmp_path))
    assert isinstance(error, service.ThreadDiedError)
    assert str(error) == "thread influx-writer died: RuntimeError: a bug in the writer"
    assert took < 15
    assert "thread influx-writer died" in caplog.text  # with its traceback, for the bug report


def test_a_full_disk_ends_the_historian_with_the_spools_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Spool.put_many

    def full(self: Spool, items: object) -> None:
        raise DiskFullError("spool write failed: the disk is full (database or disk is full)")

    monkeypatch.setattr(Spool, "put_many", full)  # the self-metrics ticker meets it first
    error, _ = run_until_it_ends(settings(tmp_path))
    monkeypatch.setattr(Spool, "put_many", real)
    assert isinstance(error, DiskFullError)
    with Spool(tmp_path / "h.spool.sqlite") as spool:  # closed cleanly, still usable
        assert spool.depth == 0


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (DiskFullError("spool write failed: the disk is full"), 2, "error: spool write failed"),
        (service.ThreadDiedError("thread x died: KeyError: 'k'"), 1, "error: thread x died"),
    ],
)
def test_the_command_line_exits_non_zero_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    code: int,
    line: str,
) -> None:
    def fail(settings: HistorianSettings, stop: threading.Event) -> None:
        raise error

    monkeypatch.setattr(service, "run", fail)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # keep pytest's own handlers
    for key in list(os.environ):
        if key.startswith("PLANT_HISTORIAN_"):
            monkeypatch.delenv(key)
    with pytest.raises(typer.Exit) as exited:
        cli.historian()
    assert exited.value.exit_code == code
    (printed,) = capsys.readouterr().err.strip().splitlines()
    assert printed.startswith(line)
