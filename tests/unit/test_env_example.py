"""`.env.example` is current and names every setting of every service."""

from __future__ import annotations

import re

from bridge.edge.settings import EdgeSettings
from bridge.historian.settings import HistorianSettings
from controller.settings import ControllerSettings
from opcua_server.settings import OpcUaSettings
from plant.env_example import ROOT, render
from plant.fault_cli import FaultCliSettings

KEY = re.compile(r"^([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def test_env_example_is_generated_from_the_service_examples() -> None:
    assert (ROOT / ".env.example").read_text(encoding="utf-8") == render(), (
        "run: python -m plant.env_example"
    )


def test_every_settings_field_is_documented() -> None:
    keys = set(KEY.findall(render()))
    classes = [OpcUaSettings, EdgeSettings, HistorianSettings, ControllerSettings, FaultCliSettings]
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name in cls.model_fields:
            assert f"{prefix}{name}".upper() in keys, f"{prefix}{name.upper()} undocumented"
