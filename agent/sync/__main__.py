"""`python -m agent.sync`: run the uplink alone against a ledger file, until SIGTERM/SIGINT.

Why a bare entry point beside `lineagent sync run`: the fault tests and the benchmark start and
SIGKILL the uplink as a subprocess, without a full line config.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from agent.config.mqtt import MqttConfig
from agent.sync.mqtt import Topics
from agent.sync.outbox import Outbox
from agent.sync.uplink import Uplink


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agent.sync")
    ap.add_argument("--db", required=True)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--site", required=True)
    ap.add_argument("--line", required=True)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--batch-ms", type=int, default=50)
    ap.add_argument("--inflight", type=int, default=20)
    ap.add_argument("--ack-timeout", type=float, default=5.0)
    ap.add_argument("--exit-when-drained", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = MqttConfig(broker=args.broker, batch_max_events=args.batch, batch_max_ms=args.batch_ms,
                     inflight=args.inflight, ack_timeout_s=args.ack_timeout, reconnect_min_s=0.1,
                     reconnect_max_s=2.0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    uplink = Uplink(Outbox(args.db), cfg, Topics(cfg.topic_prefix, args.site, args.line))
    try:
        while not stop.is_set():
            if not uplink.step():
                stop.wait(0.02)
            elif args.exit_when_drained and uplink.drained():
                break
    finally:
        uplink.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
