"""The stack's image, built from the real Dockerfile with buildah, and commands run inside it.

There is no Docker engine here, but buildah builds the Dockerfile as Docker would and runs a
command in the image's file system as the image's USER, with chroot isolation on the host's
network (`buildah run --isolation chroot --network host`). scripts/build-image builds it (CI
does before the tests); `built_image()` builds it when it is missing. One working container
serves every command of a test session: each `buildah run` is its own process tree in the
image's root file system, with the bind mounts and environment of that one command.

Needs root, buildah and debootstrap: without them the test is skipped on a developer machine
and fails in CI (testkit/servers.py's rule).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.servers import ROOT, servers_required

IMAGE = os.environ.get("PLANT_IMAGE", "pcmm-twin:local")
BUILD_TIMEOUT_S = 900.0


@dataclass(frozen=True, slots=True)
class Image:
    """A working container of the built image."""

    name: str
    container: str

    def run_argv(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        mounts: Sequence[tuple[Path, str, bool]] = (),
        user: str | None = None,
    ) -> list[str]:
        """`buildah run` of `argv` with these variables and (local, container, read-only) mounts."""
        out = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
        if user is not None:
            out += ["--user", user]
        for local, target, read_only in mounts:
            out += ["-v", f"{local}:{target}{':ro' if read_only else ''}"]
        for key, value in env.items():
            out += ["--env", f"{key}={value}"]
        return [*out, self.container, "--", *argv]


def _unavailable(message: str) -> None:
    if servers_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


_built: Image | None = None


def built_image() -> Image:
    """The image (built now if missing) and a working container of it, for this session."""
    global _built  # noqa: PLW0603  (one container per test session)
    if _built is not None:
        return _built
    if os.geteuid() != 0 or not shutil.which("buildah"):
        _unavailable("building the image needs root and buildah (apt-get install buildah)")
    exists = subprocess.run(
        ["buildah", "inspect", "--type", "image", IMAGE], capture_output=True, check=False
    )
    if exists.returncode != 0:
        if not shutil.which("debootstrap"):
            _unavailable("building the image needs debootstrap (apt-get install debootstrap)")
        build = subprocess.run(
            [str(ROOT / "scripts" / "build-image")], capture_output=True, text=True,
            timeout=BUILD_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert build.returncode == 0, f"scripts/build-image failed:\n{build.stderr[-4000:]}"
    made = subprocess.run(
        ["buildah", "from", "--pull=never", IMAGE],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    container = made.stdout.strip()
    atexit.register(subprocess.run, ["buildah", "rm", container], capture_output=True)
    _built = Image(IMAGE, container)
    return _built
