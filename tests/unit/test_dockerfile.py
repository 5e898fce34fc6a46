"""The image's build context: every `COPY` source of the Dockerfile survives `.dockerignore`.

A source that `.dockerignore` excludes makes the build stop with a builder error ("no items
matching glob ... filtered out") far from the cause; this names the file instead. The rules
are Docker's (moby/patternmatcher, as BuildKit applies them): patterns are paths relative to
the context, `*` and `?` stay within one path element, `**` spans any number of them, a
pattern that matches a folder excludes everything under it, `!` re-includes, and the last
matching line wins. The real build (scripts/build-image, in CI) is the final judge.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, regex) per line of a .dockerignore."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = str(PurePosixPath(line.removeprefix("!").strip().lstrip("/")))
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves out `path` (a file, relative to the context)."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negate, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not negate
    return verdict


def copy_sources(dockerfile: str) -> list[str]:
    """The context paths of every COPY/ADD that copies from the context (not --from)."""
    sources = []
    for line in dockerfile.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += args[:-1]
    return sources


def problems(dockerfile: str, dockerignore: str, files: list[str]) -> list[str]:
    """A line per COPY source that the context does not hold in whole."""
    rules = ignore_rules(dockerignore)
    out = []
    for source in copy_sources(dockerfile):
        prefix = source.rstrip("/").removeprefix("./")
        under = [f for f in files if f == prefix or f.startswith(prefix + "/")]
        dropped = [f for f in under if excluded(f, rules)]
        if not under:
            out.append(f"COPY {source}: no such file in the repository")
        elif dropped:
            out.append(f"COPY {source}: .dockerignore excludes {dropped[0]} ({len(dropped)} files)")
    return out


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return listed.stdout.splitlines()


def test_every_copy_source_is_in_the_build_context() -> None:
    found = problems(
        (ROOT / "Dockerfile").read_text(), (ROOT / ".dockerignore").read_text(), tracked_files()
    )
    assert found == []


def test_an_excluded_copy_source_is_named() -> None:
    dockerfile = "FROM x AS build\nCOPY pyproject.toml README.md ./\nCOPY bench bench\n"
    files = ["pyproject.toml", "README.md", "bench/twin.py", "bench/__init__.py"]
    assert problems(dockerfile, "tests\nbench\n", files) == [
        "COPY bench: .dockerignore excludes bench/twin.py (2 files)"
    ]
    assert problems(dockerfile, "**/*.py\n!bench/__init__.py\n", files) == [
        "COPY bench: .dockerignore excludes bench/twin.py (1 files)"
    ]
    assert problems(dockerfile, "*.md\n", files) == [
        "COPY README.md: .dockerignore excludes README.md (1 files)"
    ]
    assert problems("COPY --from=build /wheels /wheels\nCOPY gone gone\n", "", files) == [
        "COPY gone: no such file in the repository"
    ]


@pytest.mark.parametrize(
    ("pattern", "path", "out"),
    [
        ("**/__pycache__", "plant/__pycache__/x.pyc", True),
        ("**/*.pyc", "a.pyc", True),
        ("*.sqlite*", "edge.spool.sqlite-wal", True),
        ("*.sqlite*", "data/edge.spool.sqlite", False),  # `*` stays at the top level
        ("tests", "tests/unit/test_x.py", True),
        (".env", ".env.example", False),
    ],
)
def test_dockerignore_rules_match_as_docker_does(pattern: str, path: str, out: bool) -> None:
    assert excluded(path, ignore_rules(pattern)) is out
