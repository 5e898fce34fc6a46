"""The InfluxDB sink: line protocol through influxdb-client's synchronous v2 write API.

It works with InfluxDB 2.x and 3.x, and 1.8+ (bucket "db/rp"). 429 and 5xx are retryable,
other 4xx reject the batch (as Telegraf's InfluxDB v2 output does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from bridge.sink import RejectedError, RetryableError


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
                    f"HTTP {status}: {detail}", _retry_after(error.headers)
                ) from None
            raise RejectedError(f"HTTP {status}: {detail}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # Connection refused or reset, DNS failure, timeout: the server is not there.
            raise RetryableError(f"{type(error).__name__}: {error}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _body(error: ApiException) -> str:
    raw = error.body
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or error.reason)
    return text.strip()[:500]


def _retry_after(headers: object) -> float | None:
    getter = getattr(headers, "get", None)
    value = getter("Retry-After") if getter else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff
