"""The apply steps behind checked downlink messages, kept small so the daemon can wire its own.

Why work orders, config updates and commands land in the ledger journal rather than acting at once:
the line may be mid-job; the journal entry is durable, audited, and the job/daemon part picks it up
at a safe point. A code package is different: importing it is idempotent and safe at any time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.codes.importer import import_file
from agent.config import LineConfig
from agent.ledger import Ledger
from agent.sync.downlink import Apply, ApplyPackage, Kind, import_package_bytes


def code_package_applier(ledger: Ledger, cfg: LineConfig | None) -> ApplyPackage:
    """Import an assembled package with the lead's importer (it verifies the package's own signature)."""

    def importer(path: Path) -> str:
        result = import_file(ledger, path, cfg)
        if result.already_imported:
            return f"package {result.package_id} was already imported"
        return f"package {result.package_id}: {result.count} codes imported"

    return lambda data: import_package_bytes(data, importer)


def journal_handlers(ledger: Ledger) -> dict[Kind, Apply]:
    """Work orders, config updates and commands recorded durably as `cloud.<kind>` journal events."""

    def record(kind: Kind) -> Apply:
        def apply(body: Mapping[str, Any]) -> str:
            seq = ledger.append_event(f"cloud.{kind}", dict(body))
            ledger.commit()
            return f"recorded as journal event {seq}"

        return apply

    return {k: record(k) for k in (Kind.WORK_ORDER, Kind.CONFIG, Kind.COMMAND)}
