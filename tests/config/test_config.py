"""Line configs: the examples are valid; every error names file, line and key, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.site.id and cfg.line.id


def _errors(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "pub.pem").write_text("x")
    p = tmp_path / "line.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    return [str(i) for i in err.value.issues]


BASE = "site: {id: s}\nline: {id: L1}\nsecurity: {cloud_public_key: pub.pem}\n"


def test_every_error_is_reported_with_file_line_and_key(tmp_path: Path) -> None:
    errors = _errors(tmp_path, BASE + "storage:\n  ledger: x.db\n  grup_commit_ms: 5\nproducts:\n"
                     "  p: {gtin: '09506000134353', name: x, template: nope}\n"
                     "stations:\n  s1: {type: verify, camera: cam9}\n"
                     "devices:\n  coders:\n    c1: {type: nosuch}\n")
    f = str(tmp_path / "line.yaml")
    assert f"{f}:6: storage.grup_commit_ms: unknown key" in errors[0]
    assert any(e.startswith(f"{f}:8: products.p.gtin: GTIN '09506000134353' has check digit 3") for e in errors)
    assert any(e.startswith(f"{f}:8: products.p.template: no template 'nope'") for e in errors)
    assert any(e.startswith(f"{f}:10: stations.s1.camera: no device 'cam9'") for e in errors)
    assert any(e.startswith(f"{f}:13: devices.coders.c1.type: no coder driver named 'nosuch'") for e in errors)
    assert len(errors) == 5


def test_missing_section_and_bad_values(tmp_path: Path) -> None:
    errors = _errors(tmp_path, "site: {id: s}\nline: {id: 'L 1', utc_offset: '8'}\n")
    joined = "\n".join(errors)
    assert "security: required key is missing" in joined
    assert "line.id: String should match pattern" in joined
    assert "line.utc_offset: must look like +08:00" in joined


def test_packing_spec_rules(tmp_path: Path) -> None:
    errors = _errors(tmp_path, BASE + "packing_specs:\n  s:\n    levels:\n      - {level: item}\n"
                     "      - {level: crate, count: 6, parent_code: print}\n"
                     "      - {level: pallet, count: 2, parent_code: mint}\n")
    joined = "\n".join(errors)
    assert "packing_specs.s.levels[1].level: level 'crate' is not under code_sources.levels" in joined
    assert "packing_specs.s.levels[2].parent_code: minted parent codes need code_sources.sscc" in joined


def test_yaml_syntax_error_and_duplicate_key_have_lines(tmp_path: Path) -> None:
    err = _errors(tmp_path, "site: {id: s}\nline: [unclosed\n")[0]
    assert "YAML syntax" in err and "flow sequence started on line 2" in err
    dup = _errors(tmp_path, BASE + "storage: {}\nstorage: {}\n")
    assert ":5: storage: duplicate key" in dup[0]


def test_missing_key_file(tmp_path: Path) -> None:
    p = tmp_path / "line.yaml"
    p.write_text("site: {id: s}\nline: {id: L1}\nsecurity: {cloud_public_key: keys/none.pem}\n")
    with pytest.raises(ConfigError, match=r"line.yaml:3: security.cloud_public_key: no such file"):
        load_config(p)
