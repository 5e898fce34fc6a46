"""The controller service's settings: one class, read from `PLANT_CONTROLLER_*` variables.

Only the command-line entry point builds it from the environment; everything below takes the
validated object. Every key is listed with its default in `settings.env.example`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ControllerSettings(BaseSettings):
    """How the supervisory controller reaches the broker, and how it behaves there."""

    model_config = SettingsConfigDict(
        env_prefix="PLANT_CONTROLLER_", extra="forbid", env_ignore_empty=True
    )

    site_id: str = Field(default="site1", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    # false: watching only (detects and alarms, sends no command): the baseline of a KPI run
    enabled: bool = True
    # Report each alarm raised or cleared to the plant's alarm conditions (an `alarm` command:
    # the diagnosis then has the operator's lifecycle), also while only watching.
    report_alarms: bool = True
    # follow the retained auto/manual switch on pcmm/v1/<site>/mode/controller
    follow_mode_topic: bool = True

    mqtt_host: str = "localhost"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    # The broker's ACL lets a user publish commands only under its own name, so this name is
    # what the plant's audit trail records as the requester.
    mqtt_username: str = Field(default="controller", pattern=r"^[^/+#$\s]+$")
    mqtt_password: SecretStr = SecretStr("")
    mqtt_tls: bool = False  # TLS, also on when mqtt_tls_ca is set
    mqtt_tls_ca: Path | None = None  # CA bundle for TLS; None: the system's
    mqtt_client_id: str = Field(default="", max_length=64)  # empty: pcmm-controller-<site>
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_connect_timeout_s: float = Field(default=10.0, gt=0.0)
    # reconnection: the first wait after a lost or refused connection, doubled up to the cap
    retry_initial_s: float = Field(default=1.0, gt=0.0)
    retry_max_s: float = Field(default=30.0, gt=0.0)

    # wall seconds without telemetry after which the controller holds (fault 14); telemetry that
    # runs on this long behind what was seen is a restarted plant, followed afresh
    stale_after_s: float = Field(default=10.0, gt=0.0)
    # wall seconds to wait for a command's reply before recording it as unanswered (a gate
    # command is then sent again: it was lost on the way)
    reply_timeout_s: float = Field(default=10.0, gt=0.0)
    # wall seconds to wait for the rest of a burst of batches before deciding on a second
    settle_s: float = Field(default=0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> ControllerSettings:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must not be below retry_initial_s")
        if not self.mqtt_client_id:
            self.mqtt_client_id = f"pcmm-controller-{self.site_id}"
        return self
