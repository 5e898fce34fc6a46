"""Loss accounting, behind the headline "0 lost, 0 duplicates": what the OPC UA server published
against what InfluxDB stores, per tag and source time. Used by the tests and the benchmarks.

- The truth: every sample the server published, per tag id, by its source time (ns): from its
  tag history, in process (tests/integration/edge_harness.py) or read back with HistoryRead
  (`published_times`).
- The store: per tag id, the source times InfluxDB holds, from the `<name>_seq` fields of the
  `telemetry` and `truth` measurements (`influx_times`, or `influx_times_of` for chosen tags):
  a list, so a point stored twice (in both measurements) shows twice.
- The count (`count`, `tally` over a window): `lost` are published samples InfluxDB lacks,
  `extra` stored points never published, `duplicates` a tag's point stored more than once.

The edge's sample sequence numbers are not used to count losses: a status-only change
republishes a sample at the same source time with a new number, which overwrites the stored
point's number, so a gap in the stored numbers is not a loss; and they cannot see what is lost
between the server and the edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncua import Client, ua

from core.tags import Tag
from core.timebase import to_ns
from opcua_server.address_space import tag_node_name
from testkit.servers import InfluxDB

SITE = "site1"  # the first site of the demo, the tests and the benchmarks
MEASUREMENTS = ("telemetry", "truth")
EXAMPLES_PER_TAG = 2  # missing samples named per tag
STATEMENTS_PER_REQUEST = 20


@dataclass(frozen=True)
class Tally:
    """What InfluxDB holds against the truth."""

    expected: int
    stored: int  # distinct points, `extra` included
    lost: int
    extra: int
    duplicates: int
    missing_examples: list[tuple[str, int]]  # (tag id, source time ns), a few per tag

    def __str__(self) -> str:
        return (
            f"expected {self.expected}, stored {self.stored}, lost {self.lost}, "
            f"extra {self.extra}, duplicates {self.duplicates}, e.g. missing "
            f"{self.missing_examples[:5]}"
        )


def count(truth: Mapping[str, Iterable[int]], stored: Mapping[str, Iterable[int]]) -> Tally:
    """Compare per tag, over every tag of either side: source times in ns, already windowed."""
    expected = got = lost = extra = dups = 0
    missing: list[tuple[str, int]] = []
    for tag in dict.fromkeys([*truth, *stored]):
        want = set(truth.get(tag, ()))
        have_list = list(stored.get(tag, ()))
        have = set(have_list)
        dups += len(have_list) - len(have)
        expected += len(want)
        got += len(have)
        gone = want - have
        lost += len(gone)
        extra += len(have - want)
        missing.extend((tag, t) for t in sorted(gone)[:EXAMPLES_PER_TAG])
    return Tally(expected, got, lost, extra, dups, missing)


def tally(
    truth: Mapping[str, Iterable[int]],
    stored: Mapping[str, Iterable[int]],
    start_ns: Mapping[str, int],
    end_ns: int,
) -> Tally:
    """`count` over the tags of `start_ns`, each over [start_ns[tag], end_ns]."""

    def window(times: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
        return {
            tag: [t for t in times.get(tag, ()) if first <= t <= end_ns]
            for tag, first in start_ns.items()
        }

    return count(window(truth), window(stored))


def influx_times(
    influx: InfluxDB, site: str = SITE, low: int | None = None, high: int | None = None
) -> dict[str, list[int]]:
    """Per tag id, the source times (ns) InfluxDB holds in (low, high] (default: all)."""
    where = f"site = '{site}'"
    if low is not None:
        where += f" AND time > {low}"
    if high is not None:
        where += f" AND time <= {high}"
    out: dict[str, list[int]] = {}
    for measurement in MEASUREMENTS:
        for row in influx.query(f"SELECT * FROM {measurement} WHERE {where}"):
            for key, value in row.items():
                if key.endswith("_seq") and value is not None:
                    tag = f"{row['module']}.{key.removesuffix('_seq')}"
                    out.setdefault(tag, []).append(int(row["time"]))
    return out


def influx_times_of(
    influx: InfluxDB, tags: Iterable[str], low: int, high: int, site: str = SITE
) -> dict[str, list[int]]:
    """`influx_times` of the given tag ids only, asking for their `<name>_seq` columns alone,
    STATEMENTS_PER_REQUEST statements a request: for thousands of tags, counted every second."""
    by_module: dict[str, list[str]] = {}
    for tag_id in tags:
        module, name = tag_id.split(".", 1)
        by_module.setdefault(module, []).append(name)
    statements: list[tuple[str, str, list[str]]] = []
    for module, names in by_module.items():
        columns = ", ".join(f'"{n}_seq"' for n in names)
        for measurement in MEASUREMENTS:
            where = f"site = '{site}' AND module = '{module}' AND time > {low} AND time <= {high}"
            statements.append((f"SELECT {columns} FROM {measurement} WHERE {where}", module, names))
    out: dict[str, list[int]] = {}
    for start in range(0, len(statements), STATEMENTS_PER_REQUEST):
        chunk = statements[start : start + STATEMENTS_PER_REQUEST]
        results = influx.statements([q for q, _, _ in chunk])
        for (_, module, names), rows in zip(chunk, results, strict=True):
            for row in rows:
                for name, value in zip(names, row[1:], strict=True):
                    if value is not None:
                        out.setdefault(f"{module}.{name}", []).append(int(row[0]))
    return out


async def published_times(
    client: Client, ns: int, site: str, tags: Iterable[Tag], begin: datetime, end: datetime
) -> dict[str, list[int]]:
    """Every sample the server published in [begin, end], per tag id: source times (ns), read
    back with HistoryRead over an open session (`ns`: the plant's namespace index)."""
    out: dict[str, list[int]] = {}
    for tag in tags:
        node = client.get_node(ua.NodeId(tag_node_name(site, tag), ns))
        values: list[Any] = await node.read_raw_history(begin, end, numvalues=0)
        out[tag.id] = [to_ns(v.SourceTimestamp) for v in values]
    return out
