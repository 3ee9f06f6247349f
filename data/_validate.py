"""Argument checks shared by the ``data`` modules.

Each helper returns the checked value in canonical form or raises
``ValueError`` naming the bad value and what was expected.
"""

from __future__ import annotations

import math

import numpy as np


class DataError(ValueError):
    """A data set, data file or task does not hold what the loader expects.

    Raised by the file loaders and task builders with a one-line message naming
    the file, key or argument and what was expected. A ``ValueError`` subclass,
    so callers that already catch ``ValueError`` also catch it.
    """


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as ``int`` if it is an integer within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} = {value!r} must be an int")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} = {value} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} = {value} must be <= {maximum}")
    return value


def check_positive(name: str, value) -> float:
    """Return ``value`` as ``float`` if it is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} = {value!r} must be a real number")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} = {value} must be finite and > 0")
    return value


def check_rng(rng) -> np.random.Generator:
    """Return ``rng`` if it is a ``numpy.random.Generator``."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng = {rng!r} must be a numpy.random.Generator (e.g. np.random.default_rng(seed))")
    return rng


def check_matrix(name: str, x, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Return ``x`` as a 2-D float64 array of finite values within [low, high]."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} has shape {arr.shape}, expected a 2-D array (n_samples, n_features)")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} has dtype {arr.dtype}, expected real numbers")
    arr = arr.astype(np.float64, copy=False)
    if arr.size == 0:
        return arr
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(arr)))} non-finite values, expected finite values")
    if low is not None and arr.min() < low:
        raise ValueError(f"{name} has minimum {arr.min()}, expected values >= {low}")
    if high is not None and arr.max() > high:
        raise ValueError(f"{name} has maximum {arr.max()}, expected values <= {high}")
    return arr
