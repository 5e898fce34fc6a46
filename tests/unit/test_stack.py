"""The compose stack's helpers: secrets made on first start, and the `_FILE` entry point."""

from __future__ import annotations

import base64
import hashlib
import tomllib
from pathlib import Path

import pytest

from opcua_server.security import hash_password, load_users
from plant import envfiles, stack


def test_first_start_generates_every_secret_and_keeps_them_after(tmp_path: Path) -> None:
    first = stack.init_secrets(tmp_path, {})
    assert sorted(first.generated) == sorted(stack.SECRETS)
    values = {name: (tmp_path / name).read_text() for name in stack.SECRETS}
    assert len(set(values.values())) == len(values)  # all different
    assert all(len(v) >= 40 and "\n" not in v for v in values.values())
    assert all((tmp_path / name).stat().st_mode & 0o777 == 0o444 for name in stack.SECRETS)
    again = stack.init_secrets(tmp_path, {})
    assert again.generated == [] and sorted(again.kept) == sorted(stack.SECRETS)
    assert values == {name: (tmp_path / name).read_text() for name in stack.SECRETS}


def test_an_env_override_replaces_a_secret(tmp_path: Path) -> None:
    stack.init_secrets(tmp_path, {})
    done = stack.init_secrets(tmp_path, {"PLANT_SECRET_INFLUXDB_TOKEN": "my-token"})
    assert done.overridden == ["influxdb_token"]
    assert (tmp_path / "influxdb_token").read_text() == "my-token"
    assert (
        stack.init_secrets(tmp_path, {"PLANT_SECRET_INFLUXDB_TOKEN": "my-token"}).overridden == []
    )


def test_mosquitto_hash_is_pbkdf2_sha512_in_mosquitto_format() -> None:
    salt = b"0123456789ab"
    text = stack.mosquitto_hash("secret", salt)
    kind, iterations, salt_b64, digest_b64 = text.split("$")[1:]
    assert (kind, iterations) == ("7", "101")
    assert base64.b64decode(salt_b64) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)
    assert base64.b64decode(digest_b64) == expected


def test_broker_folder_and_opcua_users_come_from_the_secrets(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    stack.init_secrets(secrets, {"PLANT_SECRET_OPCUA_EDGE_PASSWORD": "edge-pw"})
    deploy = tmp_path / "deploy"  # stands for deploy/mosquitto: copied verbatim
    deploy.mkdir()
    (deploy / "mosquitto.conf").write_text("listener 1883\n")
    (deploy / "acl").write_text("user edge\ntopic write pcmm/v1/#\n")
    out = tmp_path / "mosquitto"
    stack.write_mosquitto_config(secrets, deploy, out, uid=0)
    assert (out / "acl").read_text() == (deploy / "acl").read_text()
    users = [line.split(":", 1)[0] for line in (out / "passwd").read_text().splitlines()]
    assert users == list(stack.MQTT_USERS)
    assert (out / "passwd").stat().st_mode & 0o777 == 0o600
    path = stack.write_opcua_users(secrets)
    tomllib.loads(path.read_text())
    entries = load_users(path)
    assert set(entries) == set(stack.OPCUA_OPERATORS)
    assert entries["edge"].password_sha256 == hash_password("edge-pw")


def test_envfiles_resolves_plant_file_variables(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    env = envfiles.resolve(
        {
            "PLANT_EDGE_MQTT_PASSWORD__FILE": str(tmp_path / "pw"),
            "PLANT_HISTORIAN_INFLUX_TOKEN": "direct",
            "PLANT_HISTORIAN_INFLUX_TOKEN__FILE": str(tmp_path / "missing"),
            "PLANT_OPCUA_USERS_FILE": "/run/secrets/users.toml",  # a path setting: kept
            "OTHER__FILE": "/nope",
        }
    )
    assert env == {
        "PLANT_EDGE_MQTT_PASSWORD": "s3cret",
        "PLANT_HISTORIAN_INFLUX_TOKEN": "direct",  # set directly: wins, file not read
        "PLANT_OPCUA_USERS_FILE": "/run/secrets/users.toml",
        "OTHER__FILE": "/nope",
    }


def test_envfiles_names_the_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(envfiles.EnvFileError, match="PLANT_X__FILE: cannot read"):
        envfiles.resolve({"PLANT_X__FILE": str(tmp_path / "missing")})
