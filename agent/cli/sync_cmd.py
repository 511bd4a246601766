"""`lineagent sync`: is the cloud up to date, re-send what it must see again, run the uplink."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agent.aggregation import trace as tracing
from agent.aggregation.model import AggregationError
from agent.cli.code_arg import find
from agent.cli.common import (
    ConfigOpt,
    DbOpt,
    Exit,
    config,
    config_optional,
    console,
    fail,
    ledger_path,
    open_ledger,
)
from agent.config.model import LineConfig
from agent.i18n import N_, _, english
from agent.sync.code_status import Delivery, EventDelivery, deliveries, summary
from agent.sync.outbox import Outbox

app = typer.Typer(help=_("Cloud sync over MQTT: status, resend, run."), no_args_is_help=True)

SYNC_ALARMS = {"ok": N_("ok"), "warn": N_("warning"), "stop": N_("stop")}  # agent/sync/backlog.BacklogLevel
DELIVERY = {"acked": N_("acked"), "delivered": N_("delivered"), "pending": N_("pending")}  # code_status.Delivery
RELATION = {"self": N_("itself"), "child": N_("below"), "parent": N_("above")}
LIST_AT_MOST = 40  # events listed without --all; beyond that only those not yet acked
STALE_S = 10.0  # the uplink writes its link state every 2 s; older than this, it is not running


def _age(seconds: float | None, tr: Callable[[str], str] = _) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return tr(N_("{seconds:.0f} s")).format(seconds=seconds)
    if seconds < 7200:
        return tr(N_("{minutes:.0f} min")).format(minutes=seconds / 60)
    return tr(N_("{hours:.1f} h")).format(hours=seconds / 3600)


def status_report(outbox: Outbox, tr: Callable[[str], str] = english) -> dict[str, Any]:
    """The sync state as data; `tr=_` words the connection state for an operator (`--json` stays English)."""
    backlog = outbox.backlog()
    row = outbox.conn.execute("SELECT value FROM sync_state WHERE key = 'link'").fetchone()
    link: dict[str, Any] = json.loads(row[0]) if row else {}
    now = time.time()
    state = link["state"] if "state" in link else tr(N_("never ran"))
    if link and now - float(link.get("at", 0)) > STALE_S:
        state = tr(N_("unknown (uplink not running; last seen {state} {age} ago)")).format(
            state=link.get("state"), age=_age(now - float(link["at"]), tr))
    return {
        "backlog_events": backlog.undelivered_events,
        "unbatched_events": backlog.unbatched_events,
        "open_batches": backlog.open_batches,
        "oldest_undelivered_age_s": None if backlog.oldest_undelivered_at is None
        else round(now - backlog.oldest_undelivered_at, 1),
        "rate_events_per_s": round(backlog.delivered_last_minute / 60.0, 1),
        "connection": state,
        "last_error": link.get("last_error", ""),
        "alarm": link.get("alarm", "ok"),
    }


@app.command("status", help=_("Backlog, age of the oldest undelivered event, delivery rate and connection state; "
                               "with --code, each event of that code and its hierarchy: acked, delivered or pending."))
def status(
    config_path: ConfigOpt = None,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help=_("Machine-readable output"))] = False,
    code: Annotated[str | None, typer.Option(
        "--code", help=_("A code in any printed form: its events and those of its children and parents"))] = None,
    show_all: Annotated[bool, typer.Option("--all", help=_("With --code: list acked events too"))] = False,
) -> None:
    cfg = config_optional(config_path)
    if code is not None:
        code_status(cfg, db, code, as_json=as_json, show_all=show_all)
        return
    open_ledger(cfg, db).close()  # a missing or too-new ledger is refused with the reason, not created
    outbox = Outbox(ledger_path(cfg, db))
    report = status_report(outbox, english if as_json else _)
    if as_json:
        console.print_json(json.dumps(report))
        return
    table = Table(title=_("cloud sync"), show_header=False)
    table.add_row(_("backlog (undelivered events)"), f"{report['backlog_events']:,}")
    table.add_row("  " + _("not yet batched"), f"{report['unbatched_events']:,}")
    table.add_row("  " + _("batches awaiting ack"), f"{report['open_batches']:,}")
    table.add_row(_("oldest undelivered"), _age(report["oldest_undelivered_age_s"]))
    table.add_row(_("delivery rate (last minute)"), _("{rate:,} events/s").format(rate=report["rate_events_per_s"]))
    table.add_row(_("connection"), str(report["connection"]))
    alarm = str(report["alarm"])
    table.add_row(_("alarm"), _(SYNC_ALARMS[alarm]) if alarm in SYNC_ALARMS else alarm)
    if report["last_error"]:
        table.add_row(_("last error"), str(report["last_error"]))
    console.print(table)


def code_status(cfg: LineConfig | None, db: Path | None, text: str, *, as_json: bool, show_all: bool) -> None:
    """`sync status --code`: the code's events, its children's and its parents', each with its delivery."""
    ledger = open_ledger(cfg, db)
    try:
        found = find(ledger, cfg, text)
        with ledger.lock:
            t = tracing.trace(ledger.conn, found.key)
            stack, codes = [t.root], {a.code: "parent" for a in t.ancestors}
            while stack:
                node = stack.pop()
                codes[node.code] = "self" if node is t.root else "child"
                stack.extend(node.children)
            events = deliveries(ledger.conn, codes)
    except AggregationError as exc:
        fail(str(exc), Exit.NOT_FOUND)
    finally:
        ledger.close()
    counts = summary(events)
    if as_json:
        console.print_json(json.dumps({"code": found.key, "read_as": found.printed.describe(),
                                       "codes": len(codes), "summary": counts,
                                       "events": [e.as_dict() for e in events]}))
        return
    console.print(_("{code}: {events} events of {codes} codes (itself, {below} below, {above} above): "
                    "{acked} acked, {delivered} delivered and awaiting the ack, {pending} pending").format(
        code=found.key, events=len(events), codes=len(codes), below=t.count() - 1, above=len(t.ancestors),
        acked=counts["acked"], delivered=counts["delivered"], pending=counts["pending"]))
    listed = events if show_all or len(events) <= LIST_AT_MOST else [e for e in events if e.state is not Delivery.ACKED]
    if listed:
        console.print(_event_table(listed))
    if len(listed) < len(events):
        console.print("[dim]" + _("{count} acked events not listed (--all lists them)").format(
            count=len(events) - len(listed)) + "[/]")


