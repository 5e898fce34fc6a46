"""How much text may enter the plant's records, and how text that is too long is shown.

Text reaches the twin, its audit trail and the MQTT events from people and programs: reasons,
user names, tag ids, state names. Every place it enters applies one of two rules:

- a **reason** longer than `MAX_REASON_CHARS` is *refused* with a clear status, never cut: an
  audit record must say what the person wrote (GMP, ALCOA+ "complete"), and a reason cut
  silently would not. A user name a gateway acts for longer than `MAX_NAME_CHARS` is refused
  the same way.
- everything else a record or a reply *shows* (a refused value, a tag id that does not exist,
  the reason of a refused request) is cut to `MAX_FIELD_CHARS` with a marker that says how
  long it was (`clip`), so a refused 10 MB write is still audited, as a bounded record that
  says it was cut.

Pure (standard library only): the twin, the OPC UA server, the edge and the controller share it.
"""

from __future__ import annotations

from typing import Any

MAX_REASON_CHARS = 1000  # longest reason a command may carry (a paragraph); longer: refused
MAX_NAME_CHARS = 256  # longest user name a gateway may act for; longer: refused
#: Longest text of one field of an audit record or a reply; longer is cut, with a marker. At
#: least MAX_REASON_CHARS, so that an accepted reason is never cut.
MAX_FIELD_CHARS = MAX_REASON_CHARS
SHOWN_CHARS = 80  # how much of a refused value an error message quotes


def clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`text`, or its first `limit` characters and a marker saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [cut: {len(text):,} characters]"


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A value as an error message quotes it (`repr`), cut to about `limit` characters.

    Never raises and never builds a huge string first: a long str, bytes or list is cut
    before `repr`, and an integer too long to print is described by its size.
    """
    if isinstance(value, str | bytes | bytearray) and len(value) > limit:
        head = repr(value[:limit])[:limit]  # repr may escape each byte as four characters
        return f"{head}... [cut: {len(value):,} {_unit(value)}]"
    if isinstance(value, list | tuple) and len(value) > limit:
        return f"{repr(value[:limit])[:limit]}... [cut: {len(value):,} items]"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length():,} bits"
    try:
        text = repr(value)
    except Exception:  # an object whose repr fails: say what it is
        return f"a {type(value).__name__}"
    return clip(text, limit)


def _unit(value: str | bytes | bytearray) -> str:
    return "characters" if isinstance(value, str) else "bytes"
