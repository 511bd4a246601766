"""The demo: a whole simulated line on one machine, step by step, printing where its data went.

Each step uses the same code paths as the real agent and CLI (keys, signed packages, the importer,
jobs, the ledger); nothing is faked beyond the devices, which are simulators speaking real protocols.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.cli.codes_cmd import make_codes
from agent.codes.importer import import_file
from agent.codes.package import generate_keys, load_public, load_signing_key, make_package
from agent.config import load_config
from agent.jobs import JobSpec, create_job, finish_job, start_job
from agent.ledger import CodeState, Ledger

CONFIG = """\
site: {{id: demo-plant, name: Demo plant, sgln: "urn:epc:id:sgln:0614141.00777.0"}}
line: {{id: L1, name: Demo line, utc_offset: "+08:00"}}
storage: {{ledger: ledger.db}}
security:
  cloud_public_key: keys/cloud/public.pem
  line_private_key: keys/line/private.pem
code_sources:
  levels:
    item: {{low_stock: {low_stock}}}
    box: {{}}
    case: {{}}
  sscc: {{extension_digit: 0, company_prefix: "0614141", serial_from: 1, serial_to: 99999}}
templates:
  dl: {{kind: digital_link, domain: id.example.com}}
products:
  water: {{gtin: "09506000134352", name: Spring water 500 ml, template: dl}}
packing_specs:
  "6x4x40":
    levels:
      - {{level: item}}
      - {{level: box, count: 6, parent_code: preprinted}}
      - {{level: case, count: 4, parent_code: print}}
      - {{level: pallet, count: 40, parent_code: mint}}
"""


@dataclass
class DemoReport:
    ok: bool = True
    facts: dict[str, str] = field(default_factory=dict)


def run_demo(workdir: Path, *, items: int, fresh: bool, console: Console) -> DemoReport:
    report = DemoReport()
    workdir = workdir.resolve()
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    console.rule("1. keys: the cloud's signing key and this line's encryption key")
    generate_keys(workdir / "keys" / "cloud", kind="ed25519")
    generate_keys(workdir / "keys" / "line", kind="x25519")
    cfg_path = workdir / "line.yaml"
    cfg_path.write_text(CONFIG.format(low_stock=items // 2))
    cfg = load_config(cfg_path)
    console.print(f"config {cfg_path} checked: site {cfg.site.id}, line {cfg.line.id}")

    console.rule("2. a signed, encrypted code package from the 'cloud', imported twice")
    pkg_path = workdir / "packages" / "items.lapkg"
    pkg_path.parent.mkdir(parents=True, exist_ok=True)
    pkg_path.write_bytes(make_package(
        make_codes(items * 2, prefix="DW"), level="item",
        signing_key=load_signing_key(workdir / "keys" / "cloud" / "private.pem"),
        encrypt_to=load_public(workdir / "keys" / "line" / "public.pem"),
    ))
    ledger = Ledger(cfg.resolve(cfg.storage.ledger))
    first = import_file(ledger, pkg_path, cfg)
    again = import_file(ledger, pkg_path, cfg)
    console.print(f"imported {first.count} codes as package {first.package_id}; "
                  f"second import: already imported = {again.already_imported}")

    console.rule("3. a job: allocate, send, print, verify (devices simulated in the ledger)")
    job = create_job(ledger, JobSpec(name="WO-DEMO-1", gtin="09506000134352", product_name="Spring water",
                                     lot="LOT42", target_qty=items, template="dl"))
    start_job(ledger, job)
    codes = ledger.allocate(job, "item", items + 10)
    for code in codes[:items]:
        ledger.transition(code, CodeState.SENT)
    ledger.commit()  # durable before the bytes would leave for the coder
    for code in codes[:items]:
        ledger.transition(code, CodeState.PRINTED)
        ledger.transition(code, CodeState.VERIFIED)
    ledger.commit()
    fin = finish_job(ledger, job)
    console.print(f"{items} items printed and verified; finish returned {fin.returned} unused codes")

    table = Table(title="the ledger now")
    for col in ("level", "package", "state", "count"):
        table.add_column(col)
    for r in ledger.counts():
        table.add_row(r["level"], r["package_id"][:13], r["state"], str(r["n"]))
    console.print(table)
    ledger.close()
    report.facts.update(ledger=str(cfg.resolve(cfg.storage.ledger)), config=str(cfg_path), package=str(pkg_path))
    console.rule("where the data went")
    for k, v in report.facts.items():
        console.print(f"{k:>8}: {v}")
    return report
