"""MQTT over TLS with client certificates, against a real mosquitto configured with certificates this
test makes (cryptography): the line's link connects with its own certificate, and is refused with a
certificate from another CA, with none, or when the broker shows a certificate our CA did not sign."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config.mqtt import MqttConfig, TlsConfig
from agent.sync.mqtt import LinkState, MqttLink, Topics
from tests.conftest import free_port
from tests.sync.conftest import MOSQUITTO

NOW = dt.datetime.now(dt.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _ca(tmp: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _k, pem = _write(tmp / name, key, cert)
    return key, cert, pem


def _leaf(tmp: Path, name: str, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path], *,
          server: bool) -> tuple[Path, Path]:
    ca_key, ca_cert, _ = ca
    key = _key()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=30)))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return _write(tmp / name, key, builder.sign(ca_key, hashes.SHA256()))


class TlsBroker:
    def __init__(self, tmp: Path, ca_pem: Path, server: tuple[Path, Path]) -> None:
        self.port = free_port()
        conf = tmp / "mosquitto-tls.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\ncafile {ca_pem}\ncertfile {server[1]}\n"
                        f"keyfile {server[0]}\nrequire_certificate true\nuse_identity_as_username true\n"
                        "allow_anonymous false\npersistence false\n"
                        # as root, mosquitto drops to its own user, which cannot read the test's tmp dir
                        f"user {pwd.getpwuid(os.getuid()).pw_name}\n")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[dict[str, object]]:
    ca = _ca(tmp_path, "line-ca")
    rogue = _ca(tmp_path, "rogue-ca")
    out: dict[str, object] = {
        "ca": ca[2], "rogue_ca": rogue[2],
        "server": _leaf(tmp_path, "broker", ca, server=True),
        "rogue_server": _leaf(tmp_path, "rogue-broker", rogue, server=True),
        "client": _leaf(tmp_path, "line-s1-L1", ca, server=False),
        "rogue_client": _leaf(tmp_path, "intruder", rogue, server=False),
    }
    yield out


def _link(port: int, ca: Path, client: tuple[Path, Path] | None) -> MqttLink:
    tls = TlsConfig(ca_file=ca, key_file=client[0] if client else None, cert_file=client[1] if client else None)
    cfg = MqttConfig(broker=f"mqtts://127.0.0.1:{port}", tls=tls, reconnect_min_s=0.05, reconnect_max_s=0.2)
    return MqttLink(cfg, Topics("lineagent", "s1", "L1"), "line-s1-L1", lambda *_: None)


def _connects(link: MqttLink, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s  # a bound, not a timing assertion: success returns at once
    while time.monotonic() < deadline:
        link.poll(0.05)
        if link.state is LinkState.CONNECTED:
            return True
        time.sleep(0.02)  # a plain test thread, not async code
    return False


def _broker(tmp_path: Path, ca: Path, server: tuple[Path, Path]) -> TlsBroker:
    b = TlsBroker(tmp_path, ca, server)
    import socket

    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", b.port), timeout=0.2).close()
            return b
        except OSError:
            time.sleep(0.02)
    b.proc.kill()
    raise RuntimeError(f"mosquitto (TLS) did not listen: {b.proc.stderr.read() if b.proc.stderr else ''!r}")


def test_the_line_connects_with_its_certificate_and_intruders_do_not(tmp_path: Path, pki: dict[str, object]) -> None:
    ca, server = pki["ca"], pki["server"]
    assert isinstance(ca, Path) and isinstance(server, tuple)
    broker = _broker(tmp_path, ca, server)
    try:
        good = _link(broker.port, ca, pki["client"])  # type: ignore[arg-type]
        assert _connects(good), good.last_error
        good.close()
        for who in ("rogue_client", None):
            bad = _link(broker.port, ca, pki[who] if who else None)  # type: ignore[arg-type]
            assert not _connects(bad, 3.0), f"{who or 'no certificate'} was let in"
            bad.client.disconnect()
    finally:
        broker.proc.kill()
        broker.proc.wait()


def test_a_broker_our_ca_did_not_sign_is_refused(tmp_path: Path, pki: dict[str, object]) -> None:
    rogue_ca, rogue_server = pki["rogue_ca"], pki["rogue_server"]
    assert isinstance(rogue_ca, Path) and isinstance(rogue_server, tuple)
    broker = _broker(tmp_path, rogue_ca, rogue_server)  # an impostor broker on the line's network
    try:
        link = _link(broker.port, pki["ca"], pki["client"])  # type: ignore[arg-type]
        assert not _connects(link, 3.0)
        assert "certificate verify failed" in link.last_error or "CERTIFICATE" in link.last_error.upper(), \
            link.last_error
    finally:
        broker.proc.kill()
        broker.proc.wait()
