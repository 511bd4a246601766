"""Must show (issue 12): what a simulated line sends, as a real broker delivers it, is what a GS1 backend accepts.

The line runs for real (coder simulator on a pty, pymodbus PLC, camera images through the decoder,
ZPL labels read back, mosquitto, the reference receiver acking), then an operator unpacks the pallet and
scraps a case with everything in it. A separate MQTT client captures every document the uplink
publishes, and each is checked with tools independent of the agent's code:
- the official EPCIS 2.0 JSON schema (GS1's EPCIS-JSON-Schema.json) through jsonschema;
- every eventID equal to what GS1's reference generator (epcis-event-hash-generator) computes over the
  received bytes;
- every EPC, turned into a GS1 element string by the small converter below (written from the EPC Tag
  Data Standard, 6.3.1/6.3.2 and Table A-1), parsed by biip to a GTIN + serial or an SSCC that was
  printed: on a bottle by the coder, on a case label (read back from the label image by zxing-cpp), or
  held in the ledger for boxes and the minted pallet SSCC (the simulated line prints no label on them);
- the CBV lifecycle: an EPC is commissioned before it is packed, used as a parent or decommissioned,
  and decommissioning is ObjectEvent DELETE.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import zlib
from pathlib import Path
from typing import Any

import biip
import jsonschema
import paho.mqtt.client as paho
import pytest
import zxingcpp
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console

from agent.aggregation import operations
from agent.aggregation.setup import aggregator_for
from agent.demo import _drain, _label_readers, prepare
from agent.jobs import JobSpec, create_job, finish_job, start_job
from agent.ledger import Ledger
from agent.line.runtime import LineRuntime
from agent.line.simulated import SimSettings, SimulatedLine

ITEMS = 48
SCHEMA = Path(__file__).resolve().parents[2] / "agent" / "epcis" / "schema" / "EPCIS-JSON-Schema.json"
BOX_GTIN, CASE_GTIN = "19506000134359", "29506000134356"  # config/line.sim.yaml


# ---- an EPC URN -> GS1 element string converter, from the Tag Data Standard (not the agent's code) ----

def _check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def element_string(urn: str) -> str:
    """TDS 2.x 6.3.1: sgtin:CP.IR.S -> (01) indicator+CP+rest-of-IR+check (21) S unescaped; 6.3.2 sscc."""
    if m := re.fullmatch(r"urn:epc:id:sgtin:(\d{6,12})\.(\d{1,7})\.(.{1,60})", urn):
        cp, ref, serial = m.groups()
        body = ref[0] + cp + ref[1:]
        return "01" + body + _check_digit(body) + "21" + re.sub(r"%([0-9A-F]{2})", lambda x: chr(int(x[1], 16)), serial)
    if m := re.fullmatch(r"urn:epc:id:sscc:(\d{6,12})\.(\d{5,11})", urn):
        cp, ref = m.groups()
        body = ref[0] + cp + ref[1:]
        return "00" + body + _check_digit(body)
    raise AssertionError(f"{urn!r} is no SGTIN or SSCC EPC URN")


def gs1_key(text: str) -> tuple[str, ...]:
    """biip's reading of a printed text or element string: ('sgtin', gtin, serial) or ('sscc', sscc)."""
    parsed = biip.parse(text)
    if parsed.sscc is not None:
        return ("sscc", parsed.sscc.value)
    strings = parsed.gs1_message or parsed.gs1_digital_link_uri
    assert strings is not None, f"biip reads no GS1 data in {text!r}: {parsed}"
    ais = {e.ai.ai: e.value for e in strings.element_strings}
    return ("sgtin", ais["01"], ais["21"])


# ---- the capture: a plain MQTT client on the same broker ------------------------------------------

