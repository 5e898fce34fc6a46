"""Which write API the historian uses: InfluxDB 1.x's `/write` or the v2 `/api/v2/write`.

`influx_api` chooses: "v1" (InfluxDB 1.x, `influx_v1.InfluxV1Sink`), "v2" (2.x, 3.x and 1.8+
through influxdb-client, `influx.InfluxSink`), or "auto", which asks the server: every InfluxDB
answers `GET /ping` with its version in the `X-Influxdb-Version` header ("1.6.7", "v2.7.11",
"3.0.1"); 1.x gets the v1 sink, anything else (a server that does not say, too) the v2 one,
which is the API 1.8+, 2.x and 3.x share. Both sinks take the same line protocol and fail
with the same errors, so the runner's retry, spool and dead-letter path does not change.

"auto" asks on the first write, not at start: the historian starts (and spools) while
InfluxDB is down, and a server that does not answer yet is a retryable failure like any
other. The answer is kept for the life of the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import urllib3

from bridge.historian.influx import AccessError, InfluxSink
from bridge.historian.influx_v1 import InfluxV1Sink
from bridge.sink import RetryableError

if TYPE_CHECKING:
    from bridge.historian.settings import HistorianSettings

Api = Literal["v1", "v2"]
VERSION_HEADER = "X-Influxdb-Version"
_log = logging.getLogger("bridge.historian.influx")


class CheckedSink(Protocol):
    """A sink that can also prove, writing nothing, that its writes would be taken."""

    def write(self, lines: Sequence[bytes]) -> None: ...

    def check_write_access(self) -> None: ...

    def close(self) -> None: ...


class VersionError(Exception):
    """The server could not be asked which API it speaks; says why."""


def api_of_version(version: str) -> Api:
    """ "1.6.7" -> v1; "v2.7.11", "3.0.1" or "" (not said) -> v2."""
    return "v1" if version.strip().lstrip("vV").startswith("1.") else "v2"


def detect_api(url: str, timeout_s: float = 5.0) -> tuple[Api, str]:
    """Ask the server (`GET /ping`): its API and the version it reported ("" if none)."""
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=timeout_s))
    try:
        reply = http.request("GET", f"{url.rstrip('/')}/ping")
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise VersionError(f"InfluxDB {url} unreachable: {type(error).__name__}: {error}") from None
    finally:
        http.clear()
    version = reply.headers.get(VERSION_HEADER, "")
    if not version and reply.status >= 300:
        raise VersionError(f"InfluxDB {url} answered /ping with HTTP {reply.status}")
    return api_of_version(version), version


class AutoSink:
    """Asks the server which API it speaks on first use, then writes through that sink."""

    def __init__(self, url: str, make: Callable[[Api], CheckedSink], timeout_s: float) -> None:
        self._url = url
        self._make = make
        self._timeout_s = timeout_s
        self._sink: CheckedSink | None = None
        self.api: Api | None = None

    def _resolved(self) -> CheckedSink:
        if self._sink is None:
            api, version = detect_api(self._url, self._timeout_s)
            _log.info(
                "InfluxDB %s reports version %s: writing through the %s API",
                self._url,
                version or "(none)",
                api,
            )
            self._sink, self.api = self._make(api), api
        return self._sink

    def write(self, lines: Sequence[bytes]) -> None:
        try:
            sink = self._resolved()
        except VersionError as error:
            raise RetryableError(str(error)) from None
        sink.write(lines)

    def check_write_access(self) -> None:
        try:
            sink = self._resolved()
        except VersionError as error:
            raise AccessError(str(error)) from None
        sink.check_write_access()

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


def make_sink(
    api: Literal["auto", "v1", "v2"],
    url: str,
    bucket: str,
    *,
    token: str = "",
    org: str = "",
    username: str = "",
    password: str = "",
    timeout_s: float = 10.0,
    gzip: bool = False,
) -> CheckedSink:
    """The sink for `api`; "auto" asks the server on first use."""

    def make(chosen: Api) -> CheckedSink:
        if chosen == "v1":
            return InfluxV1Sink(
                url,
                bucket,
                username=username,
                password=password,
                token=token,
                timeout_s=timeout_s,
                gzip=gzip,
            )
        return InfluxSink(url, token, org, bucket, timeout_s=timeout_s, gzip=gzip)

    if api == "auto":
        return AutoSink(url, make, timeout_s)
    return make(api)


def sink_from_settings(
    settings: HistorianSettings, *, timeout_s: float | None = None
) -> CheckedSink:
    """The historian's sink; `timeout_s` replaces its write timeout (for a healthcheck)."""
    return make_sink(
        settings.influx_api,
        settings.influx_url,
        settings.influx_bucket,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
        username=settings.influx_username,
        password=settings.influx_password.get_secret_value(),
        timeout_s=settings.influx_timeout_s if timeout_s is None else timeout_s,
        gzip=settings.influx_gzip,
    )
