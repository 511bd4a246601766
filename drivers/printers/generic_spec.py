"""The protocol file of the generic coder driver (config/printers/<name>.yaml), validated by pydantic.

Why a file and not code: many coders on real lines (Domino, KGK, Chinese CIJ/TIJ brands) keep their
protocol closed, and a site that has the manual can describe its bytes without us shipping guessed
bytes in code. The file must be rich enough to describe the four protocols we
know from primary sources as they really are (config/printers/videojet_wsi.yaml, hitachi_rx.yaml,
leibinger.yaml, markem_ngpcl.yaml, each citing its source):
- framing (drivers/framing), plus fixed-size replies outside frames (`tagged`, WSI's `$XX`) and filler
  bytes between frames (`filler`, the CR LF after NGPCL replies);
- a reply check sequence computed from the HOST's packet (`check_sequence`: WSI answers `$XX`/`!XX`,
  XX = sum mod 256 of the bytes between STX and ETX of the packet it answers);
- the handshake: ENQ answered before each framed request, a byte the host sends before repeating a
  request whose answer was lost (Hitachi's DC2), lock-step or pipelined pushes;
- commands: a template to send (framed, or raw bytes such as Hitachi's `ESC #`), and how it is answered
  (a frame matching a regex whose named groups carry values, the check sequence, or nothing at all, as
  a Leibinger without echo mode answers a set command);
- the coder: its kind (drivers/printers/fifo.py CoderKind), capacity, whether a stop clears it, whether
  the driver can prove a flush, the coder's own double-print guard, the highest safe line rate; these
  fill Capabilities, so the feeder relies on nothing the file does not state.

Byte strings in the file are YAML strings taken byte for byte as latin-1, so "\\x02" is STX and
"\\r" is CR. Every unknown key is refused with file, line and key (confkit/loader.py).
"""

from __future__ import annotations

import re
import string
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from confkit.base import Strict
from confkit.loader import read_yaml, validate
from drivers.framing import (
    ChecksumEncoding,
    ChecksumKind,
    ChecksumPlace,
    ChecksumSpec,
    EscapeMode,
    FrameSpec,
    LengthSpec,
    checksum_bytes,
)
from drivers.printers.base import Fault
from drivers.printers.fifo import CoderKind

PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "config" / "printers"


def to_bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} has characters above \\xff; write bytes as \\xNN") from None


class ChecksumModel(Strict):
    kind: ChecksumKind = ChecksumKind.NONE
    encoding: ChecksumEncoding = ChecksumEncoding.BINARY
    place: ChecksumPlace = ChecksumPlace.BEFORE_END
    covers_start: bool = False
    covers_end: bool = False


class LengthModel(Strict):
    size: Literal[1, 2] = 1
    byteorder: Literal["big", "little"] = "big"
    includes_checksum: bool = False


class TaggedModel(Strict):
    prefix: str = Field(min_length=1, description="first byte(s) of a fixed-size reply sent outside frames")
    size: int = Field(ge=2, le=64, description="its whole size in bytes, prefix included")


class FramingModel(Strict):
    start: str = ""
    end: str = ""
    escape: str = ""
    escape_mode: EscapeMode = EscapeMode.NONE
    escaped: str = Field("", description="bytes escaped in payloads (default: delimiters' first bytes, escape)")
    length: LengthModel | None = None
    checksum: ChecksumModel = Field(default_factory=ChecksumModel)
    tokens: list[str] = Field(default_factory=list, description="standalone bytes outside frames: ACK, NAK...")
    tagged: list[TaggedModel] = Field(default_factory=list, description="fixed-size replies outside frames")
    filler: str = Field("", description="bytes dropped silently between frames (e.g. CR LF after a reply)")
    max_payload: int = Field(4096, ge=1)

    @model_validator(mode="after")
    def _frames(self) -> FramingModel:
        self.spec()  # FrameSpec refuses what cannot frame unambiguously, with the reason
        return self

    def spec(self) -> FrameSpec:
        return FrameSpec(
            start=to_bytes(self.start),
            end=to_bytes(self.end),
            escape=to_bytes(self.escape),
            escape_mode=self.escape_mode,
            escaped=to_bytes(self.escaped),
            length=LengthSpec(self.length.size, self.length.byteorder, self.length.includes_checksum)
            if self.length
            else None,
            checksum=ChecksumSpec(
                self.checksum.kind,
                self.checksum.encoding,
                self.checksum.place,
                self.checksum.covers_start,
                self.checksum.covers_end,
            ),
            tokens=tuple(to_bytes(t) for t in self.tokens),
            max_payload=self.max_payload,
            tagged=tuple((to_bytes(t.prefix), t.size) for t in self.tagged),
            filler=to_bytes(self.filler),
        )


