"""What a benchmark ran with: every service setting that differs from the shipped default.

Benchmarks measure the product as shipped (issue 17): each service gets its settings class's
defaults unless a flag of the benchmark overrides one, and the result names every setting that
differs. Plumbing (where a service listens or connects, its credentials, paths and names) is
left out: it says where, not how.
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings

#: Fields that say where, not how: never reported.
PLUMBING = frozenset(
    {
        "host",
        "port",
        "hostname",
        "cert_dir",
        "users_file",
        "allow_insecure",
        "site",
        "site_id",
        "opcua_url",
        "opcua_namespace_uri",
        "opcua_user",
        "opcua_password",
        "mqtt_host",
        "mqtt_port",
        "mqtt_username",
        "mqtt_password",
        "mqtt_client_id",
        "influx_url",
        "influx_token",
        "influx_org",
        "influx_bucket",
        "spool_path",
        "deadletter_path",
        "log_level",
    }
)


def differing(settings: BaseSettings) -> dict[str, dict[str, Any]]:
    """Each non-plumbing field whose value is not its class default: {name: {value, default}}."""
    out: dict[str, dict[str, Any]] = {}
    for name, info in type(settings).model_fields.items():
        if name in PLUMBING:
            continue
        value = getattr(settings, name)
        default = info.get_default(call_default_factory=True)
        if value != default:
            out[name] = {"value": _plain(value), "default": _plain(default)}
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return str(value)
