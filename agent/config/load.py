"""load_config: parse, validate every section and every device against its driver, cross-check refs.

Every check runs even when an earlier one failed, so a technician sees every problem of the file in
one go; cross-checks work on the raw data for that reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError

from agent.codes.package import KeyFileError, load_private, load_verify_key
from agent.config.model import LineConfig
from confkit.loader import ConfigError, ConfigIssue, Loc, issues_from, line_of, read_yaml
from drivers import registry

DEVICE_GROUPS = ("coders", "cameras", "readers", "plcs", "label_printers")
STATION_KEYS = {"coder": "coders", "camera": "cameras", "reader": "readers", "plc": "plcs",
                "label_printer": "label_printers"}


def default_config_path() -> Path:
    return Path(os.environ.get("LINEAGENT_CONFIG", "/etc/lineagent/line.yaml"))


def _d(loc: Loc) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _load_line_key(path: Path) -> None:
    if not isinstance(load_private(path), X25519PrivateKey):
        raise KeyFileError(f"{path} is not an X25519 private key (lineagent keys generate --kind x25519)")


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def load_config(path: str | Path) -> LineConfig:
    """Load and fully validate a line config; raises ConfigError listing every problem found."""
    path = Path(path)
    name = str(path)
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(name, 1, "", "the file must be a YAML mapping of sections")])
    issues: list[ConfigIssue] = []

    def issue(loc: Loc, message: str) -> None:
        issues.append(ConfigIssue(name, line_of(lines, loc), _d(loc), message))

    cfg: LineConfig | None = None
    try:
        cfg = LineConfig.model_validate(data)
    except ValidationError as exc:
        issues.extend(issues_from(exc, name, lines))

    # Each device's options against its driver's own Settings model.
    settings: dict[tuple[str, str], Any] = {}
    devices = _dict(data.get("devices"))
    for group in DEVICE_GROUPS:
        kind = registry.DeviceKind(group)
        for dev_name, entry in _dict(devices.get(group)).items():
            loc: Loc = ("devices", group, dev_name)
            if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                continue  # the model validation above reported it
            try:
                model = registry.settings_model(kind, entry["type"])
            except registry.UnknownDriver as exc:
                issue((*loc, "type"), str(exc))
                continue
            except ImportError as exc:
                issue((*loc, "type"), f"driver {entry['type']!r} cannot be loaded: {exc}")
                continue
            options = {k: v for k, v in entry.items() if k != "type"}
            try:
                settings[(group, dev_name)] = model.model_validate(options)
            except ValidationError as exc:
                issues.extend(issues_from(exc, name, lines, loc))

    # Cross-references: names used in one section must exist in another.
    for st_name, st in _dict(data.get("stations")).items():
        for key, group in STATION_KEYS.items():
            ref = _dict(st).get(key)
            if isinstance(ref, str) and ref not in _dict(devices.get(group)):
                issue(("stations", st_name, key), f"no device {ref!r} under devices.{group}")
    templates = _dict(data.get("templates")) if "templates" in data else {"raw": {}}
    for p_name, product in _dict(data.get("products")).items():
        tpl = _dict(product).get("template", "raw")
        if isinstance(tpl, str) and tpl not in templates:
            issue(("products", p_name, "template"), f"no template {tpl!r} under templates")
    sources = _dict(data.get("code_sources"))
    levels = _dict(sources.get("levels")) if "levels" in sources else {"item": {}}
    for spec_name, spec in _dict(data.get("packing_specs")).items():
        spec_levels = _dict(spec).get("levels")
        for i, raw_level in enumerate(spec_levels if isinstance(spec_levels, list) else []):
            lv = _dict(raw_level)
            if lv.get("parent_code") == "mint":
                if not sources.get("sscc"):
                    issue(("packing_specs", spec_name, "levels", i, "parent_code"),
                          "minted parent codes need code_sources.sscc")
            elif isinstance(lv.get("level"), str) and lv["level"] not in levels:
                issue(("packing_specs", spec_name, "levels", i, "level"),
                      f"level {lv['level']!r} is not under code_sources.levels")
    for where, why in _unnamed_codes(data, templates, levels):
        issue(where, why)
    here = path.resolve().parent
    security = _dict(data.get("security"))
    for key, loader in (("cloud_public_key", load_verify_key), ("line_private_key", _load_line_key)):
        key_file = security.get(key)
        if not isinstance(key_file, str):
            continue
        key_path = Path(key_file) if Path(key_file).is_absolute() else here / key_file
        if not key_path.is_file():
            issue(("security", key), f"no such file: {key_path}")
            continue
        try:
            loader(key_path)
        except KeyFileError as exc:
            issue(("security", key), str(exc))
    for lp_name, entry in _dict(devices.get("label_printers")).items():
        tpl = _dict(entry).get("template")
        if isinstance(tpl, str):
            tpl_path = Path(tpl) if Path(tpl).is_absolute() else here / tpl
            if not tpl_path.is_file():
                issue(("devices", "label_printers", lp_name, "template"), f"no such label template: {tpl_path}")

    if issues or cfg is None:
        issues.sort(key=lambda i: (i.line or 0, i.key))
        raise ConfigError(issues)
    cfg.source = path.resolve()
    cfg._settings.update(settings)
    return cfg


GS1_FORMATS = ("sscc", "digital_link", "element_string")


def _unnamed_codes(data: dict[str, Any], templates: dict[str, Any], levels: dict[str, Any]
                   ) -> list[tuple[tuple[str | int, ...], str]]:
    """Where the config makes codes that are no GS1 key and no URI while identity.code_namespace is
    unset: their events could not name them (agent/epcis/identity.py), so the config is refused now
    rather than every such item rejected later."""
    if _dict(data.get("identity")).get("code_namespace"):
        return []
    out: list[tuple[tuple[str | int, ...], str]] = []
    for p_name, product in _dict(data.get("products")).items():
        tpl = _dict(product).get("template", "raw")
        if isinstance(tpl, str) and tpl in templates and _dict(templates[tpl]).get("kind", "raw") == "raw":
            out.append((("products", p_name, "template"),
                        f"template {tpl!r} prints raw codes; events name them under identity.code_namespace, "
                        "which is not set"))
    for spec_name, spec in _dict(data.get("packing_specs")).items():
        spec_levels = _dict(spec).get("levels")
        for i, raw_level in enumerate(spec_levels if isinstance(spec_levels, list) else []):
            lv = _dict(raw_level)
            name = lv.get("level")
            if lv.get("parent_code") not in ("print", "preprinted") or not isinstance(name, str):
                continue
            source = _dict(levels.get(name))
            if not source.get("gtin") and source.get("code_format", "raw") not in (*GS1_FORMATS, "url"):
                out.append((("packing_specs", spec_name, "levels", i, "level"),
                            f"{name} codes are no GS1 key (code_sources.levels.{name} has no gtin); set that "
                            "gtin, or identity.code_namespace to name them in events"))
    return out
