"""The edge gateway's settings: one class, read from PLANT_EDGE_* environment variables.

`settings.env.example` beside this file lists every key with its default. Only the command-line
entry point builds it from the environment; everything below takes the validated object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EdgeSettings(BaseSettings):
    """OPC UA in, MQTT out (and commands back), with a durable outbox between them."""

    model_config = SettingsConfigDict(
        env_prefix="PLANT_EDGE_", extra="forbid", env_ignore_empty=True
    )

    site_id: str = Field(default="site1", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")

    # OPC UA: the twin's server, and the edge's own account on it (role "gateway": the server
    # honours OnBehalfOf, the requester's name, only from a gateway).
    opcua_url: str = "opc.tcp://localhost:4840/pcmm/site1"
    opcua_namespace_uri: str = "urn:pcmm-twin:opcua"
    opcua_security: Literal["None", "Basic256Sha256_SignAndEncrypt"] = "None"
    opcua_cert: Path | None = None  # the edge's client certificate (DER or PEM)
    opcua_key: Path | None = None  # its private key (PEM)
    opcua_server_cert: Path | None = None  # pin the server certificate; None: from discovery
    opcua_user: str = "edge"
    opcua_password: SecretStr = SecretStr("")
    opcua_timeout_s: float = Field(default=10.0, gt=0)
    # Connection probe: asyncua reads ServerState this often and takes an answer later than
    # this for a dead link. As long as a request may take (opcua_timeout_s): at 2 s the probe
    # fired whenever either event loop stalled that long, as at 20,000 tags on a loaded machine
    # (issue 17), and every reconnection (browse, 20,000 monitored items, backfill) made it worse.
    opcua_watchdog_s: float = Field(default=10.0, gt=0)
    sampling_interval_ms: float = Field(default=0.0, ge=0)  # 0: every change the server makes
    publishing_interval_ms: float = Field(default=50.0, gt=0)  # subscription publish period
    queue_size: int = Field(default=1000, ge=1)  # per monitored item, so no sample is overwritten
    deadband: float = Field(default=0.0, ge=0)  # absolute deadband on numeric tags; 0: off
    backfill: bool = True  # after a reconnect, read the gap from OPC UA history
    backfill_max_s: float = Field(default=3600.0, gt=0)  # never read back further than this
    # The pod layout: which tags exist and which are setpoints; None: the default. A setpoint's
    # range is the one the server publishes (EURange), which has the site's own variation.
    layout: str | None = None

    # MQTT (the broker's `edge` user; see deploy/mosquitto).
    mqtt_host: str = "localhost"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str = "edge"
    mqtt_password: SecretStr = SecretStr("")
    mqtt_client_id: str = Field(default="edge-site1", min_length=1, max_length=64)
    mqtt_tls: bool = False  # TLS, also on when mqtt_tls_ca is set
    mqtt_tls_ca: Path | None = None  # CA bundle for TLS; None: the system's
    mqtt_keepalive_s: int = Field(default=15, ge=5, le=3600)
    max_inflight: int = Field(default=1000, ge=1, le=65535)  # QoS 1 messages awaiting PUBACK
    # The largest packet the broker takes, bytes, when its CONNACK does not say (MQTT 5 brokers
    # may state a Maximum Packet Size; Mosquitto does when max_packet_size is set). An outbox
    # row whose PUBLISH is larger is set aside as a dead letter. deploy/mosquitto: 1 MiB.
    mqtt_max_packet_size: int = Field(default=1024 * 1024, ge=1024, le=268_435_460)
    # A broker killed outright loses what it had acknowledged but not yet saved or delivered
    # (Mosquitto saves every autosave_interval, 30 s in deploy/): after a reconnect the edge
    # publishes again what the broker acknowledged in this window. Duplicates are harmless: the
    # historian's writes are idempotent.
    # Replays happen this long after each reconnect: subscribers whose subscriptions the broker
    # did not keep (Mosquitto 2.0 forgets $share ones) get everything once they are back.
    replay_window_s: float = Field(default=90.0, ge=0)
    replay_after_s: tuple[float, ...] = (2.0, 10.0, 30.0)

    # Outbox (the durable spool every message goes through) and batching.
    spool_path: Path = Path("edge.spool.sqlite")
    spool_max_items: int = Field(default=1_000_000, ge=10)
    spool_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    spool_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    # Outbox messages the broker can never take, kept whole with the reason (SQLite; None:
    # beside the outbox, <spool name>.deadletters.sqlite), and the bytes kept at most (the
    # oldest go first, counted in `deadletters_dropped`).
    deadletter_path: Path | None = None
    deadletter_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # Samples are committed after each OPC UA publish response; events, replies and metrics
    # (and samples, should a response be split) wait at most this long.
    batch_interval_s: float = Field(default=0.05, gt=0, le=10)
    metrics_period_s: float = Field(default=5.0, gt=0)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def deadletters(self) -> Path:
        """Where the dead letters are kept."""
        return self.deadletter_path or self.spool_path.with_suffix(".deadletters.sqlite")

    @model_validator(mode="after")
    def _security_needs_certificate(self) -> EdgeSettings:
        if self.opcua_security != "None" and (self.opcua_cert is None or self.opcua_key is None):
            raise ValueError("opcua_security needs opcua_cert and opcua_key")
        return self
