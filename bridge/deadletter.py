"""Dead letters: what a bridge service could not accept, on `pcmm/v1/deadletter/<service>`.

The payload is JSON, version 1, with the reason and the original bytes (as text when they are
UTF-8, otherwise base64), so that an operator can see why and replay it after a fix:

    {"v": 1, "service": "historian", "reason": "sample 0: quality 'meh' is not one of ...",
     "topic": "pcmm/v1/site1/api_feeder/telemetry", "time_ns": 17..., "payload": "{...}"}
"""

from __future__ import annotations

import base64
import json
import time

VERSION = 1
MAX_PAYLOAD = 64 * 1024  # bytes of the original kept; a dead letter must stay publishable


def encode_deadletter(service: str, reason: str, topic: str, payload: bytes) -> bytes:
    """The dead-letter message for one rejected payload (or batch)."""
    original = payload[:MAX_PAYLOAD]
    obj: dict[str, object] = {
        "v": VERSION,
        "service": service,
        "reason": reason,
        "topic": topic,
        "time_ns": time.time_ns(),
        "truncated": len(payload) > len(original),
    }
    try:
        obj["payload"] = original.decode("utf-8")
    except UnicodeDecodeError:
        obj["payload_b64"] = base64.b64encode(original).decode("ascii")
    return json.dumps(obj, separators=(",", ":")).encode()
