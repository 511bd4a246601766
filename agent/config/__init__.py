"""Line config: YAML validated by pydantic, unknown keys refused, errors with file, line and key."""

from agent.config.load import default_config_path, load_config
from agent.config.loader import ConfigError, ConfigIssue
from agent.config.model import LineConfig

__all__ = ["ConfigError", "ConfigIssue", "LineConfig", "default_config_path", "load_config"]
