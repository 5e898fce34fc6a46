"""`plant stack init` and `plant stack influx-tokens`: the docker-compose stack's secrets.

docker-compose runs `init` once before anything else. It keeps one store of secrets (a volume
only `init` mounts, and the central tier's `init-central`): the MQTT passwords of the broker's
users, the OPC UA passwords of the edge and the operator, the InfluxDB admin password and
all-access token, the Grafana admin password, and the OPC UA certificates (each site's server,
each OPC UA client). A secret that exists is kept; a missing one is generated; a value given
as `PLANT_SECRET_<NAME>` (from `.env`, see deploy/stack.env.example) replaces it. From the
store it writes:

- each consumer's own folder (a volume per service, mounted at its /run/secrets): only the
  files that service needs, owned by the user the service runs as, mode 0400. Compose's own
  `secrets:` cannot carry these: outside swarm they are bind mounts of host files, which must
  exist when `up` creates the containers, before `init` has run;
- the broker's config folder: mosquitto.conf from deploy/mosquitto, the ACL with one `edge-`
  and one `controller-<site>` account per site whose lines name that site only, and `passwd`
  (PBKDF2-SHA512, mosquitto 2's `$7$`), both owned by the broker's user, mode 0600;
- the OPC UA users file (salted scrypt hashes) and each twin's PKI folder: its server key and
  certificate, and the client certificates it trusts (its edge's and the `cli` tools').
- the central tier (docker-compose's `central` profile, which `init` learns from
  `--profiles`, compose's COMPOSE_PROFILES): `--bridge site1` appends site1's bridge to the
  centre (deploy/mosquitto/bridge.conf, its `bridge-site1` password from the store) to the
  `--mosquitto-dir` broker's config; `init-central` writes the central broker's folder
  (`--central-dir`: historian, operator and viewer, and deploy/mosquitto/bridge.acl per site)
  and each `--site-broker SITE=DIR` (that site's accounts, bridged to the centre). The bridge
  passwords are made with the other secrets, whether the tier runs or not.

`influx-tokens` runs once InfluxDB is up: with the all-access token it makes a token that can
only read the bucket (Grafana) and one that can only write it (the historian). InfluxDB 2 does
not let a client choose a token's value, so these cannot be made ahead by `init`.

The native demo (`plant demo`) uses the store functions with one `edge` and one `controller`
account for every site (deploy/mosquitto/acl as written). Nothing secret is ever committed or
printed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from apps.launcher import LaunchError
from apps.servers import CentralLink, bridge_config, central_acl

MQTT_USERS = ("edge", "historian", "controller", "operator", "viewer")  # deploy/mosquitto/acl
SITE_USERS = ("edge", "controller")  # in the stack: one account per site, for that site only
# May write setpoints and call methods; the edge as a gateway (opcua_server.security), whose
# OnBehalfOf names the MQTT user it acts for.
OPCUA_OPERATORS = ("edge", "operator")


def secret_names(mqtt_users: Iterable[str]) -> tuple[str, ...]:
    """The secrets of a broker with these users, the OPC UA operators, InfluxDB and Grafana."""
    return (
        *(f"mqtt_{user}_password" for user in mqtt_users),
        *(f"opcua_{user}_password" for user in OPCUA_OPERATORS),
        "influxdb_admin_password",
        "influxdb_token",
        "grafana_admin_password",
    )


SECRETS = secret_names(MQTT_USERS)  # the demo's (and the tests'): site-independent accounts
OVERRIDE_PREFIX = "PLANT_SECRET_"
# Characters a chosen secret may not hold: `$` is expanded by compose in .env values and by
# Grafana's provisioning ($__file, $VAR); whitespace, quotes and control characters end or
# split a line of an env file, of mosquitto's passwd or of a TOML string.
UNSAFE_SECRET = re.compile(r"[$\s\"'\\\x00-\x1f\x7f-\x9f]")
MOSQUITTO_UID = 1883  # the eclipse-mosquitto image's `mosquitto` user
INFLUXDB_UID = 1000  # the influxdb:2.7 image's `influxdb` user
GRAFANA_UID = 472  # the grafana-oss image's `grafana` user
PLANT_UID = 10001  # the `plant` user of our image (Dockerfile)
# site -> the compose service of its twin, the host name the edge and `cli` reach it by.
STACK_SITES = {"site1": "twin", "site2": "twin-site2"}
# The central tier (`central` profile): the central broker as the site brokers reach it.
CENTRAL_PROFILE = "central"
CENTRAL_ADDRESS = "mosquitto-central:1883"
CENTRAL_HISTORIANS = ("central-1", "central-2")  # historian-central-1, -2 in the compose file
# Sites the central profile gives a broker and an edge of their own (mosquitto-site2,
# edge-site2-central); site1 keeps the stack's `mosquitto` and `edge`.
CENTRAL_OWN_SITES = ("site2",)
# mosquitto 2's defaults for `mosquitto_passwd` ($7$: PBKDF2-HMAC-SHA512).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12

app = typer.Typer(help="Set up the docker-compose stack.", no_args_is_help=True)
err = Console(stderr=True, highlight=False)


class StackError(Exception):
    """Something the user can fix (a secret that cannot be used, an unreachable InfluxDB)."""


def stack_mqtt_users(sites: Iterable[str]) -> tuple[str, ...]:
    """The broker's accounts in the stack: shared ones, and `edge-<site>`, `controller-<site>`."""
    shared = tuple(user for user in MQTT_USERS if user not in SITE_USERS)
    return (*shared, *(f"{user}-{site}" for site in sites for user in SITE_USERS))


