"""Validation of data config fields: each bad value is a ValueError naming the field."""

import math
import numbers

import numpy as np

SPLITS = ("train", "val", "test")
FRACTION_FIELDS = ("train_fraction", "val_fraction", "test_fraction")  # One per split.


def field(config, name: str):
    """`config[name]` of a ConfigDict or dict; a missing field is a ValueError naming it."""
    try:
        return config[name]
    except (KeyError, AttributeError) as e:
        raise ValueError(f"data config is missing the field {name!r}") from e


def int_field(config, name: str, low: int) -> int:
    """An integer field >= `low`, as a Python int."""
    value = field(config, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r}: must be an integer >= {low}")
    return int(value)


def bool_field(config, name: str) -> bool:
    """A boolean field, as a Python bool."""
    value = field(config, name)
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}={value!r}: must be True or False")
    return bool(value)


def positive_field(config, name: str) -> int | float:
    """A finite number > 0 (an int stays an int, so manifests keep the value's type)."""
    value = field(config, name)
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name}={value!r}: must be a finite number > 0")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def zero_pad_id(config, why: str) -> int:
    """The pad id, which must be 0 (`why`: which values the task's real tokens take)."""
    pad_id = field(config, "pad_id")
    if isinstance(pad_id, bool) or not isinstance(pad_id, numbers.Integral) or pad_id != 0:
        raise ValueError(
            f"pad_id={pad_id!r}: the only legal value is 0 (the pad must be a vocabulary index "
            f"that no real target takes, and {why})"
        )
    return 0


def check_fractions(fractions) -> tuple[float, float, float]:
    """The (train, val, test) fractions as floats, after checking each in [0, 1] and sum 1."""
    fractions = tuple(float(f) for f in fractions)
    names = ", ".join(f"{n}={f}" for n, f in zip(FRACTION_FIELDS, fractions, strict=True))
    if any(not 0 <= f <= 1 for f in fractions) or not math.isclose(sum(fractions), 1, abs_tol=1e-9):
        raise ValueError(f"split fractions ({names}) must each lie in [0, 1] and sum to 1")
    return fractions


def config_fractions(config) -> tuple[float, float, float]:
    """The config's (train_fraction, val_fraction, test_fraction), unchecked."""
    return tuple(float(field(config, name)) for name in FRACTION_FIELDS)
