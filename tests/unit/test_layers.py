"""The floors are enforced: the tree keeps its import contracts, and a forbidden import fails.

The contracts are in pyproject.toml ([tool.importlinter]); scripts/test runs them on the tree.
Here each forbidden import is written into a copy of the tree, and the run must fail naming the
contract it breaks, so a contract that cannot fail (a typo in a module name, a layer that holds
nothing) does not pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "twin", "controller", "opcua_server", "bridge", "dashboards", "apps",
            "testkit", "bench", "tests")  # fmt: skip
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: the copy's packages, not the editable install's, are the ones analysed.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [str(LINT_IMPORTS), "--no-cache"]
    return subprocess.run(
        command, check=False, cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    assert "Contracts: 5 kept" in done.stdout, done.stdout


@pytest.fixture(scope="module")
def copy_of_the_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy2(ROOT / "pyproject.toml", tree / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package,
            ignore=shutil.ignore_patterns("__pycache__", "node_modules", "*.json", "*.toml"),
        )  # fmt: skip
    return tree


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("twin/line.py", "import asyncio", "Twin: pure simulation"),
        ("twin/feeder.py", "import asyncua", "Twin: pure simulation"),
        ("core/tags.py", "import twin.plant", "Floors"),
        ("core/topics.py", "import paho.mqtt.client", "Core: plain Python"),
        ("bridge/edge/service.py", "import twin.plant", "Edge and historian"),
        ("bridge/historian/points.py", "import controller.supervisor", "Edge and historian"),
        ("controller/supervisor.py", "import twin.plant", "Floors"),
        ("controller/laws.py", "import asyncua", "Controller: no simulation"),
        ("opcua_server/server.py", "import apps.cli", "Floors"),
        ("bench/control.py", "import tests.support.mqtt", "Floors"),
        ("testkit/servers.py", "import tests.support.mqtt", "Floors"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    copy_of_the_tree: Path, module: str, forbidden: str, contract: str
) -> None:
    path = copy_of_the_tree / module
    original = path.read_text()
    path.write_text(f"{original}\n{forbidden}  # noqa\n")
    try:
        done = lint_imports(copy_of_the_tree)
    finally:
        path.write_text(original)
    assert done.returncode != 0, done.stdout
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    # An import at the bottom may break more than one (core importing the twin brings SimPy
    # to everything above): the contract named must be among them.
    assert any(line.startswith(contract) for line in broken), done.stdout
    assert module.removesuffix(".py").replace("/", ".") in done.stdout
