"""The Mosquitto starter: deploy/mosquitto's configuration on a loopback port, as a child.

One for the demo, the tests and the benchmarks. The broker's configuration is the deployed one
with four lines placed (listener, password file, ACL file, persistence folder), so whoever starts
it checks the files that are deployed; what fills the password file (the demo's generated
secrets, `mosquitto_passwd` in the tests) is up to the caller.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from apps.launcher import Child, LaunchError, stop_all, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_MOSQUITTO = ROOT / "deploy" / "mosquitto"
BRIDGE_CONF = DEPLOY_MOSQUITTO / "bridge.conf"  # a site broker's link to the centre
BRIDGE_ACL = DEPLOY_MOSQUITTO / "bridge.acl"  # the centre's grant to one site's link
SITE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # as the OPC UA server's site_id
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def find_mosquitto(given: Path | None = None) -> Path:
    """The mosquitto binary: `given`, or from PATH (and /usr/sbin, where Debian puts it)."""
    if given is not None:
        if not (given.is_file() and os.access(given, os.X_OK)):
            raise LaunchError(f"no mosquitto at {given}")
        return given
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    if found is None:
        raise LaunchError(
            "the demo needs a local Mosquitto broker: apt-get install -y mosquitto "
            "(or use docker compose up)"
        )
    return Path(found)


def mosquitto_config(text: str, port: int, folder: Path, data: Path | None = None) -> str:
    """deploy/mosquitto/mosquitto.conf with a loopback listener, `folder`'s passwd and ACL, and
    persistence in `data` (default: `folder`)."""
    replace = {
        "listener": f"listener {port} 127.0.0.1",
        "password_file": f"password_file {folder / 'passwd'}",
        "acl_file": f"acl_file {folder / 'acl'}",
        "persistence_location": f"persistence_location {data or folder}/",
    }
    lines = [replace.get(line.split(" ", 1)[0], line) for line in text.splitlines()]
    missing = set(replace) - {line.split(" ", 1)[0] for line in lines}
    if missing:
        raise LaunchError(f"{DEPLOY_MOSQUITTO}/mosquitto.conf lacks {', '.join(sorted(missing))}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class CentralLink:
    """A site broker's bridge to the central broker (the central tier, docs/scaling.md)."""

    site: str
    host: str
    port: int
    password: str

    def __post_init__(self) -> None:
        # The centre's own services (historians, their status, metrics and markers) use the
        # site level `central` and `central-<n>`; a site of that name would be granted them.
        if not SITE_ID.fullmatch(self.site) or self.site.split("-")[0] == "central":
            raise LaunchError(
                f"site id {self.site!r}: letters, digits, _ and -, starting with a letter, "
                "and not central or central-<anything> (the centre's own)"
            )

    @property
    def username(self) -> str:
        """Its account on the central broker, one per site (deploy/mosquitto/bridge.acl)."""
        return f"bridge-{self.site}"

    def values(self) -> dict[str, str]:
        return {
            "site": self.site,
            "address": f"{self.host}:{self.port}",
            "username": self.username,
            "password": self.password,
        }


def bridge_config(link: CentralLink, template: Path = BRIDGE_CONF) -> str:
    """deploy/mosquitto/bridge.conf for `link`: the section a site broker's config ends with."""
    if any(c.isspace() for c in link.password) or not link.password:
        raise LaunchError("a bridge password must be non-empty and without white space")
    return Template(template.read_text()).substitute(link.values())


def central_acl(
    sites: list[CentralLink], template: Path = BRIDGE_ACL, base: str | None = None
) -> str:
    """The central broker's ACL: `base` (default: deploy/mosquitto/acl) plus one bridge
    account per site."""
    if base is None:
        base = (DEPLOY_MOSQUITTO / "acl").read_text()
    text = Template(template.read_text())
    return base + "".join("\n" + text.substitute(link.values()) for link in sites)


def mosquitto_user() -> pwd.struct_passwd | None:
    """The user a root-started mosquitto drops to; None when not root (it stays as us)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


def give_to_mosquitto(*paths: Path) -> None:
    """Started as root, mosquitto reads its files and writes its persistence as its own user."""
    user = mosquitto_user()
    if user is not None:
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)


class Server:
    """What every server started as one child can do; `start` (the subclass's) makes `child`."""

    child: Child | None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop cleanly: SIGTERM (a broker saves its sessions and queues to disk first), and
        SIGKILL past `timeout_s`."""
        if self.child is not None:
            stop_all([self.child], timeout_s)

    def kill(self) -> None:
        """SIGKILL: what was not yet saved is lost."""
        if self.child is not None:
            self.child.kill()

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    @property
    def pid(self) -> int:
        return self.child.pid if self.child is not None else 0

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.child.proc if self.child is not None else None


@dataclass
class Mosquitto(Server):
    """A broker on 127.0.0.1:`port` run from `folder` (mosquitto.conf, passwd, acl).

    `passwords` are the accounts the caller knows (user -> password). `start` again after
    `stop` or `kill` restarts it on the same port with the same persistence (outage tests).
    """

    port: int
    folder: Path
    passwords: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    binary: Path | None = None  # None: find_mosquitto()
    log_file: Path | None = None  # None: mosquitto.log in `folder`
    env: dict[str, str] | None = None
    name: str = "mosquitto"  # the child's name (the demo's central tier has several brokers)
    child: Child | None = None
    starts: int = 0

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self.passwords)

    @property
    def log(self) -> Path:
        return self.log_file or self.folder / "mosquitto.log"

    @property
    def conf(self) -> Path:
        return self.folder / "mosquitto.conf"

    def write_config(
        self,
        source: Path | None = None,
        data: Path | None = None,
        central: CentralLink | None = None,
    ) -> None:
        """mosquitto.conf from `source` (default: deploy/mosquitto's) for this port and folder;
        with `central`, this is a site broker bridged to that central broker."""
        base = (source or DEPLOY_MOSQUITTO / "mosquitto.conf").read_text()
        text = mosquitto_config(base, self.port, self.folder, data)
        if central is not None:
            text += "\n" + bridge_config(central)
        self.conf.write_text(text)
        self.conf.chmod(0o600 if central is not None else 0o644)  # it holds the link's password

    def process(self) -> Child:
        """The broker's process (not started): the demo stops it with its services."""
        if self.child is None:
            binary = self.binary or find_mosquitto()
            self.child = Child(
                name=self.name,
                argv=[str(binary), "-c", str(self.conf)],
                env=self.env,
                cwd=self.folder,
                log=self.log,
            )
        return self.child

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start (or restart) on the same port; return once it accepts connections."""
        child = self.process()
        if child.running:
            return
        child.start()
        self.starts += 1
        wait_for_port(child, self.port, timeout_s, log_lines=30)
