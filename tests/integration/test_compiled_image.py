"""The image's compiled closed loop decides exactly as the pure-Python source does.

The image is built with PLANT_COMPILE=1: the twin's units and the controller's decision
modules are compiled with mypyc (setup.py), while the test suite runs them as pure Python.
mypyc keeps Python's semantics for typed code but not all of it (identity of a value it unboxes,
`sum()` of floats without a start: both met and mended), so the two are compared on what
matters: every action, alarm and their reasons over whole campaigns, the standard one and two
random ones (one compound), by `tests/support/decisions.py` run in the image and in the venv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from testkit.servers import ROOT
from tests.support.image import built_image

SCRIPT = Path(__file__).resolve().parent.parent / "support" / "decisions.py"
STANDARD = ROOT / "scenarios" / "standard_campaign.yaml"  # (the image has no scenarios/)
RANDOM = ("3", "24c")  # random campaign 3; 24, compound


def _decisions(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_images_compiled_loop_decides_as_the_source_does() -> None:
    image = built_image()
    argv = image.run_argv(
        ["python", "/check/decisions.py", f"/scenarios/{STANDARD.name}", *RANDOM],
        env={},
        mounts=[(SCRIPT.parent, "/check", True), (STANDARD.parent, "/scenarios", True)],
    )
    shipped = _decisions(argv)
    source = _decisions([sys.executable, str(SCRIPT), str(STANDARD), *RANDOM])
    # Else the comparison says nothing: the image must run the compiled modules, the venv not.
    assert shipped["compiled"], "the image's twin and controller are not compiled"
    assert not source["compiled"], "the venv runs compiled modules: rebuild it (pip install -e .)"
    assert shipped["runs"] == source["runs"]
