"""Parameter models shared by every pipeline."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel", "RunSettings"]


class StrictModel(BaseModel):
    """Base of every parameter block: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class RunSettings(StrictModel):
    """``params:run``: what identifies this run's model setting.

    Attributes:
        setting: name of the model setting (= Kedro env name for the paper settings).
        layer: decoder block whose output is read and steered.
        seed: the run seed (data selection, imbalance sample, bootstrap, generation seeds).
    """

    setting: str
    layer: int
    seed: int = 42
