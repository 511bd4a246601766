"""The strict base every config section (agent or driver) uses: unknown keys are refused, never ignored."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
