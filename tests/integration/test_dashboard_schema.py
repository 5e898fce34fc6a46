"""The committed dashboards type-check against Grafana's own schema; a broken one fails.

`python -m dashboards.schema_check` writes each dashboards/json file as TypeScript (the whole
dashboard as @grafana/schema's `Dashboard`, each panel's options and field config as its
plugin's config types) and runs tsc on it. The packages are pinned in
dashboards/schema_check/package-lock.json; `npm ci` installs them when node_modules is
missing.

Node.js and npm missing skip these tests on a developer machine and FAIL them in CI (CI=true
or PLANT_REQUIRE_SERVERS=1), the rule of `need()` in testkit/servers.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.servers import need

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "dashboards" / "schema_check"
DASHBOARDS = ROOT / "dashboards" / "json"
NPM_TIMEOUT_S = 300
CHECK_TIMEOUT_S = 120


def need_tool(binary: str) -> str:
    """The path of node or npm, or skip (developer machine) / fail (CI) the test."""
    return need(binary, "Node.js 18+ and npm: apt-get install -y nodejs npm")


@pytest.fixture(scope="module")
def installed() -> None:
    """node, npm and the pinned packages (`npm ci` when node_modules is missing)."""
    need_tool("node")
    npm = need_tool("npm")
    wanted = (CHECK / "node_modules" / "typescript", CHECK / "node_modules" / "@grafana" / "schema")
    if all(path.exists() for path in wanted):
        return
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=CHECK,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"


def schema_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashboards.schema_check", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
    )


def test_committed_dashboards_pass_grafanas_schema(installed: None) -> None:
    result = schema_check()
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(list(DASHBOARDS.glob("*.json")))
    assert f"schema check passed: {count} dashboards" in result.stdout
    # The generated files also pass plain `tsc -p dashboards/schema_check`, the folder's own
    # tsconfig.json, as a developer would run it (npx tsc --noEmit -p dashboards/schema_check).
    tsc = CHECK / "node_modules" / "typescript" / "bin" / "tsc"
    plain = subprocess.run(
        ["node", str(tsc), "--noEmit", "-p", str(CHECK)],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr
    generated = sorted(p.stem for p in (CHECK / "build").glob("*.ts"))
    assert generated == sorted(p.stem for p in DASHBOARDS.glob("*.json"))


def _first_panel(model: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in model["panels"] if p["type"] == kind)


def _refresh_a_number(model: dict[str, Any]) -> str:
    model["refresh"] = 5  # the schema has a string ("10s")
    return "refresh: error TS2322"


def _legend_flag_a_string(model: dict[str, Any]) -> str:
    index = model["panels"].index(_first_panel(model, "timeseries"))
    model["panels"][index]["options"]["legend"]["showLegend"] = "yes"
    return f"panels[{index}].options.legend.showLegend: error TS2322"


def _stat_color_mode_not_in_enum(model: dict[str, Any]) -> str:
    # BigValueColorMode is a TypeScript enum: its values are accepted, nothing else is.
    index = model["panels"].index(_first_panel(model, "stat"))
    model["panels"][index]["options"]["colorMode"] = "backgrounds"
    return f"panels[{index}].options.colorMode: error TS2"


def _unknown_field_config_key(model: dict[str, Any]) -> str:
    index = model["panels"].index(_first_panel(model, "timeseries"))
    model["panels"][index]["fieldConfig"]["defaults"]["custom"]["lineWidht"] = 2
    return f"panels[{index}].fieldConfig.defaults.custom.lineWidht: error TS2353"


BREAKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "refresh-a-number": _refresh_a_number,
    "legend-flag-a-string": _legend_flag_a_string,
    "stat-color-mode-not-in-enum": _stat_color_mode_not_in_enum,
    "unknown-field-config-key": _unknown_field_config_key,
}


def test_a_wrong_field_fails_naming_the_dashboard_file(installed: None, tmp_path: Path) -> None:
    """Four broken copies of one dashboard and an intact one, checked in one tsc run: each
    error names its own file and JSON path, and the intact copy has none."""
    original = json.loads((DASHBOARDS / "plant-overview.json").read_text(encoding="utf-8"))
    folder = tmp_path.resolve() / "json"
    folder.mkdir()
    expected: dict[Path, str] = {}
    for name, breaks in BREAKS.items():
        model = json.loads(json.dumps(original))
        expected[folder / f"{name}.json"] = breaks(model)
        (folder / f"{name}.json").write_text(json.dumps(model, indent=2), encoding="utf-8")
    intact = folder / "intact.json"
    intact.write_text(json.dumps(original, indent=2), encoding="utf-8")

    result = schema_check("--json", str(folder), "--out", str(tmp_path / "build"))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "schema check FAILED" in result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error TS" in line]
    for path, message in expected.items():
        mine = [line for line in errors if line.startswith(f"{path}: ")]
        assert mine, f"no error for {path.name}:\n{result.stderr}"
        assert any(line.startswith(f"{path}: {message}") for line in mine), result.stderr
    assert not [line for line in errors if line.startswith(f"{intact}: ")], result.stderr
    assert all(any(line.startswith(f"{path}: ") for path in expected) for line in errors)
