"""Print regions live with the config (agent/config/regions.py); re-exported for the verify code."""

from agent.config.regions import Region

__all__ = ["Region"]
