"""OPC UA user passwords: salted scrypt hashes in one self-describing string."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from opcua_server.security import (
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    PasswordHash,
    PlantUserManager,
    Role,
    SecurityError,
    hash_password,
    load_users,
    verify_password,
)


def test_the_same_password_hashes_differently_each_time_and_both_verify() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second  # a random salt per hash
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32


def test_a_wrong_password_does_not_verify() -> None:
    stored = hash_password("s3cret")
    assert not verify_password("s3cret ", stored)
    assert not verify_password("", stored)


def test_a_hash_with_one_changed_byte_does_not_verify() -> None:
    parsed = PasswordHash.parse(hash_password("s3cret"))
    flipped = bytes([parsed.digest[0] ^ 1]) + parsed.digest[1:]
    tampered = str(PasswordHash(parsed.n, parsed.r, parsed.p, parsed.salt, flipped))
    assert not verify_password("s3cret", tampered)


SALT = base64.b64encode(bytes(16)).decode()
HASH = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",  # old SHA-256 hex
        f"bcrypt$16384$8$1${SALT}${HASH}",
        f"scrypt$16384$8${SALT}${HASH}",  # a field missing
        f"scrypt$16384$8$1${SALT}${HASH}$",
        f"scrypt$x$8$1${SALT}${HASH}",
        f"scrypt$ 16384$8$1${SALT}${HASH}",
        f"scrypt$16_384$8$1${SALT}${HASH}",
        f"scrypt$16000$8$1${SALT}${HASH}",  # n not a power of two
        f"scrypt$1$8$1${SALT}${HASH}",
        f"scrypt$1073741824$8$1${SALT}${HASH}",  # 1 TiB of memory per login
        f"scrypt$16384$8$1$not*base64${HASH}",
        f"scrypt$16384$8$1${SALT[:-1]}${HASH}",  # padding broken
        f"scrypt$16384$8$1$AAAA${HASH}",  # 3-byte salt
        f"scrypt$16384$8$1${SALT}$AAAA",  # 3-byte hash
        f" scrypt$16384$8$1${SALT}${HASH}",
    ],
)
def test_a_malformed_or_tampered_hash_string_is_refused(stored: str) -> None:
    with pytest.raises(SecurityError):
        verify_password("s3cret", stored)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_an_old_unsalted_sha256_entry_is_refused_and_the_message_says_what_to_do(
    tmp_path: Path,
) -> None:
    old = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    path = write(
        tmp_path / "u.toml", f'[users.edge]\nrole = "operator"\npassword_sha256 = "{old}"\n'
    )
    with pytest.raises(SecurityError) as caught:
        load_users(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "edge" in message and "password_sha256" in message and "plant stack init" in message
    assert old not in message


def test_a_users_file_entry_with_a_bad_hash_is_refused_at_load_without_the_value(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "u.toml", '[users.edge]\nrole = "operator"\npassword_hash = "x$y"\n')
    with pytest.raises(SecurityError, match=r"edge's password_hash: not a scrypt") as caught:
        load_users(path)
    assert "x$y" not in str(caught.value)


def test_users_log_in_with_their_password_only(tmp_path: Path) -> None:
    path = write(
        tmp_path / "u.toml",
        f'[users.alice]\nrole = "operator"\npassword_hash = "{hash_password("alice-pw")}"\n'
        f'[users.victor]\nrole = "viewer"\npassword_hash = "{hash_password("victor-pw")}"\n',
    )
    manager = PlantUserManager(load_users(path), allow_anonymous=False)
    alice = manager.get_user(None, "alice", "alice-pw")
    assert alice is not None and alice.plant_role is Role.OPERATOR
    victor = manager.get_user(None, "victor", "victor-pw")
    assert victor is not None and victor.plant_role is Role.VIEWER
    assert manager.get_user(None, "alice", "victor-pw") is None
    assert manager.get_user(None, "mallory", "alice-pw") is None
    assert manager.get_user(None, "alice", None) is None
    assert manager.get_user(None) is None  # anonymous not allowed


def test_the_module_prints_a_new_hash_for_a_password() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opcua_server.security", "s3cret"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert verify_password("s3cret", done.stdout.strip())
