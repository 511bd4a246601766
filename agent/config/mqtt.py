"""The MQTT uplink/downlink section (cloud sync)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from confkit.base import Strict


class TlsConfig(Strict):
    ca_file: Path
    cert_file: Path | None = None  # client certificate: the broker knows the line by it
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(Strict):
    broker: str = Field("mqtt://127.0.0.1:1883", pattern=r"^mqtts?://[^:/]+(:\d+)?/?$")
    client_id: str | None = None  # default: lineagent-<site>-<line>
    username: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    topic_prefix: str = Field("lineagent", pattern=r"^[^#+$/][^#+]*$")
    batch_max_events: int = Field(500, ge=1, le=10000)
    batch_max_ms: int = Field(200, ge=1, le=60000)
    inflight: int = Field(20, ge=1, le=1000)
    ack_timeout_s: float = Field(10.0, gt=0)
    compress: bool = True
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)  # the broker keeps our acks while we are away
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    backlog_warn_events: int = Field(100_000, ge=1)
    backlog_stop_events: int = Field(5_000_000, ge=1)
    min_free_disk_mb: int = Field(200, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> MqttConfig:
        if self.backlog_warn_events >= self.backlog_stop_events:
            raise ValueError("backlog_warn_events must be below backlog_stop_events")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is above reconnect_max_s")
        return self
