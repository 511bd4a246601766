"""ZPL (Zebra-compatible) label printer driver: fill a label template, send it, read printer status.

Why templates are files (config/labels/*.zpl): label layouts are designed with the printer vendor's
tools and change with the customer's artwork, not with our code. A template is ZPL with `{name}`
fields; every value is escaped through ^FH hex so a code containing ^ or ~ cannot inject commands.
Status is the Zebra host status (~HS): paper out, paused, head open and ribbon out stop a label
before it is sent, instead of silently queueing labels the line then waits for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from confkit.base import Strict
from drivers.labels.link import Link, LinkError, open_link

STX, ETX = b"\x02", b"\x03"
_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_ESCAPE = {"_": "_5F", "^": "_5E", "~": "_7E"}


class LabelPrinterState(StrEnum):
    OFFLINE = "offline"
    READY = "ready"
    FAULT = "fault"


class LabelFault(StrEnum):
    PAPER_OUT = "paper_out"
    PAUSED = "paused"
    HEAD_OPEN = "head_open"
    RIBBON_OUT = "ribbon_out"


@dataclass(frozen=True, slots=True)
class LabelStatus:
    state: LabelPrinterState
    faults: frozenset[LabelFault] = frozenset()
    labels_waiting: int = 0


class LabelPrinterError(RuntimeError):
    """A label could not be printed; the message says which printer and why."""


class LabelFaulted(LabelPrinterError):
    def __init__(self, where: str, faults: frozenset[LabelFault]) -> None:
        super().__init__(f"label printer {where} is not ready: {', '.join(sorted(faults))}")
        self.faults = faults


class TemplateError(LabelPrinterError):
    pass


def escape(value: str) -> str:
    """Field data through ^FH: the three characters ZPL would read as commands become hex."""
    return "".join(_ESCAPE.get(ch, ch) for ch in value)


def render(template: str, fields: Mapping[str, str], *, source: str = "template") -> str:
    """Fill `{name}` fields; a field the template needs and the caller lacks is an error naming both."""
    if "^XA" not in template or "^XZ" not in template:
        raise TemplateError(f"{source}: a ZPL label must start with ^XA and end with ^XZ")

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in fields:
            raise TemplateError(f"{source}: field {{{name}}} has no value (given: {', '.join(sorted(fields))})")
        return escape(str(fields[name]))

    return _FIELD.sub(fill, template)


def parse_host_status(reply: bytes) -> LabelStatus:
    """The three ~HS strings: string 1 field 2 paper out, 3 paused, 5 labels waiting; string 2 field 3
    head up, 4 ribbon out (Zebra ZPL II programming guide, ~HS)."""
    frames = [f.split(ETX, 1)[0].decode("ascii", "replace") for f in reply.split(STX)[1:]]
    if len(frames) < 2:
        raise LinkError(f"short ~HS reply: {reply!r}")
    one, two = frames[0].split(","), frames[1].split(",")
    if len(one) < 5 or len(two) < 4:
        raise LinkError(f"malformed ~HS reply: {reply!r}")
    faults = set()
    if one[1] == "1":
        faults.add(LabelFault.PAPER_OUT)
    if one[2] == "1":
        faults.add(LabelFault.PAUSED)
    if two[2] == "1":
        faults.add(LabelFault.HEAD_OPEN)
    if two[3] == "1":
        faults.add(LabelFault.RIBBON_OUT)
    count = one[4].strip()
    if not (count.isascii() and count.isdigit() and len(count) <= 8):  # "aaa" in the guide
        raise LinkError(f"malformed ~HS reply: formats waiting {one[4]!r} is not a count")
    waiting = int(count)
    state = LabelPrinterState.FAULT if faults else LabelPrinterState.READY
    return LabelStatus(state, frozenset(faults), waiting)


class ZplLabelPrinter:
    """One ZPL printer on one link; `print_label` checks status, fills the template and sends it."""

    class Settings(Strict):
        url: str = Field(pattern=r"^(tcp|serial)://")  # tcp://10.0.0.9:9100 or serial:///dev/ttyUSB0
        template: Path  # a .zpl file with {code}, {hri}, {level}, ... fields
        baudrate: int = Field(9600, gt=0)
        timeout_s: float = Field(3.0, gt=0, le=60)
        check_status: bool = True  # ask ~HS before each label

        @field_validator("template")
        @classmethod
        def _zpl(cls, v: Path) -> Path:
            if v.suffix != ".zpl":
                raise ValueError("a label template is a .zpl file")
            return v

    kind: ClassVar[str] = "zpl"

    def __init__(self, settings: ZplLabelPrinter.Settings, template: str | None = None) -> None:
        self.settings = settings
        self._template = template
        self._link: Link | None = None

    @property
    def template(self) -> str:
        if self._template is None:
            try:
                self._template = self.settings.template.read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError(f"label template {self.settings.template}: {exc.strerror}") from exc
        return self._template

    async def connect(self) -> None:
        if self._link is None:
            self._link = await open_link(self.settings.url, baudrate=self.settings.baudrate,
                                         wait_s=self.settings.timeout_s)

    async def close(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            await link.close()

    async def status(self) -> LabelStatus:
        link = await self._ensure()
        try:
            await link.write(b"~HS")
            return parse_host_status(await link.read_until(ETX, 3, self.settings.timeout_s))
        except LinkError:
            await self.close()
            raise

    async def print_label(self, fields: Mapping[str, str]) -> str:
        """Send one filled label; returns the ZPL sent. Raises LabelFaulted before sending to a faulted printer."""
        zpl = render(self.template, fields, source=str(self.settings.template))
        if self.settings.check_status:
            st = await self.status()
            if st.faults:
                raise LabelFaulted(self.settings.url, st.faults)
        link = await self._ensure()
        try:
            await link.write(zpl.encode("utf-8"))
        except LinkError:
            await self.close()
            raise
        return zpl

    async def _ensure(self) -> Link:
        await self.connect()
        assert self._link is not None  # connect() set it or raised
        return self._link
