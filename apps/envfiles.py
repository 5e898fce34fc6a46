"""`python -m apps.envfiles COMMAND...`: `PLANT_X` from the file `PLANT_X__FILE` names; exec.

The docker image's entry point. Secrets live in files (a volume written on first start), not
in the compose file or the environment Docker shows with `inspect`; the services read their
settings from `PLANT_*` variables. So for every `PLANT_<NAME>__FILE=<path>` this sets
`PLANT_<NAME>` to the file's content (without the trailing newline) and removes the `__FILE`
variable, which the settings classes would refuse as unknown. A variable set directly wins
over its file. The suffix has two underscores, as Grafana's `GF_..._PASSWORD__FILE`: with one,
settings that are paths themselves (PLANT_OPCUA_USERS_FILE, ..._CA_FILE) would be mistaken
for secrets and replaced by their files' contents.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

PREFIX = "PLANT_"
SUFFIX = "__FILE"


class EnvFileError(Exception):
    """A `_FILE` variable names a file that cannot be read."""


def resolve(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with every `PLANT_*__FILE` replaced by the variable it stands for."""
    out = dict(environ)
    for key, path in environ.items():
        if (
            not key.startswith(PREFIX)
            or not key.endswith(SUFFIX)
            or len(key) <= len(PREFIX + SUFFIX)
        ):
            continue
        name = key.removesuffix(SUFFIX)
        del out[key]
        if environ.get(name):
            continue
        try:
            with open(path, encoding="utf-8") as file:
                out[name] = file.read().rstrip("\r\n")
        except OSError as error:
            raise EnvFileError(f"{key}: cannot read {path}: {error.strerror}") from None
    return out


def main(argv: list[str], environ: MutableMapping[str, str] = os.environ) -> int:
    if not argv:
        print("usage: python -m apps.envfiles COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        env = resolve(environ)
    except EnvFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        print(f"error: cannot run {argv[0]}: {error.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
