"""The shipped catalogues: complete, in step with the code, compiled, and used by a real CLI run.

Why these checks and not a translation review: a string added to the code without a catalogue
update, a placeholder a translator dropped, or a .mo left stale all pass silently at runtime (the
English text or a KeyError shows up on the line PC, not in CI).
"""

from __future__ import annotations

import io
import os
import re
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from agent import i18n
from agent.verify.grade import INDICATIVE
from tests.helpers import make_line

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "agent" / "locale"
LANGUAGES = ("en", "zh_CN")
MARKUP = re.compile(r"\[/?[a-z][a-z ]*\]|\[/\]")


def po(lang: str) -> Catalog:
    with (LOCALES / lang / "LC_MESSAGES" / "lineagent.po").open("rb") as f:
        return read_po(f, locale=lang)


Key = tuple[str | None, str]  # (context, msgid)


def keys(catalog: Catalog) -> set[Key]:
    return {(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in catalog if m.id}


def code_messages() -> set[Key]:
    """What `pybabel extract -F babel.cfg` finds, extracted here so the test needs no committed .pot."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: set[Key] = set()
    for _file, _line, message, _comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=DEFAULT_KEYWORDS):  # _, N_, ngettext, pgettext, ...
        found.add((context, message if isinstance(message, str) else message[0]))
    return found


def code_msgids() -> set[str]:
    return {msgid for _context, msgid in code_messages()}


def test_the_code_marks_messages() -> None:
    ids = code_msgids()
    assert len(ids) > 250  # the CLI and the alarms; a broken babel.cfg would find none
    assert "no ledger at {path}" in ids


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_of_the_code_is_in_the_catalogue_and_nothing_stale(lang: str) -> None:
    in_po = keys(po(lang))
    ids = code_messages()
    assert sorted(ids - in_po) == [], f"run the catalogue update in docs/development.md ({lang})"
    assert sorted(in_po - ids) == [], f"obsolete messages in {lang}: run the catalogue update"


def test_the_template_is_in_step_with_the_code() -> None:
    with (LOCALES / "lineagent.pot").open("rb") as f:
        pot = keys(read_po(f))
    assert pot == code_messages()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_catalogue_is_complete_and_not_fuzzy(lang: str) -> None:
    """zh_CN: every entry translated; en: every entry filled (the msgid, or better English wording)."""
    catalog = po(lang)
    assert not catalog.fuzzy
    empty = [m.id for m in catalog if m.id and not m.string]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert empty == [] and fuzzy == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_committed_mo_is_a_fresh_compile_of_the_po(lang: str) -> None:
    fresh = io.BytesIO()
    write_mo(fresh, po(lang))  # what `pybabel compile` writes
    committed = (LOCALES / lang / "LC_MESSAGES" / "lineagent.mo").read_bytes()
    assert committed == fresh.getvalue(), f"{lang}: .mo is stale, run pybabel compile (docs/development.md)"


def fields(text: str) -> Counter[tuple[str, str, str]]:
    """The named placeholders with their conversion and format spec: what .format() will be given."""
    return Counter((name, conv or "", spec or "") for _lit, name, spec, conv in string.Formatter().parse(text)
                   if name is not None)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_translation_keeps_the_placeholders_and_markup(lang: str) -> None:
    for m in po(lang):
        if not m.id or not m.string:
            continue
        assert isinstance(m.id, str) and isinstance(m.string, str)
        assert fields(m.string) == fields(m.id), (m.id, m.string)
        assert sorted(MARKUP.findall(m.string)) == sorted(MARKUP.findall(m.id)), (m.id, m.string)
        # And the translation really formats with what the code passes.
        m.string.format(**{name: 0 if spec else "x" for name, _c, spec in fields(m.id)})


def test_the_grades_sentence_says_what_the_grader_says() -> None:
    assert (f"Grades are {INDICATIVE}." in code_msgids())


@pytest.mark.parametrize(("env", "want"), [
    ({"LANG": "zh_CN.UTF-8"}, "zh_CN"),
    ({"LANG": "C"}, "en"),
    ({"LANG": "fr_FR.UTF-8"}, "en"),  # not shipped: English
    ({"LANG": "en_US.UTF-8", "LC_ALL": "zh_CN.GB18030"}, "zh_CN"),  # LC_ALL before LANG
    ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "zh_CN"),
    ({"LANG": "en_US.UTF-8", "LANGUAGE": "fr:zh_CN:en"}, "zh_CN"),  # LANGUAGE first, a list
    ({"LANG": "C", "LANGUAGE": "zh_CN"}, "en"),  # GNU gettext: LANGUAGE ignored in the C locale
    ({}, "en"),
])
def test_the_environment_chooses_the_language_in_gettext_order(env: dict[str, str], want: str) -> None:
    assert i18n.env_language(env) == want


def test_the_language_is_chosen_at_call_time() -> None:
    try:
        assert i18n.set_language("zh_CN") == "zh_CN"
        assert i18n._("no ledger at {path}").format(path="x.db") == "x.db 没有台账"
        assert i18n.set_language("en") == "en"
        assert i18n._("no ledger at {path}").format(path="x.db") == "no ledger at x.db"
    finally:
        i18n.set_language()


def cli(*args: str, lang: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A real `lineagent` process: the catalogue comes from disk and the language from its env."""
    full = {k: v for k, v in os.environ.items()
            if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "LINEAGENT_CONFIG")}
    full.update(LANG=lang, PYTHONPATH=str(ROOT), COLUMNS="200", **(env or {}))
    return subprocess.run([sys.executable, "-c", "from agent.cli.main import main; main()", *args],
                          env=full, capture_output=True, text=True, encoding="utf-8", timeout=120, check=False)


