"""Prometheus metrics of the running line (prometheus_client), served on localhost, off by default.

Why from the status snapshot: the runtime already builds one consistent picture of the line on its
loop every beat (agent/line/status.py); the gauges are set from that same picture, so the metrics
never disagree with `lineagent status` and the hot paths (feeding, judging) carry no counters.
A private registry keeps the process' default collectors (and anything a library registers) out.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from agent.line.status import DaemonStatus


class LineMetrics:
    def __init__(self, site: str, line: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.labels = {"site": site, "line": line}
        names = ["site", "line"]
        self.up = Gauge("lineagent_up", "1 while the daemon's loop beats", names, registry=self.registry)
        self.running = Gauge("lineagent_line_running", "1 while the conveyor runs", names, registry=self.registry)
        self.alarms = Gauge("lineagent_alarms", "active alarms by severity", [*names, "severity"],
                            registry=self.registry)
        self.verdicts = Gauge("lineagent_verdicts", "items judged in the running job, by verdict",
                              [*names, "station", "verdict"], registry=self.registry)
        self.in_doubt = Gauge("lineagent_coder_codes_in_doubt", "codes this coder's reconciles put in doubt "
                              "since start", [*names, "coder"], registry=self.registry)
        self.device_ok = Gauge("lineagent_device_ok", "1 when the device answers and has no fault",
                               [*names, "device"], registry=self.registry)
        self.sync_acks = Gauge("lineagent_sync_acked_batches", "batches acknowledged by the cloud since start",
                               names, registry=self.registry)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def update(self, st: DaemonStatus, line_running: bool) -> None:
        lb = self.labels
        self.up.labels(**lb).set(1)
        self.running.labels(**lb).set(1 if line_running else 0)
        by_sev: dict[str, int] = {"warning": 0, "stop": 0}
        for a in st.alarms:
            by_sev[str(a.get("severity", "warning"))] = by_sev.get(str(a.get("severity", "warning")), 0) + 1
        for sev, n in by_sev.items():
            self.alarms.labels(**lb, severity=sev).set(n)
        for name, station in st.stations.items():
            for verdict, n in (station.get("verdicts") or {}).items():
                self.verdicts.labels(**lb, station=name, verdict=str(verdict)).set(_num(n))
        for name, dev in st.devices.items():
            if dev.get("kind") == "coder":
                self.in_doubt.labels(**lb, coder=name).set(_num(dev.get("in_doubt_reconciles", 0)))
            state = str(dev.get("state", ""))
            self.device_ok.labels(**lb, device=name).set(0 if state in ("fault", "offline", "waiting") else 1)
        self.sync_acks.labels(**lb).set(_num(st.sync.get("acks", 0)))


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0
