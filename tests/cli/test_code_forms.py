"""Every printed form of a code through the CLI on a populated ledger: trace, pack show, scan, export,
sync status --code (and codes show, the pack actions). Expected hierarchies, states and deliveries
are written out by hand from how the fixture packs and delivers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent import i18n, pins
from agent.aggregation.model import plan_levels
from agent.cli.main import app
from agent.config.model import PackingSpec
from agent.epcis import LineContext, commissioning_event
from agent.sync.outbox import Outbox
from tests.aggregation.conftest import make_floor
from tests.helpers import make_line, seed_codes

runner = CliRunner()
G = "09506000134352"  # the job's GTIN
SSCC = "106141412345678908"  # the pallet: the EPC Tag Data Standard's example SSCC
OPEN_SSCC = "006141410000000012"  # an open pallet: extension 0, prefix 0614141, serial 1, check digit by hand
PREFIX = "https://t.example.cn/c/"
PIN = "4711"
SPEC = {"levels": [{"level": "item"}, {"level": "box", "count": 2, "parent_code": "preprinted"},
                   {"level": "case", "count": 3, "parent_code": "preprinted"},
                   {"level": "pallet", "count": 1, "parent_code": "preprinted"}]}

ITEM_FORMS = [  # I00001 of job J1 (GTIN 09506000134352, lot LOT1) as an operator may type or scan it
    "I00001",
    f"https://id.example.com/01/{G}/10/LOT1/21/I00001?17=271231",
    f"https://other.example.org/p/01/{G}/21/I00001",
    f"01{G}10LOT1\x1d21I00001",
    f"(01){G}(10)LOT1(21)I00001",
    f"]d201{G}21I00001",
    "urn:epc:id:sgtin:9506000.013435.I00001",
    PREFIX + "I00001",
]
PALLET_FORMS = [SSCC, f"00{SSCC}", f"(00){SSCC}", f"]C100{SSCC}", f"https://id.example.com/00/{SSCC}",
                "urn:epc:id:sscc:0614141.1234567890"]

# How the fixture delivers: events of the first boxes acked, of the third box and the case sent and
# awaiting the ack, of the pallet and the bottle's commissioning not sent yet.
DELIVERY = {"B00000": "acked", "B00001": "acked", "B00002": "delivered", "C00000": "delivered",
            SSCC: "pending", "I00001": "pending"}


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Exit code, stdout, and everything shown (stdout and stderr as the operator sees them)."""
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.output


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Bottles I00000-05 in boxes B00000-02, in case C00000, on pallet SSCC; delivered as DELIVERY says."""
    tmp = tmp_path_factory.mktemp("forms")
    path = make_line(tmp)
    doc = yaml.safe_load(path.read_text())
    doc["security"]["operator_pin_hash"] = pins.hash_pin(PIN)
    doc["templates"]["qr"] = {"kind": "url", "url_prefix": PREFIX}
    doc["packing_specs"] = {"p": SPEC}
    doc["code_sources"]["levels"]["pallet"] = {}
    path.write_text(yaml.safe_dump(doc))
    floor = make_floor(tmp / "ledger.db", plans=plan_levels(PackingSpec.model_validate(SPEC)))
    seed_codes(floor.ledger, [SSCC, OPEN_SSCC], level="pallet", package_id="pp")
    floor.agg.open("pallet", OPEN_SSCC)
    outbox = Outbox(tmp / "ledger.db")

    def deliver(*, ack: bool) -> None:
        floor.ledger.commit()
        while (batch := outbox.cut(1000, sending=True)) is not None:
            if ack:
                outbox.mark_acked(batch.id, "stored")

    floor.agg.pack("box", "B00000", ["I00000", "I00001"], durable=True)
    floor.agg.pack("box", "B00001", ["I00002", "I00003"], durable=True)
    deliver(ack=True)
    floor.agg.pack("box", "B00002", ["I00004", "I00005"], durable=True)
    floor.agg.pack("case", "C00000", ["B00000", "B00001", "B00002"], durable=True)
    deliver(ack=False)
    floor.agg.pack("pallet", SSCC, ["C00000"], durable=True)
    ctx = LineContext("urn:epc:id:sgln:0614141.00777.0", None)
    event = commissioning_event(ctx, ["urn:epc:id:sgtin:9506000.013435.I00001"], at=1.7e9)
    floor.ledger.append_event("code.verified", {"epcis": event}, code="I00001", uplink=True)
    floor.ledger.commit()
    outbox.close()
    floor.ledger.close()
    return ["--config", str(path)]


@pytest.mark.parametrize("form", ITEM_FORMS)
def test_trace_takes_every_printed_form_of_a_bottle(line: list[str], form: str) -> None:
    code, out, _shown = run("trace", form, *line)
    assert code == 0, _shown
    assert out.index(f"pallet {SSCC}") < out.index("case C00000") < out.index("box B00000") < out.index("item I00001")
    assert "1 codes under I00001, 3 above" in out


@pytest.mark.parametrize("form", PALLET_FORMS)
def test_trace_export_and_pack_show_take_every_printed_form_of_a_pallet(line: list[str], form: str) -> None:
    code, out, shown = run("trace", form, *line)
    assert code == 0, shown
    assert f"11 codes under {SSCC}, 0 above" in out  # pallet, case, 3 boxes, 6 bottles
    code, out, shown = run("export", "pallet", form, "--format", "json", *line)
    assert code == 0, shown
    tree = json.loads(out)["hierarchy"]
    assert tree["code"] == SSCC and [c["code"] for c in tree["children"]] == ["C00000"]
    code, out, shown = run("pack", "show", form, *line)
    assert code == 0, shown
    assert f"pallet {SSCC}" in out and "1 of 1" in out and "C00000" in out


@pytest.mark.parametrize("form", ITEM_FORMS)
def test_sync_status_of_a_bottle_in_every_form(line: list[str], form: str) -> None:
    code, out, shown = run("sync", "status", "--code", form, "--json", *line)
    assert code == 0, shown
    report = json.loads(out)
    assert report["code"] == "I00001"
    relation = {e["code"]: e["relation"] for e in report["events"]}
    assert relation == {"I00001": "self", "B00000": "parent", "C00000": "parent", SSCC: "parent"}
    assert all(e["state"] == DELIVERY[e["code"]] for e in report["events"]), report["events"]
    states = [e["state"] for e in report["events"]]
    assert report["summary"] == {s: states.count(s) for s in ("pending", "delivered", "acked")}


@pytest.mark.parametrize("form", PALLET_FORMS)
def test_sync_status_of_a_pallet_down_to_the_bottle(line: list[str], form: str) -> None:
    code, out, shown = run("sync", "status", "--code", form, "--json", *line)
    assert code == 0, shown
    events = json.loads(out)["events"]
    assert {e["code"] for e in events} == set(DELIVERY)
    assert all(e["state"] == DELIVERY[e["code"]] for e in events), events
    assert {e["code"]: e["relation"] for e in events}[SSCC] == "self"
    code, out, shown = run("sync", "status", "--code", form, *line)
    assert code == 0, shown
    assert f"{SSCC}: " in out and "acked" in out and "pending" in out and "I00001" in out


def test_manual_scan_takes_printed_forms_and_refuses_a_misread(line: list[str]) -> None:
    scans = "\n".join([
        f"https://id.example.com/01/{G}/10/LOT1/21/I00006",
        f"https://id.example.com/01/{G}/21/I00099X3",  # no such code: counted, the pack then refuses it
        "CANCEL",
        f"https://id.example.com/01/{G}/10/LOT1/21/I00006",
        "https://id.example.com/01/09506000134353/21/I00007",  # bad check digit: not taken
        f"(01){G}(10)LOT1(21)I00007",
        "B00003",
        "urn:epc:id:sgtin:9506000.013435.I00008",
        f"]d201{G}10LOT1\x1d21I00009",
        "urn:lineagent:code:B00004",
    ]) + "\n"
    code, out, shown = run("scan", "box", "--job", "J1", *line, stdin=scans)
    assert code == 0, shown
    assert "not taken: (01) 09506000134353 has check digit 3" in shown
    assert "packed box B00003 with 2 item" in out and "packed box B00004 with 2 item" in out
    assert "2 packed, 0 rejected" in out
    code, out, _shown = run("pack", "show", "B00003", *line)
    assert "I00006, I00007" in out


def test_pack_actions_and_codes_show_take_printed_forms(line: list[str]) -> None:
    code, out, shown = run("codes", "show", f"(01){G}(21)I00001", "--json", *line)
    assert code == 0, shown
    facts = json.loads(out)
    assert (facts["code"], facts["gtin"], facts["level"], facts["state"], facts["parent"], facts["job_lot"]) == \
        ("I00001", G, "item", "verified", "B00000", "LOT1")
    code, out, shown = run("pack", "park", f"(00){OPEN_SSCC}", *line)
    assert code == 0 and f"parked {OPEN_SSCC}" in out, shown
    code, out, shown = run("pack", "show", f"https://id.example.com/00/{OPEN_SSCC}", *line)
    assert code == 0 and "parked" in out and "0 of 1" in out, shown
    code, out, shown = run("pack", "resume", "urn:epc:id:sscc:0614141.0000000001", *line)
    assert code == 0 and f"resumed {OPEN_SSCC}" in out, shown
    code, out, shown = run("pack", "close", f"]C100{OPEN_SSCC}", "--partial", "--reason", "test", "--pin", PIN, *line)
    assert code == 1 and "an empty pack cannot close" in shown, shown


@pytest.mark.parametrize(("form", "exit_code", "words"), [
    ("https://id.example.com/01/09506000134353/21/I00001", 1, "check digit 3"),
    ("(01)04006381333931(21)I00001", 1, f"is GTIN {G} (job J1)"),
    (f"(01){G}(10)LOT9(21)I00001", 1, "of lot LOT1"),
    (f"(01){G}(22)X(21)I00001", 0, "item I00001"),
    (f"(01){G}(21)NOPE", 4, f"read as GTIN {G} serial NOPE"),
    ("(00)106141412345678909", 1, "check digit 9"),
    ("(23)X", 1, "unknown GS1 application identifier"),
])
def test_refusals_through_the_cli(line: list[str], form: str, exit_code: int, words: str) -> None:
    for args in (("trace", form), ("pack", "show", form), ("sync", "status", "--code", form)):
        code, _out, shown = run(*args, *line)
        if args[0] == "pack" and exit_code == 0:
            assert code == 4 and "is not a pack" in shown  # a bottle is read, but it is no pack
            continue
        assert code == exit_code, (args, shown)
        if args[0] == "trace":
            assert words in shown, shown


def test_refusals_in_chinese(line: list[str], tmp_path: Path) -> None:
    path = Path(line[1])
    doc = yaml.safe_load(path.read_text())
    doc["locale"] = "zh_CN"
    zh = tmp_path / "line.yaml"
    zh.write_text(yaml.safe_dump(doc))
    (tmp_path / "keys").symlink_to(path.parent / "keys")
    db = ["--db", str(path.parent / "ledger.db")]
    try:
        code, _out, shown = run("trace", "(00)106141412345678909", "--config", str(zh), *db)
        assert code == 1 and "校验位是 9" in shown, shown
        code, _out, shown = run("trace", f"(01){G}(21)NOPE", "--config", str(zh), *db)
        assert code == 4 and "不在本台账中" in shown and "序列号 NOPE" in shown, shown
    finally:
        i18n.set_language()  # the config's language stays set in this process: give the next test its own
