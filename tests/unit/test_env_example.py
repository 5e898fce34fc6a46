"""`.env.example` is current and names every setting of every service."""

from __future__ import annotations

import re

from pydantic_settings import BaseSettings

from apps.env_example import ROOT, render
from apps.fault_cli import FaultCliSettings
from bridge.edge.settings import EdgeSettings
from bridge.historian.settings import HistorianSettings
from controller.settings import ControllerSettings
from opcua_server.settings import OpcUaSettings

KEY = re.compile(r"^([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def test_env_example_is_generated_from_the_service_examples() -> None:
    assert (ROOT / ".env.example").read_text(encoding="utf-8") == render(), (
        "run: python -m apps.env_example"
    )


def test_every_settings_field_is_documented() -> None:
    keys = set(KEY.findall(render()))
    classes: list[type[BaseSettings]] = [
        OpcUaSettings,
        EdgeSettings,
        HistorianSettings,
        ControllerSettings,
        FaultCliSettings,
    ]
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name in cls.model_fields:
            assert f"{prefix}{name}".upper() in keys, f"{prefix}{name.upper()} undocumented"


def test_no_key_is_set_twice() -> None:
    """A copy of the file as .env must mean one thing: with a key twice, the last one wins."""
    keys = KEY.findall(render())
    assert sorted({k for k in keys if keys.count(k) > 1}) == []


def test_the_stacks_variables_are_its_own() -> None:
    """docker-compose.yml reads only PLANT_STACK_* and PLANT_SECRET_* from .env, and compose's
    own COMPOSE_PROFILES (the central tier's switch): no name a service reads as a setting
    (PLANT_OPCUA_PORT set for the compose port once overrode the twin's own port)."""
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", compose))
    ours = {name for name in read if name != "COMPOSE_PROFILES"}
    assert ours and all(name.startswith(("PLANT_STACK_", "PLANT_SECRET_")) for name in ours), (
        sorted(read)
    )
    stack_example = (ROOT / "deploy" / "stack.env.example").read_text(encoding="utf-8")
    assert set(KEY.findall(stack_example)) == read  # every one documented, nothing else
