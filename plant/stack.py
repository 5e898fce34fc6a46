"""`plant stack init`: the secrets of the docker-compose stack, made on first start.

docker-compose runs this once before anything else (service `init`). It writes, into the
`secrets` volume, one file per secret: MQTT passwords of the broker's users, the OPC UA
passwords of the edge and the operator, the InfluxDB admin password and token, and the
Grafana admin password. A secret that exists is kept; a missing one is generated; a value
given as `PLANT_SECRET_<NAME>` (from `.env`, see deploy/stack.env.example) replaces it. Then
it derives what servers need from them:

- the broker's config folder: mosquitto.conf and acl copied from deploy/mosquitto, and
  `passwd` with PBKDF2-SHA512 hashes in mosquitto 2's `$7$` format;
- `opcua_users.toml`, the OPC UA server's users file (edge and operator, role operator).

Nothing secret is ever committed or printed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

MQTT_USERS = ("edge", "historian", "controller", "operator", "viewer")  # deploy/mosquitto/acl
OPCUA_OPERATORS = ("edge", "operator")  # may write setpoints and call methods
SECRETS = (
    *(f"mqtt_{user}_password" for user in MQTT_USERS),
    *(f"opcua_{user}_password" for user in OPCUA_OPERATORS),
    "influxdb_admin_password",
    "influxdb_token",
    "grafana_admin_password",
)
OVERRIDE_PREFIX = "PLANT_SECRET_"
MOSQUITTO_UID = 1883  # the eclipse-mosquitto image's `mosquitto` user
# mosquitto 2's defaults for `mosquitto_passwd` ($7$: PBKDF2-HMAC-SHA512).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12

app = typer.Typer(help="Set up the docker-compose stack.", no_args_is_help=True)
err = Console(stderr=True, highlight=False)


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """A password_file hash as `mosquitto_passwd` writes it: `$7$<iter>$<salt>$<hash>`."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def new_secret() -> str:
    """32 random bytes, URL-safe: fits a password, a token and a shell without quoting."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Written:
    generated: list[str]
    overridden: list[str]
    kept: list[str]


def _write(path: Path, text: str, mode: int, uid: int | None = None) -> None:
    """Write atomically (a reader never sees half a file) with its final mode and owner."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    if uid is not None and os.geteuid() == 0:
        os.chown(tmp, uid, -1)  # 0600: only the owner matters
    tmp.replace(path)


def init_secrets(folder: Path, overrides: Mapping[str, str]) -> Written:
    """Make sure every secret has a file in `folder`; return what was done to each."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    done = Written([], [], [])
    for name in SECRETS:
        path = folder / name
        given = overrides.get(OVERRIDE_PREFIX + name.upper(), "")
        if given:
            if not path.exists() or path.read_text(encoding="utf-8") != given:
                done.overridden.append(name)
            else:
                done.kept.append(name)
            value = given
        elif path.exists() and path.read_text(encoding="utf-8"):
            done.kept.append(name)
            continue
        else:
            value = new_secret()
            done.generated.append(name)
        # Readable by every container of the stack (each runs as its own user: plant 10001,
        # grafana 472, influxdb 1000); the volume is mounted only by the stack's containers.
        _write(path, value, 0o444)
    return done


def read_secret(folder: Path, name: str) -> str:
    return (folder / name).read_text(encoding="utf-8")


def write_mosquitto_config(
    secrets_dir: Path, deploy_dir: Path, out: Path, uid: int = MOSQUITTO_UID
) -> None:
    """The broker's config folder: conf and ACL from deploy/, passwd from the secrets."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("mosquitto.conf", "acl"):
        shutil.copyfile(deploy_dir / name, out / name)
        (out / name).chmod(0o644)
    lines = [
        f"{user}:{mosquitto_hash(read_secret(secrets_dir, f'mqtt_{user}_password'))}"
        for user in MQTT_USERS
    ]
    # mosquitto warns about (and future versions refuse) a passwd file others can read.
    _write(out / "passwd", "\n".join(lines) + "\n", 0o600, uid)


def write_opcua_users(secrets_dir: Path) -> Path:
    """The OPC UA server's users file: unsalted SHA-256, as opcua_server.security expects."""
    entries = []
    for user in OPCUA_OPERATORS:
        password = read_secret(secrets_dir, f"opcua_{user}_password")
        digest = hashlib.sha256(password.encode()).hexdigest()
        entries.append(f'[users.{user}]\nrole = "operator"\npassword_sha256 = "{digest}"\n')
    path = secrets_dir / "opcua_users.toml"
    _write(path, "\n".join(entries), 0o444)
    return path


@app.command()
def init(
    secrets_dir: Annotated[Path, typer.Option(help="Folder of the secret files.")] = Path(
        "/run/secrets"
    ),
    mosquitto_dir: Annotated[
        Path | None, typer.Option(help="Write the broker's config folder here.")
    ] = None,
    deploy_mosquitto: Annotated[
        Path, typer.Option(help="deploy/mosquitto: the broker config and ACL to copy.")
    ] = Path("/deploy/mosquitto"),
    mosquitto_uid: Annotated[
        int, typer.Option(help="Owner of the broker's passwd file (when run as root).")
    ] = MOSQUITTO_UID,
) -> None:
    """Generate missing secrets (PLANT_SECRET_<NAME> overrides one) and derived files."""
    try:
        done = init_secrets(secrets_dir, os.environ)
        write_opcua_users(secrets_dir)
        if mosquitto_dir is not None:
            write_mosquitto_config(secrets_dir, deploy_mosquitto, mosquitto_dir, mosquitto_uid)
    except OSError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    for what, names in (
        ("generated", done.generated),
        ("set from PLANT_SECRET_*", done.overridden),
        ("kept", done.kept),
    ):
        if names:
            err.print(f"{what}: {', '.join(names)}")