class Capture:
    def __init__(self, port: int) -> None:
        self.docs: list[tuple[int, bytes]] = []  # (batch number, document bytes as received)
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="epcis-capture", protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe("lineagent/+/+/events", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(20), "the capture client did not subscribe"

    def _message(self, _c: Any, _u: Any, msg: Any) -> None:
        props = dict(getattr(msg.properties, "UserProperty", None) or [])
        body = zlib.decompress(msg.payload) if props.get("content-encoding") == "deflate" else msg.payload
        with self.lock:
            self.docs.append((int(props["batch"]), bytes(body)))

    def event_ids(self) -> set[str]:
        with self.lock:
            return {e["eventID"] for _, raw in self.docs for e in json.loads(raw)["epcisBody"]["eventList"]}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _run_line(tmp_path: Path) -> tuple[Capture, list[str], list[str]]:
    with Path(os.devnull).open("w") as sink:
        cfg = prepare(tmp_path, ITEMS, Console(file=sink))
    sim = SimulatedLine(cfg, tmp_path, SimSettings(rate_per_min=600, seed=11))
    live = sim.start()
    assert sim.broker is not None
    capture = Capture(sim.broker.port)
    ledger_path = live.resolve(live.storage.ledger)
    ledger = Ledger(ledger_path)
    try:
        job = create_job(ledger, JobSpec(name="WO-12", gtin="09506000134352", product_name="water", lot="LOT42",
                                         target_qty=ITEMS, template="dl", packing_spec="6x4x40"))
        start_job(ledger, job)
        (tmp_path / "labels").mkdir()
        runtime = LineRuntime(live, ledger, overrides=sim.overrides(), exit_when_done=True, drain_s=60.0,
                              read_labels=_label_readers(sim, live, tmp_path / "labels"))

        async def run() -> None:
            await asyncio.wait_for(runtime.run(asyncio.Event()), 240)  # a hang detector, not a timing check

        asyncio.run(run())
        finish_job(ledger, job)
        ledger.commit()
        # an operator's corrections: open the pallet, scrap a case and all it holds
        pallet, case = (ledger.conn.execute(
            "SELECT c.code FROM packs p JOIN codes c ON c.id = p.code WHERE p.level = ? ORDER BY p.id LIMIT 1",
            (level,)).fetchone()[0] for level in ("pallet", "case"))
        agg = aggregator_for(ledger, live, code=case)
        operations.unlink(agg, pallet)
        operations.decommission(agg, case, recursive=True)
        ledger.commit()
        produced = {json.loads(p)["epcis"]["eventID"] for (p,) in ledger.conn.execute(
            "SELECT payload FROM events WHERE uplink = 1") if "eventID" in json.loads(p)["epcis"]}
        held = [r[0] for r in ledger.conn.execute("SELECT code FROM codes WHERE level IN ('box', 'pallet')")]
    finally:
        ledger.close()
    try:
        assert _drain(live, ledger_path, 60.0), "the uplink did not drain"
        pause = threading.Event()  # never set: a wait on the capture thread's progress, not a timing
        for _ in range(300):  # the last acked documents reach the capture client too
            if produced <= capture.event_ids():
                break
            pause.wait(0.1)
        printed = [t for c in sim.coders.values() for t in c.printed]
        labels = [b.text for name in sim.labels for image in sim.labels[name].labels
                  for b in zxingcpp.read_barcodes(image)]
    finally:
        capture.close()
        sim.stop()
    return capture, printed, labels + held


@pytest.mark.timeout(600)
def test_the_uplink_of_a_simulated_line_is_what_a_gs1_backend_accepts(tmp_path: Path) -> None:
    from epcis_event_hash_generator.hash_generator import epcis_hashes_from_events  # type: ignore[import-untyped]
    from epcis_event_hash_generator.json_to_py import (  # type: ignore[import-untyped]
        event_list_from_epcis_document_str,
    )

    capture, printed, parents = _run_line(tmp_path)
    schema = json.loads(SCHEMA.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)

    checked = matching = 0
    received: dict[str, tuple[int, int, dict[str, Any]]] = {}
    for batch, raw in capture.docs:
        for private in (b"urn:lineagent:code:", b"urn:lineagent:workorder:", b"urn:example:"):
            assert private not in raw  # no private URN names a code or a work order
        doc = json.loads(raw)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], errors[:3]
        events = doc["epcisBody"]["eventList"]
        reference = epcis_hashes_from_events(event_list_from_epcis_document_str(raw.decode("utf-8")))
        checked += len(events)
        matching += sum(e["eventID"] == r for e, r in zip(events, reference, strict=True))
        assert [e["eventID"] for e in events] == reference
        for pos, e in enumerate(events):
            received.setdefault(e["eventID"], (batch, pos, e))

    # every EPC is a GS1 key that was printed (or, for boxes and the pallet, held by the line)
    keys_printed = {gs1_key(t) for t in printed}
    case_codes = {t for t in parents if t.startswith("CS")}
    keys_printed |= {("sgtin", CASE_GTIN, c) for c in case_codes}
    keys_printed |= {("sgtin", BOX_GTIN, c) for c in parents if c.startswith("BX")}
    keys_printed |= {("sscc", c) for c in parents if c.isdigit() and len(c) == 18}
    ordered = [e for _, _, e in sorted(received.values(), key=lambda v: (v[0], v[1]))]
    epcs = {u for e in ordered for u in [*e.get("epcList", []), *e.get("childEPCs", []), e.get("parentID")] if u}
    unknown = {u: gs1_key(element_string(u)) for u in epcs if gs1_key(element_string(u)) not in keys_printed}
    assert unknown == {}

    # the CBV lifecycle, in the order the line sent the events
    live: set[str] = set()
    dead: set[str] = set()
    kinds: dict[str, int] = {}
    for e in ordered:
        kind = f"{e['type']} {e['action']} {e.get('bizStep')}"
        kinds[kind] = kinds.get(kind, 0) + 1
        if e["type"] == "ObjectEvent" and e["action"] == "ADD":
            assert e["bizStep"] == "commissioning" and not set(e["epcList"]) & (live | dead), e
            live.update(e["epcList"])
        elif e["type"] == "ObjectEvent":
            assert (e["action"], e["bizStep"]) == ("DELETE", "decommissioning"), e
            assert set(e["epcList"]) <= live, sorted(set(e["epcList"]) - live)
            live -= set(e["epcList"])
            dead |= set(e["epcList"])
        else:
            assert {e["parentID"], *e["childEPCs"]} <= live, e
        for bt in e.get("bizTransactionList", []):
            assert bt["bizTransaction"].startswith("urn:epcglobal:cbv:bt:0614141007776:"), bt
    assert kinds.get("ObjectEvent DELETE decommissioning", 0) >= 2  # rejects at the camera, and the scrapped case
    assert kinds.get("AggregationEvent ADD packing", 0) >= 10 and kinds.get("AggregationEvent DELETE unpacking")
    print(f"\nuplink capture: {len(capture.docs)} documents, {checked} events checked ({len(received)} distinct), "
          f"{matching} eventIDs equal GS1's generator on the received bytes, {len(epcs)} EPCs parsed by biip; "
          f"{dict(sorted(kinds.items()))}")
