"""One InfluxQL query over HTTP (`/query`, which InfluxDB 1.x, 2.x and 3.x all answer): its rows.

Used by the tools that read what the historian stored (`plant audit verify`, `plant grafana
annotate`, `plant kpi --from-influx`, `plant report`); standard library only, so a tool needs
no client library to read. `historian_influx` finds the InfluxDB they read: as given, else the
historian's own settings.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class InfluxQueryError(Exception):
    """The query could not be run or read; the message says why, naming the server."""


class SettingsError(ValueError):
    """The historian's settings, read for their InfluxDB, are not valid; says which."""


def historian_influx(url: str | None, db: str | None) -> tuple[str, str, str]:
    """URL, database and token: those given, the rest from the historian's settings.

    The token is read only from the settings (PLANT_HISTORIAN_INFLUX_TOKEN), never from a
    command line, where any user of the machine could read it.
    """
    if url is not None and db is not None:
        return url, db, ""
    from pydantic import ValidationError  # noqa: PLC0415

    from bridge.historian.settings import HistorianSettings  # noqa: PLC0415

    try:
        settings = HistorianSettings()
    except ValidationError as error:
        first = error.errors()[0]
        raise SettingsError(f"historian settings: {first.get('loc')}: {first.get('msg')}") from None
    return (
        url if url is not None else settings.influx_url,
        db if db is not None else settings.influx_bucket.split("/", 1)[0],
        settings.influx_token.get_secret_value(),
    )


def query_rows(
    url: str, db: str, q: str, *, token: str = "", epoch: str = "ns", timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Every row of every series, its tags and columns in one dict, times in `epoch` units."""
    params = urllib.parse.urlencode({"db": db, "q": q, "epoch": epoch})
    request = urllib.request.Request(f"{url.rstrip('/')}/query?{params}")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            body = json.load(reply)
    except urllib.error.HTTPError as error:
        raise InfluxQueryError(f"InfluxDB at {url} answered {error.code} {error.reason}") from None
    except (OSError, ValueError) as error:
        raise InfluxQueryError(f"cannot read InfluxDB at {url}: {error}") from None
    rows: list[dict[str, Any]] = []
    try:
        for result in body.get("results", []):
            if "error" in result:
                raise InfluxQueryError(f"InfluxQL error: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InfluxQueryError(
            f"InfluxDB at {url}: an answer of unexpected shape: {error!r}"
        ) from None
    return rows
