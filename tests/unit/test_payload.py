"""core.payload and bridge.metrics decoders: hostile input is a PayloadError, never a crash.

Every decoder the services use (the edge decodes commands, the controller batches and
replies, the historian batches, events and metrics) is given each kind of bad input: a number
of hundreds of digits, deep nesting, NaN and Infinity, duplicate keys, invalid UTF-8, a lone
surrogate. Each must raise `PayloadError` (and only that), while valid payloads decode as
before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import pytest

from bridge.historian.points import convert
from bridge.metrics import Metrics, decode_metrics, encode_metrics
from core import topics
from core.audit_chain import AuditChain
from core.payload import (
    CommandReply,
    CommandRequest,
    Event,
    PayloadError,
    Sample,
    TelemetryBatch,
    decode_batch,
    decode_command,
    decode_event,
    decode_reply,
    decoder,
    encode_batch,
    encode_command,
    encode_event,
    encode_reply,
    parse_json,
)

NS = 1_700_000_000_000_000_000
SITE = topics.SiteTopics("site1")
HUGE = "9" * 400  # hundreds of digits: float() overflows, int() of more than 4300 raises
DEEP = "[" * 100_000 + "]" * 100_000


def batch_text() -> str:
    sample = Sample("api_feeder.mass_flow_pv", 2.0, "good", NS, NS, 7)
    return encode_batch(TelemetryBatch("site1", "api_feeder", NS, (sample,))).decode()


def event_text() -> str:
    event = Event("site1", "audit", 3, NS, "twin", user="alice", old=1.5)
    return encode_event(AuditChain("log1").seal(event)).decode()


def metrics_text() -> str:
    return encode_metrics(Metrics("edge", "site1", "e1", NS, {"received": 1.0})).decode()


def command_text() -> str:
    request = CommandRequest("fault", action="inject", fault="bridging", magnitude=0.5)
    return encode_command(request).decode()


def reply_text() -> str:
    return encode_reply(CommandReply(True, "accepted", "", NS, detail={"id": 1})).decode()


@dataclass(frozen=True)
class Decoder:
    decode: Callable[[bytes], object]
    valid: Callable[[], str]
    number: str  # a key of the payload holding a number
    text: str  # a key holding a string


DECODERS = {
    "batch": Decoder(decode_batch, batch_text, "sent_ns", "site"),
    "event": Decoder(decode_event, event_text, "seq", "source"),
    "metrics": Decoder(decode_metrics, metrics_text, "time_ns", "instance"),
    "command": Decoder(
        lambda data: decode_command(data, "fault"), command_text, "magnitude", "fault"
    ),
    "reply": Decoder(decode_reply, reply_text, "time_ns", "code"),
    "historian telemetry": Decoder(
        lambda data: convert(SITE.telemetry("api_feeder"), data), batch_text, "sent_ns", "site"
    ),
    "historian event": Decoder(
        lambda data: convert(SITE.audit("twin"), data), event_text, "time_ns", "source"
    ),
    "historian metrics": Decoder(
        lambda data: convert(SITE.metrics("edge"), data), metrics_text, "time_ns", "instance"
    ),
}


def _with(text: str, key: str, raw: str) -> bytes:
    """`text` with the value of `key` replaced by the raw JSON text `raw`."""
    obj = json.loads(text)
    old = f'"{key}":{json.dumps(obj[key], separators=(",", ":"))}'
    assert old in text, (old, text)
    return text.replace(old, f'"{key}":{raw}', 1).encode()


def _text_with(text: str, key: str, insert: bytes, *, end: bool = False) -> bytes:
    """`text` with raw bytes inserted at the start (or end) of the string value of `key`."""
    head, _, tail = text.encode().partition(f'"{key}":"'.encode())
    assert tail, (key, text)
    if end:
        value, _, rest = tail.partition(b'"')
        return head + f'"{key}":"'.encode() + value + insert + b'"' + rest
    return head + f'"{key}":"'.encode() + insert + tail


Hostile = Callable[[str, Decoder], bytes]
HOSTILE: dict[str, Hostile] = {
    "huge integer": lambda t, d: _with(t, d.number, HUGE),
    "huge negative integer": lambda t, d: _with(t, d.number, "-" + HUGE),
    "integer over 64 bits": lambda t, d: _with(t, d.number, str(2**64)),
    "5000 digits": lambda t, d: _with(t, d.number, "1" * 5000),
    "huge float": lambda t, d: _with(t, d.number, HUGE + ".5e10"),
    "float overflow": lambda t, d: _with(t, d.number, "1e400"),
    "NaN": lambda t, d: _with(t, d.number, "NaN"),
    "Infinity": lambda t, d: _with(t, d.number, "Infinity"),
    "-Infinity": lambda t, d: _with(t, d.number, "-Infinity"),
    "deep nesting": lambda t, d: _with(t, d.number, DEEP),
    "deep objects": lambda t, d: _with(t, d.number, '{"a":' * 50_000 + "1" + "}" * 50_000),
    "duplicate key": lambda t, d: t.replace('{"v":1,', '{"v":1,"v":1,', 1).encode(),
    "duplicate nested key": lambda t, d: _with(t, d.number, '{"a":1,"a":2}'),
    "invalid UTF-8": lambda t, d: _text_with(t, d.text, b"\xff"),
    "truncated UTF-8": lambda t, d: _text_with(t, d.text, b"\xe2\x82"),
    "lone surrogate": lambda t, d: _text_with(t, d.text, b"\\ud800"),
    "trailing newline": lambda t, d: _text_with(t, d.text, b"\\n", end=True),
    "UTF-16": lambda t, d: t.encode("utf-16"),
    "byte order mark": lambda t, d: b"\xef\xbb\xbf" + t.encode(),
    "not an object": lambda t, d: f"[{t}]".encode(),
    "empty": lambda t, d: b"",
    "a bare number": lambda t, d: HUGE.encode(),
}


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("name", DECODERS)
def test_every_decoder_refuses_every_hostile_kind_with_a_payload_error(
    name: str, kind: str
) -> None:
    decoder_ = DECODERS[name]
    text = decoder_.valid()
    decoder_.decode(text.encode())  # the valid payload decodes
    hostile = HOSTILE[kind](text, decoder_)
    if kind == "trailing newline" and not name.startswith("historian"):
        decoder_.decode(hostile)  # any string is a string; the historian's tags are identifiers
        return
    with pytest.raises(PayloadError) as caught:
        decoder_.decode(hostile)
    assert str(caught.value)  # with a reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"[{HUGE}]", "over 64 bits"),
        (f"[{2**64}]", "over 64 bits"),
        (f"[{-(2**63) - 1}]", "over 64 bits"),
        ("[1e400]", "overflows a double"),
        ("[NaN]", "NaN is not a JSON number"),
        ("[Infinity]", "Infinity is not a JSON number"),
        ("[-Infinity]", "-Infinity is not a JSON number"),
        (DEEP, "nested too deeply"),
        ('{"a":1,"b":{"c":1,"c":2}}', "duplicate key 'c'"),
        ('{"a":"\\udc00"}', "lone surrogate"),
        ('{"\\ud800":1}', "lone surrogate"),
    ],
)
def test_strict_json_says_why(text: str, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_json(text.encode())


def test_strict_json_still_reads_what_json_is() -> None:
    text = '{"a":[1,-2.5e-3,true,null,"\\u00fc\\ud83d\\ude00"],"b":18446744073709551615}'
    assert parse_json(text.encode()) == json.loads(text)
    assert parse_json(f"[{-(2**63)}, 0.1]".encode()) == [-(2**63), 0.1]
    assert parse_json('"ü"'.encode()) == "ü"
    with pytest.raises(PayloadError, match="not UTF-8"):
        parse_json(b'"\xff"')


def test_valid_payloads_decode_as_before() -> None:
    """What the edge and the controller send is read exactly as it was written."""
    batch = TelemetryBatch(
        "site1",
        "nir",
        NS,
        (
            Sample("nir.api_pct", None, "bad", NS, NS + 1, 0),
            Sample("nir.spectrum_ok", False, "uncertain", NS, NS, 1),
            Sample("nir.reading_count", 2**63 - 1, "good", NS, NS, 2),
            Sample("nir.api_pct", -1.25e-300, "good", NS, NS, 3),
        ),
    )
    assert decode_batch(encode_batch(batch)) == batch
    # encode_batch writes a sample's fields one by one (for speed): every field, in order.
    written = json.loads(encode_batch(batch))["samples"][0]
    assert list(written) == [field.name for field in fields(Sample)]
    event = Event("site1", "audit", 2**63 - 1, NS, "edge", reason='ü\n"x"', old="a", new=True)
    assert decode_event(encode_event(event)) == event
    request = CommandRequest("setpoint", tag="press.fill_depth_sp", value=10.5, reason="r")
    assert decode_command(encode_command(request), "setpoint") == request
    reply = CommandReply(False, "range", "too deep", NS, detail=[{"id": 1, "x": [1.5, None]}])
    assert decode_reply(encode_reply(reply)) == reply
    metrics = Metrics("edge", "site1", "e1", NS, {"received": 3.0, "lag_ms": 1.5})
    assert decode_metrics(encode_metrics(metrics)) == metrics


def test_a_metric_name_with_a_trailing_newline_is_refused() -> None:
    obj: dict[str, Any] = json.loads(metrics_text())
    obj["values"] = {"received\n": 1}
    with pytest.raises(PayloadError, match="not a metric name"):
        decode_metrics(json.dumps(obj).encode())


def test_the_decoder_wrapper_turns_any_bad_input_error_into_a_payload_error() -> None:
    @decoder
    def fragile(data: bytes) -> object:
        return {"a": 1}[data.decode()]  # KeyError on anything but "a"

    assert fragile(b"a") == 1
    with pytest.raises(PayloadError, match="cannot decode: KeyError: 'b'"):
        fragile(b"b")

    @decoder
    def buggy(data: bytes) -> object:
        raise AssertionError("a bug, not bad input")

    with pytest.raises(AssertionError):
        buggy(b"")  # not swallowed: a bug is not the payload's fault
