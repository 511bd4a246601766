"""Leibinger JET2neo / JET3 in mailing mode, over TCP (port 3000) or serial: an indexed FIFO coder.

No Leibinger interface manual is public; drivers/printers/leibinger_codec.py names the public clients
run on real coders that this follows (jarrydjames-dev/leibinger `serialine.py` and
`manuals/src/technician_manual.html`, "Interface Protocol v1.9.15 Annex B", firmware V75.0.11.2;
ViciousInstitute/LeibingerPrinter `LeibingerAPI/Leibinger.cs`, `LeibingerStatus.cs`;
rizalgrandonk/node-coder `src/utils/leibinger.ts`, `src/actions/leibinger.ts`). What they establish:
- `=MR<index><TAB><text>` stores a mailing record; each PrintGo prints the next one; the coder refuses
  gaps and repeats and "stops with an error" (serialine.py docstring); `!FF` flushes the mailing FIFO;
  a print stop clears the mailing data (technician_manual.html ch. 11); after a flush the next record
  may carry any index (serialine.py resumes at "first unprinted record" after `!FF`).
- `?SM` answers FifoDepth, FifoEntrys, LastStartedPrintNo, StopAtNo, LastStartedPrintNoWasFinished and
  a PrintGo count. FifoEntrys leaves out the record already loaded for the next print ("FIFO entries =
  records sent - 1", serialine.py prime_and_start; "+1 for ... ready to print", node-coder).
- `?RS` machine state 6 is PRINTING; 5 ready for print start; the error field's bits 25-31 are flags.
- Set and action commands get NO answer: serialine.py never waits for one, node-coder turns echoes
  on with `!EM` but their layout is not public. This driver never enables echo and never waits for
  one; stray echoes or unknown frames are dropped. Every push goes out in one write between two
  `?RS` + `?SM` looks (the coder as the records reach it, and after).
- Error 5043: mailing buffer ran empty (technician_manual.html ch. 09). 1015 buffer full, 1018
  bad/missing index and 1019 out of sequence are NOT in the public clients read here (they come from
  our earlier notes): a push is also checked by count (FifoEntrys against what was sent), so a
  refusal under another number is still found and puts what was waiting in doubt.

Settings for what the sources leave open, each with the SAFE default (docs/technicians.md):
- `wrap_index` None: indexes never wrap (public clients number 1..N; 12,000 in one run). Indexes are
  never reused while the coder may still report an old one as its last started print.
- `flush_clears_next` False: whether `!FF` also drops the record already loaded for the next print is
  not public, so after a flush the two records that may be the loaded one (the first waiting, or the
  second if the coder lost the first) are in doubt (UNKNOWN); the rest is FLUSHED. A push the coder
  refuses (1015/1018/1019) puts everything waiting in doubt: which records it kept cannot be told.
- Known limit (no source can settle it): if a coder keeps the loaded record on `!FF` AND the first
  record after that flush is lost on the wire without a link error (serial noise; TCP does not lose
  frames silently), the left-over record makes the count add up and the lost one would be taken as
  printed once the next ones print. Prefer TCP; the camera read is the cross-check.
- A new session numbers from LastStartedPrintNo + capacity + 1, past what an earlier session of this
  driver can have left loaded; an earlier client that numbered further ahead is not guarded against
  (set `flush_clears_next` once a site has seen that `!FF` empties the print buffer too).
- `check_double_prints` False: say True only when the coder's <Check Double Prints> option is on
  (JET2neo/JET3 operating manuals, Extern Text chapter: an error instead of a repeat print).
GS1 codes: none of the public clients sends a GS1 code, and no public source says how a mailing record
writes FNC1 (a raw GS byte, or a token of the barcode object): `gs1_fnc1` (CoderSettings) has no
default, and a GS1 job is refused until a technician sets it from a test print.
Left out: `!PO`/`!PF`/`!NO`/`!NC` (jet and nozzle are the operator's), `=CM` stop count (ignored by
V75.0.11.2, technician_manual.html ch. 11), `=ET` external text, `!EM` echo mode, `?JB` job script.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from pydantic import Field, field_validator, model_validator

from drivers.framing import Frame
from drivers.printers.base import (
    BadRecord,
    BufferFull,
    Capabilities,
    DeviceTimeout,
    Fault,
    LinkDown,
    Nak,
    PrinterError,
    PrinterState,
    PrinterStatus,
    PrintEventKind,
    ProtocolError,
    Record,
    Settlement,
)
from drivers.printers.fifo import CoderKind, Fates, FifoMirror
from drivers.printers.framed import FramedPrinter, FramedSettings
from drivers.printers.leibinger_codec import (
    ERR_BAD_INDEX,
    ERR_BUFFER_FULL,
    ERR_OUT_OF_SEQUENCE,
    FORBIDDEN,
    FRAME_SPEC,
    JOB_DIR,
    PUBLIC_ERRORS,
    Kind,
    LeibingerDeframer,
    Machine,
    MailStatus,
    Nozzle,
    Reply,
    RunStatus,
    job_frame,
    parse_cc,
    parse_reply,
    parse_rs,
    parse_sm,
    record_frame,
    state_name,
    wire,
)
from drivers.transport import LinkClosed, Transport

log = logging.getLogger(__name__)

REFUSALS = frozenset({ERR_BUFFER_FULL, ERR_BAD_INDEX, ERR_OUT_OF_SEQUENCE})
WARNINGS = frozenset({Fault.INK_LOW})
POLL_STATE_S = 0.05


class LeibingerSettings(FramedSettings):
    capacity: int = Field(256, ge=2, le=256, description="mailing FIFO depth (?SM FifoDepth; up to 256, serialine.py)")
    encoding: str = Field("latin-1", description="text encoding of records on the wire")
    job_dir: str = Field(JOB_DIR, description="directory prefix of =JL, backslashes as the coder writes them")
    first_index: int = Field(1, ge=1, description="lowest mailing index (0 means 'none' in ?SM)")
    wrap_index: int | None = Field(None, description="highest index before numbering restarts (None: never)")
    flush_clears_next: bool = Field(False, description="!FF also drops the record loaded for the next print")
    check_double_prints: bool = Field(False, description="the coder's <Check Double Prints> option is on")
    confirm_s: float = Field(3.0, gt=0, description="wait this long for !GO/!ST/=JL to show in ?RS/?JL")
    poll_s: float | None = Field(None, gt=0, description="poll ?RS/?SM this often to emit PRINTED events")
    error_faults: dict[int, Fault] = Field(
        default_factory=lambda: dict(PUBLIC_ERRORS), description="error number (masked) -> typed fault"
    )

    @field_validator("gs1_fnc1")
    @classmethod
    def _fnc1(cls, v: str | None) -> str | None:
        if v is not None and any(c in FORBIDDEN for c in v):
            raise ValueError(f"{v!r}: a mailing record cannot carry TAB, CR or LF")
        return v

    @model_validator(mode="after")
    def _wrap_fits(self) -> LeibingerSettings:
        if self.wrap_index is not None and self.wrap_index < self.first_index + self.capacity:
            raise ValueError("wrap_index must leave at least `capacity` indexes after first_index")
        return self


class Leibinger(FramedPrinter):
    Settings = LeibingerSettings
    frame_spec = FRAME_SPEC

    def __init__(self, settings: LeibingerSettings, *, name: str = "leibinger") -> None:
        super().__init__(settings, name=name)
        self.cfg = settings
        self.capabilities = Capabilities(
            fifo_capacity=settings.capacity - 1,  # a full ring would make "last started" ambiguous
            indexed=True,
            print_complete_events=False,
            counters=True,
            kind=CoderKind.INDEXED_FIFO,
            double_print_guard=settings.check_double_prints,
            proves_flush=True,
            reports_fifo_loss=True,  # _observe: ?SM's FifoEntrys against what was sent, at every look
        )
        self.mirror = FifoMirror(CoderKind.INDEXED_FIFO, settings.capacity - 1)
        self._next_index = settings.first_index
        self._last_started: int | None = None  # LastStartedPrintNo as last seen
        self._doubtful: deque[int] = deque(maxlen=2 * settings.capacity)  # indexes put in doubt
        self._printing = False  # the coder was seen printing and nobody here stopped it
        self._flush_due = False  # the coder may hold records nobody tracks: flush before a push
        self._fates_due = Fates()  # proven flushes not yet handed out by settle()
        self._depth = 0
        self._op = asyncio.Lock()

    @property
    def tracker(self) -> FifoMirror:
        """The FIFO mirror under the name older callers use."""
        return self.mirror

    # --- link ------------------------------------------------------------------------------------

    def _attach(self, transport: Transport) -> None:
        super()._attach(transport)
        # Replaced before the reader task first runs (it reads self._deframer when it starts).
        self._deframer = LeibingerDeframer()

    def reply_matches(self, request: bytes, reply: Frame) -> bool:
        """`^0?XX` is answered by `=XX...`; echoes and unknown frames answer nothing we wait for."""
        return request[2:3] == b"?" and reply.payload[:1] == b"=" and reply.payload[1:3].upper() == request[3:5]

    async def _write(self, data: bytes) -> None:
        """Frames the coder does not answer (sets and actions): written, never waited for."""
        await self._resync_if_due()
        async with self._lock:
            transport = self._linked()
            try:
                await transport.write(data)
            except LinkClosed as exc:
                self._link_lost(str(exc))
                raise LinkDown(str(exc)) from exc

    async def _query(self, command: str) -> Reply:
        frame = await self.exchange(wire(Kind.QUERY, command), retry=True, raw=True)
        return parse_reply(frame.payload)

    async def _read(self) -> tuple[RunStatus, MailStatus]:
        # ?RS first: when it shows a stop, the ?SM after it holds the final last-started index.
        rs = parse_rs(await self._query("RS"))
        return rs, parse_sm(await self._query("SM"))

    # --- the mirror ------------------------------------------------------------------------------

    def _observe(self, rs: RunStatus, sm: MailStatus) -> None:
        """Bring the mirror up to what the coder reports: prints started, a stop, a cleared FIFO.

        A stop clears the mailing FIFO (technician_manual.html ch. 11), so what FifoEntrys still counts
        after one arrived after it: a coder in state 5 keeps records for its next start (serialine.py
        primes before `!GO`). So a stop loses ours only when the count says so. The one case the count
        cannot settle is a single record left (FifoEntrys leaves out the loaded one: 0 either way); it is
        in doubt. Taking every stop for a loss put records pushed after a 5043 stop (the FIFO ran dry)
        in doubt although the coder printed them at its next start, and their replacements printed too
        (a 120-item job printed 122 to 138 items under load). A stop that came before a push is seen
        by the push's first look (`_push_and_look`), so it is never taken for one after it."""
        stopped = self._printing and not rs.printing
        self._progress(sm.last_started)
        self._printing = rs.printing
        held = len(self.mirror)
        if stopped and held and not sm.entries:
            self._lose(f"printing stopped at the coder (machine state {rs.machine}, error {rs.error})")
            held = 0
        if not held - 1 <= sm.entries <= held:  # FifoEntrys may leave out the record loaded to print
            self._lose(f"the coder holds {sm.entries} mailing records, {held} were sent and not printed")
        self._depth = len(self.mirror) if self.mirror else sm.entries

    def _progress(self, last: int) -> None:
        if last == self._last_started:
            return
        self._last_started = last
        fates = self.mirror.printed_through(last) if last else None  # 0: none since power-on
        if fates is not None:
            for seq in fates.printed:
                self.emit(PrintEventKind.PRINTED, seq=seq)
        elif last not in self._doubtful:
            self._lose(f"the coder's last started print is index {last}, none of the records it should hold")

    def _lose(self, reason: str) -> None:
        self._doubtful.extend(tag for _, tag in self.mirror.pending if tag is not None)
        self._flush_due = True
        fates = self.mirror.lose()
        if fates.unknown:
            log.warning("%s: %d records in doubt: %s", self.name, len(fates.unknown), reason)
            self.emit(PrintEventKind.FIFO_LOST, detail=f"{len(fates.unknown)} records in doubt: {reason}")

    async def _flush(self) -> MailStatus:
        """`!FF`, then read: prints up to the last started one are counted, the rest never printed but
        for the record loaded for the next print. Which one that is: the first waiting, or the second
        if the coder lost the first (the count check before the flush allows at most that one)."""
        self._observe(*await self._read())
        await self._write(wire(Kind.ACTION, "FF"))
        rs, sm = await self._read()
        stopped = self._printing and not rs.printing
        self._progress(sm.last_started)
        self._printing = rs.printing
        if stopped or sm.entries:
            self._lose("printing stopped at the coder" if stopped else f"{sm.entries} records left after !FF")
        elif self.mirror:
            fates = Fates()
            if not self.cfg.flush_clears_next:  # may sit in the print buffer and still print
                loaded = [self.mirror.pending.popleft() for _ in range(min(2, len(self.mirror)))]
                self._doubtful.extend(tag for _, tag in loaded if tag is not None)
                fates = Fates(unknown=tuple(seq for seq, _ in loaded))
            fates += self.mirror.flushed()
            self.mirror.lost = True
            self._fates_due += Fates(flushed=fates.flushed)
            self.emit(PrintEventKind.FIFO_LOST, detail=f"flushed {len(fates.flushed)}, {len(fates.unknown)} in doubt")
        self._flush_due = False
        self._depth = 0
        return sm

    def _take_index(self) -> int:
        index = self._next_index
        wrap = self.cfg.wrap_index
        self._next_index = self.cfg.first_index if wrap is not None and index >= wrap else index + 1
        return index

    def _restart_numbering_after(self, last: int) -> None:
        """A new session: records an earlier one left may use the indexes after `last`; skip them."""
        self._doubtful.append(last + 1)
        start = max(last + self.cfg.capacity + 1, self.cfg.first_index)
        wrap = self.cfg.wrap_index
        self._next_index = start if wrap is None or start <= wrap else self.cfg.first_index + (start - wrap - 1)

    # --- Printer API -----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        # Answers to an earlier session's queries may still be on their way (an agent killed mid-push
        # on a serial line): `?RS`/`?SM` carry no request id, so one of them could pass for ours. `?VS`
        # is never asked while feeding, and the coder answers in order: every stale answer arrives
        # before `=VS` and is dropped as a reply nobody waits for.
        await self._query("VS")
        rs, sm = await self._read()
        self._last_started, self._printing = sm.last_started, rs.printing
        self._restart_numbering_after(sm.last_started)
        await self._write(wire(Kind.ACTION, "FF"))  # what an earlier session left cannot be told apart
        after = parse_sm(await self._query("SM"))  # answered once the flush is done
        if after.entries:
            raise Nak(f"{self.name}: {after.entries} mailing records are left after !FF")
        if sm.entries:
            log.warning("%s: flushed %d records left from an earlier session", self.name, sm.entries)
            self.mirror.lost = True
            self.emit(PrintEventKind.FIFO_LOST, detail=f"flushed {sm.entries} untracked records on connect")
        if self.cfg.job:
            await self.select_job(self.cfg.job)
        if self.cfg.poll_s:
            self._spawn(self._poll(self.cfg.poll_s), "poll")

    async def on_link_up(self) -> None:
        """The link was gone: the coder may have lost power, and with it the FIFO and its last index."""
        rs, sm = await self._read()
        self._progress(sm.last_started)
        self._lose("the link was down (the coder may have lost power)")
        self._printing, self._last_started = rs.printing, sm.last_started
        await self._write(wire(Kind.ACTION, "FF"))
        self._flush_due = bool(parse_sm(await self._query("SM")).entries)

    async def identity(self) -> dict[str, str]:
        version = await self._query("VS")
        _, sm = await self._read()
        return {"protocol": "leibinger", "url": self.cfg.url, "version": " ".join(version.fields),
                "mailing_depth": str(sm.depth)}

    async def sync(self) -> tuple[RunStatus, MailStatus]:
        return await self._synced(*await self._read())

    async def _synced(self, rs: RunStatus, sm: MailStatus) -> tuple[RunStatus, MailStatus]:
        """Observe; after a loss, flush at once: a record put in doubt that the coder still holds
        must not print at its next start (as an in-doubt code beside the replacement sent for it)."""
        self._observe(rs, sm)
        if self._flush_due:
            await self._flush()
            rs, sm = await self._read()
            self._observe(rs, sm)
        return rs, sm

    async def status(self) -> PrinterStatus:
        async with self._op:
            rs, sm, count = await self._look()
            self._observe(rs, sm)
            if self._flush_due:  # see _synced
                await self._flush()
                rs, sm, count = await self._look()
                self._observe(rs, sm)
        return self._status(rs, sm, count)

    async def _look(self) -> tuple[RunStatus, MailStatus, int]:
        """?RS, ?SM, then ?CC: the counter is never older than the last started index."""
        rs, sm = await self._read()
        return rs, sm, parse_cc(await self._query("CC"))[0]

    def _status(self, rs: RunStatus, sm: MailStatus, count: int) -> PrinterStatus:
        faults: set[Fault] = set()
        if rs.error:
            faults.add(self.cfg.error_faults.get(rs.error, Fault.OTHER))
        if rs.cover:
            faults.add(Fault.COVER_OPEN)
        state = (
            PrinterState.PRINTING if rs.printing else
            PrinterState.FAULT if faults - WARNINGS else PrinterState.IDLE
        )
        return PrinterStatus(
            state=state,
            faults=frozenset(faults),
            fifo_depth=self._depth,
            fifo_capacity=sm.depth,
            last_printed=self.mirror.last_printed,
            print_count=count,
            fifo_lost=self.mirror.lost,
            detail=f"nozzle {state_name(Nozzle, rs.nozzle)}, machine {state_name(Machine, rs.machine)}, "
            f"error {rs.error} (flags {rs.error_flags:#x}), last started index {sm.last_started}",
        )

    async def push(self, records: Sequence[Record]) -> None:
        if not records:
            return
        texts = [self._text(r) for r in records]
        seqs = [r.seq for r in records]
        last = self.mirror.pending[-1][0] if self.mirror else None
        if seqs != sorted(set(seqs)) or (last is not None and seqs[0] <= last):
            raise BadRecord(f"{self.name}: seqs {seqs[0]}..{seqs[-1]} do not follow {last}")
        async with self._op:
            if len(records) > self.mirror.room:
                await self.sync()  # prints since the last look may have made room
                if len(records) > self.mirror.room:
                    raise BufferFull(f"{self.name}: {len(records)} records do not fit: {len(self.mirror)} "
                                     f"of {self.mirror.capacity} places are taken")
            if self._flush_due:
                await self._flush()
            indexes = [self._take_index() for _ in records]
            rs, sm = await self._push_and_look(records, indexes, texts)
            if rs.error in REFUSALS:
                # Which records it kept cannot be told (a refused first record after a clear lets the
                # next one start a new sequence), nor which one is loaded for the next print: all in doubt.
                self._progress(sm.last_started)
                self._lose(f"the coder refused a mailing record with error {rs.error}")
                await self._write(wire(Kind.ACTION, "EQ"))  # acknowledge the error this push caused
                text = f"{self.name}: mailing record refused with error {rs.error}"
                raise BufferFull(text) if rs.error == ERR_BUFFER_FULL else Nak(text)
            await self._synced(rs, sm)

    async def _push_and_look(self, records: Sequence[Record], indexes: list[int],
                             texts: list[bytes]) -> tuple[RunStatus, MailStatus]:
        """One write: `?RS ?SM`, the records, `?RS ?SM`. The first look is the coder as the records reach
        it: one that had already stopped (a 5043 stop: its FIFO ran dry) stores them for its next start,
        and the second look must not take that earlier stop for one that cleared them. Answers missing:
        the records are in the mirror and the coder is read again, one query at a time with retries."""
        query = (wire(Kind.QUERY, "RS"), wire(Kind.QUERY, "SM"))
        frames = [*query, *(record_frame(i, t) for i, t in zip(indexes, texts, strict=True)), *query]
        answered = [True, True, *(False for _ in records), True, True]
        looks: list[Reply] | None = None
        try:
            looks = [parse_reply(f.payload) for f in await self.exchange_batch(frames, answered=answered)]
            before = parse_rs(looks[0]), parse_sm(looks[1])
            after = parse_rs(looks[2]), parse_sm(looks[3])
        except (DeviceTimeout, ProtocolError):
            looks = None  # sent; which answers came is unknown
        except PrinterError:
            self._sent(records, indexes)
            self._lose("the push could not be confirmed with ?RS/?SM")
            raise
        if looks is not None:
            self._observe(*before)
            self._sent(records, indexes)
            return after
        self._sent(records, indexes)
        try:
            return await self._read()
        except PrinterError:
            # Unchecked, a record the coder dropped would later be taken as printed when the last
            # started index passes it: whatever is waiting is in doubt, and a flush comes first.
            self._lose("the push could not be confirmed with ?RS/?SM")
            raise

    def _sent(self, records: Sequence[Record], indexes: list[int]) -> None:
        for r, index in zip(records, indexes, strict=True):
            self.mirror.pushed(r.seq, index)  # from here on held, printed or in doubt

    def check_record(self, text: str) -> None:
        self._text(Record(0, text))

    def _text(self, record: Record) -> bytes:
        bad = sorted({c for c in record.text if c in FORBIDDEN})
        if bad:
            raise BadRecord(f"{self.name}: record seq {record.seq} contains {bad!r}, which mailing cannot carry")
        try:
            return record.text.encode(self.cfg.encoding)
        except UnicodeEncodeError as exc:
            raise BadRecord(f"{self.name}: record seq {record.seq} is not {self.cfg.encoding}: {exc.reason}") from None

    async def select_job(self, name: str) -> None:
        if not name or any(c in FORBIDDEN + "\\^" for c in name):
            raise BadRecord(f"{self.name}: job name {name!r} cannot be carried in =JL")
        await self._write(job_frame(name.encode(self.cfg.encoding), self.cfg.job_dir.encode(self.cfg.encoding)))
        deadline = time.monotonic() + self.cfg.confirm_s
        while True:
            loaded = "\t".join((await self._query("JL")).fields)
            if loaded.split("\t")[0].endswith(name):
                return
            if time.monotonic() >= deadline:
                raise Nak(f"{self.name}: job {name!r} not loaded; the coder reports {loaded!r}")
            await asyncio.sleep(POLL_STATE_S)

    async def clear_fifo(self) -> None:
        async with self._op:
            await self._flush()

    async def settle(self) -> Settlement:
        async with self._op:
            await self._flush()
            rs, sm, count = await self._look()
            self._observe(rs, sm)
            fates, self._fates_due = self._fates_due, Fates()
        return Settlement(self._status(rs, sm, count), fates)

    async def start(self) -> None:
        async with self._op:
            await self._write(wire(Kind.ACTION, "GO"))
            await self._await_state(lambda rs: rs.printing, "start printing")
            self._printing = True

    async def stop(self) -> None:
        async with self._op:
            await self._write(wire(Kind.ACTION, "ST"))
            rs = await self._await_state(lambda rs: not rs.printing, "stop printing")
            sm = parse_sm(await self._query("SM"))
            self._printing = True  # this stop clears the mailing data: account for it like any stop
            self._observe(rs, sm)

    async def clear_fault(self) -> None:
        await self._write(wire(Kind.ACTION, "EQ"))

    async def _await_state(self, done: Callable[[RunStatus], bool], what: str) -> RunStatus:
        deadline = time.monotonic() + self.cfg.confirm_s
        while True:
            rs = parse_rs(await self._query("RS"))
            if done(rs):
                return rs
            if time.monotonic() >= deadline:
                raise Nak(f"{self.name}: the coder did not {what}: machine {state_name(Machine, rs.machine)}, "
                          f"error {rs.error}")
            await asyncio.sleep(POLL_STATE_S)

    async def _poll(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(PrinterError):
                async with self._op:
                    await self.sync()

