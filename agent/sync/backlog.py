"""Backlog policy: nothing is ever dropped; a growing backlog warns, a hard bound stops the line.

Why stop the line instead of evicting: undelivered events are compliance records. Evicting the oldest
(what generic store-and-forward caches do) silently loses them; a stopped line is visible and
recoverable. The agent maps WARN to the amber light and STOP to a controlled line stop with
`message` shown to the operator.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from agent.config.mqtt import MqttConfig
from agent.i18n import _


class BacklogLevel(StrEnum):
    OK = "ok"
    WARN = "warn"  # amber light: the cloud is behind, the line keeps running
    STOP = "stop"  # stop the line: one more event could not be kept safely


@dataclass(frozen=True, slots=True)
class SyncAlarm:
    """The typed alarm the agent raises; `message` is written for the operator at the line."""

    level: BacklogLevel
    message: str
    backlog_events: int
    free_disk_mb: float


def assess(backlog_events: int, free_disk_mb: float, cfg: MqttConfig) -> SyncAlarm:
    if free_disk_mb < cfg.min_free_disk_mb:
        return SyncAlarm(
            BacklogLevel.STOP,
            _("Line stopped: only {free:.0f} MB free on the ledger disk (minimum {minimum} MB) "
              "with {backlog:,} events not yet delivered to the cloud. Restore the network or free disk "
              "space, then restart the line. No data has been lost.").format(
                free=free_disk_mb, minimum=cfg.min_free_disk_mb, backlog=backlog_events),
            backlog_events, free_disk_mb,
        )
    if backlog_events >= cfg.backlog_stop_events:
        return SyncAlarm(
            BacklogLevel.STOP,
            _("Line stopped: {backlog:,} events wait for delivery to the cloud (limit "
              "{limit:,}). Restore the network to the cloud; the line can restart once the "
              "backlog drains. No data has been lost.").format(backlog=backlog_events, limit=cfg.backlog_stop_events),
            backlog_events, free_disk_mb,
        )
    if backlog_events >= cfg.backlog_warn_events:
        return SyncAlarm(
            BacklogLevel.WARN,
            _("Cloud sync behind: {backlog:,} events wait for delivery (warning at "
              "{warn:,}, line stops at {stop:,}). Check the network.").format(
                backlog=backlog_events, warn=cfg.backlog_warn_events, stop=cfg.backlog_stop_events),
            backlog_events, free_disk_mb,
        )
    return SyncAlarm(BacklogLevel.OK, _("cloud sync up to date"), backlog_events, free_disk_mb)


def free_disk_mb(path: Path) -> float:
    target = path if path.is_dir() else path.parent
    return shutil.disk_usage(target).free / 1e6
