"""The historian's settings: one class, read from PLANT_HISTORIAN_* environment variables.

`settings.env.example` beside this file lists every key with its default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.historian.takeover import Peer, parse_peers

#: The outage of the historian (or of its link to the broker) that is replayed with nothing
#: lost: the default session expiry, and what the broker's queue is sized for.
REPLAYABLE_OUTAGE_S = 12 * 3600
#: The stack's traffic to the historian, for that sizing: two sites at speed 1 (measured: the
#: twin's tag updates cut into one batch per module per second and encoded as the edge does,
#: telemetry and ground truth, are 7.1 messages and 8.7 kB a second per site), times 1.4 for
#: batches split across publish responses, events and self-metrics.
PLANNED_MESSAGES_PER_S = 20.0
PLANNED_BYTES_PER_S = 24_400.0


class HistorianSettings(BaseSettings):
    """MQTT in, InfluxDB out, and the disk spool between them."""

    model_config = SettingsConfigDict(env_prefix="PLANT_HISTORIAN_", extra="forbid")

    # MQTT (the broker's `historian` user; see deploy/mosquitto).
    mqtt_host: str = "localhost"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str = "historian"
    mqtt_password: SecretStr = SecretStr("")
    mqtt_client_id: str = Field(default="historian-1", min_length=1, max_length=64)
    mqtt_tls: bool = False  # TLS, also on when mqtt_tls_ca is set
    mqtt_tls_ca: Path | None = None  # CA bundle for TLS; None: the system's
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    # How long the broker keeps the session (subscriptions, queued messages) while the
    # historian is away: the outage it can replay. The broker's queue holds that long at the
    # planned rate (PLANNED_*, deploy/mosquitto/mosquitto.conf) and drops new messages after;
    # a longer session would hold the broker's memory and, in a shared group, keep taking a
    # share of the stream for a historian that is not there (README.md).
    mqtt_session_expiry_s: int = Field(default=REPLAYABLE_OUTAGE_S, ge=60)
    # Shared subscription group ($share/<group>/...): several historians split the stream.
    # "" subscribes without $share (one historian): see README.md on broker restarts.
    mqtt_share_group: str = "historian"
    # With a share group: a second session with plain subscriptions that keeps what arrives
    # while the group's subscription may be missing (after a broker restart: Mosquitto 2.0
    # does not restore shared subscriptions). It receives the whole stream and drops it
    # otherwise: one more delivery per message from the broker. coverage.py says why.
    mqtt_witness: bool = True
    # The witness's session expiry: how long the broker keeps queueing the whole stream for it
    # while the historian is away. It only has to outlast a broker restart (the historians
    # come back within seconds); a longer one would queue every absence twice (the main
    # session holds the historian's share already) and replay it twice on return.
    mqtt_witness_session_expiry_s: int = Field(default=300, ge=10)
    mqtt_receive_maximum: int = Field(default=1000, ge=1, le=65535)  # unacked messages in flight
    # The takeover (takeover.py): the other historians of the share group whose session this
    # one drains and ends when they die for good, as "<client id>@<site id>, ..." (their
    # MQTT_CLIENT_ID and SITE_ID: the session to take and the status topic to watch). A list,
    # not a convention: client ids and site ids are named freely (compose: historian-central-1
    # and central-1), and a list says who watches whom. Empty: no takeover (a dead
    # historian's share waits on the broker until its session expires).
    takeover_peers: str = ""
    # How long a peer stays offline before it is taken over: time for its supervisor to
    # restart it (Docker's restart policy: seconds), which then drains its own session. A
    # peer back within this is left alone; one back after is not harmed (takeover.py).
    takeover_grace_s: float = Field(default=30.0, ge=0)

    # InfluxDB. `influx_api`: "v2" (/api/v2/write: 2.x, 3.x, 1.8+), "v1" (1.x's /write), or
    # "auto": the version the server reports on /ping decides (influx_api.py).
    influx_api: Literal["auto", "v1", "v2"] = "auto"
    influx_url: str = "http://localhost:8086"
    influx_token: SecretStr = SecretStr("")
    influx_org: str = "pcmm"  # v2 only
    influx_bucket: str = Field(default="pcmm", min_length=1)  # v1: the database, "db" or "db/rp"
    # v1 with authentication on: the user (HTTP Basic); empty: the token, if any, is sent.
    influx_username: str = ""
    influx_password: SecretStr = SecretStr("")
    influx_timeout_s: float = Field(default=10.0, gt=0)
    influx_gzip: bool = False

    # Spool and delivery.
    spool_path: Path = Path("historian.spool.sqlite")
    spool_max_items: int = Field(default=2_000_000, ge=1)
    spool_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    spool_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    # Dead letters, whole (SQLite; None: beside the spool, <spool name>.deadletters.sqlite),
    # and the bytes kept at most (the oldest go first, counted in `deadletters_dropped`).
    deadletter_path: Path | None = None
    deadletter_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # A group of received messages is committed when the sender's burst is over, or at the
    # latest this long after its first message.
    commit_interval_s: float = Field(default=0.02, gt=0, le=5)
    batch_size: int = Field(default=5000, ge=1, le=100_000)  # points per InfluxDB write
    # Write as soon as a burst of messages is committed to the spool (the broker had nothing
    # more to send), instead of waiting for the interval: points are queryable about 60 ms
    # after the edge sends them, and under load the writes batch by themselves (what arrives
    # during a write goes in the next). Measured in issue 17: docs/scaling.md.
    flush_on_burst: bool = True
    # A partial batch is written once its oldest point has waited this long (a full one at
    # once): with flush_on_burst, only for points that come without a burst (self-metrics).
    flush_interval_s: float = Field(default=1.0, gt=0)
    flush_jitter_s: float = Field(default=0.2, ge=0)  # plus up to this, so historians do not align
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)

    # Self-metrics, status and logs.
    # The site level of the historian's own topics (status, metrics).
    site_id: str = Field(default="central", min_length=1)
    metrics_period_s: float = Field(default=10.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def deadletters(self) -> Path:
        """Where the dead letters are kept."""
        return self.deadletter_path or self.spool_path.with_suffix(".deadletters.sqlite")

    @property
    def peers(self) -> tuple[Peer, ...]:
        """The historians this one takes over (`takeover_peers`)."""
        return parse_peers(self.takeover_peers)

    @field_validator("mqtt_tls_ca", "deadletter_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value  # KEY= in an env file means "not set"

    @model_validator(mode="after")
    def _check(self) -> HistorianSettings:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be at least retry_initial_s")
        if not self.influx_url.startswith(("http://", "https://")):
            raise ValueError("influx_url must start with http:// or https://")
        peers = parse_peers(self.takeover_peers)  # ValueError: the entry that is wrong
        if peers and not self.mqtt_share_group:
            raise ValueError("takeover_peers needs a share group (mqtt_share_group)")
        if any(p.client_id == self.mqtt_client_id for p in peers):
            raise ValueError("takeover_peers names this historian's own client id")
        return self
