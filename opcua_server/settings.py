"""The OPC UA server's settings: one class, read from `PLANT_OPCUA_*` environment variables.

Only the command-line entry point builds it from the environment; everything below takes the
validated object. Every key is listed with its default in `settings.env.example`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OpcUaSettings(BaseSettings):
    """How to run the twin behind an OPC UA server."""

    model_config = SettingsConfigDict(
        env_prefix="PLANT_OPCUA_", extra="forbid", env_ignore_empty=True
    )

    host: str = "0.0.0.0"  # a server in a container listens on every interface
    port: int = Field(default=4840, ge=0, le=65535)  # 0 picks a free port (tests)
    hostname: str | None = None  # name put in endpoint URLs and the certificate; None: host
    namespace_uri: str = "urn:pcmm-twin:opcua"
    server_name: str = "PCMM twin OPC UA server"

    site_id: str = Field(default="site1", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    seed: int = 0
    layout: str | None = None  # layout file or shipped layout name; None: the default pod
    variation: float = Field(default=0.0, ge=0.0, lt=0.5)
    warm_start: bool = True  # begin in steady production instead of idle

    speed: float = Field(default=1.0, gt=0.0, le=10_000.0)  # plant seconds per wall second
    publish_period_s: float = Field(default=0.1, gt=0.0, le=60.0)  # wall s between publications
    start_utc: datetime | None = None  # UTC time of plant time 0; None: when the server starts
    # A Good tag not updated for this many of its module's update periods turns Uncertain.
    stale_periods: float = Field(default=3.0, gt=0.0)

    cert_dir: Path = Path("opcua-pki")
    allow_insecure: bool = False  # also offer the unsecured endpoint (development only)
    allow_anonymous: bool = True  # anonymous sessions may read, never write or call
    # TOML: [users.NAME] role = "operator"|"viewer"|"gateway", password_hash = "scrypt$..."
    users_file: Path | None = None

    history_window_s: float = Field(default=900.0, gt=0.0)  # plant s of history kept per tag
    history_max_samples: int = Field(default=20_000, ge=10)  # hard cap per tag

    # Advertised in ServerCapabilities/OperationLimits (asyncua advertises 10,000 and enforces
    # nothing): the edge creates its monitored items this many per request. Creating 1,000 at
    # once held the event loop for 0.3-3.7 s on a shared two-core machine (issue 17).
    max_monitored_items_per_call: int = Field(default=500, ge=1, le=100_000)

    extra_tags: int = Field(default=0, ge=0, le=1_000_000)  # synthetic load-test tags (bench)
    extra_tags_hz: float = Field(default=0.0, ge=0.0, le=1000.0)  # their rate; 0: every tick

    @field_validator("start_utc")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start_utc needs a time zone, e.g. 2025-01-01T00:00:00Z")
        return value

    @property
    def endpoint_host(self) -> str:
        """The host name clients use to reach the server."""
        if self.hostname:
            return self.hostname
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
