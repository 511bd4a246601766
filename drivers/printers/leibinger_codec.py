"""The bytes of the Leibinger JET2neo / JET3 interface protocol ("JET3" protocol setting), pure functions.

No Leibinger interface manual is public. What is here follows public clients that were run against
real coders, each cited by repository and path:
- jarrydjames-dev/leibinger `serialine.py` (mailing mode, "Leibinger Interface Protocol v1.9.15,
  Annex B"; tested on JET2neo firmware V75.0.11.2) and `manuals/src/technician_manual.html`
  chapters 04, 06, 09, 11 ("How Serialine talks to the printer");
- ViciousInstitute/LeibingerPrinter `LeibingerAPI/Leibinger.cs` and `LeibingerStatus.cs` (written
  from "Leibinger-JET2neo Interface Protocol" v1.7.4: `?RS` fields, nozzle and machine states);
- rizalgrandonk/node-coder `src/utils/leibinger.ts` (the `?SM` and `?CC` field names quoted from the
  protocol document, the error mask 33554431), `src/actions/leibinger.ts` (every literal frame it
  sends) and `src/threads/test/printerThread.test.ts` (status lines seen while printing, e.g.
  `^0=RS2<TAB>6<TAB>0<TAB>0<TAB>80<TAB>0`, `^0=SM256<TAB>0<TAB>3<TAB>0<TAB>1<TAB>21`).

Frame: `^0` (start + destination address 0), one kind character (`!` action, `=` set/answer, `?`
query), a two-letter command, then the parameters, TAB-separated, the first one directly after the
command (`=MR5<TAB>text`, `=SM256<TAB>0...`, `=CM100`, `=CC0<TAB>0<TAB>0`), then CR. Inside data, `^`
and `\\` are escaped by a `\\` (serialine.py `escape_field`); TAB, CR and LF cannot be carried at all.
A `\\` before any other character is an ordinary backslash: public clients load a job as
`^0=JL\\FFSDISK\\JOBS\\<job>` with single backslashes (Leibinger.cs `jobLoadCMD`), and the coder's
`?JL` answer carries them bare (technician_manual.html ch. 06). Replies may be followed by LF
(serialine.py `read_line` skips it; node-coder sends CR LF itself): LF and CR between frames are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from drivers.framing import Deframer, EscapeMode, Frame, FrameError, FrameSpec
from drivers.printers.base import Fault, ProtocolError

START, END, ESCAPE = b"^0", b"\r", b"\\"
SPECIAL = b"^\\"
# For the shared machinery (garbage generation, limits); de-framing uses LeibingerDeframer below.
FRAME_SPEC = FrameSpec(start=START, end=END, escape=ESCAPE, escape_mode=EscapeMode.PREFIX, escaped=SPECIAL)
JOB_DIR = "\\FFSDISK\\JOBS\\"  # Leibinger.cs jobLoadCMD; technician_manual.html ch. 06 "Loaded job"
ERROR_MASK = 0x1FFFFFF  # serialine.py error_code(): bits 25-31 are flags; node-coder errorPair 33554431
FORBIDDEN = "\t\r\n"  # serialine.py escape_field: "TAB/CR/LF are not allowed"

# Error numbers (the `?RS` error field, masked) for mailing mode: 5043 is in technician_manual.html
# ch. 09; 1015/1018/1019 are from our earlier notes, not found in the public clients.
ERR_BUFFER_FULL, ERR_BAD_INDEX, ERR_OUT_OF_SEQUENCE, ERR_BUFFER_EMPTY = 1015, 1018, 1019, 5043
PUBLIC_ERRORS: dict[int, Fault] = {
    ERR_BUFFER_FULL: Fault.BUFFER_FULL,
    ERR_BAD_INDEX: Fault.SEQUENCE_ERROR,
    ERR_OUT_OF_SEQUENCE: Fault.SEQUENCE_ERROR,
    ERR_BUFFER_EMPTY: Fault.BUFFER_EMPTY,
}


class Kind(StrEnum):
    ACTION = "!"
    SET = "="
    QUERY = "?"


class Nozzle(IntEnum):
    """`?RS` parameter 1 (LeibingerStatus.cs; node-coder NOZZLE_STATE)."""

    INVALID = 0  # standby or initialisation
    OPENING = 1
    OPEN = 2
    CLOSING = 3
    CLOSED = 4
    BETWEEN = 5


class Machine(IntEnum):
    """`?RS` parameter 2 (serialine.py STATE_NAMES; LeibingerStatus.cs; node-coder MACHINE_STATE)."""

    STANDBY = 1
    INITIALISING = 2
    INTERVAL = 3  # interval / service
    READY_FOR_ACTION = 4  # jet not ready to print (e.g. nozzle closed)
    READY_FOR_PRINT = 5  # nozzle open, `!GO` accepted
    PRINTING = 6  # print started: every PrintGo prints the next record


def escape_data(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in SPECIAL:
            out += ESCAPE
        out.append(b)
    return bytes(out)


def wire(kind: Kind, command: str, *params: bytes) -> bytes:
    """One frame; `params` are already-escaped bytes, the first follows the command directly."""
    return START + kind.value.encode() + command.encode("ascii") + b"\t".join(params) + END


def record_frame(index: int, text: bytes) -> bytes:
    """`^0=MR<index><TAB><text>` (serialine.py send_mail_record; node-coder appendFifo)."""
    return wire(Kind.SET, "MR", str(index).encode() + b"\t" + escape_data(text))


def job_frame(job: bytes, job_dir: bytes = JOB_DIR.encode()) -> bytes:
    """`^0=JL\\FFSDISK\\JOBS\\<job>`: no TAB, directory backslashes bare, as Leibinger.cs sends it."""
    return wire(Kind.SET, "JL", job_dir + escape_data(job))


@dataclass(frozen=True, slots=True)
class Reply:
    kind: Kind
    command: str
    fields: tuple[str, ...]  # the parameters; the first is what directly follows the command


def parse_reply(payload: bytes) -> Reply:
    text = payload.decode("latin-1")
    if len(text) < 3 or text[0] not in "!=?" or not (text[1:3].isascii() and text[1:3].isalpha()):
        raise ProtocolError(f"not a Leibinger frame: {payload[:40]!r}")
    rest = text[3:]
    return Reply(Kind(text[0]), text[1:3].upper(), tuple(rest.split("\t")) if rest else ())


def numbers(reply: Reply, count: int, what: str) -> list[int]:
    """The first `count` fields as integers; later fields are left out (the protocol may add some)."""
    if len(reply.fields) < count:
        raise ProtocolError(f"{what}: expected at least {count} fields, got {list(reply.fields)!r}")
    try:
        return [int(f.strip()) for f in reply.fields[:count]]
    except ValueError:
        raise ProtocolError(f"{what}: a field is not a number: {list(reply.fields)!r}") from None


def optional(reply: Reply, i: int) -> int | None:
    try:
        return int(reply.fields[i].strip())
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class RunStatus:
    """`?RS`: nozzle, machine state, error, head cover, speed, job change (serialine.py status())."""

    nozzle: int
    machine: int
    error_raw: int
    cover: int | None
    speed: int | None

    @property
    def error(self) -> int:
        return self.error_raw & ERROR_MASK

    @property
    def error_flags(self) -> int:
        return (self.error_raw & 0xFFFFFFFF) >> 25

    @property
    def printing(self) -> bool:
        return self.machine == Machine.PRINTING


def parse_rs(reply: Reply) -> RunStatus:
    nozzle, machine, error = numbers(reply, 3, "?RS")
    return RunStatus(nozzle, machine, error, optional(reply, 3), optional(reply, 4))


@dataclass(frozen=True, slots=True)
class MailStatus:
    """`?SM` (node-coder src/utils/leibinger.ts, quoting the protocol; serialine.py mail_status()):
    FifoDepth (normally 256), FifoEntrys (records in the mailing FIFO), LastStartedPrintNo (index of the
    record whose print has started, 0 if none), StopAtNo (set with `=CM`), LastStartedPrintNoWasFinished
    (0: started, not finished; >0: finished and the next one surely not started), and a sixth field,
    the PrintGo count (serialine.py comment; absent on some firmware)."""

    depth: int
    entries: int
    last_started: int
    stop_at: int | None
    finished: int | None
    printgos: int | None


def parse_sm(reply: Reply) -> MailStatus:
    depth, entries, last = numbers(reply, 3, "?SM")
    return MailStatus(depth, entries, last, optional(reply, 3), optional(reply, 4), optional(reply, 5))


def parse_cc(reply: Reply) -> tuple[int, int | None, int | None]:
    """`?CC`: product counter, stop after X products, total print counter (node-coder parseCurrentCouter)."""
    (count,) = numbers(reply, 1, "?CC")
    return count, optional(reply, 1), optional(reply, 2)


class LeibingerDeframer(Deframer):
    """The shared de-framer, except that a `\\` before an ordinary character is kept as it is, and CR/LF
    between frames are skipped (both seen from real coders; see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(FRAME_SPEC)

    def _next(self) -> tuple[int, Frame | FrameError | None]:
        if bytes(self._buf[:1]) in (b"\r", b"\n"):
            return 1, None
        return super()._next()

    def _delimited_frame(self, buf: bytes) -> tuple[int, Frame | FrameError | None]:
        i = len(START)
        body = bytearray()
        while i < len(buf):
            b = buf[i]
            if b == ESCAPE[0]:
                if i + 1 >= len(buf):
                    return 0, None
                nxt = buf[i + 1]
                if nxt in SPECIAL:
                    body.append(nxt)
                    i += 2
                    continue
                body.append(b)  # an ordinary backslash (`\F` in a job path)
                i += 1
                continue
            if b == END[0]:
                return i + 1, Frame(bytes(body), buf[: i + 1])
            if buf.startswith(START, i):
                return i, FrameError("frame not terminated before the next start", buf[:i])
            if START.startswith(buf[i:]):
                return 0, None
            body.append(b)
            i += 1
            if len(body) > FRAME_SPEC.max_payload:
                return i, FrameError(f"frame longer than {FRAME_SPEC.max_payload} bytes without an end", buf[:i])
        return 0, None



def state_name(enum: type[Nozzle] | type[Machine], value: int) -> str:
    try:
        return f"{value} ({enum(value).name.lower()})"
    except ValueError:
        return str(value)
