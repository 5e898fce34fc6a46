"""The tag registry: one typed definition of every tag the plant exposes.

OPC UA browse paths, MQTT topics, InfluxDB fields and dashboard queries are all derived from
this module; nothing else spells a tag name. Tags are defined per *module type* as templates;
`build_registry` instantiates them for the modules of a concrete pod layout, so a second API
feeder is a second set of feeder tags with its own id, not new code.

This module is pure (standard library only) so that the twin may import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from core.text import shown


class Access(StrEnum):
    """What a tag is, from the plant's point of view."""

    MEASURED = "measured"  # a process value read from an instrument (read-only)
    SETPOINT = "setpoint"  # a target an operator or the controller may write
    STATE = "state"  # a discrete status or counter kept by the equipment (read-only)


class DataType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    ENUM = "enum"  # an int index into Tag.states


class Quality(StrEnum):
    """OPC UA-style quality of a tag value (Good, Uncertain, Bad)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class Unit:
    """An engineering unit: the symbol shown to people and its UNECE Rec. 20 common code."""

    symbol: str
    unece: str
    name: str


KG_PER_H = Unit("kg/h", "E93", "kilogram per hour")
KG = Unit("kg", "KGM", "kilogram")
MG = Unit("mg", "MGM", "milligram")
PERCENT = Unit("%", "P1", "percent")
PERCENT_WW = Unit("% w/w", "P1", "percent by weight")
RPM = Unit("rpm", "M46", "revolution per minute")
SECOND = Unit("s", "SEC", "second")
KILONEWTON = Unit("kN", "B47", "kilonewton")
NEWTON = Unit("N", "NEU", "newton")
MILLIMETRE = Unit("mm", "MMT", "millimetre")
AMPERE = Unit("A", "AMP", "ampere")
CELSIUS = Unit("°C", "CEL", "degree Celsius")
PASCAL = Unit("Pa", "PAL", "pascal")
PER_HOUR = Unit("1/h", "H10", "reciprocal hour")
FEED_FACTOR = Unit("kg/h/%", "E93", "kilogram per hour per percent drive")
ONE = Unit("", "C62", "one")

#: A range bound is a number, or the name of a module parameter that holds it.
Bound = float | str


@dataclass(frozen=True, slots=True)
class TagSpec:
    """A tag template for one module type."""

    name: str
    unit: Unit
    data_type: DataType
    access: Access
    low: Bound
    high: Bound
    description: str
    states: tuple[str, ...] = ()
    ground_truth: bool = False
    limits: tuple[float, float] | None = None  # quality (spec) limits, when the tag has them


@dataclass(frozen=True, slots=True)
class Tag:
    """One tag of one module of one pod."""

    module: str
    module_type: str
    name: str
    unit: Unit
    data_type: DataType
    access: Access
    low: float
    high: float
    description: str
    states: tuple[str, ...] = ()
    ground_truth: bool = False
    limits: tuple[float, float] | None = None  # quality (spec) limits, when the tag has them

    @property
    def id(self) -> str:
        """The tag id used everywhere: `<module>.<name>`."""
        return f"{self.module}.{self.name}"

    @property
    def writable(self) -> bool:
        return self.access is Access.SETPOINT

    def check(self, value: Any) -> tuple[Any, str | None]:
        """Coerce a value written to this tag; return (value, None) or (None, reason)."""
        if self.data_type is DataType.ENUM:
            if isinstance(value, str):
                if value not in self.states:
                    return None, f"{self.id}: {shown(value)} is not one of {', '.join(self.states)}"
                return self.states.index(value), None
            if isinstance(value, bool) or not isinstance(value, int):
                return None, f"{self.id}: expected one of {', '.join(self.states)}"
            if not 0 <= value < len(self.states):
                return (
                    None,
                    f"{self.id}: state index {shown(value)} out of range 0..{len(self.states) - 1}",
                )
            return value, None
        if self.data_type is DataType.BOOL:
            if not isinstance(value, bool):
                return None, f"{self.id}: expected true or false, got {shown(value)}"
            return value, None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"{self.id}: expected a number, got {shown(value)}"
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float: outside every range
            number = math.nan
        if math.isnan(number) or not self.low <= number <= self.high:
            unit = f" {self.unit.symbol}" if self.unit.symbol else ""
            return None, (
                f"{self.id}: {shown(value) if math.isnan(number) else value}{unit} is outside "
                f"the range {self.low:g}..{self.high:g}{unit}"
            )
        return (int(number) if self.data_type is DataType.INT else number), None


M, S, ST = Access.MEASURED, Access.SETPOINT, Access.STATE
F, INT, B, E = DataType.FLOAT, DataType.INT, DataType.BOOL, DataType.ENUM

FEEDER_MODES = ("gravimetric", "volumetric")
DIVERTER_POSITIONS = ("accept", "reject")
DIVERTER_FEEDBACK = ("accept", "moving", "reject")
LINE_STATES = ("idle", "starting", "producing", "diverting", "stopping", "stopped", "faulted")
LINE_COMMANDS = ("start", "stop", "abort", "reset")

BIG = 1e12
SYNTHETIC_PER_MODULE = 100

#: The product's quality limits (shared/domain.md): 400 mg tablets of 40 mg API, 95-105 % of
#: label claim, weight within 5 %, hardness 70-170 N. Dashboards draw them; alarms use them.
PRODUCT_SPEC: dict[str, tuple[float, float]] = {
    "api_pct": (9.5, 10.5),  # % w/w: 95-105 % of the 10 % w/w target blend
    "tablet_weight": (380.0, 420.0),  # mg
    "hardness": (70.0, 170.0),  # N
    "true_api_content": (95.0, 105.0),  # % label claim
}

TEMPLATES: dict[str, tuple[TagSpec, ...]] = {
    "feeder": (
        TagSpec("mass_flow_sp", KG_PER_H, F, S, 0.0, "max_flow_kgh", "Mass flow setpoint"),
        TagSpec(
            "mass_flow_pv",
            KG_PER_H,
            F,
            M,
            0.0,
            "max_flow_kgh",
            "Mass flow from loss in weight (Uncertain while refilling: estimated from drive)",
        ),
        TagSpec("hopper_mass", KG, F, M, 0.0, "hopper_capacity_kg", "Hopper mass from load cells"),
        TagSpec("drive_command", PERCENT, F, M, 0.0, 100.0, "Screw drive command"),
        TagSpec(
            "feed_factor",
            FEED_FACTOR,
            F,
            M,
            0.0,
            "max_flow_kgh",
            "Feed factor the gravimetric controller has learnt (flow per % drive)",
        ),
        TagSpec("mode", ONE, E, ST, 0, 1, "Control mode actually in force", FEEDER_MODES),
        TagSpec(
            "mode_sp",
            ONE,
            E,
            S,
            0,
            1,
            "Requested mode (gravimetric still runs volumetric during refills)",
            FEEDER_MODES,
        ),
        TagSpec("refilling", ONE, B, ST, 0, 1, "Hopper refill in progress"),
        TagSpec("refill_lot", ONE, INT, ST, 0, BIG, "Lot number of the last refill"),
        TagSpec(
            "true_flow",
            KG_PER_H,
            F,
            M,
            0.0,
            "max_flow_kgh",
            "True mass flow leaving the feeder",
            ground_truth=True,
        ),
    ),
    "blender": (
        TagSpec("speed_sp", RPM, F, S, 100.0, 400.0, "Impeller speed setpoint"),
        TagSpec("speed_pv", RPM, F, M, 0.0, 500.0, "Impeller speed"),
        TagSpec("holdup_mass", KG, F, M, 0.0, 5.0, "Powder hold-up in the blender"),
        TagSpec("throughput", KG_PER_H, F, M, 0.0, 60.0, "Mass flow leaving the blender"),
        TagSpec(
            "residence_time",
            SECOND,
            F,
            M,
            0.0,
            3600.0,
            "Mean residence time, hold-up over throughput",
        ),
        TagSpec("motor_current", AMPERE, F, M, 0.0, 30.0, "Impeller motor current"),
        TagSpec(
            "true_api_pct",
            PERCENT_WW,
            F,
            M,
            0.0,
            100.0,
            "True API concentration at the blender outlet",
            ground_truth=True,
        ),
    ),
    "nir": (
        TagSpec(
            "api_pct",
            PERCENT_WW,
            F,
            M,
            0.0,
            100.0,
            "API concentration predicted from the NIR spectrum at the blender outlet",
            limits=PRODUCT_SPEC["api_pct"],
        ),
        TagSpec("spectrum_ok", ONE, B, ST, 0, 1, "Spectrum quality check passed"),
        TagSpec("reading_count", ONE, INT, ST, 0, BIG, "Spectra acquired since start"),
    ),
    "feed_frame": (
        TagSpec(
            "level", KG, F, M, 0.0, "max_level_kg", "Powder in the press hopper and feed frame"
        ),
        TagSpec("speed_sp", RPM, F, S, 10.0, 60.0, "Feed frame paddle speed setpoint"),
        TagSpec("speed_pv", RPM, F, M, 0.0, 80.0, "Feed frame paddle speed"),
    ),
    "press": (
        TagSpec(
            "turret_speed_sp",
            RPM,
            F,
            S,
            "min_turret_rpm",
            "max_turret_rpm",
            "Turret speed setpoint",
        ),
        TagSpec("turret_speed_pv", RPM, F, M, 0.0, 60.0, "Turret speed"),
        TagSpec(
            "fill_depth_sp",
            MILLIMETRE,
            F,
            S,
            "min_fill_depth_mm",
            "max_fill_depth_mm",
            "Fill depth setpoint",
        ),
        TagSpec("fill_depth_pv", MILLIMETRE, F, M, 0.0, 20.0, "Fill depth actuator position"),
        TagSpec(
            "main_gap_sp",
            MILLIMETRE,
            F,
            S,
            2.0,
            6.0,
            "Punch gap at main compression (sets hardness)",
        ),
        TagSpec("main_force", KILONEWTON, F, M, 0.0, 100.0, "Main compression force"),
        TagSpec("pre_force", KILONEWTON, F, M, 0.0, 50.0, "Pre-compression force"),
        TagSpec(
            "tablet_weight",
            MG,
            F,
            M,
            0.0,
            2000.0,
            "Tablet weight (checkweigher)",
            limits=PRODUCT_SPEC["tablet_weight"],
        ),
        TagSpec("thickness", MILLIMETRE, F, M, 0.0, 10.0, "Tablet thickness"),
        TagSpec(
            "hardness",
            NEWTON,
            F,
            M,
            0.0,
            500.0,
            "Tablet breaking force",
            limits=PRODUCT_SPEC["hardness"],
        ),
        TagSpec("production_rate", PER_HOUR, F, M, 0.0, 500_000.0, "Tablets made per hour"),
        TagSpec("tablets_total", ONE, INT, ST, 0, BIG, "Tablets made since start"),
        TagSpec(
            "true_api_content",
            PERCENT,
            F,
            M,
            0.0,
            200.0,
            "True API content of the tablets made now, % of label claim",
            ground_truth=True,
            limits=PRODUCT_SPEC["true_api_content"],
        ),
    ),
    "diverter": (
        TagSpec("position_sp", ONE, E, S, 0, 1, "Commanded gate position", DIVERTER_POSITIONS),
        TagSpec("position_pv", ONE, E, M, 0, 2, "Gate position feedback", DIVERTER_FEEDBACK),
        TagSpec("accepted_count", ONE, INT, ST, 0, BIG, "Tablets sent to accept"),
        TagSpec("diverted_count", ONE, INT, ST, 0, BIG, "Tablets sent to reject"),
        TagSpec("diverted_mass", KG, F, ST, 0.0, BIG, "Mass sent to reject"),
        TagSpec(
            "true_oos_mass", KG, F, M, 0.0, BIG, "True out-of-spec mass made", ground_truth=True
        ),
        TagSpec(
            "true_oos_accepted",
            ONE,
            INT,
            M,
            0,
            BIG,
            "True out-of-spec tablets sent to accept and released (not quarantined)",
            ground_truth=True,
        ),
        TagSpec(
            "true_tablets_quarantined",
            ONE,
            INT,
            M,
            0,
            BIG,
            "Tablets sent to accept, then held back by a quarantine (genealogy)",
            ground_truth=True,
        ),
        TagSpec(
            "true_oos_quarantined",
            ONE,
            INT,
            M,
            0,
            BIG,
            "True out-of-spec tablets among the quarantined ones",
            ground_truth=True,
        ),
    ),
    "environment": (
        TagSpec("temperature", CELSIUS, F, M, -10.0, 50.0, "Pod room temperature"),
        TagSpec("humidity", PERCENT, F, M, 0.0, 100.0, "Pod room relative humidity"),
        TagSpec(
            "diff_pressure", PASCAL, F, M, -100.0, 100.0, "Pod differential pressure to outside"
        ),
    ),
    "line": (
        TagSpec("state", ONE, E, ST, 0, len(LINE_STATES) - 1, "Production state", LINE_STATES),
        TagSpec("active_faults", ONE, INT, ST, 0, 100, "Faults active now"),
        TagSpec("state_changes", ONE, INT, ST, 0, BIG, "State changes since start"),
    ),
    # Load-test tags for benchmarks, not part of any plant: the OPC UA server can add modules
    # of them (`extra_tags`) so that the pipeline carries thousands of samples a second.
    "synthetic": tuple(
        TagSpec(
            f"value_{i:02d}",
            ONE,
            F,
            M,
            0.0,
            1000.0,
            "Synthetic load-test tag (benchmarks only; not part of the plant)",
        )
        for i in range(SYNTHETIC_PER_MODULE)
    ),
}


class ModuleLike(Protocol):
    """What the registry needs to know of a module in a layout."""

    @property
    def id(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def params(self) -> Any: ...


def _bound(bound: Bound, module: ModuleLike) -> float:
    if isinstance(bound, str):
        return float(getattr(module.params, bound))
    return float(bound)


class TagRegistry(Mapping[str, Tag]):
    """Every tag of one pod, by id, in layout order."""

    def __init__(self, tags: Iterable[Tag]) -> None:
        self._tags: dict[str, Tag] = {}
        for tag in tags:
            if tag.id in self._tags:
                raise ValueError(f"duplicate tag {tag.id}")
            self._tags[tag.id] = tag

    def __getitem__(self, tag_id: str) -> Tag:
        return self._tags[tag_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tags)

    def __len__(self) -> int:
        return len(self._tags)

    @property
    def modules(self) -> list[str]:
        return list(dict.fromkeys(tag.module for tag in self._tags.values()))

    def of_module(self, module: str) -> list[Tag]:
        return [tag for tag in self._tags.values() if tag.module == module]

    def plant_tags(self) -> list[Tag]:
        """Tags a real plant would have: everything but the simulation's ground truth."""
        return [tag for tag in self._tags.values() if not tag.ground_truth]

    def truth_tags(self) -> list[Tag]:
        return [tag for tag in self._tags.values() if tag.ground_truth]

    def setpoints(self) -> list[Tag]:
        return [tag for tag in self._tags.values() if tag.access is Access.SETPOINT]


def build_registry(modules: Iterable[ModuleLike]) -> TagRegistry:
    """Instantiate the templates for every module of a layout."""
    tags: list[Tag] = []
    for module in modules:
        for spec in TEMPLATES[module.type]:
            tags.append(
                Tag(
                    module=module.id,
                    module_type=module.type,
                    name=spec.name,
                    unit=spec.unit,
                    data_type=spec.data_type,
                    access=spec.access,
                    low=_bound(spec.low, module),
                    high=_bound(spec.high, module),
                    description=spec.description,
                    states=spec.states,
                    ground_truth=spec.ground_truth,
                    limits=spec.limits,
                )
            )
    return TagRegistry(tags)