def _event_table(events: list[EventDelivery]) -> Table:
    table = Table(title=_("cloud delivery"))
    for title in (_("seq"), _("written"), _("event"), _("code"), _("where"), _("delivery"), _("batch"), _("outcome")):
        table.add_column(title)
    colour = {Delivery.ACKED: "green", Delivery.DELIVERED: "yellow", Delivery.PENDING: "red"}
    for e in events:
        state = f"[{colour[e.state]}]{_(DELIVERY[e.state.value])}[/]"
        outcome = e.outcome or "-"
        if e.outcome and e.outcome != "stored":
            outcome = f"[red]{outcome}[/]"
        table.add_row(str(e.seq), datetime.fromtimestamp(e.at).strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.code,
                      _(RELATION[e.relation]), state, str(e.batch or "-"), outcome)
    return table


def _parse_time(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(_("--since {text!r} is not an ISO 8601 time such as 2026-11-23T08:00 or 2026-11-23T08:00+08:00").format(
            text=text), Exit.USAGE)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time of this PC, as an operator means it
    return moment.timestamp()


@app.command("resend", help=_(
    "Queue already delivered events again; the receiver ignores the ones it holds (same eventID)."))
def resend(
    since: Annotated[str, typer.Option(help=_("Re-send events written at or after this time (ISO 8601)"))],
    config_path: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    cfg = config_optional(config_path)
    at = _parse_time(since)
    batch = cfg.mqtt.batch_max_events if cfg and cfg.mqtt else 500
    count = Outbox(ledger_path(cfg, db)).resend_since(at, batch)
    with open_ledger(cfg, db) as ledger:
        ledger.audit("sync.resend", {"since": since}, f"{count} events queued")
    console.print(_("{count:,} delivered events since {since} queued for re-sending").format(count=count, since=since))


@app.command("run", help=_(
    "Run the uplink and downlink in the foreground until Ctrl-C (the daemon runs the same loop)."))
def run(config_path: ConfigOpt = None, db: DbOpt = None) -> None:
    from agent.codes.package import KeyFileError, load_verify_key
    from agent.sync.apply import code_package_applier, journal_handlers
    from agent.sync.downlink import Downlink
    from agent.sync.mqtt import Topics
    from agent.sync.uplink import Uplink

    cfg = config(config_path)
    if cfg.mqtt is None:
        fail(_("the line config has no mqtt section: nothing to sync to"))
    try:
        key = load_verify_key(cfg.resolve(cfg.security.cloud_public_key))
    except KeyFileError as exc:
        fail(str(exc))
    ledger = open_ledger(cfg, db)
    outbox = Outbox(ledger_path(cfg, db))
    downlink = Downlink(outbox.conn, key, cfg.site.id, cfg.line.id,
                        apply_package=code_package_applier(ledger, cfg), handlers=journal_handlers(ledger))
    topics = Topics(cfg.mqtt.topic_prefix, cfg.site.id, cfg.line.id)
    uplink = Uplink(outbox, cfg.mqtt, topics, client_id=cfg.mqtt.client_id, on_command=downlink.handle,
                    on_alarm=lambda a: console.print(f"[yellow]{_(SYNC_ALARMS.get(a.level, a.level))}[/]: {a.message}"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(_("syncing {path} to {broker} as {topic}; Ctrl-C stops").format(
        path=ledger.path, broker=cfg.mqtt.broker, topic=topics.base))
    try:
        uplink.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        ledger.close()
