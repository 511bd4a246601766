"""Line config: YAML validated by pydantic, unknown keys refused, errors with file, line and key.

The names below load lazily (PEP 562) so that importing agent.config does not load the root model and,
through the driver registry, every driver's settings. The strict base and the YAML loader live in the
leaf package confkit, which drivers use too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config.load import default_config_path, load_config
    from agent.config.model import LineConfig
    from confkit.loader import ConfigError, ConfigIssue

__all__ = ["ConfigError", "ConfigIssue", "LineConfig", "default_config_path", "load_config"]

_WHERE = {
    "ConfigError": "confkit.loader",
    "ConfigIssue": "confkit.loader",
    "LineConfig": "agent.config.model",
    "default_config_path": "agent.config.load",
    "load_config": "agent.config.load",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'agent.config' has no attribute {name!r}")
