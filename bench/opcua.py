"""Benchmark: how many tag updates the OPC UA server delivers, and at what CPU cost.

    python -m bench.opcua [--tags N] [--rate R] [--seconds S]

Runs the server in a child process with N tags (the twin's own, plus synthetic tags that change
on every tick to reach N), publishing R times a second, with the twin at R plant seconds per
wall second so that its modules (one-second steps) update on every publication. This process is
the client: one subscription over all N tags with trigger StatusValueTimestamp, so that every
published sample (a new source timestamp) is one notification. Over the measured window it
counts notifications and asks the server how many samples it published and how much CPU it
used. Prints one JSON object last:

    {"tags": N, "rate_hz": R, "nominal_per_s": N*R, "expected_per_s": ..., "notifications_per_s":
     ..., "delivered_pct": ..., "server_cpu_pct": ...}

`expected_per_s` is what the server published (slow modules, such as the NIR every 2 s, publish
less often than R); `delivered_pct` is notifications over published samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from opcua_server import OpcUaSettings, PlantServer
from opcua_server.address_space import tag_node_name
from opcua_server.synthetic import synthetic_tags
from twin import Plant

WARMUP_S = 3.0
NAMESPACE = "urn:pcmm-twin:opcua"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _twin_tag_count() -> int:
    return len(Plant().registry)


# The server side ---------------------------------------------------------------------------------
async def _serve(tags: int, rate: float, port: int, cert_dir: Path) -> None:
    settings = OpcUaSettings(
        host="127.0.0.1",
        port=port,
        cert_dir=cert_dir,
        allow_insecure=True,
        speed=rate,
        publish_period_s=1.0 / rate,
        warm_start=True,
        extra_tags=max(0, tags - _twin_tag_count()),
        history_window_s=60.0,
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with PlantServer(settings) as server:
        print("ready", flush=True)
        while line := (await reader.readline()).decode().strip():
            if line == "quit":
                break
            print(
                json.dumps(
                    {
                        "published": server.published,
                        "cpu": time.process_time(),
                        "wall": time.monotonic(),
                        "ticks": server.ticks,
                        "source_time": server.clock.utc(server.plant.now).timestamp(),
                    }
                ),
                flush=True,
            )


# The client side ---------------------------------------------------------------------------------
class _Counter:
    """Keeps the source time of every notification."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.stamps.append(data.monitored_item.Value.SourceTimestamp.timestamp())


def _ask(proc: subprocess.Popen[str]) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("mark\n")
    proc.stdin.flush()
    result: dict[str, float] = json.loads(proc.stdout.readline())
    return result


async def _measure(
    proc: subprocess.Popen[str], port: int, tags: int, rate: float, seconds: float
) -> dict[str, Any]:
    names = [tag_node_name("site1", t) for t in Plant().registry.values()]
    names += [tag_node_name("site1", t) for t in synthetic_tags(max(0, tags - len(names)))]
    counter = _Counter()
    # Half the publication period, within 100-500 ms: each sample waits at most that long.
    interval_ms = min(500.0, max(100.0, 500.0 / rate))
    queue = max(2, math.ceil(2 * rate * interval_ms / 1000.0) + 1)
    async with Client(f"opc.tcp://127.0.0.1:{port}/pcmm/site1", timeout=30) as client:
        ns = await client.get_namespace_index(NAMESPACE)
        sub = await client.create_subscription(interval_ms, counter)
        requests = []
        for handle, name in enumerate(names, start=1):
            params = ua.MonitoringParameters()
            params.ClientHandle = handle
            params.SamplingInterval = 0.0
            params.QueueSize = queue
            params.DiscardOldest = True
            params.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
            request = ua.MonitoredItemCreateRequest()
            request.ItemToMonitor = ua.ReadValueId(
                NodeId=ua.NodeId(name, ns), AttributeId=ua.AttributeIds.Value
            )
            request.MonitoringMode = ua.MonitoringMode.Reporting
            request.RequestedParameters = params
            requests.append(request)
        for start in range(0, len(requests), 1000):
            await sub.create_monitored_items(requests[start : start + 1000])
        # A mark is taken between two ticks: every sample published before it has a source time
        # at or before the mark's plant time, every later one after it. So the notifications of
        # the window are those whose source time falls between the two marks' plant times.
        await asyncio.sleep(WARMUP_S)
        first = _ask(proc)
        await asyncio.sleep(seconds)
        last = _ask(proc)
        # Let the window's last notifications arrive: wait until nothing new comes for a while.
        drained = time.monotonic()
        while time.monotonic() - drained < 30.0:
            before = len(counter.stamps)
            await asyncio.sleep(3 * interval_ms / 1000.0 + 1.0 / rate)
            if all(stamp > last["source_time"] for stamp in counter.stamps[before:]):
                break
        await sub.delete()
    wall = last["wall"] - first["wall"]
    published = last["published"] - first["published"]
    low, high = first["source_time"], last["source_time"]
    received = sum(1 for stamp in counter.stamps if low < stamp <= high)
    return {
        "tags": len(names),
        "rate_hz": rate,
        "seconds": round(wall, 2),
        "nominal_per_s": round(len(names) * rate, 1),
        "expected_per_s": round(published / wall, 1),
        "notifications_per_s": round(received / wall, 1),
        "delivered_pct": round(100.0 * received / published, 2) if published else 0.0,
        "server_cpu_pct": round(100.0 * (last["cpu"] - first["cpu"]) / wall, 1),
        "ticks_per_s": round((last["ticks"] - first["ticks"]) / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=0, help="tags to serve (0: the twin's own)")
    parser.add_argument("--rate", type=float, default=10.0, help="publications per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window, s")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.tags < 0:
        parser.error("--rate and --seconds must be above 0, --tags at least 0")
    tags = args.tags or _twin_tag_count()
    if args.serve:
        asyncio.run(_serve(tags, args.rate, args.port, args.cert_dir))
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "bench.opcua",
            "--serve",
            "--tags",
            str(tags),
            "--rate",
            str(args.rate),
            "--port",
            str(port),
            "--cert-dir",
            tmp,
        ]
        with subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as proc:
            try:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise SystemExit("the server did not start")
                result = asyncio.run(_measure(proc, port, tags, args.rate, args.seconds))
            finally:
                if proc.stdin is not None:
                    proc.stdin.write("quit\n")
                    proc.stdin.close()
                proc.wait(timeout=30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
