"""The compose stack's helpers: secrets made on first start, and the `_FILE` entry point."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import tomllib
from pathlib import Path

import pytest

from apps import envfiles, stack
from apps.launcher import LaunchError
from apps.servers import CentralLink, bridge_config
from opcua_server.security import Role, load_users


def test_first_start_generates_every_secret_and_keeps_them_after(tmp_path: Path) -> None:
    first = stack.init_secrets(tmp_path, {})
    assert sorted(first.generated) == sorted(stack.SECRETS)
    values = {name: (tmp_path / name).read_text() for name in stack.SECRETS}
    assert len(set(values.values())) == len(values)  # all different
    assert all(len(v) >= 40 and "\n" not in v for v in values.values())
    # The store is its owner's alone: services get copies of their own secrets.
    assert all((tmp_path / name).stat().st_mode & 0o777 == 0o400 for name in stack.SECRETS)
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
    assert (out / "acl").stat().st_mode & 0o777 == 0o600  # mosquitto 2.0.20 warns otherwise
    path = stack.write_opcua_users(secrets)
    tomllib.loads(path.read_text())
    assert "password_hash" in path.read_text() and "password_sha256" not in path.read_text()
    entries = load_users(path)
    assert set(entries) == set(stack.OPCUA_OPERATORS)
    assert entries["edge"].password.matches("edge-pw")
    assert not entries["operator"].password.matches("edge-pw")
    # Only the edge's OnBehalfOf is honoured: it is the one gateway.
    assert {name: entry.role for name, entry in entries.items()} == {
        "edge": Role.GATEWAY,
        "operator": Role.OPERATOR,
    }


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


def test_the_stack_acl_gives_each_site_its_own_edge_and_controller() -> None:
    acl = (Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl").read_text()
    out = stack.site_acl(acl, ["site1", "site2"])
    users = [line.split()[1] for line in out.splitlines() if line.startswith("user ")]
    assert sorted(users) == sorted(stack.stack_mqtt_users(["site1", "site2"]))
    sections, original = _sections(out), _sections(acl)
    for site, other in (("site1", "site2"), ("site2", "site1")):
        for user in ("edge", "controller"):
            lines = sections[f"{user}-{site}"]
            assert lines and all(f"pcmm/v1/{site}/" in line for line in lines), lines
            assert not any(other in line or "/+/command" in line for line in lines)
        own = sections[f"controller-{site}"]
        assert f"topic write pcmm/v1/{site}/command/+/controller-{site}" in own
        assert f"topic read pcmm/v1/{site}/reply/controller-{site}" in own
        # Each audit trail has one writer, for its own site only.
        audit = [line for line in own if "/events/audit" in line]
        assert audit == [f"topic write pcmm/v1/{site}/events/audit/controller"]
        edge = [line for line in sections[f"edge-{site}"] if "/events/audit" in line]
        assert edge == [
            f"topic write pcmm/v1/{site}/events/audit/twin",
            f"topic write pcmm/v1/{site}/events/audit/edge",
        ]
    for shared in ("historian", "operator", "viewer"):
        assert sections[shared] == original[shared]  # kept as written


def _sections(acl: str) -> dict[str, list[str]]:
    """user -> its `topic` lines."""
    out: dict[str, list[str]] = {}
    for line in acl.splitlines():
        if line.startswith("user "):
            current = out.setdefault(line.split()[1], [])
        elif line.startswith("topic ") and out:
            current.append(line)
    return out


def test_each_service_gets_only_its_secrets_owned_by_its_user(tmp_path: Path) -> None:
    sites = {"site1": "twin"}
    store, out = tmp_path / "store", tmp_path / "out"
    stack.init_secrets(store, {}, stack.secret_names(stack.stack_mqtt_users(sites)))
    stack.write_opcua_users(store)
    asyncio.run(stack.ensure_opcua_pki(store, sites))
    for name in ("edge-site1", "historian"):
        (out / name).mkdir(parents=True)
    assert stack.write_consumers(store, out, sites) == ["historian", "edge-site1"]
    edge = out / "edge-site1"
    files = {str(p.relative_to(edge)) for p in edge.rglob("*") if p.is_file()}
    assert files == set(stack.consumers(sites)["edge-site1"].files)
    assert (edge / "mqtt_password").read_text() == stack.read_secret(
        store, "mqtt_edge-site1_password"
    )
    assert (edge / "opcua-server.der").read_bytes() == (
        store / "opcua/server/site1/cert.der"
    ).read_bytes()
    for path in edge.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o400 if path.is_file() else 0o500), path
        if os.geteuid() == 0:
            assert path.stat().st_uid == stack.PLANT_UID
    assert not (out / "twin-site1").exists()  # a service this deployment does not run
    # Certificates are kept while they fit: the edge's pinned copy stays valid.
    before = (store / "opcua/server/site1/cert.der").read_bytes()
    asyncio.run(stack.ensure_opcua_pki(store, sites))
    assert (store / "opcua/server/site1/cert.der").read_bytes() == before


def test_stack_overrides_are_named_after_the_secret() -> None:
    assert (
        stack.override_variable("mqtt_edge-site1_password")
        == "PLANT_SECRET_MQTT_EDGE_SITE1_PASSWORD"
    )


def test_the_central_tier_configs_come_from_the_bridge_templates(tmp_path: Path) -> None:
    """The centre: the shared accounts and one bridge account per site (bridge.acl, that site
    only), no edge or controller; a site broker: its accounts, and bridge.conf at the end of
    its conf (the bridge's password: 0600)."""
    sites = ["site1", "site2"]
    store = tmp_path / "store"
    accounts = (*stack.stack_mqtt_users(sites), *stack.bridge_users(sites))
    stack.init_secrets(store, {}, stack.secret_names(accounts))
    links = stack.central_links(store, sites, "mosquitto-central", 1883)
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
    centre, own = tmp_path / "centre", tmp_path / "site2"
    stack.write_mosquitto_config(store, deploy, centre, os.getuid(), [], bridges=links)
    stack.write_mosquitto_config(store, deploy, own, os.getuid(), ["site2"], central=links[1])

    users = [line.split(":", 1)[0] for line in (centre / "passwd").read_text().splitlines()]
    assert users == ["historian", "operator", "viewer", "bridge-site1", "bridge-site2"]
    acl = (centre / "acl").read_text()
    assert "user bridge-site1\ntopic write pcmm/v1/site1/+/telemetry" in acl
    assert "user edge" not in acl and "user controller" not in acl
    conf = (centre / "mosquitto.conf").read_text()
    assert conf == (deploy / "mosquitto.conf").read_text()  # the centre bridges nothing

    conf = (own / "mosquitto.conf").read_text()
    assert conf.startswith((deploy / "mosquitto.conf").read_text())
    assert "\nconnection central\naddress mosquitto-central:1883\n" in conf
    assert f"\nremote_password {stack.read_secret(store, 'mqtt_bridge-site2_password')}\n" in conf
    assert "topic pcmm/v1/site2/+/telemetry out 1" in conf and "site1" not in conf
    assert (own / "mosquitto.conf").stat().st_mode & 0o777 == 0o600
    users = [line.split(":", 1)[0] for line in (own / "passwd").read_text().splitlines()]
    assert users == ["historian", "operator", "viewer", "edge-site2", "controller-site2"]


@pytest.mark.parametrize(
    "site", ["central", "central-1", "site1\ntopic readwrite #", "site 1", "pcmm/v1", ""]
)
def test_a_site_id_that_would_break_or_borrow_the_centres_tree_is_refused(site: str) -> None:
    """A site id is pasted into the bridge's config and the centre's ACL: a newline would add
    lines of its own, and `central`/`central-<n>` would grant the centre's historians' status,
    metrics and markers to that site's bridge."""
    with pytest.raises(LaunchError, match="site id"):
        CentralLink(site, "mosquitto-central", 1883, "secret")


def test_a_bridge_password_with_white_space_is_refused() -> None:
    with pytest.raises(LaunchError, match="password"):
        bridge_config(CentralLink("site1", "mosquitto-central", 1883, "pass\nword"))
