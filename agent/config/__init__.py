"""Line config: YAML validated by pydantic, unknown keys refused, errors with file, line and key.

The names below load lazily (PEP 562) so that `agent.config.base`, which other packages' settings
models build on, can be imported without pulling in the root model, which in turn imports those
packages' settings (a cycle otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config.load import default_config_path, load_config
    from agent.config.loader import ConfigError, ConfigIssue
    from agent.config.model import LineConfig

__all__ = ["ConfigError", "ConfigIssue", "LineConfig", "default_config_path", "load_config"]

_WHERE = {
    "ConfigError": "agent.config.loader",
    "ConfigIssue": "agent.config.loader",
    "LineConfig": "agent.config.model",
    "default_config_path": "agent.config.load",
    "load_config": "agent.config.load",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'agent.config' has no attribute {name!r}")
