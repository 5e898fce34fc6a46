"""Registry units -> Grafana unit ids, so panels show what `Tag.unit` says."""

from __future__ import annotations

from core.tags import Unit

# Grafana's built-in unit ids where one means exactly the registry's unit; every other unit is
# shown with its own symbol as a suffix ("suffix:<symbol>"), so nothing is ever mislabelled.
_GRAFANA: dict[str, str] = {
    "kg": "masskg",
    "mg": "massmg",
    "%": "percent",
    "rpm": "rotrpm",
    "s": "s",
    "mm": "lengthmm",
    "A": "amp",
    "°C": "celsius",
    "Pa": "pressurepa",
    "": "none",
}


def grafana_unit(unit: Unit) -> str:
    """The Grafana unit id that displays values of `unit`."""
    return _GRAFANA.get(unit.symbol, f"suffix: {unit.symbol}")
