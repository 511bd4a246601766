"""Building an Aggregator for a ledger and a line config: which packing spec applies to which code.

Why per code: a line runs jobs with different packing specs (6x4x40 today, 12x60 tomorrow), and an
operator correcting yesterday's pallet must be held to yesterday's counts. The spec is the one named
by the job the code belongs to; with a single spec in the config, that one.
"""

from __future__ import annotations

import sqlite3

from agent.aggregation.events import EventContext
from agent.aggregation.model import AggregationError, plan_levels
from agent.aggregation.packs import Aggregator
from agent.aggregation.parents import PrintLabel
from agent.config.model import LineConfig
from agent.jobs import Job
from agent.ledger import Ledger
from drivers.labels.zpl import ZplLabelPrinter


def spec_name_for(conn: sqlite3.Connection, cfg: LineConfig, *, code: str | None = None,
                  job: int | None = None) -> str:
    if job is None and code is not None:
        row = conn.execute(
            "SELECT COALESCE(p.job, c.job) FROM codes c LEFT JOIN packs p ON p.code = c.id WHERE c.code = ?", (code,)
        ).fetchone()
        job = row[0] if row else None
    if job is not None:
        row = conn.execute("SELECT packing_spec, name FROM jobs WHERE id = ?", (job,)).fetchone()
        if row and row[0]:
            if row[0] not in cfg.packing_specs:
                raise AggregationError(f"job {row[1]!r} names packing spec {row[0]!r}, which the config lacks")
            return str(row[0])
    if len(cfg.packing_specs) == 1:
        return next(iter(cfg.packing_specs))
    known = ", ".join(cfg.packing_specs) or "none"
    raise AggregationError(f"cannot tell which packing spec applies (job has none; config has: {known})")


def aggregator_for(ledger: Ledger, cfg: LineConfig, *, code: str | None = None, job: int | None = None) -> Aggregator:
    with ledger.lock:
        name = spec_name_for(ledger.conn, cfg, code=code, job=job)
    return Aggregator(ledger, plan_levels(cfg.packing_specs[name]), EventContext.from_config(cfg))


def label_fields(job: Job, code: str, level: str) -> dict[str, str]:
    """What a label template may use: the code, its human-readable form, level, product and lot."""
    return {"code": code, "hri": code, "level": level, "product": job.product_name, "lot": job.lot,
            "gtin": job.gtin, "job": job.name}


def print_with(printer: ZplLabelPrinter, job: Job) -> PrintLabel:
    """The station's `print_label` for a ZPL printer: fill the template for this job and send it."""

    async def print_label(code: str, level: str) -> None:
        await printer.print_label(label_fields(job, code, level))

    return print_label


def printer_from_config(cfg: LineConfig, name: str) -> ZplLabelPrinter:
    """The configured label printer with its template path resolved against the config file's folder."""
    if name not in cfg.devices.label_printers:
        raise AggregationError(f"no label printer {name!r} under devices.label_printers")
    settings: ZplLabelPrinter.Settings = cfg.device_settings("label_printers", name)
    template = cfg.resolve(settings.template)
    if not template.is_file():
        raise AggregationError(f"devices.label_printers.{name}.template: {template} does not exist")
    return ZplLabelPrinter(settings.model_copy(update={"template": template}))
