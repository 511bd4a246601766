"""The protocol file of the generic coder driver (config/printers/<name>.yaml), validated by pydantic.

Why a file and not code: many coders on real lines (Domino, KGK, Chinese CIJ/TIJ brands) keep their
protocol closed, and a site that has the manual can describe its bytes without us shipping guessed
bytes in code (research/protocols.md). The file says how frames look (drivers/framing.py), how the
handshake goes, which text to send for each command and how to read each answer (a regex whose named
groups carry the values), what arrives unsolicited, and how the coder's FIFO behaves.

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
)
from drivers.printers.base import Fault

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


class FramingModel(Strict):
    start: str = ""
    end: str = ""
    escape: str = ""
    escape_mode: EscapeMode = EscapeMode.NONE
    escaped: str = Field("", description="bytes escaped in payloads (default: delimiters' first bytes, escape)")
    length: LengthModel | None = None
    checksum: ChecksumModel = Field(default_factory=ChecksumModel)
    tokens: list[str] = Field(default_factory=list, description="standalone bytes outside frames: ACK, NAK...")
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
        )


class HandshakeMode(StrEnum):
    LOCKSTEP = "lockstep"  # one request, wait for its answer, the next
    PIPELINED = "pipelined"  # up to `window` record pushes in flight


class HandshakeModel(Strict):
    mode: HandshakeMode = HandshakeMode.LOCKSTEP
    window: int = Field(8, ge=1, le=256)
    enq: str = Field("", description="sent before each request; the device must answer `enq_reply` first")
    enq_reply: str = Field("", description="regex the answer to enq must match (e.g. '^\\x06$' for ACK)")
    enq_answer: str = Field("", description="what a device answers an enq with (generic simulator only)")
    retransmit: str = Field("", description="regex of an answer that asks to send the request again")


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


class CommandModel(Strict):
    send: Template = Field(description="payload text; {job}, {index}, {text}, {seq} are filled in")
    expect: str = Field(description="regex an answer must match; named groups carry values")
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


class CommandsModel(Strict):
    push: CommandModel
    status: CommandModel = Field(description="groups: state, error, cover (all optional)")
    fifo: CommandModel | None = Field(None, description="groups: depth (required), capacity, last_index")
    counters: CommandModel | None = Field(None, description="group: count")
    select_job: CommandModel | None = None
    start: CommandModel | None = None
    stop: CommandModel | None = None
    clear_fault: CommandModel | None = None
    clear_fifo: CommandModel | None = None
    identity: CommandModel | None = Field(None, description="named groups become the identity dict")

    @model_validator(mode="after")
    def _groups(self) -> CommandsModel:
        if self.fifo is not None and "depth" not in re.compile(self.fifo.expect).groupindex:
            raise ValueError("commands.fifo.expect needs a named group 'depth'")
        if self.counters is not None and "count" not in re.compile(self.counters.expect).groupindex:
            raise ValueError("commands.counters.expect needs a named group 'count'")
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
    cover_open: list[str] = Field(default_factory=lambda: ["1"])


class EventModel(Strict):
    match: str = Field(description="regex of an unsolicited frame; group 'index' names the record printed")
    kind: Literal["printed", "print_start"] = "printed"
    answer: str | None = Field(None, description="the message as a device sends it, with {index} (simulator only)")


class FifoModel(Strict):
    capacity: int = Field(ge=1, le=65535)
    indexed: bool = Field(True, description="records carry an index 1..capacity (wrapping) the coder checks")
    clear_on_stop: bool = True


class ProtocolModel(Strict):
    name: str
    description: str = ""
    encoding: str = "latin-1"
    framing: FramingModel
    handshake: HandshakeModel = Field(default_factory=HandshakeModel)
    fifo: FifoModel
    commands: CommandsModel
    errors: ErrorsModel = Field(default_factory=ErrorsModel)
    states: StatesModel = Field(default_factory=StatesModel)
    events: list[EventModel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ProtocolModel:
        if self.fifo.indexed and "index" not in template_fields(self.commands.push.send):
            raise ValueError("fifo.indexed is true but commands.push.send has no {index}")
        if self.handshake.enq and self.handshake.enq not in self.framing.tokens:
            raise ValueError("handshake.enq must also be listed in framing.tokens (it travels outside frames)")
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
