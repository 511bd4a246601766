"""A Hitachi RX-class IJ printer with the communication buffer, printer side, written from the manual.

Sources: Hitachi "Technical Manual, Model RX" rev D, chapter 5, and for the status query the C# client
Hitachi_Protocol_DLL (INNOVATIVE-PROBLEM-SOLVERS-LLC/HitachiEtherNetIP, HitachiProtocol.cs, HPStatus.cs).
The byte values below are typed from those documents, not imported from the driver's codec.

What it answers (manual section in brackets):
- ENQ -> ACK when on-line, NAK off-line [5.3.1 (1)(3), 5.5.1 (2) (a)]; DC2 -> ACK, NAK off-line [5.4.1];
  DC3 -> ACK; a text STX .. ETX [BCC] -> ACK, or NAK when malformed, over 3000 bytes [5.3.1 (8)], with a
  bad BCC, off-line, or when the buffer cannot hold it [5.9.4 (1)]. ENQ may be omitted.
- Print contents DLE + item code (31H.. for items 1..100) + characters [5.3.2]; at most 8 items and 80
  characters per buffered text [5.9.3-1 (2)], 100 items / 1000 characters in the buffer [5.9.2 (2)].
- Bare ESC2 texts without STX/ETX: 73H on-line, 74H off-line, 75H time inquiry answered STX ESC2 7FH
  + 14 digits ETX [5.3.8, 5.3.10, 5.4.2]; ESC # (1BH 23H) status, answered STX '1' c r o a ETX (C#).
- Framed ESC2 texts: 76H clear buffer, 77H restart printing [5.9.3-2], 72H + 30H..34H remote
  operation, always ACK even when it cannot act [5.3.9-2], 20H 31H + 4 digits print data recall [5.3.3].
  The "existing machine" ESC texts the manual lists beside them: ESC 2DH clear, ESC 77H restart,
  ESC 71H remote operation, ESC 55H + 3 digits / ESC 25H + 2 digits recall, bare ESC 79H/7AH
  on/off-line and ESC 7BH time inquiry (answered STX ESC 7CH ..).
Printing [5.9.2]: the first data set is fetched when Ready is set and one per print after that; a
print with nothing fetched raises the "Communication Buffer Fault" (empty buffer fault enabled,
timing print start, N = data number at fault) [5.9.2 examples 5, 6]. A panel stop (standby) keeps the
buffer. Off-line clears the buffer and the printer goes on printing its current content on every
product in standard mode, also back on-line, until the buffer function is set up again at the panel
(`rearm()`) [5.9.2 (2), example 3]; in standard mode a print contents text replaces what prints at
once [5.5.1 (2)]. A print start within `restart_delay_s` of the ACK to "restart printing" is the
"Invalid Data Change Timing" fault [5.9.3-2 (2), 5.9.4 (2)]. Power-up: buffer empty, ink stopped,
on-line only with "Comm. port ON at power-up" [5.2.1; default off].
`overwrite_enabled=False` shows a coder left "overwrite-protected": after each text it answers ENQ
with NAK until it printed or got DC2 [5.5.1 (1)].
Assumptions where the manual is silent (pessimistic, so a driver built on them stays safe): "clear
buffer" / "restart printing" during a print (within `print_s` of a print start) are NAK'd; the BCC is
the XOR of text and ETX; a buffered text answered NAK stores nothing.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial

from drivers.printers.base import Fault
from drivers.sim.coder_model import CoderModel
from drivers.sim.coder_serve import Injection, StreamSim
from drivers.sim.faults import FaultPlan, SimFault

STX, ETX, ENQ, ACK, DLE, DC2, DC3, NAK, ESC, ESC2 = 2, 3, 5, 6, 0x10, 0x12, 0x13, 0x15, 0x1B, 0x1F
STOPPED, STANDBY, READY, BUFFER_FAULT, TIMING_FAULT = 0x30, 0x31, 0x32, 0x66, 0x69
DataSet = list[tuple[int, bytes]]


@dataclass
class HitachiSimProtocol:
    model: CoderModel
    refill_n: int = 0  # "Data number at Fault" N
    bcc: bool = False
    sets: int | None = None  # an extra limit in data sets (tests); the manual's are 100 items / 1000 chars
    restart_delay_s: float = 0.5
    print_s: float = 0.0
    empty_fault: bool = True
    online_at_power_up: bool = False
    online: bool = True
    overwrite_enabled: bool = True  # the setup 5.9.2 (1) requires; False shows what a wrong setup does
    answers_status: bool = True  # the status query is an option (C#: SOP-04); without it: silence
    receptive: bool = True  # "ready for reception" (overwrite-protected: cleared by each text, 5.5.1 (1))
    buffer_mode: bool = True  # the buffer function is armed (it is lost by going off-line)
    operation: int = STANDBY
    alarm: int = 0x30
    job: str = ""
    inject: Injection = field(default_factory=Injection)
    buffer: deque[DataSet] = field(default_factory=deque)
    fetched: DataSet | None = None  # the data set for the next print
    message: dict[int, bytes] = field(default_factory=dict)  # what prints now, per item
    restart_at: float = -1e9
    last_print: float = -1e9
    _rx: bytearray = field(default_factory=bytearray)

    def reset_link(self) -> None:
        self._rx.clear()

    # -- the byte stream ----------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        if not self.model.powered:
            return b""
        self._rx += data
        out = bytearray()
        while self._rx:
            b = self._rx[0]
            if b == STX:
                end = self._rx.find(ETX)
                if end < 0:
                    if len(self._rx) > 3000:
                        self._rx.clear()
                        out.append(NAK)
                    break
                need = end + 2 if self.bcc else end + 1
                if len(self._rx) < need:
                    break
                raw = bytes(self._rx[:need])
                del self._rx[:need]
                out += self._request(partial(self._text, raw))
            elif b in (ESC, ESC2):
                if len(self._rx) < 2:
                    break
                head = bytes(self._rx[:2])
                del self._rx[:2]
                out += self._request(partial(self._bare, head))
            else:
                del self._rx[:1]
                if b in (ENQ, DC2, DC3):
                    out += self._request(partial(self._control, b))
                # anything else between texts (the host's ACK to a reply, a stray BCC) is ignored
        return bytes(out)

    def _request(self, handle: partial[bytes]) -> bytes:
        return self.inject.request(self.model, handle, bytes([NAK]))

    def _control(self, b: int) -> bytes:
        if b == DC3:
            return bytes([ACK])
        if b == DC2 and self.online:
            self.receptive = True  # 5.5.1 (1) (b): DC2 makes the printer ready for reception again
        return bytes([ACK if self.online and (b == DC2 or self.receptive) else NAK])

    def _bare(self, head: bytes) -> bytes:
        if head == bytes([ESC, 0x23]):
            return self.status_reply() if self.answers_status else b""
        if head in (bytes([ESC2, 0x73]), bytes([ESC, 0x79])):
            self.go_online()
            return bytes([ACK])
        if head in (bytes([ESC2, 0x74]), bytes([ESC, 0x7A])):
            self.go_offline()
            return bytes([ACK])
        if head in (bytes([ESC2, 0x75]), bytes([ESC, 0x7B])):
            reply = bytes([ESC2, 0x7F]) if head[0] == ESC2 else bytes([ESC, 0x7C])
            return bytes([STX]) + reply + time.strftime("%Y%m%d%H%M%S").encode() + bytes([ETX])
        return bytes([NAK])

    def status_reply(self) -> bytes:
        reception = self.online and self.receptive and self.room_items() > 0
        alarm = 0x31 if Fault.INK_LOW in self.model.faults else self.alarm  # "Ink Low Warning"
        return bytes([STX, 0x31, 0x30 + self.online, 0x30 + reception, self.operation, alarm, ETX])

    def _text(self, raw: bytes) -> bytes:
        end = raw.index(ETX)
        text = raw[1:end]
        if end + 1 > 3000:
            return bytes([NAK])  # 5.3.1 (8): at most 3000 bytes including STX and ETX
        if self.bcc:
            check = 0
            for b in text + bytes([ETX]):
                check ^= b
            if raw[end + 1] != check:
                return bytes([NAK])
        if not self.online or not text:
            return bytes([NAK])
        if text[0] == DLE:
            return bytes([ACK if self._contents(text) else NAK])
        if text[0] not in (ESC, ESC2) or len(text) < 2:
            return bytes([NAK])
        # ESC2 headers, or the "existing machine" ESC headers the RX also accepts (5.3.3, 5.3.9, 5.9.3-2)
        esc2, head, rest = text[0] == ESC2, text[1], text[2:]
        clear, restart, remote = (0x76, 0x77, 0x72) if esc2 else (0x2D, 0x77, 0x71)
        if head in (clear, restart) and not rest:
            if time.monotonic() - self.last_print < self.print_s:
                return bytes([NAK])
            if head == clear:
                self.buffer.clear()  # the fetched data set stays: it "may be printed" (5.9.3-2 (1))
            else:
                self.fetched, self.restart_at = None, time.monotonic()
                self._fetch()
            return bytes([ACK])
        if head == remote and len(rest) == 1 and 0x30 <= rest[0] <= 0x34:
            self._remote(rest[0])
            return bytes([ACK])
        size = {(True, 0x20): 5, (False, 0x55): 3, (False, 0x25): 2}.get((esc2, head))  # recall (5.3.3)
        number = rest[1:] if esc2 else rest  # ESC2 20H carries classification 31H first
        if size is None or len(rest) != size or (esc2 and rest[0] != 0x31) or not number.isdigit():
            return bytes([NAK])
        if not 1 <= int(number) <= 2000:
            return bytes([NAK])  # an unregistered number: error 020
        self.job = str(int(number))
        return bytes([ACK])

    # -- the printer --------------------------------------------------------------------------
    def _contents(self, text: bytes) -> bool:
        items: DataSet = []
        for part in text[1:].split(bytes([DLE])):
            if not part or not 0x31 <= part[0] <= 0x94 or any(not 0x20 <= b <= 0x7E for b in part[1:]):
                return False
            items.append((part[0] - 0x30, bytes(part[1:])))
        if not self.buffer_mode:
            self.message.update(items)  # standard mode: what prints changes at once
            return True
        if len(items) > 8 or sum(len(c) for _, c in items) > 80:
            return False
        if len(items) > self.room_items() or sum(len(c) for _, c in items) > self.room_chars():
            return False
        if self.sets is not None and len(self.buffer) >= self.sets:
            return False
        if self.model.force_full:
            self.model.force_full -= 1
            return False
        if not self.receptive:
            return False
        self.buffer.append(items)
        self.receptive = self.overwrite_enabled
        if self.fetched is None and self.operation == READY:
            self._fetch()
        return True

    def room_items(self) -> int:
        return 100 - sum(len(s) for s in self.buffer)

    def room_chars(self) -> int:
        return 1000 - sum(len(c) for s in self.buffer for _, c in s)

    def _fetch(self) -> None:
        if self.fetched is None and self.buffer:
            self.fetched = self.buffer.popleft()

    def _remote(self, kind: int) -> None:
        if kind == 0x30 and self.operation == STOPPED:
            self.operation = STANDBY
        elif kind == 0x31:
            self.operation = STOPPED
        elif kind == 0x32 and self.operation == STANDBY:
            self.operation = READY
            if self.buffer_mode:
                self._fetch()
        elif (kind == 0x33 and self.operation == READY) or (kind == 0x34 and self.operation not in
                                                             (STOPPED, STANDBY, READY)):
            self.operation = STANDBY

    def fire(self) -> str | None:
        """A product passes the head; returns the text printed, or None for a miss."""
        m = self.model
        now = time.monotonic()
        if not m.powered or self.operation != READY:
            m.missed += 1
            return None
        if self.buffer_mode:
            if now - self.restart_at < self.restart_delay_s:
                self.operation = TIMING_FAULT
                m.missed += 1
                return None
            self._fetch()
            if (self.fetched is None or len(self.buffer) < self.refill_n) and self.empty_fault:
                self.operation = BUFFER_FAULT
                m.faults.add(Fault.BUFFER_EMPTY)
                m.missed += 1
                return None
            if self.fetched is not None:  # else (empty buffer fault disabled): the last content again
                self.message.update(self.fetched)
                self.fetched = None
        self.last_print, self.receptive = now, True
        text = b"".join(self.message[k] for k in sorted(self.message)).decode("latin-1")
        m.printed.append(text)
        m.counter += 1
        if self.buffer_mode:
            self._fetch()  # the next data set is fetched for the next print
        return text

    def go_offline(self) -> None:
        self.online, self.buffer_mode = False, False
        self.buffer.clear()
        if self.fetched is not None:
            self.message.update(self.fetched)  # example 3: the fetched content is what repeats
            self.fetched = None

    def go_online(self) -> None:
        self.online = True  # still standard mode until rearm()

    def rearm(self) -> None:
        """The buffer function set up again at the panel (5.9.2 (1)); valid on-line only."""
        if self.online:
            self.buffer_mode = True
            self.buffer.clear()
            self.fetched = None


class HitachiSim(StreamSim):
    """The Hitachi printer on a pty or TCP (registered as `hitachi` in drivers/sim/__init__.py)."""

    def __init__(
        self,
        *,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
        capacity: int | None = None,
        refill_n: int = 0,
        bcc: bool = False,
        restart_delay_s: float = 0.5,
        print_s: float = 0.0,
        empty_fault: bool = True,
        online_at_power_up: bool = False,
        overwrite_enabled: bool = True,
        answers_status: bool = True,
    ) -> None:
        self.hitachi = HitachiSimProtocol(
            CoderModel(capacity=capacity or 100), refill_n=refill_n, bcc=bcc, sets=capacity,
            restart_delay_s=restart_delay_s, print_s=print_s, empty_fault=empty_fault,
            online_at_power_up=online_at_power_up, overwrite_enabled=overwrite_enabled,
            answers_status=answers_status,
        )
        self.hitachi.inject.banned = bytes([ACK, NAK, STX, ETX, ENQ])
        super().__init__(self.hitachi, rate_per_min=rate_per_min, baud=baud, faults=faults)

    def trigger(self, products: int = 1) -> int:
        done = 0
        for _ in range(products):
            if self.hitachi.fire() is None:
                continue
            done += 1
            for fault in self.plan.after_print(len(self.model.printed)):
                self.inject(fault)
        return done

    def stop_printing(self) -> None:
        """A stop at the panel: standby; the buffer is kept (5.9.2 (2)); nobody tells the host."""
        if self.hitachi.operation == READY:
            self.hitachi.operation = STANDBY

    def inject(self, fault: SimFault, count: int = 1) -> None:
        if fault is SimFault.STOP:
            self.stop_printing()
        else:
            super().inject(fault, count)

    async def power_off(self) -> None:
        await super().power_off()
        h = self.hitachi
        h.buffer.clear()
        h.fetched, h.operation = None, STOPPED

    async def power_on(self) -> None:
        h = self.hitachi
        h.online = h.buffer_mode = h.online_at_power_up
        await super().power_on()
