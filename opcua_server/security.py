"""Who may connect and what they may do: certificates, users and roles.

- The server's key and self-signed certificate are generated on first start into
  `<cert_dir>/server/`; client application certificates are trusted by copying them into
  `<cert_dir>/trusted/` (a client whose certificate is not there cannot open a session).
- Users come from a TOML file: `[users.alice]` with `role = "operator"`, `"viewer"` or
  `"gateway"` and `password_hash = "scrypt$<n>$<r>$<p>$<salt>$<hash>"` (salt and hash in
  base64; a random salt per user; `python -m opcua_server.security PASSWORD` prints one).
  The unsalted `password_sha256` of earlier versions is refused: regenerate the file
  (`plant stack init`).
- Roles: anonymous and viewer read, browse, subscribe and read history; operator also writes
  setpoints and calls methods; gateway (the MQTT edge's account) is an operator whose
  `OnBehalfOf` argument is honoured: it carries out commands for users its own broker
  authenticated, and the audit trail names them. An operator who names someone else in
  `OnBehalfOf` is refused (and audited): otherwise any operator could put another person's
  name on a record. Those checks are made by the write and call handlers, so that a refused
  write is still audited; the permission ruleset only keeps the address-space management
  services (AddNodes, DeleteNodes, ...) away from every network client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
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
    GATEWAY = "gateway"  # an operator that may act on behalf of users it authenticated


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
        return self.plant_role in (Role.OPERATOR, Role.GATEWAY)

    @property
    def may_act_for_others(self) -> bool:
        """Whether a method's `OnBehalfOf` is honoured for this user (a gateway only)."""
        return self.plant_role is Role.GATEWAY


ANONYMOUS = PlantUser(role=UserRole.Anonymous, name="anonymous", plant_role=Role.ANONYMOUS)


# scrypt (RFC 7914) with the cost Percival's scrypt paper gives for interactive logins:
# 128 * n * r = 16 MiB of memory per hash, which is what makes guessing on GPUs expensive.
# A login must stay well under 100 ms. Measured on the project's machine (2 cores, AMD EPYC,
# CPython 3.11, OpenSSL 3), one hash over 40 runs: 41 ms median, 52 ms at worst when idle;
# with both cores busy with other work, 52-54 ms median and up to 110 ms. A whole refused or
# accepted `get_user` costs the same (one hash). n = 2**15 took 105 ms, over the budget, and
# OWASP's n = 2**17 (128 MiB) 420 ms: far over it.
# A hash states its own n, r, p, so these can change without invalidating users files.
SCRYPT_N = 2**14  # CPU and memory cost
SCRYPT_R = 8  # block size (RFC 7914's r=8, p=1)
SCRYPT_P = 1  # parallelism: one core per login
SALT_BYTES = 16  # random per user and per hash: equal passwords never hash alike
HASH_BYTES = 32
# A users file cannot make a login cost more than this (a typo in n would stall the server).
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
HASH_SCHEME = "scrypt"
_INT = r"([1-9][0-9]{0,9})"
_B64 = r"([A-Za-z0-9+/]+={0,2})"
_HASH_FORMAT = re.compile(rf"{HASH_SCHEME}\${_INT}\${_INT}\${_INT}\${_B64}\${_B64}")


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A parsed `scrypt$n$r$p$salt$hash` string."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Read a stored hash; raise `SecurityError` (without the value) if it is not one."""
        match = _HASH_FORMAT.fullmatch(text)
        if match is None:
            raise SecurityError("not a scrypt$n$r$p$salt$hash string (salt, hash: base64)")
        n, r, p = (int(group) for group in match.group(1, 2, 3))
        try:
            salt, digest = (base64.b64decode(group, validate=True) for group in match.group(4, 5))
        except (ValueError, binascii.Error):  # wrong padding
            raise SecurityError("salt or hash is not valid base64") from None
        if n < 2 or n & (n - 1) or r < 1 or p < 1 or _scrypt_memory(n, r, p) > MAX_SCRYPT_MEMORY:
            raise SecurityError(f"scrypt parameters n={n} r={r} p={p} out of range")
        if len(salt) < 8 or len(digest) < 16:
            raise SecurityError("salt or hash too short")
        return cls(n, r, p, salt, digest)

    def __str__(self) -> str:
        b64 = base64.b64encode
        salt, digest = b64(self.salt).decode(), b64(self.digest).decode()
        return f"{HASH_SCHEME}${self.n}${self.r}${self.p}${salt}${digest}"

    def matches(self, password: str) -> bool:
        """Whether `password` hashes to this, compared in constant time."""
        derived = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(derived, self.digest)


def _scrypt_memory(n: int, r: int, p: int) -> int:
    return 128 * r * (n + p + 2)  # what OpenSSL allocates (its maxmem check)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=size, maxmem=_scrypt_memory(n, r, p)
    )


def hash_password(password: str) -> str:
    """A new `scrypt$n$r$p$salt$hash` for the users file, with a fresh random salt."""
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return str(PasswordHash(n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, salt=salt, digest=digest))


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored hash; `SecurityError` if `stored` is not one."""
    return PasswordHash.parse(stored).matches(password)


# Hashed for an unknown user name, so that a login takes as long whether the name exists or not.
_NO_USER = PasswordHash(
    n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, salt=bytes(SALT_BYTES), digest=bytes(HASH_BYTES)
)


@dataclass(frozen=True, slots=True)
class UserEntry:
    name: str
    role: Role
    password: PasswordHash


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
        if role not in (Role.VIEWER, Role.OPERATOR, Role.GATEWAY):
            raise SecurityError(
                f"users file {path}: {name} needs role 'viewer', 'operator' or 'gateway'"
            )
        if "password_sha256" in entry:  # unsalted: never accepted again, not even to verify
            raise SecurityError(
                f"users file {path}: {name} has an unsalted password_sha256, no longer accepted;"
                " regenerate the file (`plant stack init` does) or set password_hash to the"
                " output of `python -m opcua_server.security PASSWORD`"
            )
        stored = entry.get("password_hash")
        if not isinstance(stored, str):
            raise SecurityError(f"users file {path}: {name} needs a password_hash")
        try:
            password = PasswordHash.parse(stored)
        except SecurityError as error:
            raise SecurityError(f"users file {path}: {name}'s password_hash: {error}") from None
        users[name] = UserEntry(name, Role(role), password)
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
        if password is None:
            return None
        entry = self.users.get(username)
        # An unknown name costs a hash too, so the time of a refusal does not tell which names
        # exist. The hash blocks the event loop once per login (about 40 ms, see SCRYPT_N).
        stored = entry.password if entry is not None else _NO_USER
        if not stored.matches(password) or entry is None:
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
    if len(sys.argv) != 2:
        sys.exit("usage: python -m opcua_server.security PASSWORD  (prints a new password_hash)")
    print(hash_password(sys.argv[1]))
