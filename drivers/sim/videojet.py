"""A Videojet 1000-line printer speaking WSI, written from the manual (not from the driver).

Source: "Videojet 1000 Line Series WSI Communications Protocol", P/N 462115-01 Rev AD (2013). By section:
- 3: every packet STX TYPE DATA ETX is answered `$XX` when executed, `!XX` when unknown or failed; XX is
  the sum modulo 256 of the bytes between STX and ETX, upper-case hex, high nibble first.
- 3.10 `H`: STX + the part number padded with spaces to 16 (4.5) + ETX. 3.11 `E`: STX + six hex
  error characters + one alarm character + ETX. 3.13 `Q`: STX + message name + ETX. 3.15 `G` A|B:
  STX + the counter in `counter_digits` digits (ten by the text, eight in its examples) + ETX. A query
  is answered by its data packet alone, as 3.15's examples show; `query_check` "before"/"after" adds
  `$XX`, to try a host against the other reading of section 3 ("every packet gets a check sequence").
- 3.1 `M` (1-30 characters; an unknown message fails and the old one stays), 3.2 `C`, 3.3 `T`, 3.4 `P`,
  3.7 `L`, 3.8 `B` (accepted with data, not modelled), 3.5 `D` (clears a field), 3.6 `U` (name LF data,
  1-50 characters, REPLACES the field), 3.9 `K` (jet stop), 3.12 `Z` (12 digits), 3.14 `O0`/`O1` (print
  on needs the jet on), 3.16 `R` A|B. `J` (start jet) is "disabled" (appendix): it fails.
- appendix 5: the 1710 and 1610DH do not support G, O, Q, R, Z nor the `!` reply. Such a model answers
  `$XX`, its only "command response", to every packet but H and E, including unsupported, unknown
  and failed ones, and does nothing for those.

The user field is a slot, not a queue: every product passing a printing head gets whatever it holds,
so `printed` shows a repeat as the same text twice; a print with the field empty counts in
`void_prints` instead. Print counter (`counter`, G A): every print. Product counter (G B): every
product seen while powered, printed or not (the manual does not define them; this is our model).
Our choices where the manual is silent: the jet is on at power-up (as after an operator's start); the
field keeps its content over a power loss (`field_survives_power_loss`, the harder case for a host);
the trafficator: red with a stopping fault, green while printing, amber when not printing or warned.
Faults (drivers/sim/faults.py): nak -> `!XX` (a 1710: `$XX`) and nothing done; silence; garbage;
stop = print off at the panel (the field keeps its content); power loss; ink low (amber).
"""

from __future__ import annotations

from collections.abc import Iterable

from drivers.framing import Frame, FrameError, FrameSpec
from drivers.printers.base import Fault
from drivers.sim.base import STOPPING, SimCoder
from drivers.sim.faults import FaultPlan

LIMITED_MODELS = frozenset({"1710", "1610DH"})
NOT_ON_LIMITED = frozenset("GOQRZ")
GREEN, AMBER, RED = 1, 2, 4

# Kept for drivers/sim/markem.py, which imported them from the old WSI simulator; WSI has no such codes.
STATE_IDLE, STATE_PRINTING, STATE_FAULT = "0", "1", "2"
FAULT_CODES: dict[Fault, str] = {Fault.INK_LOW: "IL", Fault.INK_EMPTY: "IE", Fault.HEAD_FAULT: "HF",
                                 Fault.BUFFER_EMPTY: "BE", Fault.COVER_OPEN: "CO", Fault.OTHER: "OT"}
# 3.11's table, (byte 1-6, bit): ink core empty, bad nozzle, pump fault.
ERROR_BIT: dict[Fault, tuple[int, int]] = {Fault.INK_EMPTY: (1, 3), Fault.HEAD_FAULT: (3, 0), Fault.OTHER: (2, 0)}


def _sum_hex(body: bytes) -> bytes:
    return f"{sum(body) % 256:02X}".encode("ascii")


