"""A verify station on the line: PLC positions, camera frames, the coder's prints, one verdict per item.

Why the binding lives here: agent.verify.station judges an item against "the text printed at that
position", but no device says that directly. The PLC counter says an item passed the print head; the
coder's confirmations (the feeder's ledger records, in the coder's FIFO order) say which code it
printed, and the coder prints its FIFO in order, so the N-th item past the head after a reconcile carries
the N-th record sent since. Binding on the sent records (durable before their bytes left) and not on
the confirmations keeps the binding ahead of the camera even when confirmations lag on a busy serial
link. Records a reconcile put in doubt were flushed from the coder and are skipped. A coder that skipped
an item would shift the binding; that can only produce rejects (the read does not match), never a false
accept, and the reject reasons say so.

Every binding is written to the ledger when it is made, and a (re)start waits for the feeder's reconcile
(the print station primed) before the station re-reads the PLC's counters: what is in flight is then
tracked with its own code, rejected as unbound, or settled (agent/verify/binding.py). New items bind
from the first feed record sent after the reconcile.

The camera is triggered per item: for every item that reaches the camera position one frame is grabbed
and decoded (in a worker thread: decoding must not stall the loop) and handed to the station. A frame
that carries the camera's own trigger count (`Frame.index`) is given to the item whose seq is that count
plus `verify.frame_index_offset`; one naming an item not tracked, not yet past the head or already judged
is dropped and counted, never given to another item. A frame without a count goes to the next item in
arrival order, starting after the items that were at or past the camera at start. A device that fails
(camera, PLC) raises an alarm and the station keeps trying; it never ends the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Any

from agent.codes.ai import FormError, parse_element_string
from agent.config.model import LineConfig, TemplateKind
from agent.config.stations import StationConfig
from agent.epcis.events import LineContext
from agent.i18n import _
from agent.ledger import Ledger
from agent.line.alarms import AlarmBoard, Severity
from agent.line.printing import PrintStation
from agent.verify.decode import Decoder
from agent.verify.grade import Grader
from agent.verify.pacing import Pacer, Wake
from agent.verify.station import VerifyStation, observe_image
from agent.verify.tracker import Tracked, TrackingError
from agent.verify.verdict import Judgement
from drivers.cameras.base import Camera, CameraError
from drivers.plc import U16, LinePlc, PlcError, Signal, unwrap
from drivers.registry import DeviceKind, load

log = logging.getLogger(__name__)


class VerifyState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"  # camera or PLC failing: items are judged unread (rejected), alarm raised
    STOPPED = "stopped"  # a line stop (reject unconfirmed, too many rejects)


def code_parser(cfg: LineConfig, template: str) -> Callable[[str], str | None]:
    """Printed text -> the code it carries, for reads of codes we did not print at that position."""
    t = cfg.templates[template]
    if t.kind is TemplateKind.RAW:
        return lambda text: text
    if t.kind is TemplateKind.URL:
        prefix = t.url_prefix or ""
        return lambda text: text[len(prefix):] if text.startswith(prefix) else None

    def serial(text: str) -> str | None:
        if "/21/" in text:  # digital link
            return text.split("/21/", 1)[1].split("?", 1)[0].split("/", 1)[0]
        try:  # element string: (21) follows a fixed-length AI with no GS (0109506000134352 21ABC)
            return parse_element_string(text).get("21")
        except FormError:
            return None

    return serial


class VerifyRunner:
    def __init__(self, name: str, st: StationConfig, cfg: LineConfig, ledger: Ledger, board: AlarmBoard,
                 printing: PrintStation, *, camera: Camera | None = None, plc: LinePlc | None = None) -> None:
        if st.plc is None:
            raise ValueError(f"stations.{name}: a verify station on a running line needs 'plc' for rejects")
        if st.camera is None:
            raise ValueError(f"stations.{name}: only camera verify stations run on the line so far")
        self.name = name
        self.st = st
        self.cfg = cfg
        self.ledger = ledger
        self.board = board
        self.printing = printing
        self.plc_name = st.plc
        self.camera_name = st.camera
        if plc is None:
            plc = LinePlc(cfg.device_settings("plcs", st.plc), name=st.plc)
        self.plc = plc
        if camera is None:
            cls = load(DeviceKind.CAMERA, cfg.devices.cameras[st.camera].type)
            camera = cls(cfg.device_settings("cameras", st.camera), name=st.camera)
        self.camera: Camera = camera
        self.decoder = Decoder(st.decode)
        self.grader = Grader(st.grade)
        self.state = VerifyState.STARTING
        self.station: VerifyStation | None = None
        self.on_verdict: list[Callable[[Tracked, Judgement], None]] = []
        self._bound_feed_seq = 0  # the last coder feed seq tied to an item
        self._bound_item = 0  # the last conveyor seq tied to a print
        self._next_frame = 0
        self._order_floor = 0  # frames without an index start here after a (re)start
        self.frames_dropped = 0  # frames whose index named no item waiting for one
        self.frames_grabbed = 0
        self.pacer: Pacer | None = None  # this run's counter pace (agent/verify/pacing.py)
        self._unjudged: set[int] = set()  # bound items still waiting for their durable verdict
        self._reader: sqlite3.Connection | None = None  # committed view; never waits on a commit
        self._reader_lock = threading.Lock()  # the tick and the end-of-job check read from two threads
        # Decoding gets its own thread: in asyncio's shared executor it queued behind ledger calls of
        # the feeder and the status writer waiting on a commit, and frames waited with them.
        self._decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"decode:{name}")

    def make_station(self, job_template: str) -> VerifyStation:
        parse = code_parser(self.cfg, job_template)
        gs1 = self.cfg.templates[job_template].kind is TemplateKind.ELEMENT_STRING
        station = VerifyStation(self.ledger, self.plc, self.st.verify, line=LineContext.from_config(self.cfg),
                                code_of=parse, name=self.name, gs1=gs1)
        station.on_verdict.append(self._judged)
        station.on_verdict.extend(self.on_verdict)
        return station

    def _judged(self, item: Tracked, j: Judgement) -> None:
        self._unjudged.discard(item.seq)  # the station reports a verdict only once it is committed

    def all_judged(self) -> bool:
        """Every print confirmed so far is tied to an item, judged, and its verdict in the ledger."""
        return not self._unjudged and not self._printed_after(self._bound_feed_seq, 1)

    async def open(self) -> None:
        await self.plc.open()
        await self.camera.open()

    async def run(self, job_template: str, stop: asyncio.Event) -> None:
        """Judge every item from now until `stop`; device failures are alarms, the loop goes on."""
        self.state = VerifyState.STARTING  # RUNNING again only once this run's PLC and camera are open
        self.station = station = self.make_station(job_template)
        await self._until_open(stop)
        if stop.is_set():
            return
        # The feeder reconciles with its coder before it primes it: only then do the ledger's feed records
        # say what was printed while the station was away.
        primed = asyncio.ensure_future(self.printing.primed.wait())
        halt = asyncio.ensure_future(stop.wait())
        await asyncio.wait([primed, halt], return_when=asyncio.FIRST_COMPLETED)
        primed.cancel()
        halt.cancel()
        if stop.is_set():
            return
        await self._start(station)
        self.state = VerifyState.RUNNING
        rate = self.printing.feed.line_rate_per_min
        self.pacer = Pacer.for_station(self.st.verify, line_rate_per_min=rate)
        wake = Wake(stop)
        told = self.camera.on_frame(wake.set)  # a frame in hand: read the counter now
        try:
            while not stop.is_set():
                wake.clear()
                grabs = self.frames_grabbed
                try:
                    await self._tick(station)
                    self.board.set(self.plc_name, "communication", False)
                    if self.state is VerifyState.DEGRADED:
                        self.state = VerifyState.RUNNING
                except PlcError as exc:
                    self.state = VerifyState.DEGRADED
                    self.board.set(self.plc_name, "communication", True, Severity.STOP, str(exc))
                if station.stopped:
                    self.state = VerifyState.STOPPED
                    alarm = station.alarms[-1] if station.alarms else None
                    self.board.set(self.name, "line_stop", True, Severity.STOP,
                                   alarm.message if alarm else "line stopped by the verify station")
                if told and not stop.is_set() and self.camera.frames_waiting() == 0:
                    wake.clear()  # the frames this read was told of are taken: no second read for them
                await wake.sleep(self._next_read(told, grabs))
        finally:
            if told:
                self.camera.on_frame(None)
            wake.close()
        await station.flush()  # the last verdicts are committed and reported before the job ends
        station.close()

    def _next_read(self, told: bool, grabs: int) -> float:
        """Seconds to the next counter read. A frame the camera holds that this read did not take is
        for an item the counter has not yet shown at the camera (the two sensors are not in phase):
        look again within a quarter pitch rather than a whole one."""
        pacer = self.pacer
        assert pacer is not None
        delay = pacer.interval_s()
        waiting = self.camera.frames_waiting() if told else None
        if waiting and self.frames_grabbed == grabs:
            delay = min(delay, max(pacer.floor_s, (pacer.pitch_s or 0.0) / 4))
        return delay

    async def _start(self, station: VerifyStation) -> None:
        """Re-read the counters and the ledger; say what a restart found (an operator sees it)."""
        plan = await station.start(render=self.printing.render)
        s = self.st.verify
        head = plan.head
        self._bound_item = head
        self._order_floor = head - s.camera_at + 1
        waiting = [b.seq for b in plan.restore if b.verdict is None
                   and head - b.seq <= s.camera_at + s.read_window]
        self._next_frame = min([*waiting, self._order_floor])
        self._unjudged = set(waiting)
        self._bound_feed_seq = await asyncio.to_thread(self._last_settled_seq)
        if plan.restore or plan.unbound or plan.settle:
            fates: dict[str, int] = {}
            for _b, fate, _why in plan.settle:
                fates[fate.value] = fates.get(fate.value, 0) + 1
            msg = _("start at counter {head}: {restored} items in flight tracked with their own code ({proven} "
                    "proven by the counters), {unbound} unbound (rejected), past the gate meanwhile: {fates}").format(
                head=head, restored=len(plan.restore), proven=len(plan.proven), unbound=len(plan.unbound),
                fates=", ".join(f"{k} {v}" for k, v in sorted(fates.items())) or "-")
            if plan.reset:
                msg += "; " + _("the PLC counter went back (PLC reset): bindings before it are unknown")
            log.warning("%s: %s", self.name, msg)
            self.board.set(self.name, "restart", True, Severity.WARNING, msg)
        else:
            self.board.set(self.name, "restart", False)

    async def _until_open(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            try:
                await self.open()
                self.board.set(self.name, "devices", False)
                return
            except (PlcError, CameraError, OSError) as exc:
                self.state = VerifyState.DEGRADED
                self.board.set(self.name, "devices", True, Severity.STOP, f"cannot open: {exc}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                delay = min(delay * 2, 5.0)

    async def _tick(self, station: VerifyStation) -> None:
        values = await self.plc.read_many([Signal.COUNTER, Signal.REJECT_CONFIRM])
        counter = unwrap(values[Signal.COUNTER], station.tracker.head)
        if self.pacer is not None:
            self.pacer.saw(time.monotonic(), counter)
            station.pitch_s = self.pacer.shortest_pitch_s
        await self._bind(station, counter)
        # moves the head; expires unread items
        await station.step(counter, values[Signal.REJECT_CONFIRM])
        s = self.st.verify
        while self._next_frame <= counter - s.camera_at:
            seq = self._next_frame
            late = counter - seq >= s.camera_at + s.read_window
            if seq > self._bound_item and not late:
                break  # the coder's confirmation is on its way; the frame waits in the camera
            await self._frame(station, seq, counter)

    async def _frame(self, station: VerifyStation, seq: int, counter: int) -> None:
        """Grab one frame for item `seq` (or, by its index, for the item it names) and judge it."""
        try:
            frame = await self.camera.grab()
            self.frames_grabbed += 1
        except CameraError as exc:
            self._next_frame = seq + 1  # this item's read window closes without a read: judged unread
            self.board.set(self.camera_name, "no_frame", True, Severity.STOP, str(exc))
            if self.camera.state.value == "failed":
                with contextlib.suppress(CameraError):
                    await self.camera.close()
                    await self.camera.open()
            return
        self.board.set(self.camera_name, "no_frame", False)
        if frame.index is None:
            seq = max(seq, self._order_floor)
        else:
            target = unwrap((frame.index + self.st.verify.frame_index_offset) % U16, seq)
            item = station.tracker.get(target)
            if target < seq or target > counter or item is None or item.judgement is not None:
                self.frames_dropped += 1  # never another item's: that item is judged by its own frame or unread
                if target >= seq:  # not an older frame still queued: item `seq` gets no frame from this grab
                    self._next_frame = (target if target <= counter else seq) + 1
                return
            seq = target
        self._next_frame = seq + 1
        work = functools.partial(observe_image, seq, frame.image, self.decoder, self.grader, at=frame.at)
        obs = await asyncio.get_running_loop().run_in_executor(self._decode_pool, work)
        await station.observe(obs)

    async def _bind(self, station: VerifyStation, counter: int) -> None:
        """Tie confirmed prints, in the coder's order, to the items that passed the head."""
        want = counter - self._bound_item
        if want <= 0 or self.printing.render is None:
            return
        rows = self._printed_after(self._bound_feed_seq, want)  # read-only WAL view: microseconds, no lock
        for feed_seq, code in rows:
            self._bound_item += 1
            self._bound_feed_seq = feed_seq
            try:
                station.printed(self._bound_item, code, self.printing.render(code), coder=self.printing.coder,
                                feed_seq=feed_seq)
            except TrackingError as exc:
                # The confirmation came after the item left the camera: it was judged unread (rejected).
                self.board.set(self.name, "late_print_confirm", True, Severity.WARNING, str(exc))
                continue
            self._unjudged.add(self._bound_item)

    def _read(self, sql: str, args: tuple[object, ...]) -> list[sqlite3.Row]:
        """Committed rows through a read-only connection: sent records are durable before their
        bytes leave, so the binding never needs the writer's (possibly uncommitted) view."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = self.ledger.reader()
            return self._reader.execute(sql, args).fetchall()

    def _printed_after(self, feed_seq: int, limit: int) -> list[tuple[int, str]]:
        rows = self._read(
            "SELECT f.seq, c.code FROM coder_feed f JOIN codes c ON c.id = f.code WHERE f.coder = ? "
            "AND f.seq > ? AND c.state IN ('sent', 'printed', 'verified', 'rejected', 'escaped') "
            "ORDER BY f.seq LIMIT ?",
            (self.printing.coder, feed_seq, limit))
        return [(int(r[0]), str(r[1])) for r in rows]

    def _last_settled_seq(self) -> int:
        row = self._read("SELECT MAX(f.seq) FROM coder_feed f JOIN codes c ON c.id = f.code WHERE f.coder = ? "
                         "AND c.state != 'sent'", (self.printing.coder,))
        return int(row[0][0] or 0)

    async def close(self) -> None:
        self._decode_pool.shutdown(wait=False)
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with contextlib.suppress(CameraError):
            await self.camera.close()
        with contextlib.suppress(PlcError):
            await self.plc.close()

    def snapshot(self) -> dict[str, Any]:
        st = self.station
        return {"kind": "verify", "state": str(self.state),
                "verdicts": {str(k): v for k, v in st.counts.items()} if st else {},
                "fates": dict(st.fates) if st else {}, "late_releases": st.late_releases if st else 0,
                "gate": str(self.plc.gate), "frames_dropped": self.frames_dropped,
                "camera": str(self.camera.state), "plc": self.plc_name}
