"""The InfluxDB 1.x sink: line protocol through 1.x's own HTTP write API, `/write?db=&rp=`.

InfluxDB 1.0-1.7 have no `/api/v2/write` (Debian bookworm ships 1.6.7), so influxdb-client
cannot write to them; their `/write` takes the same line protocol, so this sink is the v2
sink's twin over plain urllib3: same batches, same answers mapped to the same errors (429 and
5xx retryable; 400, 413 and 422 rejected `per_item`; another 4xx rejected whole), so the
runner's retry, split and dead-letter path is the same. The bucket setting names the database
as InfluxDB 1.8's v2 compatibility does: "db" or "db/rp". Authentication, when the server has
it on: a user and password (HTTP Basic, which 1.x accepts on every endpoint), or a token sent
as `Authorization: Token ...` (1.8+ reads "user:password" there).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Sequence

import urllib3

from bridge.historian.influx import AccessError, retry_after
from bridge.sink import RejectedError, RetryableError


def split_bucket(bucket: str) -> tuple[str, str]:
    """ "db/rp" -> ("db", "rp"); "db" -> ("db", "") (the database's default policy)."""
    database, _, policy = bucket.partition("/")
    return database, policy


class InfluxV1Sink:
    """Writes line protocol (ns) to InfluxDB 1.x's `/write`."""

    def __init__(
        self,
        url: str,
        bucket: str,
        *,
        username: str = "",
        password: str = "",
        token: str = "",
        timeout_s: float = 10.0,
        gzip: bool = False,
    ) -> None:
        database, policy = split_bucket(bucket)
        query = {"db": database, "precision": "n"}  # 1.x's word for nanoseconds
        if policy:
            query["rp"] = policy
        self._url = url.rstrip("/")
        self._write_url = f"{self._url}/write?{urllib.parse.urlencode(query)}"
        self._database = database
        self._gzip = gzip
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username:
            pair = f"{username}:{password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif token:
            self._headers["Authorization"] = f"Token {token}"
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        # retries=False: urllib3 must not retry behind our back; the runner does it, counted.
        self._http = urllib3.PoolManager(
            retries=False,
            timeout=urllib3.Timeout(total=timeout_s),
        )

    def _post(self, body: bytes) -> urllib3.BaseHTTPResponse:
        if self._gzip and body:
            import gzip  # noqa: PLC0415 (only when asked for)

            body = gzip.compress(body)
        return self._http.request("POST", self._write_url, body=body, headers=self._headers)

    def write(self, lines: Sequence[bytes]) -> None:
        """Write one batch; raise `RetryableError` or `RejectedError`."""
        try:
            reply = self._post(b"\n".join(lines))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # Connection refused or reset, DNS failure, timeout: the server is not there.
            raise RetryableError(f"{type(error).__name__}: {error}") from None
        status = reply.status
        if status < 300:
            return
        detail = _message(reply.data)
        if status == 429 or status >= 500:
            raise RetryableError(f"HTTP {status}: {detail}", retry_after(reply.headers))
        # 400: a line does not parse, a field changes type, or "partial write" (1.x wrote the
        # other lines: writing them again is idempotent); 413: too large. Another 4xx (401,
        # 403, 404 "database not found") is about the request, whatever the lines.
        raise RejectedError(f"HTTP {status}: {detail}", per_item=status in (400, 413, 422))

    def check_write_access(self) -> None:
        """Write nothing, as the historian writes: proves the database takes our writes.

        One POST /write with an empty body: InfluxDB 1.x checks the user (401), the
        database (404 "database not found") and the user's write privilege on it (403)
        before it reads the body, then answers an empty body 204 (measured on 1.6.7).
        Raises `AccessError` saying why the historian's writes would fail.
        """
        where = f"InfluxDB {self._url}"
        try:
            reply = self._post(b"")
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise AccessError(f"{where} unreachable: {type(error).__name__}: {error}") from None
        status = reply.status
        if status < 300:
            return
        detail = _message(reply.data)
        if status in (401, 403):
            raise AccessError(f"{where} refused the credentials (HTTP {status}: {detail})")
        if status == 404:
            raise AccessError(f"{where} has no database {self._database!r} (HTTP 404: {detail})")
        raise AccessError(f"{where} answered HTTP {status}: {detail}")

    def close(self) -> None:
        self._http.clear()


def _message(data: bytes) -> str:
    """1.x's own words: the `error` of its JSON body, else the body."""
    text = data.decode(errors="replace").strip()[:500]
    try:
        body = json.loads(text)
    except ValueError:
        return text
    found = body.get("error") if isinstance(body, dict) else None
    return str(found) if found else text
