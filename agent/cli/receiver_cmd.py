"""`lineagent receiver`: the reference cloud side (tests, demos, small sites) as a foreground service."""

from __future__ import annotations

from typing import Annotated

import typer

from agent.cli.common import Exit, console, fail
from agent.i18n import _


def register(app: typer.Typer) -> None:
    @app.command("receiver", help=_(
        "Ingest EPCIS batches: validate each document, store each eventID once, ack each batch."))
    def receiver(
        broker: Annotated[str, typer.Option(help=_("Broker URL, mqtt://host:port or mqtts://host:port"))],
        db: Annotated[str, typer.Option(help=_("SQLite file, or postgresql://user@host/db"))],
        prefix: Annotated[str, typer.Option(help=_("Topic prefix the lines publish under"))] = "lineagent",
        group: Annotated[str, typer.Option(help=_("Shared-subscription group: instances in one group share load"))]
        = "lineagent-receivers",
        client_id: Annotated[str, typer.Option(help=_("MQTT client id (unique per instance)"))] = "lineagent-receiver",
    ) -> None:
        from agent.receiver.service import Receiver
        from agent.receiver.store import open_store

        try:
            store = open_store(db)
        except Exception as exc:  # noqa: BLE001 - sqlite3 and psycopg raise unrelated types; both are fatal here
            fail(_("cannot open the event store {db}: {error}").format(db=db, error=exc), Exit.DEVICE)
        try:
            service = Receiver(broker, store, prefix=prefix, group=group, client_id=client_id)
        except ValueError as exc:
            fail(str(exc), Exit.USAGE)
        console.print(_("receiver: {subscription} on {broker} -> {db}; Ctrl-C stops").format(
            subscription=service.subscription, broker=broker, db=db))
        try:
            service.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            store.close()
