"""`lineagent codes`: make a signed package (cloud side), import packages, show stock, show one code."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.cli.code_arg import find
from agent.cli.common import (
    ConfigOpt,
    DbOpt,
    Exit,
    config_optional,
    console,
    err_console,
    fail,
    open_ledger,
    state_name,
)
from agent.codes.forms import Form
from agent.codes.importer import ImportRefused, import_file
from agent.codes.package import KeyFileError, load_public, load_signing_key, make_package
from agent.i18n import _

app = typer.Typer(help=_("Code packages (码包): make, import, stock; one code as printed."), no_args_is_help=True)

# Unambiguous upper-case alphabet (no 0/O, 1/I/L): codes get typed by hand when a label is damaged.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def make_codes(count: int, *, prefix: str = "", start: int | None = None, length: int = 12) -> list[str]:
    """Sequential codes (prefix + zero-padded number) or random ones (unique within the batch)."""
    if start is not None:
        width = max(len(str(start + count - 1)), length - len(prefix))
        return [f"{prefix}{n:0{width}d}" for n in range(start, start + count)]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        c = prefix + "".join(secrets.choice(ALPHABET) for _i in range(length))
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


@app.command("make-package", help=_("Write a signed (optionally encrypted) code package, as the cloud side does."))
def make_package_cmd(
    level: Annotated[str, typer.Option(help=_("Code level, e.g. item, box, case"))],
    count: Annotated[int, typer.Option(min=1, help=_("How many codes"))],
    key: Annotated[Path, typer.Option(help=_("Ed25519 private key (PEM) that signs the package"))],
    out: Annotated[Path, typer.Option(help=_("Package file to write"))],
    encrypt_to: Annotated[Path | None, typer.Option(help=_("X25519 public key of the line to encrypt to"))] = None,
    prefix: Annotated[str, typer.Option(help=_("Prefix every code with this"))] = "",
    start: Annotated[int | None, typer.Option(help=_("Sequential codes from this number (default: random)"))] = None,
    issuer: Annotated[str, typer.Option(help=_("Issuer named in the manifest"))] = "lineagent-cloud",
    code_format: Annotated[str, typer.Option("--format", help=_("Format named in the manifest"))] = "raw",
) -> None:
    try:
        skey = load_signing_key(key)
        enc = load_public(encrypt_to) if encrypt_to else None
    except KeyFileError as exc:
        fail(str(exc))
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    if enc is not None and not isinstance(enc, X25519PublicKey):
        fail(_("{path} is not an X25519 public key (make one with keys generate --kind x25519)").format(
            path=encrypt_to))
    codes = make_codes(count, prefix=prefix, start=start)
    data = make_package(codes, level=level, signing_key=skey, issuer=issuer, code_format=code_format,
                        encrypt_to=enc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    done = (_("wrote {path}: {count} {level} codes, signed, encrypted ({size:,} bytes)") if enc else
            _("wrote {path}: {count} {level} codes, signed ({size:,} bytes)"))
    console.print(done.format(path=out, count=count, level=level, size=len(data)))


@app.command("import", help=_("Import codes: all or nothing; a refused import lists what is wrong and where (exit 1)."))
def import_cmd(
    file: Annotated[Path, typer.Argument(help=_("Signed package, or TXT/CSV when unsigned imports are allowed"))],
    level: Annotated[str | None, typer.Option(help=_("Level of the codes in a TXT file"))] = None,
    encoding: Annotated[str | None, typer.Option(
        help=_("Text encoding of a TXT/CSV file (default: UTF-8, else GB18030/GBK, detected)"))] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    cfg = config_optional(config)
    if not file.exists():
        fail(_("{path}: no such file").format(path=file), Exit.NOT_FOUND)
    ledger = open_ledger(cfg, db, create=True)
    try:
        with Progress(TextColumn(_("importing")), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True) as bar:
            task = bar.add_task("import", total=None)
            result = import_file(ledger, file, cfg, level=level, encoding=encoding,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
    except ImportRefused as exc:
        ledger.audit("codes.import", {"file": str(file), "level": level}, f"refused: {exc.total} problem(s)")
        ledger.close()
        err_console.print(_("[bold red]refused:[/] {reason}").format(reason=escape(str(exc))),
                          highlight=False, soft_wrap=True)
        raise typer.Exit(int(Exit.REFUSED)) from exc
    if result.already_imported:
        console.print(_("package {package} was already imported ({count} codes): nothing to do").format(
            package=result.package_id, count=result.count))
    else:
        levels = ", ".join(f"{n} {lv}" for lv, n in result.levels.items())
        ledger.audit("codes.import", {"file": str(file), "package": result.package_id}, f"imported {result.count}")
        console.print(_("imported {count:,} codes ({levels}) from {path} as package {package}").format(
            count=result.count, levels=levels, path=file, package=result.package_id))
    ledger.close()


@app.command("stats", help=_("Counts per level, package and state; warns when a level runs low."))
def stats(
    config: ConfigOpt = None,
    db: DbOpt = None,
    check: Annotated[bool, typer.Option(help=_("Exit 1 when a level is below its low-stock threshold"))] = False,
    as_json: Annotated[bool, typer.Option("--json", help=_("Machine-readable output"))] = False,
) -> None:
    cfg = config_optional(config)
    ledger = open_ledger(cfg, db)
    rows = ledger.counts()
    ledger.close()
    if as_json:
        stock: dict[str, int] = {}
        for r in rows:
            if r["state"] in ("available", "returned"):
                stock[r["level"]] = stock.get(r["level"], 0) + int(r["n"])
        low_levels = [lv for lv, src in (cfg.code_sources.levels.items() if cfg else [])
                      if stock.get(lv, 0) < src.low_stock]
        typer.echo(json.dumps({"rows": [{"level": r["level"], "package": r["package_id"], "state": r["state"],
                                         "count": int(r["n"])} for r in rows],
                               "available": stock, "low": low_levels}, ensure_ascii=False, indent=2))
        if check and low_levels:
            raise typer.Exit(int(Exit.REFUSED))
        return
    table = Table(title=_("codes by level, package and state"))
    for col, title in (("level", _("level")), ("package", _("package")), ("state", _("state")), ("count", _("count"))):
        table.add_column(title, justify="right" if col == "count" else "left")
    available: dict[str, int] = {}
    for r in rows:
        table.add_row(r["level"], r["package_id"], state_name(r["state"]), f"{r['n']:,}")
        if r["state"] in ("available", "returned"):
            available[r["level"]] = available.get(r["level"], 0) + int(r["n"])
    console.print(table)
    low = []
    if cfg is not None:
        for lv, src in cfg.code_sources.levels.items():
            have = available.get(lv, 0)
            if have < src.low_stock:
                low.append(lv)
                err_console.print(_("[bold yellow]low stock:[/] level {level!r} has {have:,} codes available, "
                                    "threshold {threshold:,}: import a package").format(
                    level=lv, have=have, threshold=src.low_stock))
    if check and low:
        raise typer.Exit(int(Exit.REFUSED))


@app.command("show", help=_("What a code as typed or scanned is read as, and the ledger's code, level, state and job."))
def show(
    code: Annotated[str, typer.Argument(help=_("A code in any printed form"))],
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help=_("Machine-readable output"))] = False,
) -> None:
    cfg = config_optional(config)
    with open_ledger(cfg, db) as ledger:
        found = find(ledger, cfg, code)
        with ledger.lock:
            row = ledger.conn.execute(
                "SELECT c.level, c.state, j.name, j.gtin, j.lot, p.code FROM codes c LEFT JOIN jobs j ON j.id = c.job"
                " LEFT JOIN pack_links l ON l.child = c.id LEFT JOIN codes p ON p.id = l.parent WHERE c.code = ?",
                (found.key,)).fetchone()
    p = found.printed
    facts = {"code": found.key, "form": p.form.value, "gtin": p.gtin, "serial": p.serial, "lot": p.lot,
             "sscc": p.sscc, "level": row[0], "state": row[1], "job": row[2], "job_gtin": row[3], "job_lot": row[4],
             "parent": row[5]}
    if as_json:
        typer.echo(json.dumps(facts, ensure_ascii=False, indent=2))
        return
    table = Table(title=found.key, show_header=False)
    table.add_row(_("read as"), p.describe() if found.changed or p.form is not Form.RAW else _("the code itself"))
    table.add_row(_("level"), str(row[0]))
    table.add_row(_("state"), state_name(row[1]))
    table.add_row(_("job"), _("{job} (GTIN {gtin}, lot {lot})").format(job=row[2], gtin=row[3], lot=row[4])
                  if row[2] else "-")
    table.add_row(_("inside"), row[5] or "-")
    console.print(table)
