"""Pod layouts: which modules a pod has, how material flows between them, and their parameters.

A layout is a TOML file of `[[module]]` tables in material order. Each names an `id`, a `type`
(one of `core.parameters.PARAMS_BY_TYPE`), where its material goes (`feeds`) or what it
observes (`observes`), and a `[module.params]` table overriding the type's defaults by name.
"""

from __future__ import annotations

import dataclasses
import random
import tomllib
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from core.parameters import PARAMS_BY_TYPE, LineParams

DEFAULT_LAYOUT = "pcmm_default"

# Which module types each type may send material to, or observe.
_FEEDS: dict[str, tuple[str, ...]] = {
    "feeder": ("blender",),
    "blender": ("feed_frame",),
    "feed_frame": ("press",),
    "press": ("diverter",),
}
_OBSERVES: dict[str, tuple[str, ...]] = {"nir": ("blender",)}


class LayoutError(ValueError):
    """A layout file that cannot describe a working pod; the message says why."""


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """One module of a pod."""

    id: str
    type: str
    params: Any
    feeds: tuple[str, ...] = ()
    observes: str | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """A whole pod, modules in material order."""

    name: str
    description: str
    modules: tuple[ModuleSpec, ...]

    def of_type(self, module_type: str) -> list[ModuleSpec]:
        return [m for m in self.modules if m.type == module_type]

    def module(self, module_id: str) -> ModuleSpec:
        for module in self.modules:
            if module.id == module_id:
                return module
        raise KeyError(module_id)

    @property
    def line(self) -> LineParams:
        params: LineParams = self.of_type("line")[0].params
        return params


def load_layout(source: str | Path | None = None) -> Layout:
    """Load a layout by file path, or by the name of one shipped in `core/layouts/`."""
    name = str(source) if source is not None else DEFAULT_LAYOUT
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise LayoutError(f"layout file {path} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        shipped = resources.files("core.layouts") / f"{name}.toml"
        if not shipped.is_file():
            raise LayoutError(f"no layout named {name!r} ships with the twin")
        text = shipped.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise LayoutError(f"layout {name}: {error}") from None
    return parse_layout(data, name)


def parse_layout(data: dict[str, Any], name: str = "layout") -> Layout:
    """Validate a layout already read from TOML."""
    raw_modules = data.get("module")
    if not isinstance(raw_modules, list) or not raw_modules:
        raise LayoutError(f"{name}: no [[module]] tables")
    modules = [_parse_module(raw, name) for raw in raw_modules]
    if not any(m.type == "line" for m in modules):
        modules.append(ModuleSpec("line", "line", LineParams()))
    _check_wiring(modules, name)
    return Layout(
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        modules=tuple(modules),
    )


def _parse_module(raw: Any, name: str) -> ModuleSpec:
    if not isinstance(raw, dict):
        raise LayoutError(f"{name}: a [[module]] entry is not a table")
    module_id, module_type = raw.get("id"), raw.get("type")
    if not isinstance(module_id, str) or not module_id.isidentifier():
        raise LayoutError(f"{name}: module id {module_id!r} must be a name like api_feeder")
    if module_type not in PARAMS_BY_TYPE:
        known = ", ".join(PARAMS_BY_TYPE)
        raise LayoutError(f"{name}: module {module_id} has unknown type {module_type!r} ({known})")
    unknown = set(raw) - {"id", "type", "feeds", "observes", "params"}
    if unknown:
        raise LayoutError(f"{name}: module {module_id} has unknown keys {sorted(unknown)}")
    feeds = raw.get("feeds", ())
    feeds = (feeds,) if isinstance(feeds, str) else tuple(feeds)
    params = _build_params(PARAMS_BY_TYPE[module_type], raw.get("params", {}), module_id, name)
    observes = raw.get("observes")
    return ModuleSpec(id=module_id, type=module_type, params=params, feeds=feeds, observes=observes)


def _build_params(cls: type, overrides: Any, module_id: str, name: str) -> Any:
    if not isinstance(overrides, dict):
        raise LayoutError(f"{name}: params of {module_id} must be a table")
    overrides = dict(overrides)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    for key, value in overrides.items():
        if key not in fields:
            raise LayoutError(f"{name}: {module_id} has no parameter {key!r}")
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            overrides[key] = float(value)
        elif not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise LayoutError(
                f"{name}: {module_id}.{key} must be {expected.__name__}, got {value!r}"
            )
    params = cls(**overrides)
    for field in fields:
        value = getattr(params, field)
        if isinstance(value, float) and value < 0 and field not in ("diff_pressure_pa",):
            raise LayoutError(f"{name}: {module_id}.{field} must not be negative")
    return params


def _check_wiring(modules: list[ModuleSpec], name: str) -> None:
    by_id: dict[str, ModuleSpec] = {}
    for module in modules:
        if module.id in by_id:
            raise LayoutError(f"{name}: module id {module.id} is used twice")
        by_id[module.id] = module
    for module in modules:
        allowed = _FEEDS.get(module.type, ())
        if allowed and not module.feeds:
            raise LayoutError(f"{name}: {module.id} ({module.type}) must feed a {allowed[0]}")
        if module.feeds and not allowed:
            raise LayoutError(f"{name}: a {module.type} feeds nothing; remove {module.id}.feeds")
        for target in module.feeds:
            if target not in by_id or by_id[target].type not in allowed:
                raise LayoutError(
                    f"{name}: {module.id} feeds {target!r}, which is not a {allowed[0]}"
                )
        watched = _OBSERVES.get(module.type, ())
        if watched:
            observed = module.observes
            if observed is None or observed not in by_id or by_id[observed].type not in watched:
                raise LayoutError(f"{name}: {module.id} must observe a {watched[0]}")
    materials = [m.params.material for m in modules if m.type == "feeder"]
    if "api" not in materials:
        raise LayoutError(f"{name}: no feeder meters the api")
    for kind in ("blender", "press", "line"):
        if not any(m.type == kind for m in modules):
            raise LayoutError(f"{name}: a pod needs a {kind}")
    if sum(m.type == "line" for m in modules) != 1:
        raise LayoutError(f"{name}: a pod has exactly one line module")
    if sum(m.type == "environment" for m in modules) > 1:
        raise LayoutError(f"{name}: a pod has at most one environment module")


def vary_for_site(layout: Layout, site_id: str, variation: float) -> Layout:
    """Give a site its own equipment: scale each module's `VARY` fields by up to +-variation.

    The draw depends on the site id only, not on the run's seed: the same site's equipment is
    the same in every run.
    """
    if variation < 0 or variation >= 0.5:
        raise LayoutError("site variation must be in [0, 0.5)")
    if variation == 0:
        return layout
    rng = random.Random(zlib.crc32(site_id.encode()))
    modules = []
    for module in layout.modules:
        changes = {
            field: getattr(module.params, field) * (1.0 + variation * rng.uniform(-1.0, 1.0))
            for field in type(module.params).VARY
        }
        modules.append(
            dataclasses.replace(module, params=dataclasses.replace(module.params, **changes))
        )
    return dataclasses.replace(layout, modules=tuple(modules))
