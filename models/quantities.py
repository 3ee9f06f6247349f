"""Parse physical quantities written as text ("20 ms", "250 Hz") into Brian2 quantities.

Protocol files and ``--set key=value`` overrides carry values as text; this module is the one place
that turns such text into a `brian2.Quantity` and checks its dimensions, so that a unit mistake is
reported when a spec is built, not in the middle of a run.
"""
from __future__ import annotations

import math
import re

import brian2
from brian2 import Quantity
from brian2.units.fundamentalunits import DIMENSIONLESS, DimensionMismatchError, Unit

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z_][A-Za-z_0-9]*)?\s*$")


# SI symbols Brian2 spells out in full.
_ALIASES = {"s": brian2.second, "V": brian2.volt, "A": brian2.amp, "S": brian2.siemens, "F": brian2.farad}


def parse_quantity(text, unit: Unit, *, name: str = "value", positive: bool = False) -> Quantity:
    """Turn ``"20 ms"`` (or a Quantity, or a bare number for dimensionless units) into a Quantity.

    Parameters
    ----------
    text : str or Quantity or float
        The value. A string is a number followed by the name of a Brian2 unit, e.g. ``"0.5 ms"``.
    unit : brian2.Unit
        The expected unit; the parsed value must have its dimensions.
    name : str
        The value's name, used in error messages (e.g. ``"network.dt"``).
    positive : bool
        Require a strictly positive value.

    Returns
    -------
    Quantity
        The value with units.

    Raises
    ------
    ValueError
        If the text is not a number with a known unit, the dimensions do not match ``unit``, or a
        required positive value is not positive. The message names ``name`` and the bad text.
    """
    if isinstance(text, Quantity):
        value = text
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        value = Quantity(float(text)) * (unit if unit.dim == DIMENSIONLESS else 1)
        if unit.dim != DIMENSIONLESS:
            raise ValueError(f"{name} = {text!r} has no unit; expected a value in {unit!r}, e.g. '1 {unit!r}'")
    elif isinstance(text, str):
        match = _QUANTITY.match(text)
        if match is None:
            raise ValueError(f"{name} = {text!r} is not a number with a unit; expected e.g. '1 {unit!r}'")
        number, unit_name = float(match.group(1)), match.group(2)
        if unit_name is None:
            if unit.dim != DIMENSIONLESS:
                raise ValueError(f"{name} = {text!r} has no unit; expected a value in {unit!r}")
            value = Quantity(number)
        else:
            found = _ALIASES.get(unit_name) or getattr(brian2.units, unit_name, None)
            if not isinstance(found, Unit):
                raise ValueError(f"{name} = {text!r}: unknown unit {unit_name!r}; expected a value in {unit!r}")
            value = number * found
    else:
        raise ValueError(f"{name} = {text!r} is not a quantity; expected a value in {unit!r}")
    try:
        brian2.units.fundamentalunits.fail_for_dimension_mismatch(value, unit)
    except DimensionMismatchError:
        raise ValueError(f"{name} = {text!r} has the wrong dimensions; expected a value in {unit!r}") from None
    if not math.isfinite(float(value / unit)):
        raise ValueError(f"{name} = {text!r} must be finite")
    if positive and not float(value / unit) > 0:
        raise ValueError(f"{name} = {text!r} must be positive")
    return value
