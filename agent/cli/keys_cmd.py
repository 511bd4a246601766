"""`lineagent keys generate`: key pairs for signing packages (Ed25519) or encrypting to a line (X25519)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import console, fail
from agent.codes.package import KeyFileError, generate_keys

app = typer.Typer(help="Make key pairs.", no_args_is_help=True)


@app.command("generate")
def generate(
    out: Annotated[Path, typer.Option("--out", help="Directory for private.pem and public.pem")],
    kind: Annotated[str, typer.Option(help="ed25519 (signs packages and commands) or x25519 (encryption)")] = "ed25519",
) -> None:
    try:
        priv, pub = generate_keys(out, kind=kind)
    except KeyFileError as exc:
        fail(str(exc))
    console.print(f"{kind} key pair: private {priv} (mode 0600), public {pub}")
