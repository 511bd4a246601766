"""A marker (laser, TIJ, labeller) driven over Modbus TCP through a register map set in the config.

Source: no coder vendor publishes a Modbus map for serialisation, so this is *our* convention,
wholly described by `ModbusMarker.Settings`; a site maps it onto its marker's or gateway PLC's registers.
Strings are packed two ASCII chars per register, high byte first (the common PLC convention).

The map (addresses are 0-based Modbus addresses):
- holding `text_address + slot * text_registers`: `slots` text slots, a ring used as the FIFO;
  record number n (0-based, counted since the marker powered up) goes into slot n % slots;
- holding `queued_address` (2 registers, uint32 high word first): records the host has queued in total;
  the host writes it *after* the slot text, so the marker never prints half-written text;
- holding `queued_address + 2` (2 registers, write-only): the count the host expects the marker to hold.
  The host writes all four registers in one request (function 16, which a device applies whole); the
  marker takes the new count only if its own count equals the expected one, else it answers exception 3
  (illegal data value) and changes nothing. We assume the marker (or the gateway PLC in front of it)
  implements this compare-and-set: without it, a panel stop landing between the host's read and its
  write would be undone by the write (the queue count jumps back over discarded, stale or blank slots).
  A stop resets the count to the printed count, so the compare fails exactly when a stop or power loss
  discarded records since the host's read (a stop of an empty queue changes nothing and loses nothing);
- input `printed_address` (2 registers, uint32): records the marker has printed in total; it survives
  a power loss (a product counter), unlike the queue;
- input `status_address`: bit 0 running, bit 1 fault; input `fault_address`: bit per `FAULT_BITS`;
- coils: `trigger_coil` (1 = print the next queued record now, for on-demand marking),
  `run_coil` (1 = start, 0 = stop; a stop discards the queue: the marker sets queued = printed),
  `reset_coil` (1 = clear faults), `flush_coil` (1 = discard the queue, queued := printed, and leave
  the run coil as it is: `clear_fifo()` must never change whether the marker prints).

- GS1 codes: FNC1 separators travel as GS (1Dh) in the slot text, as a scanner transmits them
  (`gs1_fnc1`); the marker's barcode object, set to GS1 mode, puts FNC1 in first position itself
  (`gs1_fnc1_first: true` starts the text with GS for a marker that wants it from the host).

Every push also re-reads the marker's count first and refuses (Nak, nothing written) if it is not the
count the driver last wrote: records queued behind a discarded queue would be printed out of place.

Serialization: a COUNTED_FIFO (drivers/printers/fifo.py FifoMirror): last_printed is the seq pushed as
record number `printed - 1`; the mirror keeps the seq of every record still queued. A FIFO loss shows up
as the marker's queued count differing from what the driver wrote (a stop or power loss reset it), is
reported once as fifo_lost + FIFO_LOST, and leaves what was queued UNKNOWN (in doubt). Only a discard the
driver did itself (the flush coil, or its own stop), followed by a read of the product counter and of an
empty queue, proves the rest FLUSHED: `settle()` hands those seqs to the feeder, which returns them to
the pool.
When the marker's queue is not known (a push interrupted between the text and the count, or records
left by an earlier host), pushes are refused until clear_fifo(): a record queued behind an unknown one
would have the unknown one's print counted as its own.
Left out: print-complete push messages (Modbus has none; the driver derives PRINTED events from the
counter when it polls) and any vendor-specific registers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import ClassVar, TypeVar

from drivers.plc.bus import (
    BusSpec,
    ModbusBus,
    PlcDeviceError,
    PlcError,
    PlcLinkError,
    PlcTimeout,
    Table,
    pack_text,
    unpack_text,
)
from drivers.printers.base import (
    BufferFull,
    Capabilities,
    DeviceTimeout,
    LinkDown,
    Nak,
    Printer,
    PrinterError,
    PrinterState,
    PrinterStatus,
    PrintEvent,
    PrintEventKind,
    ProtocolError,
    Record,
    Settlement,
)
from drivers.printers.fifo import CoderKind, Fates, FifoMirror
from drivers.printers.modbus_map import (
    FAULT_BITS,
    ILLEGAL_VALUE,
    STATUS_FAULT,
    STATUS_RUNNING,
    U32,
    ModbusMarkerSettings,
    faults_from_bits,
    join_u32,
    split_u32,
)

__all__ = ["FAULT_BITS", "STATUS_FAULT", "STATUS_RUNNING", "U32", "ModbusMarker", "ModbusMarkerSettings",
           "faults_from_bits", "join_u32", "split_u32"]

log = logging.getLogger(__name__)
T = TypeVar("T")

class ModbusMarker(Printer):
    """Polling driver: every status() reads the counters and turns counter deltas into PRINTED events."""

    Settings: ClassVar[type[ModbusMarkerSettings]] = ModbusMarkerSettings

    def __init__(self, settings: ModbusMarkerSettings, *, name: str = "modbus_marker") -> None:
        self.settings = settings
        self.name = name
        self.capabilities = Capabilities(
            fifo_capacity=settings.slots, indexed=False, print_complete_events=False, counters=True,
            extra={"transport": "modbus-tcp"}, kind=CoderKind.COUNTED_FIFO, proves_flush=True,
        )
        self._bus = ModbusBus(BusSpec(f"tcp://{settings.host}:{settings.port}",
                                      connect_timeout_s=max(settings.timeout_s, 0.5)))
        self._lock = asyncio.Lock()
        self._events: asyncio.Queue[PrintEvent] = asyncio.Queue()
        self._queued = 0  # records the driver has queued in total (mirrors the marker's register)
        self._printed = 0  # marker's printed count at the last poll
        self._mirror = FifoMirror(CoderKind.COUNTED_FIFO, settings.slots)
        self._unsettled = Fates()  # flushed/lost since the last settle(), for the next one to report
        self._fifo_lost = False
        self._was_linked = False
        self._suspect: str | None = None  # why the marker's queue is unknown; pushes wait for clear_fifo()

    # -- the one Modbus adapter (drivers/plc/bus.py) ----------------------------------------------
    async def _read(self, table: Table, address: int, count: int) -> list[int]:
        s = self.settings
        return await self._bus.read(table, address, count, device_id=s.device_id, timeout_s=s.timeout_s)

    async def _u32(self, table: Table, address: int) -> int:
        return join_u32(await self._read(table, address, 2))

    async def _coil(self, address: int, value: bool) -> None:
        s = self.settings
        await self._bus.write(Table.COIL, address, int(value), device_id=s.device_id, timeout_s=s.timeout_s)

    async def _holding(self, address: int, values: Sequence[int]) -> None:
        s = self.settings
        await self._bus.write_many(address, values, device_id=s.device_id, timeout_s=s.timeout_s)

    # -- link ---------------------------------------------------------------------------------
    async def connect(self) -> None:
        async with self._lock:
            await self._connect_locked()

    async def _connect_locked(self) -> None:
        s = self.settings
        try:
            await self._bus.connect(s.timeout_s)
            queued = await self._u32(Table.HOLDING, s.queued_address)
            printed = await self._u32(Table.INPUT, s.printed_address)
        except PlcError as exc:
            self._bus.close()
            raise self._map(exc) from exc
        if self._was_linked:
            self._account(printed)  # what printed before the link went down is confirmed, not in doubt
            if queued != self._queued:
                self._mismatch(queued, printed, "queue changed while the link was down")
        else:
            self._printed = printed
            if queued != printed:
                self._suspect = "the marker holds records queued before this driver connected"
        self._queued = queued
        self._was_linked = True
        self._emit(PrintEventKind.LINK_UP)

    async def close(self) -> None:
        async with self._lock:
            self._bus.close()

    # -- commands -----------------------------------------------------------------------------
    async def identity(self) -> dict[str, str]:
        s = self.settings
        words = await self._do(lambda: self._read(Table.INPUT, s.identity_address, s.identity_registers))
        try:
            model = unpack_text(words)
        except ValueError as exc:
            raise ProtocolError(f"{self.name}: identity registers: {exc}") from exc
        return {"model": model, "protocol": "modbus-marker", "endpoint": f"{s.host}:{s.port}/{s.device_id}"}

    async def status(self) -> PrinterStatus:
        """A read-only query: re-asked `retries` times after a timeout (writes never are)."""
        for _ in range(self.settings.retries):
            try:
                return await self._status_once()
            except DeviceTimeout as exc:
                log.info("%s: retrying status after: %s", self.name, exc)
        return await self._status_once()

    async def _status_once(self) -> PrinterStatus:
        async with self._lock:
            return await self._status_locked()

    async def _status_locked(self) -> PrinterStatus:
        s = self.settings
        try:
            await self._ensure_linked()
            queued = await self._u32(Table.HOLDING, s.queued_address)
            printed = await self._u32(Table.INPUT, s.printed_address)
            status_word = (await self._read(Table.INPUT, s.status_address, 1))[0]
            fault_word = (await self._read(Table.INPUT, s.fault_address, 1))[0]
        except PlcError as exc:
            raise self._map(exc) from exc
        self._account(printed)
        if queued != self._queued:
            self._mismatch(queued, printed, f"marker reports {queued} queued, driver queued {self._queued}")
            self._queued = queued
        faults = faults_from_bits(fault_word)
        if status_word & STATUS_FAULT:
            state = PrinterState.FAULT
        elif status_word & STATUS_RUNNING:
            state = PrinterState.PRINTING
        else:
            state = PrinterState.IDLE
        lost, self._fifo_lost = self._fifo_lost, False
        return PrinterStatus(
            state=state, faults=faults, fifo_depth=(queued - printed) % U32,
            fifo_capacity=s.slots, last_printed=self._mirror.last_printed, print_count=printed,
            fifo_lost=lost,
        )

    async def select_job(self, name: str) -> None:
        """A Modbus marker has no job concept in this map; the text slots carry the whole print."""
        raise Nak(f"{self.name}: the Modbus marker map has no job selection (asked for {name!r})")

    async def push(self, records: Sequence[Record]) -> None:
        s = self.settings
        texts = []
        for r in records:
            try:
                texts.append((r.seq, pack_text(r.text, s.text_registers)))
            except ValueError as exc:
                raise Nak(f"{self.name}: record seq {r.seq}: {exc}") from exc
        async with self._lock:
            if self._suspect is not None:
                raise Nak(f"{self.name}: the marker's queue is not known ({self._suspect}); "
                          "clear_fifo() before pushing more")
            try:
                await self._ensure_linked()
                await self._verify_queue("before a push")
            except PlcError as exc:
                raise self._map(exc) from exc
            room = s.slots - (self._queued - self._printed) % U32
            if len(texts) > room:
                raise BufferFull(f"{self.name}: {len(texts)} records pushed, room for {room} of {s.slots}")
            for seq, words in texts:
                slot = self._queued % s.slots
                new = (self._queued + 1) % U32
                try:
                    await self._holding(s.text_address + slot * s.text_registers, words)
                    await self._holding(s.queued_address, split_u32(new) + split_u32(self._queued))
                except PlcDeviceError as exc:
                    if exc.exception_code != ILLEGAL_VALUE:
                        raise self._map(exc) from exc
                    # A definite refusal of the compare-and-set: the count moved under us (a stop or
                    # power loss between our read and this write). Nothing of seq was queued.
                    try:
                        await self._verify_queue(f"count write for seq {seq} refused")
                    except PlcError as again:
                        raise self._map(again) from again
                    raise Nak(f"{self.name}: marker refused queue count {new} for seq {seq}: its queue "
                              "changed since it was read (a stop or power loss)") from exc
                except PlcError as exc:
                    # Whether the count reached the marker is unknown: nothing may be queued behind it.
                    self._suspect = f"push of seq {seq} interrupted"
                    self._lose_fifo(self._suspect)
                    raise self._map(exc) from exc
                self._queued = new
                self._mirror.pushed(seq)

    async def clear_fifo(self) -> None:
        """Discard what is queued through the flush coil; the run coil is left as it is."""
        async with self._lock:
            await self._flush_locked()

    async def settle(self) -> Settlement:
        """Flush, THEN read the counter and the queue count: every print before the flush is counted, and
        an empty queue after it proves the rest never printed (FLUSHED). A flush whose effect cannot be
        read back raises (the caller retries); nothing is claimed flushed on a guess."""
        async with self._lock:
            await self._flush_locked()
            status = await self._status_locked()
            fates, self._unsettled = self._unsettled, Fates()
        return Settlement(status, Fates(flushed=fates.flushed))

    async def start(self) -> None:
        await self._do(lambda: self._coil(self.settings.run_coil, True))

    async def stop(self) -> None:
        """Stop; by the map a stop discards the queue, so it is read back like a flush."""
        async with self._lock:
            await self._discard_locked(self.settings.run_coil, False, "stop discards the queue")

    async def clear_fault(self) -> None:
        await self._do(lambda: self._coil(self.settings.reset_coil, True))

    async def trigger(self) -> None:
        """Print the next queued record now (for markers without a product sensor)."""
        await self._do(lambda: self._coil(self.settings.trigger_coil, True))

    async def events(self) -> AsyncIterator[PrintEvent]:
        while True:
            yield await self._events.get()

    # -- internals ----------------------------------------------------------------------------
    async def _flush_locked(self) -> None:
        await self._discard_locked(self.settings.flush_coil, True, "clear_fifo")

    async def _discard_locked(self, coil: int, value: bool, why: str) -> None:
        """Write the discarding coil, then read the counter and the queue count. An empty queue read
        after our own discard proves what the counter did not count never printed: FLUSHED."""
        s = self.settings
        try:
            await self._ensure_linked()
            # First: was the queue already discarded behind our back (a panel stop, a power cycle)?
            # Then what it held is UNKNOWN, whatever our own discard finds afterwards.
            before = await self._u32(Table.HOLDING, s.queued_address)
            self._account(await self._u32(Table.INPUT, s.printed_address))
            if before != self._queued:
                self._mismatch(before, self._printed, f"{why}: marker reports {before} queued, "
                                                      f"driver queued {self._queued}")
                self._queued = before
            await self._coil(coil, value)
            printed = await self._u32(Table.INPUT, s.printed_address)
            queued = await self._u32(Table.HOLDING, s.queued_address)
        except PlcError as exc:
            raise self._map(exc) from exc
        self._account(printed)
        self._queued = queued
        if queued != printed:  # the discard did not take: nobody can say what the marker holds
            self._suspect = f"{why}: the marker still reports {(queued - printed) % U32} queued"
            self._lose_fifo(self._suspect)
            raise Nak(f"{self.name}: {self._suspect}")
        self._suspect = None
        fates = self._mirror.flushed()
        if fates.flushed:
            self._unsettled += fates
            self._announce_loss(why, len(fates.flushed))

    async def _do(self, op: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:
            try:
                await self._ensure_linked()
                return await op()
            except PlcError as exc:
                raise self._map(exc) from exc

    async def _ensure_linked(self) -> None:
        if not self._bus.connected:
            if self._was_linked:
                self._emit(PrintEventKind.LINK_DOWN, "link lost; reconnecting")
            await self._connect_locked()

    async def _verify_queue(self, when: str) -> None:
        """Read both counters; if the marker's count is not the one we wrote, the queue was discarded.

        Raises Nak on a mismatch so that nothing is queued behind a queue the host no longer knows.
        """
        s = self.settings
        queued = await self._u32(Table.HOLDING, s.queued_address)
        printed = await self._u32(Table.INPUT, s.printed_address)
        self._account(printed)
        if queued != self._queued:
            why = f"{when}: marker reports {queued} queued, driver queued {self._queued}"
            self._mismatch(queued, printed, why)
            self._queued = queued
            raise Nak(f"{self.name}: {why}; the queue was discarded (a stop or power loss), nothing pushed")

    def _account(self, printed: int) -> None:
        """Turn the counter delta since the last poll into PRINTED events, oldest first. A delta beyond
        what is queued (a counter reset, a foreign host) confirms nothing more."""
        delta = (printed - self._printed) % U32
        self._printed = printed
        for seq in self._mirror.printed(delta).printed:
            self._emit(PrintEventKind.PRINTED, seq=seq)

    def _mismatch(self, queued: int, printed: int, why: str) -> None:
        """The marker's queue count is not ours: a reset (stop, power loss) if it is empty, else unknown."""
        self._lose_fifo(why)
        if queued != printed:
            self._suspect = why

    def _lose_fifo(self, why: str) -> None:
        """A loss nobody can account for: what was queued is UNKNOWN (in doubt), never FLUSHED."""
        fates = self._mirror.lose()
        if fates.unknown:
            self._unsettled += fates
            self._announce_loss(why, len(fates.unknown))

    def _announce_loss(self, why: str, n: int) -> None:
        log.warning("%s: FIFO discarded (%s): %d queued records", self.name, why, n)
        self._fifo_lost = True
        self._emit(PrintEventKind.FIFO_LOST, why)

    def _emit(self, kind: PrintEventKind, detail: str = "", seq: int | None = None) -> None:
        self._events.put_nowait(PrintEvent(kind=kind, at=time.monotonic(), seq=seq, detail=detail))

    def _map(self, exc: PlcError) -> PrinterError:
        if isinstance(exc, PlcLinkError):
            return LinkDown(f"{self.name}: {exc}")
        if isinstance(exc, PlcTimeout):
            return DeviceTimeout(f"{self.name}: {exc}")
        if isinstance(exc, PlcDeviceError):
            return Nak(f"{self.name}: {exc}")
        return ProtocolError(f"{self.name}: {exc}")
