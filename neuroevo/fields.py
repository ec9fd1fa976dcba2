"""The field types the config schema is made of: whole numbers, [min, max] ranges, lists of choices. A leaf, so
that each search space's config section (space/<name>.py) and the run's other sections (config/schema.py) share
them."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field

from neuroevo.errors import ConfigError

# Every float key finite: a NaN or infinite weight, scale or rate would only show up as NaN fitness much later.
STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

T = TypeVar("T")
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
IntRange = tuple[PositiveInt, PositiveInt]
CountRange = tuple[NonNegativeInt, NonNegativeInt]
UnitRange = tuple[Annotated[float, Field(gt=0, lt=1)], Annotated[float, Field(gt=0, lt=1)]]
LrRange = tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
MomentumRange = tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]]
Choices = Annotated[tuple[T, ...], Field(min_length=1)]  # a non-empty list to draw from uniformly


def check_ranges(s: Any, names: tuple[str, ...]) -> None:
    """Each [min, max] key of `s` named in `names` has min <= max."""
    for name in names:
        lo, hi = getattr(s, name)
        if lo > hi:
            raise ConfigError(f"space.{name}: min {lo} is greater than max {hi}")