def test_a_cli_run_speaks_chinese_under_a_chinese_lang(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.db")
    zh = cli("job", "list", "--db", missing, lang="zh_CN.UTF-8")
    assert zh.returncode == 4
    assert f"{missing} 没有台账" in zh.stderr and "错误" in zh.stderr
    en = cli("job", "list", "--db", missing, lang="C")
    assert en.returncode == 4
    assert f"error: no ledger at {missing}" in en.stderr


def test_the_config_locale_wins_over_lang(tmp_path: Path) -> None:
    cfg = make_line(tmp_path)
    with cfg.open("a") as f:
        f.write("locale: zh_CN\n")
    checked = cli("config", "check", str(cfg), lang="C")
    assert checked.returncode == 0, checked.stderr
    assert "正常 — 工厂" in checked.stdout and "台账" in checked.stdout
    missing = str(tmp_path / "missing.db")
    listed = cli("job", "list", "--config", str(cfg), "--db", missing, lang="C")
    assert listed.returncode == 4 and "没有台账" in listed.stderr


def test_a_config_locale_we_do_not_ship_is_refused(tmp_path: Path) -> None:
    cfg = make_line(tmp_path)
    with cfg.open("a") as f:
        f.write("locale: fr_FR\n")
    checked = cli("config", "check", str(cfg), lang="C")
    assert checked.returncode == 1 and "locale" in checked.stderr


def test_alarms_and_states_reach_the_operator_in_their_language() -> None:
    from agent.cli.common import state_name
    from agent.config.mqtt import MqttConfig
    from agent.line.alarms import alarm_name, light_name
    from agent.sync.backlog import assess
    from agent.verify.rejects import RejectBook

    cfg = MqttConfig(backlog_warn_events=100, backlog_stop_events=1000, min_free_disk_mb=50)
    book = RejectBook(gate_at=5, confirm_margin=2, max_consecutive=1)
    try:
        i18n.set_language("zh_CN")
        assert assess(2000, 10_000, cfg).message.startswith("产线已停止：2,000 条事件等待上传云端")
        alarm = book.verdict(7, rejected=True)
        assert alarm is not None and alarm.message.startswith("连续剔除 1 个（上限 1），最后序号 7")
        assert (alarm_name("reject_unconfirmed"), light_name("red")) == ("剔除未确认", "红灯")
        assert (state_name("running"), state_name("closed")) == ("运行中", "已关闭")
        assert i18n.pgettext("time", "closed") == "关闭时间"  # the same English word, another meaning
        assert alarm_name("some_new_key") == "some_new_key"  # shown as it is until it is named
        i18n.set_language("en")
        assert assess(2000, 10_000, cfg).message.startswith("Line stopped: 2,000 events wait")
        assert state_name("running") == "running" and i18n.pgettext("time", "closed") == "closed"
    finally:
        i18n.set_language()


def test_help_follows_the_default_configs_locale(tmp_path: Path) -> None:
    """Help is built before any command reads its config: the default config's `locale:` decides it."""
    cfg = make_line(tmp_path)
    with cfg.open("a") as f:
        f.write("locale: zh_CN\n")
    env = {"LINEAGENT_CONFIG": str(cfg)}
    shown = cli("job", "--help", lang="C", env=env)
    assert shown.returncode == 0 and "工单：创建、开始、暂停、停止、完成、列表。" in shown.stdout
    assert "Work orders: create" in cli("job", "--help", lang="C").stdout


def test_the_package_data_ships_the_compiled_catalogues() -> None:
    """scripts/install installs non-editable: the .mo must be package data, or the line PC is English only."""
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["agent"]
    shipped = {p for pattern in patterns for p in (ROOT / "agent").glob(pattern)}
    for lang in LANGUAGES:
        assert LOCALES / lang / "LC_MESSAGES" / "lineagent.mo" in shipped
