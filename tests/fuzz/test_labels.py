"""The ZPL label printer against hostile ~HS status replies: a status, or LinkError / LabelPrinterError.

The hostile device sits between the driver and the ZPL simulator; the driver asks ~HS before every
label. A status that does come out must be one the three strings could mean (waiting labels a count,
faults only the four the driver knows).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from drivers.labels.link import LinkError
from drivers.labels.zpl import LabelPrinterError, LabelStatus, ZplLabelPrinter
from drivers.sim.zpl import ZplSimulator
from tests.fuzz.harness import Bounded, run
from tests.fuzz.hostile import Action, HostileDevice, Script
from tests.fuzz.strategies import budget, scripts

LABELS = Path(__file__).resolve().parents[2] / "config" / "labels"
FIELDS = {"code": "C00042", "hri": "C00042", "level": "case", "product": "Spring water", "lot": "LOT1"}
STX, ETX = b"\x02", b"\x03"


def hs_reframe(chunk: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """Edit the text of every STX ... ETX string of a ~HS reply (ZPL II Programming Guide, ~HS)."""
    return re.sub(rb"\x02([^\x02\x03]*)\x03", lambda m: STX + edit(m.group(1)) + ETX, chunk)


async def exercise(link: str, actions: list[Action], ops: list[str]) -> None:
    sim = ZplSimulator()
    port = await sim.serve_tcp()
    device = HostileDevice(port, Script(actions, hs_reframe))
    where = await device.serve_tcp() if link == "tcp" else "serial://" + await device.serve_pty()
    printer = ZplLabelPrinter(ZplLabelPrinter.Settings(url=where, template=LABELS / "case.zpl", timeout_s=0.3))
    b = Bounded((LinkError, LabelPrinterError), f"zpl over {link}")
    b.watch_loop()
    try:
        for name in ops:
            if name == "status":
                status = await b.op(name, printer.status)
                if isinstance(status, LabelStatus):
                    assert status.labels_waiting >= 0, status
            else:
                await b.op(name, lambda: printer.print_label(FIELDS))
    finally:
        await b.quiet("close", printer.close)
        await device.close()
        await sim.close()
    b.check_loop()


@budget(6)
@given(link=st.sampled_from(["tcp", "pty"]), actions=scripts(),
       ops=st.lists(st.sampled_from(["status", "print"]), min_size=1, max_size=5))
def test_hostile_status_replies_end_in_a_status_or_a_label_printer_error(link: str, actions: list[Action],
                                                                         ops: list[str]) -> None:
    run(exercise(link, actions, ops))
