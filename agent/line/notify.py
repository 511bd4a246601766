"""systemd's service notification protocol (sd_notify(3)), spoken directly: one datagram per message.

Why not a library: the protocol is a single `sendto()` of "KEY=VALUE\\n..." to the AF_UNIX datagram
socket named in $NOTIFY_SOCKET (a leading "@" means the abstract namespace), and the sdnotify package
has not been released since 2017. Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.

Used by the runtime (systemd/lineagent.service is Type=notify with WatchdogSec): READY=1 once the
stations are built and the loop runs, WATCHDOG=1 from the loop's own status beat (so a hung loop,
not only a dead process, gets the service restarted), STATUS= a one-line summary shown by
`systemctl status`, STOPPING=1 on the way out.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @staticmethod
    def watchdog_interval_s() -> float | None:
        """Half of WatchdogSec (systemd's advice), when the watchdog is on for this process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2e6
        except ValueError:
            return None

    def send(self, **fields: str) -> None:
        if self._sock is None:
            return
        msg = "".join(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in fields.items()).encode()
        try:
            self._sock.sendto(msg, self.address)
        except OSError as exc:  # systemd gone or socket full: never a reason to stop the line
            log.debug("sd_notify %s failed: %s", list(fields), exc)

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status)

    def beat(self, status: str) -> None:
        self.send(WATCHDOG="1", STATUS=status)

    def stopping(self, status: str) -> None:
        self.send(STOPPING="1", STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
