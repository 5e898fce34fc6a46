"""Build hook: the closed loop's hot modules compiled with mypyc when PLANT_COMPILE=1.

The image is built so (Dockerfile); `pip install -e .` and a plain `pip install .` stay pure
Python, which is what development and the test suite run. Everything else about the package is
in pyproject.toml.

Why compiled: issue 13 asks for the closed loop in process (twin + controller, 1 s steps) at
10,000x real time or more. Profiled, the time is spread over some forty functions of the twin's
units and the controller's estimators, detectors and gate, none above 7 % (the pure-Python
tuning is done: e4a224b and after). Compiled with mypyc, the same source decides the same
(tests/integration/test_compiled_image.py) and the loop runs about 2x faster: measured on one
machine in one session, Debian's CPython 3.11.2 in both, 7,555x real time pure (a venv) against
15,288x compiled (the image; `python -m bench.closed_loop --repeat 3`).

Two of mypyc's departures from Python met in this source, kept out of it: a `sum()` of floats
carries a 0.0 start (without one mypyc takes the sum for an int and raises TypeError at run
time), and values are compared by value, not identity (`is`), which mypyc does not keep for the
tuples and floats it unboxes (a NIR step judged afresh at every decision: the standard
campaign's decisions differed from 5 h on).

Only modules that mypyc compiles to the same behaviour are listed: the twin's units but not
its SimPy processes (plant.py), the controller's decision modules but not its asyncio service.
Compiled classes cannot be subclassed or patched from interpreted code; no module of the
package does either (tests that do run against the pure build).
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = [
    *(
        f"twin/{name}.py"
        for name in (
            "blender", "diverter", "environment", "feed_frame", "feeder", "ledger", "line",
            "material", "nir", "press", "store",
        )
    ),
    *(
        f"controller/{name}.py"
        for name in (
            "actions", "blend", "conditions", "config", "detectors", "diversion", "estimators",
            "gate", "laws", "loops", "supervisor", "telemetry",
        )
    ),
]  # fmt: skip


class ParallelBuildExt(build_ext):
    """The generated C files compiled side by side, as many at once as there are cores."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1


if os.environ.get("PLANT_COMPILE") == "1":
    from mypyc.build import mypycify

    setup(ext_modules=mypycify(COMPILED, opt_level="3"), cmdclass={"build_ext": ParallelBuildExt})
else:
    setup()
