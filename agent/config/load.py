"""load_config: parse, validate every section and every device against its driver, cross-check refs."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from agent.config.loader import ConfigError, ConfigIssue, issues_from, line_of, read_yaml, validate
from agent.config.model import LineConfig
from drivers import registry


def default_config_path() -> Path:
    return Path(os.environ.get("LINEAGENT_CONFIG", "/etc/lineagent/line.yaml"))


def load_config(path: str | Path) -> LineConfig:
    """Load and fully validate a line config; raises ConfigError listing every problem found."""
    path = Path(path)
    name = str(path)
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(name, 1, "", "the file must be a YAML mapping of sections")])
    cfg: LineConfig = validate(LineConfig, data, name, lines)
    cfg.source = path.resolve()
    issues: list[ConfigIssue] = []

    # Phase 2: each device's options against its driver's own Settings model.
    for group in ("coders", "cameras", "readers", "plcs", "label_printers"):
        kind = registry.DeviceKind(group)
        for dev_name, entry in getattr(cfg.devices, group).items():
            loc = ("devices", group, dev_name)
            try:
                model = registry.settings_model(kind, entry.type)
            except registry.UnknownDriver as exc:
                issues.append(ConfigIssue(name, line_of(lines, (*loc, "type")), _d(*loc, "type"), str(exc)))
                continue
            except ImportError as exc:
                issues.append(
                    ConfigIssue(name, line_of(lines, (*loc, "type")), _d(*loc, "type"),
                                f"driver {entry.type!r} cannot be loaded: {exc}")
                )
                continue
            try:
                cfg._settings[(group, dev_name)] = model.model_validate(entry.options())
            except ValidationError as exc:
                issues.extend(issues_from(exc, name, lines, loc))

    # Cross-references: names used in one section must exist in another.
    for st_name, st in cfg.stations.items():
        for group, ref in st.device_refs().items():
            if ref not in getattr(cfg.devices, group):
                key = {"coders": "coder", "cameras": "camera", "readers": "reader", "plcs": "plc",
                       "label_printers": "label_printer"}[group]
                loc = ("stations", st_name, key)
                issues.append(ConfigIssue(name, line_of(lines, loc), _d(*loc),
                                          f"no device {ref!r} under devices.{group}"))
    for p_name, product in cfg.products.items():
        if product.template not in cfg.templates:
            loc = ("products", p_name, "template")
            issues.append(ConfigIssue(name, line_of(lines, loc), _d(*loc),
                                      f"no template {product.template!r} under templates"))
    for spec_name, spec in cfg.packing_specs.items():
        for i, lv in enumerate(spec.levels):
            if lv.level not in cfg.code_sources.levels and lv.parent_code != "mint":
                loc = ("packing_specs", spec_name, "levels", i, "level")
                issues.append(ConfigIssue(name, line_of(lines, loc), _d(*loc),
                                          f"level {lv.level!r} is not under code_sources.levels"))
            if lv.parent_code == "mint" and cfg.code_sources.sscc is None:
                loc = ("packing_specs", spec_name, "levels", i, "parent_code")
                issues.append(ConfigIssue(name, line_of(lines, loc), _d(*loc),
                                          "minted parent codes need code_sources.sscc"))
    key_path = cfg.resolve(cfg.security.cloud_public_key)
    if not key_path.is_file():
        loc = ("security", "cloud_public_key")
        issues.append(ConfigIssue(name, line_of(lines, loc), _d(*loc), f"no such file: {key_path}"))
    if issues:
        raise ConfigError(issues)
    return cfg


def _d(*parts: str | int) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
