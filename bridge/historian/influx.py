"""The InfluxDB sink: line protocol through influxdb-client's synchronous v2 write API.

It works with InfluxDB 2.x and 3.x, and 1.8+ (bucket "db/rp"); 1.x's own API is
influx_v1.py's, and influx_api.py chooses between them. 429 and 5xx are retryable,
other 4xx reject the batch (as Telegraf's InfluxDB v2 output does); 400, 413 and 422 reject it
`per_item`, so that the runner splits it and dead-letters only the lines at fault.
`check_write_access` is the healthcheck's one authenticated call, made with the historian's own
client and settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from bridge.sink import RejectedError, RetryableError


class AccessError(Exception):
    """InfluxDB would not take the historian's writes, or could not be asked; says why."""


class InfluxSink:
    """Writes line protocol through influxdb-client's synchronous v2 write API."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        timeout_s: float = 10.0,
        gzip: bool = False,
    ) -> None:
        # retries=False: urllib3 must not retry behind our back; the runner does it, counted.
        self._client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=int(timeout_s * 1000),
            enable_gzip=gzip,
            retries=False,
        )
        self._api: WriteApi = self._client.write_api(write_options=SYNCHRONOUS)
        self._url = url
        self._bucket = bucket
        self._org = org

    def write(self, lines: Sequence[bytes]) -> None:
        """Write one batch; raise `RetryableError` or `RejectedError`."""
        body = b"\n".join(lines)
        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record=body,
                # The constants of WritePrecision are typed str, its parameter WritePrecision.
                write_precision=cast(WritePrecision, WritePrecision.NS),
            )
        except ApiException as error:
            status = int(error.status or 0)
            detail = _body(error)
            if status == 429 or status >= 500 or status == 0:
                raise RetryableError(
                    f"HTTP {status}: {detail}", retry_after(error.headers)
                ) from None
            # 400 (a line does not parse, or 1.x's partial write), 413 (too large) and 422
            # (e.g. outside retention) are about lines: the runner splits the batch to find
            # them. Another 4xx is about the request, the same for any part of the batch.
            per_item = status in (400, 413, 422)
            raise RejectedError(f"HTTP {status}: {detail}", per_item=per_item) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # Connection refused or reset, DNS failure, timeout: the server is not there.
            raise RetryableError(f"{type(error).__name__}: {error}") from None

    def check_write_access(self) -> None:
        """Write nothing, as the historian writes: proves the token may write to the bucket.

        One POST /api/v2/write with an empty body, through the same client, URL, token, org
        and bucket as the batches. It needs nothing but write permission on the bucket (all
        the stack's historian token has). InfluxDB 2.x checks, in this order, the token (401
        "unauthorized access"), the org and bucket (404), the token's write permission on the
        bucket (403 "insufficient permissions for write"), and only then reads the body
        (http/write_handler.go, handleWrite). An empty body is then answered 204 since 2.0.9
        and 2.1.0 (influxdata/influxdb#22573 "Empty write requests should be OK", fixed by
        PR #22574 and its 2.0 backport #22578); earlier 2.0 releases answered 400 "writing
        requires points" (http/points/points_parser.go), which proves the token just as well.
        InfluxDB 1.x answers 204 too (measured on 1.6.7).

        Raises `AccessError` saying why the historian's writes would fail.
        """
        where = f"InfluxDB {self._url}"
        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record=b"",
                write_precision=cast(WritePrecision, WritePrecision.NS),
            )
        except ApiException as error:
            status = int(error.status or 0)
            detail = _message(error)
            if status == 400 and "writing requires points" in detail:
                return  # InfluxDB 2.0.0 to 2.0.8: authenticated, only the body refused
            if status in (401, 403):
                raise AccessError(f"{where} refused the token (HTTP {status}: {detail})") from None
            if status == 404:
                raise AccessError(
                    f"{where} has no org {self._org!r} or bucket {self._bucket!r}"
                    f" (HTTP 404: {detail})"
                ) from None
            raise AccessError(f"{where} answered HTTP {status}: {detail}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise AccessError(f"{where} unreachable: {type(error).__name__}: {error}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _body(error: ApiException) -> str:
    raw = error.body
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or error.reason)
    return text.strip()[:500]


def _message(error: ApiException) -> str:
    """The server's own words: `message` (2.x) or `error` (1.x) of a JSON body, else the body."""
    text = _body(error)
    try:
        body = json.loads(text)
    except ValueError:
        return text
    found = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return str(found) if found else text


def retry_after(headers: object) -> float | None:
    """The server's Retry-After in seconds, if it sent one we can read."""
    getter = getattr(headers, "get", None)
    value = getter("Retry-After") if getter else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff
