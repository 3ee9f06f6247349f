"""The one place where Brian2's global preferences are set.

Brian2 keeps its code-generation target, compiler flags and logging in process-wide ``prefs``;
setting them anywhere else would make results depend on import order.
"""
from __future__ import annotations

import brian2
from threadpoolctl import threadpool_limits

TARGETS = ("numpy", "cython")


def configure(target: str = "cython", *, threads: int | None = None, log_level: str = "WARNING") -> None:
    """Set Brian2's preferences for this process.

    Parameters
    ----------
    target : {"numpy", "cython"}
        Code-generation target. ``numpy`` starts instantly (used by the fast tests); ``cython``
        compiles each code object once (a few seconds each, cached in ``~/.cython/brian_extensions``)
        and then runs faster per step.
    threads : int, optional
        Threads for the hot kernels of one run (`sim.threads`), capped at Numba's limit for this
        process; results do not depend on it (`sim.threaded`). None: leave as it is (1 at start).
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
    if threads is not None:
        from hlopsim.sim.threaded import set_threads
        set_threads(threads)
    # The lateral circuits deliberately run their units on a coarser clock than the spikes that
    # drive them (sim/lateral.py); Brian2 warns about every such pathway.
    brian2.BrianLogger.suppress_name("synapses_dt_mismatch")


def current_target() -> str:
    """The code-generation target in force."""
    return str(brian2.prefs.codegen.target)


def set_cache_dir(path=None) -> str:
    """Make Brian2's cython target cache compiled code objects in ``path`` (None: Brian2's default,
    ``~/.cython/brian_extensions``), with its per-module lock files on.

    Several processes may share one cache folder: Brian2 takes a lock file per code object
    (``codegen.runtime.cython.multiprocess_safe``) while it checks for, compiles and loads the module,
    so one process compiles and the others load its result. A folder per process (e.g. node-local
    scratch space on a cluster whose home folder is on a network file system, where lock files may not
    be reliable) avoids the locks at the cost of compiling every code object once per folder.

    Returns
    -------
    str
        The cache folder in force (created if missing).
    """
    import os

    from brian2.codegen.runtime.cython_rt.extension_manager import get_cython_cache_dir

    brian2.prefs.codegen.runtime.cython.multiprocess_safe = True
    brian2.prefs.codegen.runtime.cython.cache_dir = None if path is None else os.path.abspath(os.path.expanduser(str(path)))
    folder = os.path.expanduser(get_cython_cache_dir())
    os.makedirs(folder, exist_ok=True)
    return folder
