"""Texts that reach the operator from elsewhere: the daemon's and the jobs' English refusals, and the
`lineagent top` screen, in Chinese.

Why these checks: a refusal is English on the wire and in the audit, and the CLI translates it by
matching the text against its template; a template changed at the source without the matcher would
silently show English. The top screen must still fit 80x24 when every label is two cells wide.
"""

from __future__ import annotations

import io
import string
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from agent import i18n
from agent.cli.refusals import refusal
from agent.cli.top_source import collect
from agent.cli.top_view import Rates, render
from agent.control import protocol
from agent.jobs import REFUSALS as JOB_REFUSALS
from agent.jobs import JobError, JobSpec, create_job, finish_job, start_job
from agent.ledger import Ledger
from tests.cli.test_top import build

TEMPLATES = (*protocol.REFUSALS, *JOB_REFUSALS)


@pytest.fixture
def chinese() -> object:
    i18n.set_language("zh_CN")
    yield
    i18n.set_language()


def sample(template: str) -> dict[str, object]:
    """Values as the daemon would pass them; names with a space or a quote, as job names may have."""
    return {name: f"WO {i}'s" if conv == "r" else f"v{i}"
            for i, (_lit, name, _spec, conv) in enumerate(string.Formatter().parse(template)) if name}


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_refusal_template_comes_back_translated(template: str, chinese: object) -> None:
    values = sample(template)
    english = template.format(**values)
    shown = refusal(english)
    assert shown == i18n._(template).format(**values), (english, shown)
    assert shown != english  # translated, with the same values in it
    i18n.set_language("en")
    assert refusal(english) == english


def test_the_most_specific_template_wins(chinese: object) -> None:
    assert refusal(protocol.ALREADY_ENDING.format(job="A", end="stop")) == "工单 'A' 已在结束中（stop）"
    assert refusal(protocol.OTHER_RUNNING.format(job="A", other="B")).startswith("无法开始 'A'：本产线正在运行工单 'B'")


def test_a_text_no_template_knows_is_shown_as_it_came(chinese: object) -> None:
    assert refusal("the PLC caught fire") == "the PLC caught fire"
    assert refusal(protocol.NOT_AN_OBJECT) == protocol.NOT_AN_OBJECT


def test_a_real_job_refusal_names_the_states_in_chinese(tmp_path: Path, chinese: object) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        job = create_job(ledger, JobSpec(name="WO-9", gtin="09506000134352", product_name="Water", lot="L1",
                                         target_qty=5))
        finish_job(ledger, job)
        with pytest.raises(JobError) as raised:
            start_job(ledger, job)
    finally:
        ledger.close()
    assert str(raised.value) == "job 'WO-9' is finished; it cannot go to running"  # the audit's English
    assert refusal(str(raised.value)) == "工单 'WO-9' 处于“已完成”状态，不能转为“运行中”"


def test_top_speaks_chinese_and_still_fits_80x24(tmp_path: Path, chinese: object) -> None:
    db = build(tmp_path, time.time())
    buf = io.StringIO()
    Console(file=buf, width=80, height=24, force_terminal=False).print(
        render(collect(db), Rates(), 80, 24, ledger=db, interval=1.0))
    rows = buf.getvalue().splitlines()
    screen = "\n".join(rows)
    assert len(rows) <= 24 and all(cell_len(r) <= 80 for r in rows), screen
    for label in ("守护进程运行中", "三色灯", "工单", "件/分钟", "读码率", "剔除", "喷码机", "同步",
                  "按 q 或 Ctrl-C 退出", "已运行 1 小时 02 分", "黄灯", "停线"):
        assert label in screen, (label, screen)
    for english in ("daemon alive", "items/min", "read rate", "undelivered", "quits", "AMBER"):
        assert english not in screen, (english, screen)
