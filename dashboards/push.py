"""Load the dashboards into a running Grafana, and mark fault injections there as annotations.

Uses grafana-client (the optional extra `[grafana]`: it brings urllib3-future, which takes
over the `urllib3` module name, so it stays out of the core install and is imported only here,
when a push is asked for).

Fault injections are read from the historian's `events` measurement with InfluxQL over
InfluxDB's `/query` endpoint (1.x; 2.x through its v1 compatibility API with a token) and
posted as Grafana annotations tagged `pcmm`, `fault`, the site and the fault, which the
generated dashboards show (their built-in annotation query matches the tag `pcmm`). An
annotation already in Grafana (same time and text) is not posted twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.historian.influxql import InfluxQueryError, query_rows
from dashboards.panels import DATASOURCE_UID, JSON

FOLDER_UID = "pcmm"
TAG = "pcmm"
_DURATION = re.compile(r"^[1-9][0-9]*(s|m|h|d|w)$")


class PushError(Exception):
    """Grafana or InfluxDB refused or could not be reached; the message says which and why."""


@dataclass(frozen=True, slots=True)
class FaultMark:
    """One fault event, as a Grafana annotation."""

    time_ms: int
    site: str
    text: str
    fault: str

    @property
    def tags(self) -> list[str]:
        return [TAG, "fault", self.site, self.fault]


def _api(url: str, token: str, timeout_s: float) -> Any:
    try:
        from grafana_client import GrafanaApi  # noqa: PLC0415
    except ImportError:
        raise PushError(
            "grafana-client is not installed: pip install 'pcmm-twin[grafana]'"
        ) from None
    # "user:password" logs in with basic auth; anything else is a service-account token.
    user, colon, password = token.partition(":")
    credential: str | tuple[str, str] = (user, password) if colon else token
    return GrafanaApi.from_url(url, credential=credential, timeout=timeout_s)


def _with_datasource(model: JSON, datasource_uid: str) -> JSON:
    """The model with every reference to the provisioned datasource pointed at another uid."""
    if datasource_uid == DATASOURCE_UID:
        return model
    text = json.dumps(model).replace(f'"uid": "{DATASOURCE_UID}"', f'"uid": "{datasource_uid}"')
    result: JSON = json.loads(text)
    return result


def push_dashboards(
    url: str,
    token: str,
    models: Mapping[str, JSON],
    *,
    folder: str = "PCMM plant",
    datasource_uid: str = DATASOURCE_UID,
    timeout_s: float = 10.0,
) -> list[str]:
    """Create or overwrite every dashboard in `folder` (created when missing); their URLs."""
    api = _api(url, token, timeout_s)
    try:
        try:
            api.folder.get_folder(FOLDER_UID)
        except Exception as error:  # grafana-client raises GrafanaClientError subclasses
            if getattr(error, "status_code", None) != 404:
                raise
            api.folder.create_folder(folder, uid=FOLDER_UID)
        urls = []
        for model in models.values():
            reply = api.dashboard.update_dashboard(
                {
                    "dashboard": {**_with_datasource(model, datasource_uid), "id": None},
                    "folderUid": FOLDER_UID,
                    "overwrite": True,
                    "message": "plant grafana push",
                }
            )
            urls.append(str(reply.get("url", model["uid"])))
        return urls
    except PushError:
        raise
    except Exception as error:
        raise PushError(f"Grafana {url}: {error}") from None


def influx_faults(
    influx_url: str, token: str, database: str, since: str, site: str | None, timeout_s: float
) -> list[FaultMark]:
    """Fault injections, clearances and ends from the events measurement."""
    if not _DURATION.match(since):
        raise PushError(f"--since {since!r} is not a duration such as 30m, 6h or 7d")
    where = '("kind" = \'fault\' OR "action" =~ /fault/)'
    if site:
        where += ' AND "site" = \'' + site.replace("'", "\\'") + "'"
    query = (
        'SELECT "action", "target", "user", "reason", "result", "site" FROM "events" '
        f"WHERE {where} AND time > now() - {since}"
    )
    try:
        rows = query_rows(influx_url, database, query, token=token, epoch="ms", timeout_s=timeout_s)
    except InfluxQueryError as error:
        raise PushError(str(error)) from None
    marks = []
    for row in rows:
        text = f"{row['action']} {row['target']} by {row['user']}"
        if row.get("reason"):
            text += f": {row['reason']}"
        fault = str(row["target"]).partition("@")[0]
        marks.append(FaultMark(int(row["time"]), str(row["site"]), text, fault))
    return marks


def annotate(url: str, token: str, marks: list[FaultMark], timeout_s: float = 10.0) -> int:
    """Post the marks Grafana does not have yet; how many were posted."""
    if not marks:
        return 0
    api = _api(url, token, timeout_s)
    try:
        existing = api.annotations.find_annotations(
            time_from=min(m.time_ms for m in marks),
            time_to=max(m.time_ms for m in marks),
            tags=[TAG, "fault"],
            limit=10_000,
        )
        seen = {(a.get("time"), a.get("text")) for a in existing}
        posted = 0
        for mark in marks:
            if (mark.time_ms, mark.text) in seen:
                continue
            api.annotations.add_annotation(time_from=mark.time_ms, tags=mark.tags, text=mark.text)
            posted += 1
        return posted
    except Exception as error:
        raise PushError(f"Grafana {url}: {error}") from None
