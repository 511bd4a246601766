"""The ZPL driver against its simulator over real TCP and a real pty; labels decoded back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zxingcpp

from drivers.labels.link import LinkError
from drivers.labels.zpl import LabelFault, LabelFaulted, TemplateError, ZplLabelPrinter, escape, render
from drivers.sim.zpl import ZplSimulator, parse
from tests.conftest import free_port

LABELS = Path(__file__).resolve().parents[3] / "config" / "labels"
FIELDS = {"code": "C00042", "hri": "C00042", "level": "case", "product": "Spring water", "lot": "LOT1"}


def run(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Each async test gets its own event loop and an overall deadline (no asyncio plugin here)."""

    def test() -> None:
        asyncio.run(asyncio.wait_for(fn(), 30))

    test.__name__ = fn.__name__
    test.__doc__ = fn.__doc__
    return test


def decoded(img: np.ndarray) -> dict[str, str]:
    return {b.format.name: b.text for b in zxingcpp.read_barcodes(img)}


def printer(url: str, template: str = "case.zpl") -> ZplLabelPrinter:
    return ZplLabelPrinter(ZplLabelPrinter.Settings(url=url, template=LABELS / template, timeout_s=2.0))


@run
async def test_case_label_over_tcp_decodes_back_in_all_three_symbologies() -> None:
    sim = ZplSimulator()
    port = await sim.serve_tcp()
    p = printer(f"tcp://127.0.0.1:{port}")
    try:
        zpl = await p.print_label(FIELDS)
        await asyncio.wait_for(sim.printed.wait(), 5)
    finally:
        await p.close()
        await sim.close()
    assert zpl.startswith("^XA") and "^BQN" in zpl and "^BXN" in zpl and "^BCN" in zpl
    assert decoded(sim.labels[0]) == {"QRCode": "C00042", "DataMatrix": "C00042", "Code128": "C00042"}
    texts = [f.data for f in sim.formats[0].fields if f.kind == "text"]
    assert "Lot LOT1  case" in texts and "C00042" in texts


@run
async def test_sscc_label_over_a_pty() -> None:
    sim = ZplSimulator()
    path = sim.serve_pty()
    p = printer(f"serial://{path}", "sscc.zpl")
    sscc = "006141410000000017"
    try:
        st = await p.status()
        assert st.faults == frozenset()
        await p.print_label({**FIELDS, "code": sscc, "hri": sscc})
        await asyncio.wait_for(sim.printed.wait(), 5)
    finally:
        await p.close()
        await sim.close()
    assert decoded(sim.labels[0])["Code128"] == sscc


@run
async def test_faults_stop_the_label_before_it_is_sent() -> None:
    sim = ZplSimulator(paper_out=True, head_open=True)
    port = await sim.serve_tcp()
    p = printer(f"tcp://127.0.0.1:{port}")
    try:
        with pytest.raises(LabelFaulted, match="head_open, paper_out") as info:
            await p.print_label(FIELDS)
        assert info.value.faults == {LabelFault.PAPER_OUT, LabelFault.HEAD_OPEN}
        assert sim.formats == []
        sim.resume()
        await p.print_label(FIELDS)
        await asyncio.wait_for(sim.printed.wait(), 5)
    finally:
        await p.close()
        await sim.close()
    assert len(sim.labels) == 1


@run
async def test_unreachable_printer_is_a_link_error_naming_it() -> None:
    port = free_port()
    p = printer(f"tcp://127.0.0.1:{port}")
    with pytest.raises(LinkError, match=f"tcp://127.0.0.1:{port} unreachable"):
        await p.status()


def test_field_data_cannot_inject_zpl() -> None:
    template = "^XA^FO10,10^FH^FD{code}^FS^XZ"
    zpl = render(template, {"code": "A^XZ~JR_1"})
    assert zpl.count("^XZ") == 1 and "~JR" not in zpl
    [label] = parse(zpl)
    assert label.fields[0].data == "A^XZ~JR_1"
    assert escape("^~_") == "_5E_7E_5F"


def test_template_errors_name_the_field_and_file() -> None:
    with pytest.raises(TemplateError, match=r"case.zpl: field \{product\} has no value \(given: code\)"):
        render((LABELS / "case.zpl").read_text(), {"code": "x"}, source="case.zpl")
    with pytest.raises(TemplateError, match="must start with \\^XA"):
        render("^FDx^FS", {})


def test_smudged_label_does_not_decode() -> None:
    sim = ZplSimulator(smudge_next=1)
    sim.feed(render((LABELS / "case.zpl").read_text(), FIELDS).encode())
    sim.feed(render((LABELS / "case.zpl").read_text(), FIELDS).encode())
    assert "QRCode" not in decoded(sim.labels[0])
    assert decoded(sim.labels[1])["QRCode"] == "C00042"