class CheckSequenceModel(Strict):
    """The coder answers a command with `ok` or `refused` + the checksum of the host's own payload."""

    ok: str = Field(min_length=1, description="prefix of 'executed' (WSI: $)")
    refused: str = Field("", description="prefix of 'unknown command or failed' (WSI: !); empty: none")
    kind: ChecksumKind = ChecksumKind.SUM8
    encoding: ChecksumEncoding = ChecksumEncoding.HEX

    def of(self, payload: bytes) -> bytes:
        """The check characters for a host payload (WSI Rev AD section 3: STX `RA` ETX -> `93`)."""
        return checksum_bytes(ChecksumSpec(self.kind, self.encoding), payload)


class HandshakeMode(StrEnum):
    LOCKSTEP = "lockstep"  # one request, wait for its answer, the next
    PIPELINED = "pipelined"  # up to `window` record pushes in flight


class HandshakeModel(Strict):
    mode: HandshakeMode = HandshakeMode.LOCKSTEP
    window: int = Field(8, ge=1, le=256)
    enq: str = Field("", description="sent before each framed request; the device must answer `enq_reply` first")
    enq_reply: str = Field("", description="regex the answer to enq must match (e.g. '^\\x06$' for ACK)")
    enq_answer: str = Field("", description="what a device answers an enq with (generic simulator only)")
    retransmit: str = Field("", description="regex of an answer that asks the host to send the request again")
    resend: str = Field("", description="sent before repeating a request whose answer was lost (Hitachi DC2)")
    resend_reply: str = Field("", description="regex the answer to `resend` must match")


Template = str
FIELDS = {"job", "index", "text", "seq"}


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


FIELD_PATTERNS = {"index": r"(?P<index>\d+)", "seq": r"(?P<seq>\d+)", "text": r"(?P<text>.*)", "job": r"(?P<job>.*)"}


def request_regex(template: str) -> re.Pattern[str]:
    """`=MR{index}\\t{text}` -> a regex matching exactly the payloads rendered from it (values as groups)."""
    out = ""
    for literal, name, _, _ in string.Formatter().parse(template):
        out += re.escape(literal)
        if name is not None:
            out += FIELD_PATTERNS[name]
    return re.compile(out, re.DOTALL)


class Reply(StrEnum):
    FRAME = "frame"  # a frame (or token) matching `expect`
    CHECK = "check"  # the check sequence of this request (check_sequence)
    NONE = "none"  # nothing: the command is confirmed by a later query, if at all


