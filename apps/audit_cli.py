"""`plant audit verify`: walk a site's stored audit trail in InfluxDB and report its first break.

Reads the records the historian stored (measurement `events`, kind `audit`; see
bridge/historian/README.md) with InfluxQL over InfluxDB's /query API (InfluxDB 1.x, and 2.x
through its 1.x compatibility API with a token), rebuilds each record's hash from its stored
fields and checks the chain (`core.audit_chain.verify_chain`). Exit 0 when intact, 1 at the
first break (one line saying where and how), 2 when the trail cannot be read.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.console import Console

from bridge.historian.influxql import InfluxQueryError, SettingsError, historian_influx, query_rows
from core.audit_chain import ChainBreakError, StoredRecord, verify_chain
from core.topics import AUDIT_SOURCES

app = typer.Typer(help="The audit trail: verify its hash chain.", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # an error stays one line

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")  # as the historian's tag values


STRING_FIELDS = ("user", "action", "target", "old", "new", "reason", "result", "prev_hash")


class ReadError(Exception):
    """The stored trail could not be read; the message says why."""


def query_records(
    url: str, db: str, site: str, source: str, token: str = "", timeout_s: float = 30.0
) -> list[StoredRecord]:
    """The stored audit records of one site and source."""
    for value, what in ((site, "site"), (source, "source")):
        if not _IDENTIFIER.fullmatch(value):
            raise ReadError(f"{what} {value!r} is not an identifier")
    # Every column with its type: a field key written with another type in another shard
    # (anyone with write access to InfluxDB can) would otherwise make `SELECT *` pick that
    # type and return this record's value as null, which would read as an edit.
    columns = ", ".join(
        [f'"{name}"::tag' for name in ("hash", "log")]
        + [f'"{name}"::string' for name in STRING_FIELDS]
        + ['"seq"::integer', '"accepted"::boolean']
    )
    q = (
        f'SELECT {columns} FROM "events" WHERE "kind"=\'audit\' '
        f"AND \"site\"='{site}' AND \"source\"='{source}'"
    )
    try:
        rows = query_rows(url, db, q, token=token, timeout_s=timeout_s)
    except InfluxQueryError as error:
        raise ReadError(str(error)) from None
    try:
        return [_record(row) for row in rows]
    except (KeyError, TypeError, ValueError) as error:
        raise ReadError(f"a stored audit record is malformed: {error!r}") from None


def _record(row: dict[str, Any]) -> StoredRecord:
    def text(key: str) -> str:
        value = row.get(key)
        return "" if value is None else str(value)

    return StoredRecord(
        log=text("log"),
        seq=int(row["seq"]),
        time_ns=int(row["time"]),
        prev_hash=text("prev_hash"),
        hash=text("hash"),
        user=text("user"),
        action=text("action"),
        target=text("target"),
        old=row.get("old"),
        new=row.get("new"),
        reason=text("reason"),
        accepted=bool(row.get("accepted")),
        result=text("result"),
    )


@app.command()
def verify(
    site: Annotated[str, typer.Option(help="The site whose trail is checked.")],
    source: Annotated[
        str, typer.Option(help=f"Whose trail: {' | '.join(AUDIT_SOURCES)}.")
    ] = "twin",
    url: Annotated[
        str | None,
        typer.Option(help="InfluxDB's URL (default: the historian's PLANT_HISTORIAN_INFLUX_URL)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(help="Database or bucket (default: PLANT_HISTORIAN_INFLUX_BUCKET)."),
    ] = None,
) -> None:
    """Walk the stored audit trail of a site in sequence order; exit 1 at its first break."""
    if source not in AUDIT_SOURCES:
        err.print(f"error: --source must be one of {', '.join(AUDIT_SOURCES)}, not {source!r}")
        raise typer.Exit(2)
    try:
        url, db, token = historian_influx(url, db)
    except SettingsError as error:
        err.print(f"error: {error}")
        raise typer.Exit(2) from None
    try:
        records = query_records(url, db, site, source, token)
    except ReadError as error:
        err.print(f"error: {error}")
        raise typer.Exit(2) from None
    name = f"{site}/{source}"
    if not records:
        err.print(f"audit trail of {name}: no records stored in {db!r}")
        raise typer.Exit(1)
    try:
        count, logs = verify_chain(records)
    except ChainBreakError as error:
        err.print(f"audit trail of {name} broken at {error}")
        raise typer.Exit(1) from None
    seqs = [r.seq for r in records]
    console.print(
        f"audit trail of {name} intact: {count} records in {logs} log(s), "
        f"seq {min(seqs)}..{max(seqs)}"
    )
