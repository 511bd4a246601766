"""The MQTT uplink/downlink section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agent.config.base import Strict


class TlsConfig(Strict):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttConfig(Strict):
    broker: str = "mqtt://127.0.0.1:1883"
    client_id: str | None = None  # default: lineagent-<site>-<line>
    username: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    topic_prefix: str = "lineagent"
    batch_max_events: int = Field(500, ge=1, le=10000)
    batch_max_ms: int = Field(200, ge=1, le=60000)
    inflight: int = Field(20, ge=1, le=1000)
    ack_timeout_s: float = Field(10.0, gt=0)
    compress: bool = True
    backlog_warn_events: int = Field(100_000, ge=1)
    backlog_stop_events: int = Field(5_000_000, ge=1)
    min_free_disk_mb: int = Field(200, ge=0)
