"""Markem-Imaje NGPCL messages: pure encode/decode, no I/O.

Primary source: "NGPCL Usage Guide", Markem Technologies Ltd, version 25 (15 Oct 2014), committed as
`docs/X30通信协议NGPCL Users Guide v25.pdf` in the public repository cxzhe/JunSheng. Sections:
- 4 Protocol Structure: Packet Start, optional 4-digit Message Number, a 3-character Message Identifier
  (`~` + two letters), a body whose fields each END with the delimiter `|`, Packet End. Printable set
  `{` `}` (the default), Traditional set STX/ETX; "the NG device shall always respond using the same
  control characters as those in the initiating message". Fields must not contain the control
  characters ("the user's responsibility"): this codec refuses them rather than escape (no escape exists).
- 4.4 Message Types: a command is answered with its own identifier and a success code, '0' success /
  '1' failed (`{~JS0|}` / `{~JS1|}`); responses carry an optional status character (a device setting,
  on in every public capture: `{~DS0|...}`, `{~JN0|...}`, `{~FC0|...}`).
- 5.1 NAK `~NK1|`: the device could not parse the packet (or its checkfield).
Real coders follow each reply with CR LF (GlenCashen/videojet-message-manager emulator/emulator.py,
`NGPCL_DS` "captured during real testing", every reply `... + "\\r\\n"`): bytes CR, LF, space, tab and
NUL between packets are skipped; anything else outside a packet is garbage (ProtocolError).

So a message is decoded as identifier + the fields of its body: `{~JS0|}` -> ("JS", ("0",)),
`{~DR|}` -> ("DR", ("",)), `{~JN0|Job|}` -> ("JN", ("0", "Job")); the first field of a command or
reply is its timing / success / status character where the section defines one.

Left out: the optional checkfield (section 4, worked example in section 7: its printed sum, 4760, does
not match its own example string (4764), so no byte table can be built from it; the device setting
is off unless enabled); message numbers on outgoing messages (optional; tolerated on replies); Unicode
mode (16-bit characters, a device setting: this codec speaks 8-bit Latin-1 only); the legacy control
characters ^A ^ ^Z (section 10.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from drivers.printers.base import PrinterState, ProtocolError

STX, ETX = 0x02, 0x03
MAX_MESSAGE = 4096
FORBIDDEN = frozenset("{}|~\x00\x02\x03\r\n")  # control characters of section 4, NUL padding, line ends
BETWEEN = b"\r\n\t \x00"  # what a coder may send between packets (CR LF after every reply)


# Section 6, codes of the PackML Tag Naming document V1.0: code -> (state, what the feeder sees). Only
# PRODUCING prints; ABORTING/ABORTED stop on a fault (the captured "beam stop" is 09).
PACKML: dict[str, tuple[str, PrinterState]] = {
    "00": ("undefined", PrinterState.IDLE), "01": ("off", PrinterState.IDLE),
    "02": ("stopped", PrinterState.IDLE), "03": ("starting", PrinterState.IDLE),
    "04": ("ready", PrinterState.IDLE), "05": ("standby", PrinterState.IDLE),
    "06": ("producing", PrinterState.PRINTING), "07": ("stopping", PrinterState.IDLE),
    "08": ("aborting", PrinterState.FAULT), "09": ("aborted", PrinterState.FAULT),
    "10": ("holding", PrinterState.IDLE), "11": ("held", PrinterState.IDLE),
}
PACKML_MODES = {"0": "undefined", "1": "automatic", "2": "semi-automatic", "3": "manual", "4": "idle"}
# 5.11 "Result of last job select or job update"
LAST_UPDATE = {"0": "none", "1": "processing", "2": "complete", "3": "failed: allocation in progress",
               "4": "failed: file missing"}


class Delimiters(StrEnum):
    PRINTABLE = "printable"  # { } (section 4, the default)
    TRADITIONAL = "traditional"  # STX ETX


FRAMES = {Delimiters.PRINTABLE: (ord("{"), ord("}")), Delimiters.TRADITIONAL: (STX, ETX)}


@dataclass(frozen=True, slots=True)
class Message:
    ident: str  # the two letters after '~': "JS", "DS", "NK"
    fields: tuple[str, ...] = ()  # the body's fields; () for a message without body (`~VR`)

    @property
    def is_nak(self) -> bool:
        return self.ident == "NK"


# -- the messages the driver sends (section 5), single-head coders: line reference and job name blank --
def select_job(name: str, timing: int = 0) -> Message:
    """5.2 Job Select, no allocation: `~JS0|job|0|`."""
    return Message("JS", (str(timing), name, "0"))


def update_fields(pairs: list[tuple[str, str]], timing: int = 1) -> Message:
    """5.5 Job Update of the current job, no allocation: `~JU1||0|Field|Value|`. Timing 1 replies once
    the job is imaged (section 10.2: only then may the next print carry the new data)."""
    flat = [x for pair in pairs for x in pair]
    return Message("JU", (str(timing), "", "0", *flat))


def read_field(name: str) -> Message:
    """5.6 Field Contents Request on the current job: `~FR|Field|`."""
    return Message("FR", ("", name))


DEVICE_STATUS = Message("DR", ("",))  # 5.10 `~DR|`
JOB_REQUEST = Message("JR", ("",))  # 5.3 `~JR|`
COUNTS_REQUEST = Message("CR", ("",))  # 5.14 `~CR|`
VERSION_REQUEST = Message("VR")  # 5.29 `~VR`
NAK = Message("NK", ("1",))  # 5.1


def print_status(timing: int = 0) -> Message:
    """5.20 `~PS|0|`."""
    return Message("PS", ("", str(timing)))


def clear_to_send(timing: int = 0) -> Message:
    """5.12 `~DC0|`."""
    return Message("DC", (str(timing),))


def state_change(state: str) -> Message:
    """5.22 `~ST|04|` (SmartDate: READY 04, PRODUCING 06, HELD 11 only)."""
    return Message("ST", ("", state))


def check_text(text: str) -> str | None:
    """Why `text` cannot be carried in a field (None: it can)."""
    bad = FORBIDDEN.intersection(text)
    if bad:
        return f"contains {''.join(sorted(bad))!r}, NGPCL control characters with no escape"
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as exc:
        return f"is not 8-bit text (the coder's Unicode mode is not supported): {exc.reason}"
    return None


def encode(message: Message, delimiters: Delimiters = Delimiters.PRINTABLE) -> bytes:
    if not (len(message.ident) == 2 and message.ident.isascii() and message.ident.isalpha()):
        raise ValueError(f"NGPCL identifier {message.ident!r} must be two ASCII letters")
    for f in message.fields:
        why = check_text(f)
        if why is not None:
            raise ValueError(f"NGPCL field {f!r} {why}")
    start, end = FRAMES[delimiters]
    body = "".join(f"{f}|" for f in message.fields)
    return bytes([start]) + f"~{message.ident}{body}".encode("latin-1") + bytes([end])


def decode(inner: bytes) -> Message:
    """The bytes between Packet Start and Packet End -> Message; ProtocolError says what does not parse."""
    text = inner.decode("latin-1")
    if len(text) >= 4 and text[:4].isdigit():
        text = text[4:]  # an optional Message Number, echoed from the request (section 4)
    if len(text) < 3 or text[0] != "~" or not (text[1:3].isascii() and text[1:3].isalpha()):
        raise ProtocolError(f"NGPCL message {inner!r} has no '~XX' identifier")
    ident, body = text[1:3], text[3:]
    if not body:
        return Message(ident)
    if not body.endswith("|"):
        raise ProtocolError(f"NGPCL message {inner!r}: each body field must end with '|'")
    return Message(ident, tuple(body[:-1].split("|")))


def device_status_core(body: tuple[str, ...]) -> tuple[str, ...]:
    """The nine core fields of 5.11 (after the status character), found by the 9-character
    allocation-remaining field: 7th in the guide's example, 8th from real coders, which send one more
    leading field (always 0 in the GlenCashen captures); adopter data may follow the mode."""
    offset = 1 if len(body) >= 10 and len(body[7]) == 9 else 0
    core = body[offset:offset + 9]
    if len(core) < 9 or len(core[6]) != 9 or any(f not in ("0", "1") for f in core[:4]) or core[7] not in PACKML:
        raise ProtocolError(f"device status ~DS {body!r} is not the layout of section 5.11")
    return core


def field_value(fields: tuple[str, ...], name: str, *, status_field: bool) -> str | None:
    """5.7 Field Contents -> the value (NUL padding of 4.2 stripped); None: the job has no such field."""
    if status_field:
        if fields[:1] == ("1",):
            return None
        fields = fields[1:] if fields[:1] == ("0",) else ()
    elif fields == ("",):
        return None
    if len(fields) < 2 or fields[0].rstrip("\x00").casefold() != name.casefold():
        raise ProtocolError(f"field read answered ~FC {fields!r}")
    return fields[1].rstrip("\x00")


class Deframer:
    """Cuts a byte stream into messages (either delimiter set); CR/LF/blanks between them are skipped."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        try:
            while True:
                skip = 0
                while skip < len(self._buf) and self._buf[skip] in BETWEEN:
                    skip += 1
                del self._buf[:skip]
                if not self._buf:
                    return out
                end_byte = next((e for s, e in FRAMES.values() if self._buf[0] == s), None)
                if end_byte is None:
                    raise ProtocolError(f"NGPCL stream outside a packet: {bytes(self._buf[:16])!r}")
                end = self._buf.find(bytes([end_byte]))
                starts = [self._buf.find(bytes([s]), 1) for s, _ in FRAMES.values()]
                nested = min((p for p in starts if p > 0), default=-1)
                if nested > 0 and (end < 0 or nested < end):
                    raise ProtocolError(f"NGPCL packet opened inside another: {bytes(self._buf[:32])!r}")
                if end < 0:
                    if len(self._buf) > MAX_MESSAGE:
                        raise ProtocolError(f"NGPCL packet longer than {MAX_MESSAGE} bytes without its end")
                    return out
                inner = bytes(self._buf[1:end])
                del self._buf[: end + 1]
                out.append(decode(inner))
        except ProtocolError:
            self._buf.clear()
            raise
