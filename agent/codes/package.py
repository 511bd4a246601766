"""Code packages (码包): the signed, optionally encrypted file the cloud sends to a line.

Layout (one file, so it travels and is stored as a unit):

    LINEAGENT-PACKAGE 1\\n
    {"manifest": {...}, "signature": "<b64>", "encryption": null | {...}}\\n
    <body: UTF-8 codes, one per line; or its AES-256-GCM ciphertext>

The Ed25519 signature covers the canonical manifest (sorted keys, no spaces), and the manifest
carries the sha256 of the plaintext body, so one signature check plus one hash proves every code.
Encryption to a line uses X25519: an ephemeral key agrees a secret with the line's public key,
HKDF-SHA256 derives the AES-256-GCM key; GCM authenticates the ciphertext. The agent side only
verifies and decrypts; making packages is for the cloud side, the demo and the tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"LINEAGENT-PACKAGE 1\n"
ENC_ALG = "X25519-HKDF-SHA256/AES-256-GCM"
HKDF_INFO = b"lineagent code package v1"
MAX_HEADER = 64 * 1024


class PackageError(ValueError):
    """A package that must be refused; the message says what is wrong with it."""


class KeyFileError(ValueError):
    pass


# ---- keys -------------------------------------------------------------------------------------


def generate_keys(out_dir: Path, *, kind: str = "ed25519") -> tuple[Path, Path]:
    """Write DIR/private.pem (mode 0600) and DIR/public.pem; refuses to overwrite a private key."""
    out_dir.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out_dir / "private.pem", out_dir / "public.pem"
    if priv_path.exists():
        raise KeyFileError(f"{priv_path} exists; refusing to overwrite a private key")
    private: Ed25519PrivateKey | X25519PrivateKey
    if kind == "ed25519":
        private = Ed25519PrivateKey.generate()
    elif kind == "x25519":
        private = X25519PrivateKey.generate()
    else:
        raise KeyFileError(f"unknown key kind {kind!r} (ed25519 signs, x25519 encrypts)")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv_path, pub_path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror or exc}") from exc


def load_private(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM private key") from exc


def load_public(path: Path) -> Any:
    try:
        return serialization.load_pem_public_key(_read(path))
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM public key") from exc


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    key = load_private(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key")
    return key


def load_verify_key(path: Path) -> Ed25519PublicKey:
    key = load_public(path)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key")
    return key


# ---- canonical bytes and signatures (also used for signed downlink commands) -------------------


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(obj: Any, key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.sign(canonical(obj))).decode()


def verify(obj: Any, signature: str, key: Ed25519PublicKey) -> None:
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical(obj))
    except (InvalidSignature, ValueError) as exc:
        raise PackageError("signature does not verify with the cloud public key") from exc


# ---- packages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    package_id: str
    issuer: str
    level: str
    count: int
    code_format: str
    body_sha256: str
    created: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id, "issuer": self.issuer, "level": self.level,
            "count": self.count, "code_format": self.code_format, "body_sha256": self.body_sha256,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        fields = ("package_id", "issuer", "level", "count", "code_format", "body_sha256", "created")
        if not isinstance(d, dict):
            raise PackageError("manifest is not an object")
        missing = [f for f in fields if f not in d]
        extra = sorted(set(d) - set(fields))
        if missing or extra:
            raise PackageError(f"manifest fields wrong: missing {missing}, unknown {extra}")
        if not isinstance(d["count"], int) or d["count"] < 0:
            raise PackageError("manifest count must be a non-negative integer")
        for f in fields:
            if f != "count" and not isinstance(d[f], str):
                raise PackageError(f"manifest field {f!r} must be a string")
        return cls(**{f: d[f] for f in fields})


@dataclass(frozen=True)
class Package:
    manifest: Manifest
    body: bytes  # plaintext, UTF-8, one code per line


def make_package(
    codes: list[str],
    *,
    level: str,
    signing_key: Ed25519PrivateKey,
    issuer: str = "lineagent-cloud",
    code_format: str = "raw",
    encrypt_to: X25519PublicKey | None = None,
) -> bytes:
    """Build a package file's bytes (cloud side)."""
    body = ("\n".join(codes) + "\n").encode() if codes else b""
    manifest = Manifest(
        package_id=str(uuid.uuid4()), issuer=issuer, level=level, count=len(codes),
        code_format=code_format, body_sha256=hashlib.sha256(body).hexdigest(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    ).as_dict()
    encryption: dict[str, str] | None = None
    payload = body
    if encrypt_to is not None:
        eph = X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        nonce = os.urandom(12)
        aes = AESGCM(_derive(eph.exchange(encrypt_to), eph_pub))
        payload = aes.encrypt(nonce, body, canonical(manifest))
        encryption = {
            "alg": ENC_ALG,
            "ephemeral_public": base64.b64encode(eph_pub).decode(),
            "nonce": base64.b64encode(nonce).decode(),
        }
    header = {"manifest": manifest, "signature": sign(manifest, signing_key), "encryption": encryption}
    return MAGIC + canonical(header) + b"\n" + payload


def _derive(shared: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO).derive(shared)


def is_package(head: bytes) -> bool:
    return head.startswith(MAGIC)


def open_package(
    data: bytes, *, verify_key: Ed25519PublicKey, line_key: X25519PrivateKey | None = None
) -> Package:
    """Verify (and decrypt) a package; raises PackageError naming the first thing wrong."""
    if not data.startswith(MAGIC):
        raise PackageError("not a lineagent code package (bad magic line)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER)
    if end < 0:
        raise PackageError("package header line is missing or longer than 64 KiB")
    try:
        header = json.loads(data[len(MAGIC):end])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"package header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict) or set(header) != {"manifest", "signature", "encryption"}:
        raise PackageError("package header must have exactly manifest, signature, encryption")
    if not isinstance(header["signature"], str):
        raise PackageError("package is unsigned (no signature string)")
    manifest_raw = header["manifest"]
    verify(manifest_raw, header["signature"], verify_key)
    manifest = Manifest.from_dict(manifest_raw)
    payload = data[end + 1:]
    enc = header["encryption"]
    body = payload if enc is None else _decrypt(enc, payload, manifest_raw, line_key)
    digest = hashlib.sha256(body).hexdigest()
    if digest != manifest.body_sha256:
        raise PackageError(
            f"body sha256 {digest[:16]}... does not match the signed manifest ({manifest.body_sha256[:16]}...): "
            "the codes were changed after signing"
        )
    return Package(manifest, body)


def _decrypt(enc: Any, payload: bytes, manifest_raw: Any, line_key: X25519PrivateKey | None) -> bytes:
    if not isinstance(enc, dict) or enc.get("alg") != ENC_ALG:
        raise PackageError(f"unsupported encryption {enc!r}; expected {ENC_ALG}")
    if line_key is None:
        raise PackageError("package is encrypted but no security.line_private_key is configured")
    try:
        eph_pub = base64.b64decode(enc["ephemeral_public"], validate=True)
        nonce = base64.b64decode(enc["nonce"], validate=True)
        shared = line_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        return AESGCM(_derive(shared, eph_pub)).decrypt(nonce, payload, canonical(manifest_raw))
    except (KeyError, ValueError, InvalidTag) as exc:
        raise PackageError("package cannot be decrypted with this line's key (wrong line or tampered)") from exc
