"""`lineagent keys generate`: key pairs for signing packages (Ed25519) or encrypting to a line (X25519)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent import pins
from agent.cli.common import Exit, console, fail
from agent.codes.package import KeyFileError, generate_keys
from agent.i18n import _

app = typer.Typer(help=_("Make key pairs."), no_args_is_help=True)


@app.command("generate", help=_("Make a key pair: private.pem (mode 0600) and public.pem."))
def generate(
    out: Annotated[Path, typer.Option("--out", help=_("Directory for private.pem and public.pem"))],
    kind: Annotated[
        str, typer.Option(help=_("ed25519 (signs packages and commands) or x25519 (encryption)"))
    ] = "ed25519",
) -> None:
    try:
        priv, pub = generate_keys(out, kind=kind)
    except KeyFileError as exc:
        fail(str(exc))
    console.print(_("{kind} key pair: private {private} (mode 0600), public {public}").format(
        kind=kind, private=priv, public=pub))


@app.command("pin-hash", help=_("Hash an operator PIN for security.operator_pin_hash (the PIN itself is stored "
                                "nowhere)."))
def pin_hash(
    pin: Annotated[str | None, typer.Option(help=_("The PIN (prompted twice, hidden, when omitted)"))] = None,
) -> None:
    if pin is None:
        pin = typer.prompt(_("New operator PIN"), hide_input=True, confirmation_prompt=True)
    if len(pin) < 6:
        fail(_("an operator PIN needs at least 6 characters"), Exit.USAGE)
    console.print(_("put this line under security: in the line config:"))
    typer.echo(f"  operator_pin_hash: \"{pins.hash_pin(pin)}\"")
