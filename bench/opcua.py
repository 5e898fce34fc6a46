"""Benchmark: how many tag updates the OPC UA server delivers to the edge's subscription.

    python -m bench.opcua [--tags N] [--rate R] [--seconds S] [--publishing-interval-ms MS]
                          [--queue-size Q] [--watchdog-s W]

Runs the server in a child process with N tags: the twin's own (at speed 1 its modules update
once a second or less often) plus synthetic tags that all change R times a second. The
server's settings are its defaults (`OpcUaSettings`: speed 1, a tick every 0.1 s) but for
those that make that workload (`extra_tags`, `extra_tags_hz` = R, and `publish_period_s` = 1/R
where R is faster than the default period). This process is the client and
subscribes exactly as the edge does, with the edge's default settings (`EdgeSettings`: the
publishing interval, the monitored items' queue size, sampling interval 0, trigger
StatusValueTimestamp, the health-probe period `opcua_watchdog_s`, items created
as many at a time as the server's operation limits say, asyncua's iterator mode with the
edge's queue); a flag overrides
one. Over the measured window it counts notifications and asks the server how many samples it
published and how much CPU it used. Prints one JSON object last:

    {"tags": N, "rate_hz": R, "nominal_per_s": N*R, "expected_per_s": ..., "notifications_per_s":
     ..., "delivered_pct": ..., "server_cpu_pct": ..., "client_cpu_pct": ..., "connection_lost":
     false, "settings_changed": {"opcua": {...}, "edge": {...}}}

`expected_per_s` is what the server published (slow modules, such as the NIR every 2 s, publish
less often than R); `delivered_pct` is notifications over published samples.
`settings_changed` names every setting that differs from its default, with both values.
`connection_lost` is true when the client's connection was lost during the run (its health
probe timed out, for one): the run then counts what arrived before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy

from apps.launcher import free_port
from bench.settings import differing
from bridge.edge.opcua import EVENT_QUEUE, items_per_call
from bridge.edge.settings import EdgeSettings
from core import gc_policy
from opcua_server import OpcUaSettings, PlantServer
from opcua_server.address_space import tag_node_name
from opcua_server.synthetic import synthetic_tags
from twin import Plant

WARMUP_S = 3.0
NAMESPACE = "urn:pcmm-twin:opcua"


def _twin_tag_count() -> int:
    return len(Plant().registry)


# The server side ---------------------------------------------------------------------------------
async def _serve(tags: int, rate: float, port: int, cert_dir: Path) -> None:
    settings = OpcUaSettings(
        host="127.0.0.1",
        port=port,
        cert_dir=cert_dir,
        allow_insecure=True,
        extra_tags=max(0, tags - _twin_tag_count()),
        extra_tags_hz=rate,
    )
    # Ticks at least as often as the synthetic tags change (the shipped period up to 10 Hz).
    settings.publish_period_s = min(settings.publish_period_s, 1.0 / rate)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gc_policy.for_service()  # as `plant opcua serve` runs it
    async with PlantServer(settings) as server:
        gc_policy.freeze_startup()
        print(json.dumps({"ready": True, "settings": differing(settings)}), flush=True)
        while line := (await reader.readline()).decode().strip():
            if line == "quit":
                break
            async with server.between_ticks():
                mark = {
                    "published": server.published,
                    "cpu": time.process_time(),
                    "wall": time.monotonic(),
                    "ticks": server.ticks,
                    "source_time": server.clock.utc(server.plant.now).timestamp(),
                }
            print(json.dumps(mark), flush=True)


# The client side ---------------------------------------------------------------------------------
def _ask(proc: subprocess.Popen[str]) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("mark\n")
    proc.stdin.flush()
    result: dict[str, float] = json.loads(proc.stdout.readline())
    return result


async def _measure(
    proc: subprocess.Popen[str],
    port: int,
    tags: int,
    rate: float,
    seconds: float,
    edge: EdgeSettings,
) -> dict[str, Any]:
    names = [tag_node_name("site1", t) for t in Plant().registry.values()]
    names += [tag_node_name("site1", t) for t in synthetic_tags(max(0, tags - len(names)))]
    stamps: list[float] = []
    lost = False
    first: dict[str, float] | None = None
    interval_ms = edge.publishing_interval_ms
    client = Client(
        f"opc.tcp://127.0.0.1:{port}/pcmm/site1",
        timeout=edge.opcua_timeout_s,
        watchdog_intervall=edge.opcua_watchdog_s,
    )
    cpu0 = time.process_time()
    async with client:
        ns = await client.get_namespace_index(NAMESPACE)
        # As bridge.edge.opcua.OpcUaSource subscribes: iterator mode, its queue and overflow.
        sub = await client.create_subscription(
            interval_ms, queue_maxsize=EVENT_QUEUE, overflow=OverflowPolicy.DISCONNECT
        )

        async def consume() -> None:
            async for event in sub:
                if isinstance(event, DataChangeEvent):
                    stamp = event.data.monitored_item.Value.SourceTimestamp
                    stamps.append(stamp.timestamp())

        consumer = asyncio.create_task(consume(), name="consume")
        trigger = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        nodes = [client.get_node(ua.NodeId(name, ns)) for name in names]
        try:
            per_call = await items_per_call(client)
            for start in range(0, len(nodes), per_call):
                await sub._subscribe(
                    nodes[start : start + per_call],
                    ua.AttributeIds.Value,
                    trigger,
                    queuesize=edge.queue_size,
                    sampling_interval=edge.sampling_interval_ms,
                )
            # A mark is taken between two ticks: every sample published before it has a source
            # time at or before the mark's plant time, every later one after it. So the
            # notifications of the window are those whose source time falls between the marks.
            await asyncio.sleep(WARMUP_S)
            first = _ask(proc)
            cpu0 = time.process_time()
            await asyncio.sleep(seconds)
            last = _ask(proc)
            cpu1 = time.process_time()
            # Let the window's last notifications arrive: until nothing new comes for a while.
            drained = time.monotonic()
            while time.monotonic() - drained < 30.0:
                before = len(stamps)
                await asyncio.sleep(3 * interval_ms / 1000.0 + 1.0 / rate)
                if all(stamp > last["source_time"] for stamp in stamps[before:]):
                    break
            await sub.delete()
        except ConnectionError:
            lost = True
            last = _ask(proc)
            cpu1 = time.process_time()
            first = first or last
        finally:
            consumer.cancel()
    wall = last["wall"] - first["wall"]
    published = last["published"] - first["published"]
    low, high = first["source_time"], last["source_time"]
    received = sum(1 for stamp in stamps if low < stamp <= high)
    return {
        "tags": len(names),
        "rate_hz": rate,
        "seconds": round(wall, 2),
        "nominal_per_s": round(len(names) * rate, 1),
        "expected_per_s": round(published / wall, 1) if wall else 0.0,
        "notifications_per_s": round(received / wall, 1) if wall else 0.0,
        "delivered_pct": round(100.0 * received / published, 2) if published else 0.0,
        "server_cpu_pct": round(100.0 * (last["cpu"] - first["cpu"]) / wall, 1) if wall else 0.0,
        "client_cpu_pct": round(100.0 * (cpu1 - cpu0) / wall, 1) if wall else 0.0,
        "ticks_per_s": round((last["ticks"] - first["ticks"]) / wall, 2) if wall else 0.0,
        "connection_lost": lost,
        "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=0, help="tags to serve (0: the twin's own)")
    parser.add_argument("--rate", type=float, default=10.0, help="publications per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window, s")
    parser.add_argument(
        "--publishing-interval-ms", type=float, help="edge subscription (default: the edge's)"
    )
    parser.add_argument("--queue-size", type=int, help="monitored item queue (default: the edge's)")
    parser.add_argument("--watchdog-s", type=float, help="health probe (default: the edge's)")
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
    overrides = {
        "publishing_interval_ms": args.publishing_interval_ms,
        "queue_size": args.queue_size,
        "opcua_watchdog_s": args.watchdog_s,
    }
    edge = EdgeSettings(**{k: v for k, v in overrides.items() if v is not None})
    port = free_port()
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
                line = proc.stdout.readline()
                if not line:
                    raise SystemExit("the server did not start")
                server_settings = json.loads(line)["settings"]
                result = asyncio.run(_measure(proc, port, tags, args.rate, args.seconds, edge))
                result["settings_changed"] = {
                    "opcua": server_settings,
                    "edge": differing(edge),
                }
            finally:
                if proc.stdin is not None:
                    proc.stdin.write("quit\n")
                    proc.stdin.close()
                proc.wait(timeout=30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
