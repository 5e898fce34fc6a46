"""bridge.deadletter: dead letters kept whole and durably, announced within the packet limit."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from bridge.deadletter import DeadLetterStore, encode_deadletter, read_deadletters


def test_letters_are_kept_whole_in_order_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    big = b"\xff" + b"x" * 3_000_000  # far over 64 KiB and not UTF-8
    with DeadLetterStore(path) as store:
        ids = store.add_many([("bad", "pcmm/v1/s/a/telemetry", big), ("worse", "t", b"{}")], "h")
        assert ids == sorted(ids) and store.count == 2 and store.waiting == 2
    with DeadLetterStore(path) as store:
        assert (store.count, store.waiting) == (2, 2)
        first, second = store.unpublished(10)
        assert (first.reason, first.topic, first.payload, first.service) == (
            "bad",
            "pcmm/v1/s/a/telemetry",
            big,
            "h",
        )
        assert second.payload == b"{}"
        store.mark_published([first.id, first.id, 999])
        assert store.waiting == 1
        assert [letter.id for letter in store.unpublished(10)] == [second.id]
        assert [letter.id for letter in store.unpublished(10, after_id=second.id)] == []
    # Published or not, every letter stays readable (the store is the record).
    assert [letter.payload for letter in read_deadletters(path)] == [big, b"{}"]
    assert [letter.id for letter in read_deadletters(path, after_id=ids[0])] == [ids[1]]


def test_the_oldest_letters_go_when_the_store_is_full_and_are_counted(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "d.sqlite", max_bytes=1000) as store:
        for i in range(10):
            store.add_many([("r", "t", b"%03d" % i * 100)], "h")  # 301 bytes each
        assert store.count == 3 and store.dropped == 7 and store.waiting == 3
        assert [letter.payload[:3] for letter in store.unpublished(10)] == [b"007", b"008", b"009"]


def test_a_corrupt_store_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    path.write_bytes(b"garbage" * 1000)
    with DeadLetterStore(path) as store:
        assert store.moved_aside == 1
        store.add_many([("r", "t", b"p")], "h")
        assert store.count == 1
    assert len(list(tmp_path.glob("d.sqlite.corrupt-*"))) == 1


def test_an_announcement_is_whole_when_it_fits() -> None:
    payload = ('{"reason": "' + '"\\ü' * 20_000 + '"}').encode()
    letter = json.loads(encode_deadletter("historian", "why", "a/b", payload, letter_id=7))
    assert letter["payload"].encode() == payload and letter["truncated"] is False
    assert (letter["id"], letter["bytes"], letter["reason"], letter["topic"]) == (
        7,
        len(payload),
        "why",
        "a/b",
    )
    binary = bytes(range(256)) * 1000
    letter = json.loads(encode_deadletter("historian", "why", "a/b", binary))
    assert base64.b64decode(letter["payload_b64"]) == binary


@pytest.mark.parametrize(
    "payload",
    [
        b'"' * 2_000_000,  # every byte escaped: the JSON is twice the payload
        b"\x01" * 500_000,  # every byte escaped as \u0001: six times
        b"\xff" * 1_000_000,  # base64
        "ü".encode() * 600_000,  # 1.2 MB of UTF-8 as it is
    ],
)
def test_an_announcement_is_cut_to_the_packet_limit(payload: bytes) -> None:
    limit = 1024 * 1024 - 1024
    data = encode_deadletter("historian", "r" * 5000, "t", payload, max_bytes=limit)
    assert len(data) <= limit
    letter = json.loads(data)
    assert letter["truncated"] is True and letter["bytes"] == len(payload)
    assert len(letter["reason"]) == 1000  # the reason is ours: bounded
    kept = (
        base64.b64decode(letter["payload_b64"])
        if "payload_b64" in letter
        else letter["payload"].encode()
    )
    assert payload.startswith(kept) and len(data) > limit * 0.8  # as much as fits