class CommandModel(Strict):
    send: Template = Field(description="payload text; {job}, {index}, {text}, {seq} are filled in")
    raw: bool = Field(False, description="send the bytes as they are: no framing and no ENQ (Hitachi ESC #)")
    reply: Reply = Reply.FRAME
    expect: str = Field("", description="regex a frame reply must match; named groups carry values")
    refused_means: Fault | None = Field(None, description="what a refusal of this command means (push: buffer_full)")
    confirm: Literal["printing", "idle"] | None = Field(
        None, description="poll status until the coder reports this state (a command nobody answers)"
    )
    answer: str | None = Field(
        None,
        description="what a conforming device answers (used by the generic simulator only); fields: "
        "{index} {job} {depth} {capacity} {last_index} {count} {state} {error} {cover}; "
        "an answer equal to a framing token is sent bare",
    )

    @field_validator("send")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            names = template_fields(value)
        except ValueError as exc:
            raise ValueError(f"bad template {value!r}: {exc}") from None
        unknown = names - FIELDS
        if unknown:
            raise ValueError(f"unknown template field(s) {sorted(unknown)}; use {sorted(FIELDS)}")
        return value

    @field_validator("expect")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regex {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _reply(self) -> CommandModel:
        if self.reply is Reply.FRAME and not self.expect:
            raise ValueError("a command answered by a frame needs `expect` (or reply: check / none)")
        if self.reply is not Reply.FRAME and self.expect:
            raise ValueError(f"`expect` is for reply: frame, not reply: {self.reply}")
        return self

    def groups(self) -> set[str]:
        return set(re.compile(self.expect).groupindex) if self.expect else set()


class CommandsModel(Strict):
    push: CommandModel
    status: CommandModel | None = Field(None, description="groups: state, error, cover (all optional)")
    fifo: CommandModel | None = Field(None, description="groups: depth (required), capacity, last_index")
    counters: CommandModel | None = Field(None, description="group: count (the coder's print counter)")
    select_job: CommandModel | None = None
    start: CommandModel | None = None
    stop: CommandModel | None = None
    clear_fault: CommandModel | None = None
    clear_fifo: CommandModel | None = None
    restart: CommandModel | None = Field(None, description="sent before start after a clear_fifo (Hitachi 77H)")
    identity: CommandModel | None = Field(None, description="named groups become the identity dict")

    @model_validator(mode="after")
    def _groups(self) -> CommandsModel:
        for name, group in (("fifo", "depth"), ("counters", "count")):
            cmd = getattr(self, name)
            if cmd is not None and group not in cmd.groups():
                raise ValueError(f"commands.{name}.expect needs a named group '{group}'")
        return self


class ErrorsModel(Strict):
    pattern: str = Field("", description="regex of a refusal answer; group 'code' picks the fault below")
    codes: dict[str, Fault] = Field(default_factory=dict)
    buffer_full: list[str] = Field(default_factory=list, description="codes that mean the FIFO is full")
    answer: str | None = Field(None, description="a refusal as a device sends it, with {code} (simulator only)")


class StatesModel(Strict):
    printing: list[str] = Field(default_factory=list, description="values of group 'state' meaning printing")
    idle: list[str] = Field(default_factory=lambda: ["0"], description="values of group 'state' meaning idle")
    fault: list[str] = Field(default_factory=list, description="values of group 'state' meaning a fault")
    no_error: list[str] = Field(default_factory=lambda: ["0", ""], description="values of group 'error'")
    error_mask: int | None = Field(None, ge=1, description="AND a numeric 'error' with this first (flag bits)")
    cover_open: list[str] = Field(default_factory=lambda: ["1"])
    link_down: list[str] = Field(default_factory=list, description="values of group 'link' meaning off-line")
    unlisted: Literal["idle", "fault"] = Field("idle", description="a 'state' value in none of the lists")


class EventModel(Strict):
    match: str = Field(description="regex of an unsolicited frame; group 'index' names the record printed")
    kind: Literal["printed", "print_start"] = "printed"
    answer: str | None = Field(None, description="the message as a device sends it, with {index} (simulator only)")


class CoderModel(Strict):
    """What the coder model can do, as its manual says: this fills the driver's Capabilities."""

    kind: CoderKind
    capacity: int = Field(ge=1, le=65535, description="records the coder itself holds (single slot: 1)")
    index_wraps_at: int | None = Field(
        None, ge=2, description="indexed coders: the index after this one is 1; none: indexes never wrap"
    )
    clear_on_stop: bool = Field(True, description="a print stop empties the coder's queue")
    proves_flush: bool = Field(
        False, description="after clear_fifo the coder's counter/last index proves what never printed"
    )
    double_print_guard: bool = Field(False, description="the coder itself refuses to print one record twice")
    max_items_per_min: float | None = Field(None, gt=0, description="highest line rate the link can feed safely")
    depth_excludes_next: bool = Field(
        False, description="the reported depth leaves out the record loaded for the next print"
    )
    flush_may_keep_next: bool = Field(
        False, description="clear_fifo may leave the record loaded for the next print: it stays in doubt"
    )
    restart_settle_s: float = Field(0.0, ge=0, description="wait after `restart` before printing may start")

    @model_validator(mode="after")
    def _kind(self) -> CoderModel:
        if self.kind is CoderKind.SINGLE_SLOT and self.capacity != 1:
            raise ValueError("a single_slot coder has capacity 1")
        return self

    @property
    def feeder_capacity(self) -> int:
        """What the feeder may keep in the coder: an indexed ring keeps one place free (fifo.py)."""
        if self.kind is CoderKind.INDEXED_FIFO:
            return max(1, self.capacity - 1)
        return self.capacity


class ProtocolModel(Strict):
    name: str
    description: str = ""
    encoding: str = "latin-1"
    text_forbidden: str = Field("", description="characters a record may not carry (field separators)")
    text_max: int | None = Field(None, ge=1, description="the longest record text the coder takes")
    framing: FramingModel
    check_sequence: CheckSequenceModel | None = None
    handshake: HandshakeModel = Field(default_factory=HandshakeModel)
    coder: CoderModel
    commands: CommandsModel
    errors: ErrorsModel = Field(default_factory=ErrorsModel)
    states: StatesModel = Field(default_factory=StatesModel)
    events: list[EventModel] = Field(default_factory=list)

    @property
    def indexed(self) -> bool:
        return self.coder.kind is CoderKind.INDEXED_FIFO

    def commands_by_name(self) -> dict[str, CommandModel]:
        return {
            name: cmd for name in type(self.commands).model_fields
            if isinstance(cmd := getattr(self.commands, name), CommandModel)
        }

    @model_validator(mode="after")
    def _consistent(self) -> ProtocolModel:
        if self.indexed and "index" not in template_fields(self.commands.push.send):
            raise ValueError("coder.kind is indexed_fifo but commands.push.send has no {index}")
        if self.handshake.enq and self.handshake.enq not in self.framing.tokens:
            raise ValueError("handshake.enq must also be listed in framing.tokens (it travels outside frames)")
        checked = [n for n, c in self.commands_by_name().items() if c.reply is Reply.CHECK]
        if checked and self.check_sequence is None:
            raise ValueError(f"commands {checked} are answered by the check sequence, but check_sequence is not set")
        if self.check_sequence is not None:
            prefixes = {t.prefix for t in self.framing.tagged}
            for prefix in (self.check_sequence.ok, self.check_sequence.refused):
                if prefix and prefix not in prefixes:
                    raise ValueError(f"check_sequence prefix {prefix!r} must be a framing.tagged prefix")
        if self.commands.push.reply is Reply.NONE and self.commands.fifo is None:
            raise ValueError("a push nobody answers needs commands.fifo to confirm what the coder took")
        for event in self.events:
            # Index-less print messages and a FIFO query would each count the same print once.
            if event.kind == "printed" and "index" not in re.compile(event.match).groupindex and self.commands.fifo:
                raise ValueError(f"event {event.match!r} needs a named group 'index' when commands.fifo is set")
        return self


def protocol_path(name_or_path: str) -> Path:
    """A bare name ("leibinger") means config/printers/<name>.yaml; anything else is a path."""
    if "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")):
        return PROTOCOL_DIR / f"{name_or_path}.yaml"
    return Path(name_or_path)


def load_protocol(name_or_path: str) -> ProtocolModel:
    """Read and validate a protocol file; ConfigError lists every problem with file, line and key."""
    path = protocol_path(name_or_path)
    data, lines = read_yaml(path)
    model: ProtocolModel = validate(ProtocolModel, data, str(path), lines)
    return model