def override_variable(name: str) -> str:
    """`mqtt_edge-site1_password` -> `PLANT_SECRET_MQTT_EDGE_SITE1_PASSWORD`."""
    return OVERRIDE_PREFIX + name.upper().replace("-", "_")


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


def _write(path: Path, text: str | bytes, mode: int, uid: int | None = None) -> None:
    """Write atomically (a reader never sees half a file) with its final mode and owner."""
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    if uid is not None and os.geteuid() == 0:
        os.chown(tmp, uid, -1)  # 0400/0600: only the owner matters
    tmp.replace(path)


def check_override(variable: str, value: str) -> None:
    """Refuse a chosen secret that compose, Grafana or a config file would mangle."""
    bad = UNSAFE_SECRET.search(value)
    if bad is not None:
        what = "'$'" if bad.group() == "$" else f"character {bad.group()!r}"
        raise StackError(
            f"{variable} holds {what}: compose and Grafana expand '$', and whitespace, quotes "
            "and control characters break env and password files; choose another value"
        )


def init_secrets(
    folder: Path, overrides: Mapping[str, str], names: Sequence[str] = SECRETS
) -> Written:
    """Make sure every secret has a file in `folder`; return what was done to each.

    Every override is checked before anything is written, so a refused one changes nothing.
    """
    for name in names:
        variable = override_variable(name)
        if overrides.get(variable):
            check_override(variable, overrides[variable])
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    done = Written([], [], [])
    for name in names:
        path = folder / name
        given = overrides.get(override_variable(name), "")
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
        # The store: only its owner reads it (`init` in the stack, the demo natively); the
        # services get copies of their own secrets (write_consumers).
        _write(path, value, 0o400)
    return done


def read_secret(folder: Path, name: str) -> str:
    return (folder / name).read_text(encoding="utf-8")


