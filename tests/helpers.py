"""Small builders the tests share: a ledger with codes in it, a config with keys beside it."""

from __future__ import annotations

from pathlib import Path

from agent.codes.package import generate_keys
from agent.ledger import Ledger

CONFIG = """\
site: {{id: s1, sgln: "urn:epc:id:sgln:0614141.00777.0"}}
line: {{id: L1}}
storage: {{ledger: ledger.db}}
security:
  cloud_public_key: keys/cloud/public.pem
  line_private_key: keys/line/private.pem
  allow_unsigned_imports: {unsigned}
code_sources:
  levels: {{item: {{low_stock: 5}}, box: {{}}, case: {{}}}}
  sscc: {{extension_digit: 0, company_prefix: "0614141", serial_from: 1, serial_to: 999}}
identity: {{code_namespace: "https://codes.example.com/c/"}}
templates:
  dl: {{kind: digital_link, domain: id.example.com}}
products:
  water: {{gtin: "09506000134352", name: Water, template: dl}}
"""


def seed_codes(ledger: Ledger, codes: list[str], *, level: str = "item", package_id: str = "p1") -> None:
    """Put codes in a ledger the way an import does (a package row, then the codes)."""
    with ledger.atomic(durable=True) as conn:
        cur = conn.execute(
            "INSERT INTO packages(package_id, issuer, level, count, code_format, body_sha256, source, signed,"
            " imported_at) VALUES (?, 'test', ?, ?, 'raw', '-', 'txt', 0, 0)",
            (package_id, level, len(codes)),
        )
        conn.executemany("INSERT INTO codes(code, level, package) VALUES (?, ?, ?)",
                         [(c, level, cur.lastrowid) for c in codes])


def make_line(tmp: Path, *, unsigned: bool = False) -> Path:
    """A line config in tmp with a cloud signing key pair and a line encryption key pair."""
    generate_keys(tmp / "keys" / "cloud", kind="ed25519")
    generate_keys(tmp / "keys" / "line", kind="x25519")
    path = tmp / "line.yaml"
    path.write_text(CONFIG.format(unsigned=str(unsigned).lower()))
    return path
