"""Keys, signatures, encryption and every way a package can be wrong."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agent.codes.package import (
    MAGIC,
    KeyFileError,
    PackageError,
    generate_keys,
    load_private,
    load_public,
    load_signing_key,
    load_verify_key,
    make_package,
    open_package,
)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    generate_keys(tmp_path / "cloud")
    generate_keys(tmp_path / "line", kind="x25519")
    generate_keys(tmp_path / "other")
    generate_keys(tmp_path / "otherline", kind="x25519")
    return tmp_path


def test_private_key_is_private_and_never_overwritten(keys: Path) -> None:
    mode = stat.S_IMODE((keys / "cloud" / "private.pem").stat().st_mode)
    assert mode == 0o600
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_keys(keys / "cloud")


def test_wrong_key_kind_is_named(keys: Path) -> None:
    with pytest.raises(KeyFileError, match="not an Ed25519 private key"):
        load_signing_key(keys / "line" / "private.pem")
    with pytest.raises(KeyFileError, match=r"not a PEM public key"):
        load_verify_key(keys / "cloud" / "private.pem")


def test_signed_package_round_trip(keys: Path) -> None:
    data = make_package(["A1", "A2"], level="item", signing_key=load_signing_key(keys / "cloud" / "private.pem"))
    pkg = open_package(data, verify_key=load_verify_key(keys / "cloud" / "public.pem"))
    assert pkg.body == b"A1\nA2\n" and pkg.manifest.count == 2 and pkg.manifest.level == "item"


def test_encrypted_package_round_trip_and_wrong_line(keys: Path) -> None:
    skey = load_signing_key(keys / "cloud" / "private.pem")
    data = make_package(["A1"], level="item", signing_key=skey, encrypt_to=load_public(keys / "line" / "public.pem"))
    assert b"A1" not in data.split(b"\n", 2)[2]  # the codes are not readable in the file
    vkey = load_verify_key(keys / "cloud" / "public.pem")
    assert open_package(data, verify_key=vkey, line_key=load_private(keys / "line" / "private.pem")).body == b"A1\n"
    with pytest.raises(PackageError, match="wrong line or tampered"):
        open_package(data, verify_key=vkey, line_key=load_private(keys / "otherline" / "private.pem"))
    with pytest.raises(PackageError, match=r"no security\.line_private_key"):
        open_package(data, verify_key=vkey)


def _header(data: bytes) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    head, body = data[len(MAGIC):].split(b"\n", 1)
    return json.loads(head), body


def _rebuild(header: dict, body: bytes) -> bytes:  # type: ignore[type-arg]
    return MAGIC + json.dumps(header).encode() + b"\n" + body


def test_forged_and_tampered_packages_are_refused(keys: Path) -> None:
    vkey = load_verify_key(keys / "cloud" / "public.pem")
    good = make_package(["A1", "A2"], level="item", signing_key=load_signing_key(keys / "cloud" / "private.pem"))
    forged = make_package(["A1"], level="item", signing_key=load_signing_key(keys / "other" / "private.pem"))
    with pytest.raises(PackageError, match="signature does not verify"):
        open_package(forged, verify_key=vkey)
    header, body = _header(good)
    with pytest.raises(PackageError, match="body sha256"):
        open_package(_rebuild(header, body.replace(b"A2", b"A3")), verify_key=vkey)
    header["manifest"]["count"] = 3
    with pytest.raises(PackageError, match="signature does not verify"):
        open_package(_rebuild(header, body), verify_key=vkey)
    header, body = _header(good)
    header["signature"] = None
    with pytest.raises(PackageError, match="unsigned"):
        open_package(_rebuild(header, body), verify_key=vkey)
    with pytest.raises(PackageError, match="bad magic"):
        open_package(b"A1\nA2\n", verify_key=vkey)
    with pytest.raises(PackageError, match="not valid JSON"):
        open_package(MAGIC + b"{nope\nA1\n", verify_key=vkey)