def site_acl(acl: str, sites: Iterable[str]) -> str:
    """deploy/mosquitto/acl with each site user's section repeated per site, for that site.

    `user edge` becomes `user edge-site1` whose lines say `pcmm/v1/site1/...` where the file
    says `pcmm/v1/+/...`, and whose own name in command and reply topics is `edge-site1`; so
    one site's controller can neither command nor read another site. Other users are kept.
    """
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in acl.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "user":
            sections.append((words[1], [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    missing = set(SITE_USERS) - {name for name, _ in sections}
    if missing:
        raise StackError(f"the ACL has no section for {', '.join(sorted(missing))}")
    out = list(preamble)
    for name, lines in sections:
        if name not in SITE_USERS:
            out += lines
            continue
        for site in sites:
            account = f"{name}-{site}"
            for line in lines:
                scoped = line.replace("pcmm/v1/+/", f"pcmm/v1/{site}/")
                scoped = re.sub(rf"/(command/\+|reply)/{name}$", rf"/\1/{account}", scoped)
                out.append(f"user {account}" if line == f"user {name}" else scoped)
    return "\n".join(out) + "\n"


def bridge_users(sites: Iterable[str]) -> tuple[str, ...]:
    """The central broker's accounts of the sites' bridges (CentralLink.username)."""
    return tuple(f"bridge-{site}" for site in sites)


def central_links(
    secrets_dir: Path, sites: Iterable[str], host: str, port: int
) -> list[CentralLink]:
    """Each site's bridge to the central broker at host:port, with its password (the store's
    `mqtt_bridge-<site>_password`)."""
    return [
        CentralLink(site, host, port, read_secret(secrets_dir, f"mqtt_bridge-{site}_password"))
        for site in sites
    ]


def write_mosquitto_config(
    secrets_dir: Path,
    deploy_dir: Path,
    out: Path,
    uid: int = MOSQUITTO_UID,
    sites: Sequence[str] | None = None,
    *,
    bridges: Sequence[CentralLink] = (),
    central: CentralLink | None = None,
) -> None:
    """The broker's config folder: conf and ACL from deploy/, passwd from the secrets.

    With `sites`, the stack's accounts (site_acl); without, deploy/mosquitto/acl as written.
    The central tier (deploy/mosquitto/bridge.conf, bridge.acl): with `bridges` this is the
    central broker: an account and an ACL section (bridge.acl) per site's bridge, and no
    edge or controller account (they stay at their sites); with `central` it is a site
    broker whose conf ends with its bridge to the centre (bridge.conf; the file then holds
    the bridge's password: mode 0600, the broker's user's).
    """
    out.mkdir(parents=True, exist_ok=True)
    conf = (deploy_dir / "mosquitto.conf").read_text(encoding="utf-8")
    if central is None:
        shutil.copyfile(deploy_dir / "mosquitto.conf", out / "mosquitto.conf")
        (out / "mosquitto.conf").chmod(0o644)
    else:
        try:
            section = bridge_config(central, deploy_dir / "bridge.conf")
        except LaunchError as error:
            raise StackError(str(error)) from None
        _write(out / "mosquitto.conf", conf + "\n" + section, 0o600, uid)
    acl = (deploy_dir / "acl").read_text(encoding="utf-8")
    users: Sequence[str] = MQTT_USERS
    if sites is not None:
        acl, users = site_acl(acl, sites), stack_mqtt_users(sites)
    if bridges:
        acl = central_acl(list(bridges), deploy_dir / "bridge.acl", base=acl)
        users = [user for user in users if user.split("-", 1)[0] not in SITE_USERS]
    lines = [
        f"{user}:{mosquitto_hash(read_secret(secrets_dir, f'mqtt_{user}_password'))}"
        for user in users
    ]
    lines += [f"{link.username}:{mosquitto_hash(link.password)}" for link in bridges]
    # mosquitto 2.0.20 warns about (and says future versions refuse) passwd and ACL files
    # that others can read, or that another user owns.
    _write(out / "acl", acl, 0o600, uid)
    _write(out / "passwd", "\n".join(lines) + "\n", 0o600, uid)


def write_opcua_users(secrets_dir: Path) -> Path:
    """The OPC UA server's users file: salted scrypt hashes, as opcua_server.security expects.

    The edge gets the `gateway` role: it calls methods on behalf of the MQTT users its broker
    authenticated, and the server honours `OnBehalfOf` only from a gateway. Everyone else is
    an operator. Written again on every run (new salts), which also replaces a file of an
    older version.
    """
    # Imported here: opcua_server imports asyncua (most of a second), which only this needs.
    from opcua_server.security import Role, hash_password  # noqa: PLC0415

    entries = []
    for user in OPCUA_OPERATORS:
        role = Role.GATEWAY if user == "edge" else Role.OPERATOR
        stored = hash_password(read_secret(secrets_dir, f"opcua_{user}_password"))
        entries.append(f'[users.{user}]\nrole = "{role}"\npassword_hash = "{stored}"\n')
    path = secrets_dir / "opcua_users.toml"
    _write(path, "\n".join(entries), 0o444)
    return path


def server_application_uri(site: str) -> str:
    """The twin's OPC UA application URI (opcua_server.server.PlantServer.application_uri)."""
    return f"urn:pcmm-twin:{site}:opcua-server"


def client_application_uri(name: str) -> str:
    return f"urn:pcmm-twin:{name}:opcua-client"


def opcua_clients(sites: Iterable[str]) -> tuple[str, ...]:
    """The stack's OPC UA client applications: each site's edge and the `cli` tools."""
    return (*(f"edge-{site}" for site in sites), "cli")


async def ensure_opcua_pki(store: Path, sites: Mapping[str, str]) -> None:
    """Each site's server key and certificate, and each client's, in the store.

    A certificate is made when missing, and again when it no longer fits (another host name,
    or expired: asyncua's certificates last a year, and `init` runs on every `up`). The twin
    would otherwise make its own on first start, which the edge could not pin beforehand.
    """
    from asyncua.crypto.cert_gen import setup_self_signed_certificate  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: PLC0415

    subject = {"organizationName": "PCMM twin"}
    for site, host in sites.items():
        folder = store / "opcua" / "server" / site
        folder.mkdir(parents=True, exist_ok=True)
        await setup_self_signed_certificate(
            folder / "key.pem", folder / "cert.der", server_application_uri(site), host,
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], subject,
        )  # fmt: skip
    for name in opcua_clients(sites):
        folder = store / "opcua" / "client" / name
        folder.mkdir(parents=True, exist_ok=True)
        await setup_self_signed_certificate(
            folder / "key.pem", folder / "cert.der", client_application_uri(name), name,
            [ExtendedKeyUsageOID.CLIENT_AUTH], subject,
        )  # fmt: skip
    for path in (store / "opcua").rglob("key.pem"):
        path.chmod(0o400)


@dataclass(frozen=True, slots=True)
class Consumer:
    """One service's secrets folder: its owner, and file -> the store's file it copies."""

    uid: int
    files: dict[str, str] = field(default_factory=dict)


def consumers(sites: Mapping[str, str]) -> dict[str, Consumer]:
    """Who gets which secrets in the stack (a volume each, mounted at its /run/secrets)."""
    out = {
        # the broker's healthcheck logs in as the viewer
        "mosquitto": Consumer(MOSQUITTO_UID, {"mqtt_viewer_password": "mqtt_viewer_password"}),
        "influxdb": Consumer(
            INFLUXDB_UID, {name: name for name in ("influxdb_admin_password", "influxdb_token")}
        ),
        # + influxdb_read_token from `influx-tokens`
        "grafana": Consumer(GRAFANA_UID, {"grafana_admin_password": "grafana_admin_password"}),
        # + influxdb_write_token from `influx-tokens`
        "historian": Consumer(PLANT_UID, {"mqtt_password": "mqtt_historian_password"}),
        "cli": Consumer(
            PLANT_UID,
            {
                "opcua_operator_password": "opcua_operator_password",
                "opcua-client/key.pem": "opcua/client/cli/key.pem",
                "opcua-client/cert.der": "opcua/client/cli/cert.der",
                **{f"opcua-server/{site}.der": f"opcua/server/{site}/cert.der" for site in sites},
            },
        ),
    }
    # The central tier (`central` profile): its broker, its historians, and each site's own
    # broker and edge on it (site1's are the stack's `mosquitto` and `edge`, above and below).
    out["mosquitto-central"] = out["mosquitto"]
    for n in CENTRAL_HISTORIANS:
        # + influxdb_write_token from `influx-tokens-central`
        out[f"historian-{n}"] = out["historian"]
    for site in sites:
        out[f"twin-{site}"] = Consumer(
            PLANT_UID,
            {
                "opcua_users.toml": "opcua_users.toml",
                "opcua-pki/server/key.pem": f"opcua/server/{site}/key.pem",
                "opcua-pki/server/cert.der": f"opcua/server/{site}/cert.der",
                f"opcua-pki/trusted/edge-{site}.der": f"opcua/client/edge-{site}/cert.der",
                "opcua-pki/trusted/cli.der": "opcua/client/cli/cert.der",
            },
        )
        out[f"edge-{site}"] = Consumer(
            PLANT_UID,
            {
                "mqtt_password": f"mqtt_edge-{site}_password",
                "opcua_password": "opcua_edge_password",
                "opcua-client/key.pem": f"opcua/client/edge-{site}/key.pem",
                "opcua-client/cert.der": f"opcua/client/edge-{site}/cert.der",
                "opcua-server.der": f"opcua/server/{site}/cert.der",
            },
        )
        out[f"controller-{site}"] = Consumer(
            PLANT_UID, {"mqtt_password": f"mqtt_controller-{site}_password"}
        )
        if site in CENTRAL_OWN_SITES:
            out[f"mosquitto-{site}"] = out["mosquitto"]
            out[f"edge-{site}-central"] = out[f"edge-{site}"]
    return out


def central_consumers(sites: Iterable[str]) -> tuple[str, ...]:
    """The consumers of the central tier, whose secrets `init-central` writes."""
    own = [site for site in sites if site in CENTRAL_OWN_SITES]
    return (
        "mosquitto-central",
        *(f"historian-{n}" for n in CENTRAL_HISTORIANS),
        *(f"mosquitto-{site}" for site in own),
        *(f"edge-{site}-central" for site in own),
    )


def write_consumers(store: Path, out: Path, sites: Mapping[str, str]) -> list[str]:
    """Copy each consumer's secrets into `out/<consumer>/` where that folder exists.

    In the stack each folder is a volume mounted into `init` (and into its service alone), so
    a folder that is not there is a consumer this deployment does not run. Returns the
    consumers written.
    """
    written = []
    for name, consumer in consumers(sites).items():
        folder = out / name
        if not folder.is_dir():
            continue
        _own(folder, 0o500, consumer.uid)  # the volume's root: not even listed by others
        for target, source in consumer.files.items():
            path = folder / target
            for parent in reversed(path.relative_to(folder).parents):
                (folder / parent).mkdir(exist_ok=True)
                _own(folder / parent, 0o500, consumer.uid)
            _write(path, (store / source).read_bytes(), 0o400, consumer.uid)
        written.append(name)
    return written


def _own(path: Path, mode: int, uid: int) -> None:
    path.chmod(mode)
    if os.geteuid() == 0:
        os.chown(path, uid, -1)


@dataclass(frozen=True, slots=True)
class Grant:
    """A bucket token to make: `read` or `write`, written to `path` for `uid`."""

    action: str
    path: Path
    uid: int

    @classmethod
    def parse(cls, text: str) -> Grant:
        """`read:/run/grafana/influxdb_read_token:472`."""
        parts = text.split(":")
        if len(parts) != 3 or parts[0] not in ("read", "write") or not parts[2].isdigit():
            raise StackError(f"--grant {text!r}: expected read|write:PATH:UID")
        return cls(parts[0], Path(parts[1]), int(parts[2]))


def ensure_bucket_tokens(
    url: str, admin_token: str, org: str, bucket: str, grants: Sequence[Grant]
) -> dict[Path, str]:
    """Make (or keep) a token per grant that may only read, or only write, the bucket.

    A token already in its file is kept while InfluxDB still has it, active, with exactly that
    permission; otherwise a new one is made (the old one stays listed in InfluxDB, described).
    Returns what was done per file: "kept" or "created".
    """
    from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415
    from influxdb_client.domain.permission import Permission  # noqa: PLC0415
    from influxdb_client.domain.permission_resource import PermissionResource  # noqa: PLC0415
    from influxdb_client.rest import ApiException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError  # noqa: PLC0415

    done: dict[Path, str] = {}
    try:
        with InfluxDBClient(url=url, token=admin_token, org=org, timeout=10_000) as client:
            orgs = client.organizations_api().find_organizations(org=org)
            found = client.buckets_api().find_bucket_by_name(bucket)
            if not orgs or found is None:
                raise StackError(f"InfluxDB {url} has no organisation {org!r} or bucket {bucket!r}")
            org_id, bucket_id = orgs[0].id, found.id
            api = client.authorizations_api()
            existing = {a.token: a for a in api.find_authorizations(org_id=org_id)}
            for grant in grants:
                wanted = (grant.action, "buckets", bucket_id)
                token = grant.path.read_text(encoding="utf-8") if grant.path.exists() else ""
                auth = existing.get(token)
                if (
                    auth is not None
                    and auth.status == "active"
                    and [(p.action, p.resource.type, p.resource.id) for p in auth.permissions]
                    == [wanted]
                ):
                    done[grant.path] = "kept"
                    continue
                resource = PermissionResource(type="buckets", id=bucket_id, org_id=org_id)  # type: ignore[no-untyped-call]
                created = api.create_authorization(
                    org_id=org_id,
                    permissions=[Permission(action=grant.action, resource=resource)],  # type: ignore[no-untyped-call]
                )
                _write(grant.path, created.token, 0o400, grant.uid)
                done[grant.path] = "created"
    except ApiException as error:
        raise StackError(f"InfluxDB {url}: {error.status} {error.reason}") from None
    except (HTTPError, OSError) as error:
        raise StackError(f"InfluxDB {url} unreachable: {error}") from None
    except ValueError as error:  # an answer influxdb-client cannot read: not an InfluxDB 2
        raise StackError(f"InfluxDB {url}: unexpected answer: {error}") from None
    return done


def parse_site_brokers(values: Sequence[str], sites: Mapping[str, str]) -> dict[str, Path]:
    """`--site-broker site2=/mosquitto-site2-config`: a site and its own broker's folder."""
    out = {}
    for value in values:
        site, _, folder = value.partition("=")
        if site not in sites or not folder:
            raise StackError(f"--site-broker {value!r}: expected SITE=DIR for one of the sites")
        out[site] = Path(folder)
    return out


def parse_address(value: str) -> tuple[str, int]:
    """`mosquitto-central:1883`."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StackError(f"--central-address {value!r}: expected HOST:PORT")
    return host, int(port)


def parse_sites(values: Sequence[str]) -> dict[str, str]:
    """`--site site1=twin`: the site id and its twin's host name."""
    sites = {}
    for value in values:
        site, _, host = value.partition("=")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", site) or not host:
            raise StackError(f"--site {value!r}: expected SITE=TWIN_HOST, e.g. site1=twin")
        sites[site] = host
    return sites


def _fail(error: Exception) -> typer.Exit:
    err.print(f"[red]error:[/] {error}", soft_wrap=True)  # one line, whatever the width
    return typer.Exit(2)


@app.command()
def init(
    secrets_dir: Annotated[
        Path, typer.Option(help="The secret store (only `init` mounts it in the stack).")
    ] = Path("/run/secrets"),
    mosquitto_dir: Annotated[
        Path | None, typer.Option(help="Write the broker's config folder here.")
    ] = None,
    deploy_mosquitto: Annotated[
        Path, typer.Option(help="deploy/mosquitto: the broker config and ACL to copy.")
    ] = Path("/deploy/mosquitto"),
    mosquitto_uid: Annotated[
        int, typer.Option(help="Owner of the broker's passwd and ACL (when run as root).")
    ] = MOSQUITTO_UID,
    consumers_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of the services' secret folders (each written if present)."),
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option(help="SITE=TWIN_HOST, once per site (default: the compose file's)."),
    ] = None,
    profiles: Annotated[
        str,
        typer.Option(help="The compose profiles the stack runs with (COMPOSE_PROFILES)."),
    ] = "",
    bridge: Annotated[
        str | None,
        typer.Option(
            help="With the `central` profile: the --mosquitto-dir broker is this site's own, "
            "bridged to the centre."
        ),
    ] = None,
    central_address: Annotated[
        str, typer.Option(help="HOST:PORT of the central broker, as the site brokers reach it.")
    ] = CENTRAL_ADDRESS,
    central_dir: Annotated[
        Path | None,
        typer.Option(help="Write the central broker's config folder here (`central` profile)."),
    ] = None,
    site_broker: Annotated[
        list[str] | None,
        typer.Option(help="SITE=DIR: write DIR as SITE's own broker, bridged to the centre."),
    ] = None,
) -> None:
    """Generate missing secrets (PLANT_SECRET_<NAME> overrides one) and derived files."""
    try:
        sites = parse_sites(site) if site else dict(STACK_SITES)
        central = CENTRAL_PROFILE in profiles.replace(",", " ").split()
        own_brokers = parse_site_brokers(site_broker or [], sites)
        if (central_dir is not None or own_brokers) and not central:
            raise StackError(
                "the central tier needs COMPOSE_PROFILES=central (in .env or the environment: "
                "site1's broker is bridged when `init` writes its config), not --profile central"
            )
        accounts = (*stack_mqtt_users(sites), *bridge_users(sites))
        done = init_secrets(secrets_dir, os.environ, secret_names(accounts))
        write_opcua_users(secrets_dir)
        asyncio.run(ensure_opcua_pki(secrets_dir, sites))
        host, port = parse_address(central_address)
        links = {link.site: link for link in central_links(secrets_dir, sites, host, port)}
        if bridge is not None and bridge not in sites:
            raise StackError(f"--bridge {bridge!r}: not one of the sites ({', '.join(sites)})")
        if mosquitto_dir is not None:
            link = links[bridge] if central and bridge is not None else None
            write_mosquitto_config(
                secrets_dir, deploy_mosquitto, mosquitto_dir, mosquitto_uid, list(sites),
                central=link,
            )  # fmt: skip
        for own, folder in own_brokers.items():
            write_mosquitto_config(
                secrets_dir, deploy_mosquitto, folder, mosquitto_uid, [own], central=links[own]
            )
        if central_dir is not None:
            write_mosquitto_config(
                secrets_dir, deploy_mosquitto, central_dir, mosquitto_uid, [],
                bridges=list(links.values()),
            )  # fmt: skip
        served = write_consumers(secrets_dir, consumers_dir, sites) if consumers_dir else []
    except (OSError, StackError) as error:
        raise _fail(error) from None
    for what, names in (
        ("generated", done.generated),
        ("set from PLANT_SECRET_*", done.overridden),
        ("kept", done.kept),
        ("secrets written for", served),
    ):
        if names:
            err.print(f"{what}: {', '.join(names)}")


@app.command("influx-tokens")
def influx_tokens(
    url: Annotated[str, typer.Option(help="InfluxDB 2.x URL.")] = "http://influxdb:8086",
    admin_token_file: Annotated[
        Path, typer.Option(help="The all-access token (InfluxDB's first-start token).")
    ] = Path("/run/secrets/influxdb_token"),
    org: Annotated[str, typer.Option(help="Organisation.")] = "pcmm",
    bucket: Annotated[str, typer.Option(help="Bucket the tokens are for.")] = "pcmm",
    grant: Annotated[
        list[str] | None,
        typer.Option(help="read|write:PATH:UID, a token to make or keep (repeatable)."),
    ] = None,
) -> None:
    """Tokens that may only read (Grafana) or only write (the historian) the bucket."""
    try:
        grants = [Grant.parse(text) for text in grant or []]
        admin = admin_token_file.read_text(encoding="utf-8").strip()
        done = ensure_bucket_tokens(url, admin, org, bucket, grants)
    except (OSError, StackError) as error:
        raise _fail(error) from None
    for path, what in done.items():
        err.print(f"{what}: {path}")
