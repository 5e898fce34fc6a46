"""Typed access to what the tests' child processes were started with."""

from __future__ import annotations

from apps.launcher import Child


def env_of(child: Child) -> dict[str, str]:
    """The environment `child` is started with: every child a test starts is given one (a
    `Child` whose `env` is None runs with this process's environment)."""
    assert child.env is not None, f"{child.name} runs with this process's environment"
    return child.env
