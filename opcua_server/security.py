"""Who may connect and what they may do: certificates, users and roles.

- The server's key and self-signed certificate are generated on first start into
  `<cert_dir>/server/`; client application certificates are trusted by copying them into
  `<cert_dir>/trusted/` (a client whose certificate is not there cannot open a session).
- Users come from a TOML file: `[users.alice]` with `role = "operator"` or `"viewer"` and
  `password_sha256 = "<hex>"` (`python -m opcua_server.security PASSWORD` prints one).
- Roles: anonymous and viewer read, browse, subscribe and read history; operator also writes
  setpoints and calls methods. Those two checks are made by the write and call handlers, so that
  a refused write is still audited; the permission ruleset only keeps the address-space
  management services (AddNodes, DeleteNodes, ...) away from every network client.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import sys
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography.x509.oid import ExtendedKeyUsageOID


class Role(StrEnum):
    """What a user may do."""

    ANONYMOUS = "anonymous"  # read only
    VIEWER = "viewer"  # read only, but known by name
    OPERATOR = "operator"  # also write setpoints and call methods


class SecurityError(ValueError):
    """A users file or certificate directory the server cannot use; the message says why."""


@dataclass
class PlantUser(User):  # type: ignore[misc]
    """An asyncua user that also carries the plant role."""

    plant_role: Role = Role.ANONYMOUS

    @property
    def label(self) -> str:
        """The name written to the audit log."""
        return self.name or "anonymous"

    @property
    def may_operate(self) -> bool:
        return self.plant_role is Role.OPERATOR


ANONYMOUS = PlantUser(role=UserRole.Anonymous, name="anonymous", plant_role=Role.ANONYMOUS)


@dataclass(frozen=True, slots=True)
class UserEntry:
    name: str
    role: Role
    password_sha256: str


def hash_password(password: str) -> str:
    """The hex SHA-256 of a password, as stored in the users file."""
    return hashlib.sha256(password.encode()).hexdigest()


def load_users(path: Path | None) -> dict[str, UserEntry]:
    """Read a users file; no file means no named users (anonymous only)."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SecurityError(f"users file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SecurityError(f"users file {path}: {error}") from None
    users: dict[str, UserEntry] = {}
    for name, entry in data.get("users", {}).items():
        if not isinstance(entry, dict):
            raise SecurityError(f"users file {path}: [users.{name}] must be a table")
        role = entry.get("role")
        if role not in (Role.VIEWER, Role.OPERATOR):
            raise SecurityError(f"users file {path}: {name} needs role 'viewer' or 'operator'")
        digest = entry.get("password_sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            raise SecurityError(f"users file {path}: {name} needs a password_sha256 (64 hex)")
        users[name] = UserEntry(name, Role(role), digest.lower())
    return users


class PlantUserManager:
    """Authenticates sessions: anonymous (if allowed) or a user name and password."""

    def __init__(self, users: dict[str, UserEntry], allow_anonymous: bool) -> None:
        self.users = users
        self.allow_anonymous = allow_anonymous

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> PlantUser | None:
        if username is None:
            return ANONYMOUS if self.allow_anonymous else None
        entry = self.users.get(username)
        if entry is None or password is None:
            return None
        if not hmac.compare_digest(hash_password(password), entry.password_sha256):
            return None
        return PlantUser(role=UserRole.User, name=entry.name, plant_role=entry.role)


class PlantPermissions(PermissionRuleset):  # type: ignore[misc]
    """Every session may use the ordinary services; none may change the address space."""

    def __init__(self) -> None:
        self._allowed = {ua.NodeId(type_id) for type_id in USER_TYPES}

    def check_validity(self, user: Any, action_type_id: ua.NodeId, body: Any) -> bool:
        return action_type_id in self._allowed


@dataclass(frozen=True, slots=True)
class ServerPki:
    """Where the server's key, certificate and trusted client certificates are."""

    key: Path
    certificate: Path
    trusted: Path


async def ensure_server_certificate(
    cert_dir: Path, application_uri: str, hostname: str | None = None
) -> ServerPki:
    """Create the PKI folders, and the server key and certificate if they are missing."""
    server_dir, trusted = cert_dir / "server", cert_dir / "trusted"
    try:
        server_dir.mkdir(parents=True, exist_ok=True)
        trusted.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SecurityError(f"certificate directory {cert_dir}: {error.strerror}") from None
    pki = ServerPki(server_dir / "key.pem", server_dir / "cert.der", trusted)
    await setup_self_signed_certificate(
        pki.key,
        pki.certificate,
        application_uri,
        hostname or socket.gethostname(),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"organizationName": "PCMM twin"},
    )
    return pki


class TrustedClients:
    """Certificate validator: only client certificates found in the trusted folder, valid now.

    The folder is read again on every new session, so trusting a client needs no restart.
    """

    def __init__(self, trusted: Path) -> None:
        self.trusted = trusted

    async def __call__(self, certificate: Any, app_description: ua.ApplicationDescription) -> None:
        files = [p for p in self.trusted.glob("*") if p.suffix.lower() in (".der", ".pem")]
        if not files:  # an empty trust store cannot even be built: nobody is trusted
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        store = TrustStore([self.trusted], [])
        await store.load()
        options = (
            CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
        )
        await CertificateValidator(options, store).validate(certificate, app_description)


if __name__ == "__main__":
    print(hash_password(sys.argv[1]) if len(sys.argv) == 2 else "usage: PASSWORD")
