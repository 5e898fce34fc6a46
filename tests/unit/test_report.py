"""The pure parts of the stored-run scores and the report: no server needed."""

from __future__ import annotations

from apps.demo.services import influx_hint
from apps.report import Window, diverted_windows, quarantine_windows, segments, thin
from apps.stored import Completeness, StoredFault, faults, parse_instant
from bridge.historian.influx_api import api_of_version
from bridge.historian.influx_v1 import split_bucket


def test_auto_reads_the_major_version_from_what_ping_reports() -> None:
    versions = ("1.6.7~rc0", "1.8.10", "v2.7.11", "2.7.4", "3.0.1", "")
    assert [api_of_version(v) for v in versions] == ["v1", "v1", "v2", "v2", "v2", "v2"]
    assert split_bucket("pcmm") == ("pcmm", "")
    assert split_bucket("pcmm/week") == ("pcmm", "week")


def test_thinning_keeps_each_buckets_lowest_and_highest_point() -> None:
    points = [(i, 0.0) for i in range(10_000)]
    points[5_001] = (5_001, 99.0)  # a one-sample spike survives
    thinned = thin(points, 100)
    assert len(thinned) <= 102 and (5_001, 99.0) in thinned
    assert [t for t, _ in thinned] == sorted(t for t, _ in thinned)
    assert thin(points[:50], 100) == points[:50]


def test_a_step_signal_becomes_runs_and_the_gate_off_accept_is_shaded() -> None:
    gate = [(0, 0), (10, 0), (20, 1), (21, 2), (40, 0), (50, 0)]
    assert segments(gate, 60) == [(0, 20, 0), (20, 21, 1), (21, 40, 2), (40, 60, 0)]
    assert diverted_windows(gate, 60) == [
        Window(20, 21, "diverted"),
        Window(21, 40, "diverted"),
    ]


def test_accepted_quarantines_are_read_from_their_audit_window() -> None:
    record = {
        "kind": "audit", "action": "quarantine", "accepted": True, "source": "twin",
        "new": "2026-12-01T09:00:00.000Z/2026-12-01T09:01:00.500Z",
    }  # fmt: skip
    refused = {**record, "accepted": False}
    receipt = {**record, "source": "edge"}
    garbled = {**record, "new": "no window"}
    windows = quarantine_windows([record, refused, receipt, garbled])
    start = parse_instant("2026-12-01T09:00:00", "t")
    assert windows == [Window(start, start + 60_500_000_000, "quarantined")]


def test_faults_pair_each_raise_with_its_clear() -> None:
    rows = [
        {"kind": "fault", "action": "fault_raised", "target": "bridging@api_feeder",
         "time": 10 * 10**9, "new": 0.8},
        {"kind": "alarm", "action": "raise", "target": "bridging", "time": 12 * 10**9},
        {"kind": "fault", "action": "fault_cleared", "target": "bridging@api_feeder",
         "time": 70 * 10**9},
        {"kind": "fault", "action": "fault_raised", "target": "nir_bias@nir",
         "time": 80 * 10**9, "new": "x"},
    ]  # fmt: skip
    assert faults(rows) == [
        StoredFault("bridging", "api_feeder", 10.0, 70.0, 0.8),
        StoredFault("nir_bias", "nir", 80.0, None, None),
    ]


def test_completeness_counts_numbers_of_samples_timed_outside_the_window_apart() -> None:
    c = Completeness({"a.b": 7}, stored=8, unique=7, first_seq=1, last_seq=10, outside=2)
    assert (c.published, c.lost, c.duplicates) == (8, 1, 1)
    empty = Completeness({}, 0, 0, None, None)
    assert (empty.published, empty.lost) == (0, 0)


def test_without_influxd_the_demo_says_how_to_get_it() -> None:
    assert "apt-get install -y influxdb" in influx_hint()