class VideojetSim(SimCoder):
    """The WSI printer on a pty or TCP (registered as `videojet_wsi` in drivers/sim/__init__.py)."""

    frame_spec = FrameSpec(start=b"\x02", end=b"\x03", max_payload=1024)
    name = "videojet_wsi"

    def __init__(
        self,
        *,
        model: str = "1620",
        user_fields: Iterable[str] = ("SERIAL",),
        messages: Iterable[str] | None = None,
        part_number: str = "1.0.385W",
        counter_digits: int = 10,
        query_check: str = "none",
        field_survives_power_loss: bool = True,
        capacity: int = 1,
        rate_per_min: float | None = None,
        baud: int = 115200,
        faults: FaultPlan | str | None = None,
    ) -> None:
        if capacity != 1:
            raise ValueError("a WSI user field holds one code: capacity must be 1")
        if query_check not in ("none", "before", "after"):
            raise ValueError(f"query_check {query_check!r}: none, before or after")
        super().__init__(rate_per_min=rate_per_min, baud=baud, faults=faults)
        self.capacity = 1
        self.model = model
        self.limited = model in LIMITED_MODELS
        self.fields = dict.fromkeys(user_fields, "")
        self.field = next(iter(self.fields))  # the field the selected message prints
        self.messages = set(messages) if messages is not None else None
        self.part_number = part_number.ljust(16)
        self.counter_digits = counter_digits
        self.query_check = query_check
        self.field_survives_power_loss = field_survives_power_loss
        self.product_counter = 0
        self.void_prints = 0
        self.jet_on = True
        self.message_text = ""
        self.clock = ""
        self.packets: list[bytes] = []  # every packet body received, in order (tests read what a host sent)

    # -- answers -------------------------------------------------------------------------------------
    def _ok(self, body: bytes) -> bytes:
        return b"$" + _sum_hex(body)

    def _fail(self, body: bytes) -> bytes:
        return (b"$" if self.limited else b"!") + _sum_hex(body)

    def _data(self, body: bytes, text: str) -> bytes:
        packet = b"\x02" + text.encode("ascii") + b"\x03"
        if self.query_check == "before":
            return self._ok(body) + packet
        if self.query_check == "after":
            return packet + self._ok(body)
        return packet

    def nak(self, frame: Frame, reason: str) -> bytes:
        return self._fail(frame.payload)

    def on_bad_frame(self, error: FrameError) -> bytes | None:
        return None  # bytes outside STX..ETX are no packet: nothing to answer

    def garbage(self, size: int = 12) -> bytes:
        pool = [b for b in range(0x20, 0x7F) if b not in b"$!"]
        return bytes(self.plan.rng.choice(pool) for _ in range(size))

    def handle(self, frame: Frame) -> bytes | None:
        body = frame.payload
        self.packets.append(body)
        if not body or not 0x41 <= body[0] <= 0x5A:
            return self._fail(body)
        if any(not (0x20 <= b <= 0x7F or b == 0x0A) for b in body[1:]):
            return self._fail(body)
        letter, data = chr(body[0]), body[1:].decode("ascii")
        if self.limited and letter in NOT_ON_LIMITED:
            return self._ok(body)  # "currently not supported": the only response it has, nothing done
        if letter == "H":
            return self._data(body, self.part_number)
        if letter == "E":
            return self._data(body, self._error_status())
        if letter == "Q":
            return self._data(body, self.job)
        if letter == "G":
            if data not in ("A", "a", "B", "b"):
                return self._fail(body)
            value = self.counter if data in "Aa" else self.product_counter
            return self._data(body, f"{value:0{self.counter_digits}d}"[-self.counter_digits :])
        done = self._execute(letter, data)
        return self._ok(body) if done else self._fail(body)

    def _execute(self, letter: str, data: str) -> bool:
        """A command; True when it was carried out."""
        if letter == "M":
            if not 1 <= len(data) <= 30 or (self.messages is not None and data not in self.messages):
                return False
            self.job = data
        elif letter == "C":
            self.message_text = ""
        elif letter in "TPLB":
            if not data:
                return False
            self.message_text = data if letter == "T" else self.message_text
        elif letter == "D":
            if data not in self.fields:
                return False
            self.fields[data] = ""
        elif letter == "U":
            name, sep, value = data.partition("\n")
            if name not in self.fields or not sep or not 1 <= len(value) <= 50 or "\n" in value:
                return False
            self.fields[name] = value
        elif letter == "K":
            self.jet_on = False
            self.running = False
        elif letter == "Z":
            if len(data) != 12 or not data.isdigit():
                return False
            self.clock = data
        elif letter == "O":
            if data == "1" and self.jet_on and not self.faults & STOPPING:
                self.running = True
            elif data == "0":
                self.running = False
            else:
                return False
        elif letter == "R":
            if data in ("A", "a"):
                self.counter = 0
            elif data in ("B", "b"):
                self.product_counter = 0
            else:
                return False
        else:
            return False  # J (disabled) and the letters section 2 does not list
        return True

    def _error_status(self) -> str:
        nibbles = [0] * 6
        for fault, (byte, bit) in ERROR_BIT.items():
            if fault in self.faults:
                nibbles[byte - 1] |= 1 << bit
        printing = self.running and self.jet_on and not self.faults & STOPPING
        alarm = RED if self.faults & STOPPING else GREEN if printing else AMBER
        if Fault.INK_LOW in self.faults:
            alarm |= AMBER
        return "".join(f"{n:X}" for n in nibbles) + f"{alarm:X}"

    # -- the head --------------------------------------------------------------------------------------
    def trigger(self, products: int = 1) -> int:
        """`products` pass the head: each printing one gets the field's content as it is now."""
        done = 0
        for _ in range(products):
            if not self.powered:
                self.missed += 1
                continue
            self.product_counter += 1
            if not (self.running and self.jet_on) or self.faults & STOPPING:
                self.missed += 1
                continue
            text = self.fields[self.field]
            self.counter += 1
            if text:
                self.printed.append(text)
            else:
                self.void_prints += 1
            done += 1
            for fault in self.plan.after_print(len(self.printed) + self.void_prints):
                self.inject(fault)
        return done

    def stop_printing(self) -> None:
        """Print off at the panel: nothing queues in WSI, so the field keeps what it holds."""
        self.running = False

    async def power_off(self) -> None:
        await super().power_off()
        if not self.field_survives_power_loss:
            self.fields = dict.fromkeys(self.fields, "")

    async def power_on(self) -> None:
        await super().power_on()
        self.jet_on = True
