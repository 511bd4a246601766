"""Line configs: the examples are valid; every error names file, line and key, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.codes.package import generate_keys
from agent.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.site.id and cfg.line.id


def _errors(tmp_path: Path, text: str) -> list[str]:
    if not (tmp_path / "pub.pem").exists():
        generate_keys(tmp_path / "k", kind="ed25519")
        (tmp_path / "pub.pem").write_bytes((tmp_path / "k" / "public.pem").read_bytes())
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


# ---- what an attacker or a slip of the keyboard puts in a config (each refused with file and line) ----

def test_a_key_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    generate_keys(tmp_path / "x", kind="x25519")
    errors = _errors(tmp_path, "site: {id: s}\nline: {id: L1}\nsecurity:\n  cloud_public_key: x/public.pem\n"
                     "  line_private_key: k/private.pem\n")
    joined = "\n".join(errors)
    assert ":4: security.cloud_public_key:" in joined and "is not an Ed25519 public key" in joined
    assert ":5: security.line_private_key:" in joined and "is not an X25519 private key" in joined


def test_two_plc_signals_on_one_coil_are_refused(tmp_path: Path) -> None:
    errors = _errors(tmp_path, BASE + "devices:\n  plcs:\n    plc1:\n      type: modbus\n"
                     "      url: tcp://127.0.0.1:502\n      registers:\n"
                     "        line_run: {table: coil, address: 0}\n        light_red: {table: coil, address: 0}\n"
                     "        counter: {table: input, address: 0}\n        reject_fire: {table: holding, address: 0}\n"
                     "        reject_confirm: {table: input, address: 1}\n")
    assert any("line_run and light_red are both on coil 0" in e for e in errors), errors


def test_a_missing_label_template_is_refused(tmp_path: Path) -> None:
    errors = _errors(tmp_path, BASE + "devices:\n  label_printers:\n    z1: {type: zpl, url: 'tcp://127.0.0.1:9100', "
                     "template: labels/none.zpl}\n")
    assert any(":6: devices.label_printers.z1.template: no such label template" in e for e in errors), errors


def test_an_absurd_count_is_refused(tmp_path: Path) -> None:
    errors = _errors(tmp_path, BASE + "code_sources: {levels: {item: {}, box: {}}}\npacking_specs:\n  s:\n"
                     "    levels:\n      - {level: item}\n      - {level: box, count: 1000000000000000000000000000000, "
                     "parent_code: print}\n")
    assert any("packing_specs.s.levels[1].count: Input should be less than or equal to 100000" in e
               for e in errors), errors


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}]" for i in range(1, 10)]
    errors = _errors(tmp_path, BASE + "\n".join(lines) + "\n")
    assert any("expands to more than 200,000 values" in e for e in errors), errors


def test_a_config_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "line.yaml"
    p.write_bytes(b"site: {id: s}\nline: {id: L1}\n# \xd6\xd0\xce\xc4 GBK comment\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "line.yaml:3:" in str(err.value) and "not UTF-8" in str(err.value)
