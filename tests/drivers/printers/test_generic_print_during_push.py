"""A print-complete message that arrives while the push of its own record is still being answered.

Why: the generic driver adds an answered push's records to its mirror once the answers are in. A
coder printing fast prints the first record of a push (and says so) while the host is still sending
the next one; that message named a record the mirror did not hold yet, so it counted for nothing,
and the next settle "proved" the printed record flushed and returned its code to the pool (seen in
the fault-schedule property under load: "the coder printed codes the ledger does not count").
Here the simulator prints the first record just before it answers the second, every time.
"""

from __future__ import annotations

import asyncio

from drivers.framing import Frame
from drivers.printers.base import PrintEventKind, Record
from drivers.printers.generic import GenericPrinter, GenericSettings
from drivers.sim.generic import GenericSim


class PrintsDuringThePush(GenericSim):
    """config/printers/example_stx.yaml: `B<index:03d><text>` stores a record, `p<index>` reports a print."""

    def handle(self, frame: Frame) -> bytes | None:
        if frame.payload.startswith(b"B002"):
            assert self.trigger(1) == 1  # record 1 passes the head; its message leaves before this answer
        return super().handle(frame)


def test_a_record_printed_before_its_push_is_answered_counts_as_printed() -> None:
    async def main() -> None:
        sim = PrintsDuringThePush(protocol="example_stx", capacity=8)
        driver = GenericPrinter(GenericSettings(url=f"tcp://127.0.0.1:{await sim.serve_tcp(0)}",
                                                protocol_file="example_stx", capacity=8, timeout_s=0.5))
        await driver.connect()
        try:
            await driver.start()
            await driver.push([Record(1, "S1"), Record(2, "S2"), Record(3, "S3")])
            assert sim.printed == ["S1"]
            printed = [e.seq for e in driver.pending_events() if e.kind is PrintEventKind.PRINTED]
            assert printed == [1]
            settled = await driver.settle()
            assert settled.status.last_printed == 1
            assert (settled.fates.flushed, settled.fates.unknown) == ((2, 3), ())  # S1 is on a product
            assert sim.printed == ["S1"] and not sim.fifo
        finally:
            await driver.close()
            await sim.close()

    asyncio.run(asyncio.wait_for(main(), 20))
