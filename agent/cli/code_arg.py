"""A code given to a command, in any printed form, turned into the ledger's code (agent.codes.lookup).

Why one helper: every command that takes a code must accept what is printed on the product (a
Digital Link, an element string, an SSCC with AI 00, an EPC URN, the bare serial) and refuse the same
way: exit 1 with the reason for invalid GS1 data or an ambiguous code, exit 4 when no code matches.
When the text is not the ledger's code itself, stderr says what it was read as, so stdout stays
clean for --json and exports.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from agent.cli.common import Exit, config_optional, err_console, fail, open_ledger
from agent.codes.forms import FormError
from agent.codes.lookup import CodeNotFound, Found, resolve
from agent.config.model import LineConfig, TemplateKind
from agent.i18n import _
from agent.ledger import Ledger


def url_prefixes(cfg: LineConfig | None) -> list[str]:
    """The url_prefix of every URL template: what a 一物一码 QR prints before the ledger's code."""
    if cfg is None:
        return []
    return [t.url_prefix for t in cfg.templates.values() if t.kind is TemplateKind.URL and t.url_prefix]


def find(ledger: Ledger, cfg: LineConfig | None, text: str) -> Found:
    """The ledger's code for `text`, or exit (1: invalid or ambiguous, 4: no such code); the caller
    closes the ledger (a `fail` raises through its `finally` or `with`)."""
    try:
        with ledger.lock:
            found = resolve(ledger.conn, text, url_prefixes=url_prefixes(cfg))
    except CodeNotFound as exc:
        fail(str(exc), Exit.NOT_FOUND)
    except FormError as exc:
        fail(str(exc), Exit.REFUSED)
    if found.changed:
        err_console.print("[dim]" + escape(_("{text} read as {what}: code {code}").format(
            text=found.printed.text, what=found.printed.describe(), code=found.key)) + "[/]",
            highlight=False, soft_wrap=True)
    return found


def ledger_code(ledger: Ledger, cfg: LineConfig | None, text: str) -> str:
    return find(ledger, cfg, text).key


def code_key(config_path: Path | None, db: Path | None, text: str) -> str:
    """For commands that open the ledger their own way afterwards: read the code on a short-lived
    ledger handle (the config is optional here: it only adds the URL templates' prefixes)."""
    cfg = config_optional(config_path)
    with open_ledger(cfg, db) as ledger:
        return ledger_code(ledger, cfg, text)


def scanned(ledger: Ledger, cfg: LineConfig | None, text: str) -> str | None:
    """A code scanned in manual mode: the ledger's code; the text itself when no code matches (the
    pack rules then refuse it as unknown, as before); None, with the reason shown, for invalid GS1
    data or an ambiguous code, so a misread is rescanned instead of packed."""
    try:
        with ledger.lock:
            return resolve(ledger.conn, text, url_prefixes=url_prefixes(cfg)).key
    except CodeNotFound:
        return text
    except FormError as exc:
        err_console.print(_("[bold red]not taken:[/] {reason}").format(reason=escape(str(exc))),
                          highlight=False, soft_wrap=True)
        return None
