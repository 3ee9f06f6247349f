"""The one place where Brian2's global preferences are set.

Brian2 keeps its code-generation target, compiler flags and logging in process-wide ``prefs``;
setting them anywhere else would make results depend on import order.
"""
from __future__ import annotations

import brian2
from threadpoolctl import threadpool_limits

TARGETS = ("numpy", "cython")


def configure(target: str = "cython", *, log_level: str = "WARNING") -> None:
    """Set Brian2's preferences for this process.

    Parameters
    ----------
    target : {"numpy", "cython"}
        Code-generation target. ``numpy`` starts instantly (used by the fast tests); ``cython``
        compiles each code object once (a few seconds each, cached in ``~/.cython/brian_extensions``)
        and then runs faster per step.
    log_level : str
        Brian2 console log level.
    """
    if target not in TARGETS:
        raise ValueError(f"codegen target {target!r} is unknown; expected one of {TARGETS}")
    brian2.prefs.codegen.target = target
    brian2.prefs.logging.console_log_level = log_level
    # Our batches are small: keep numpy's arrays in float64 and BLAS on one thread; on 2 shared
    # cores a second BLAS thread competes with Brian2 and the recorder's writer thread for the cores.
    brian2.prefs.core.default_float_dtype = brian2.float64
    # numpy has started OpenBLAS by now, so an environment variable would come too late.
    threadpool_limits(limits=1)
    # The lateral circuits deliberately run their units on a coarser clock than the spikes that
    # drive them (sim/lateral.py); Brian2 warns about every such pathway.
    brian2.BrianLogger.suppress_name("synapses_dt_mismatch")


def current_target() -> str:
    """The code-generation target in force."""
    return str(brian2.prefs.codegen.target)
