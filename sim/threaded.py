"""One run on several threads (``sim.threads``): the hot kernels' threaded twins, and the thread count.

The kernels that grow with the network — the shared-matrix spike propagation
(`sim.propagation.propagate_spikes`), the supervised update and credit (`sim.kernels.projected_update`,
`hidden_credit`) and the graded lateral circuit's passes (`sim.shared_lateral.subspace_activity`,
`hebbian_step`) — are written once, with their outer loop a ``numba.prange`` over *disjoint outputs*
(batch copies, blocks of four rows of a product, rows of ``H``). `twin` compiles that same source a
second time with ``parallel=True``; the serial compilation runs the loop in order. No sum is split
between threads and every element is summed in the same order, so a run writes the same file, bit
for bit, on any thread count (tests/test_threaded.py). Brian2's own code objects and the per-step
scheduling stay on one thread, which bounds the gain (docs/benchmarks.md §4d).

`set_threads` is called by `sim.prefs.configure` (the one place preferences are set); the call sites
use a kernel's twin when `active` is above 1.
"""
from __future__ import annotations

import types

import numba

_threads = 1


def set_threads(n: int) -> int:
    """Run the hot kernels on ``n`` threads (1: their serial compilations), at most Numba's limit for
    this process (``NUMBA_NUM_THREADS``: the machine's cores, or 1 in a `hlopsim sweep` worker).

    Returns
    -------
    int
        The thread count in force.
    """
    global _threads
    _threads = max(1, min(int(n), int(numba.config.NUMBA_NUM_THREADS)))
    if _threads > 1:
        numba.set_num_threads(_threads)
    return _threads


def active() -> int:
    """Threads in force; the call sites use the threaded twins when it is above 1."""
    return _threads


def twin(kernel, **calls):
    """The threaded twin of a compiled kernel: its Python source compiled with ``parallel=True``.

    Parameters
    ----------
    kernel : numba dispatcher
        A kernel compiled with ``numba.njit(cache=True, fastmath=False)`` whose outer loop is a
        ``prange`` over disjoint outputs.
    **calls : numba dispatcher
        Kernels it calls to replace by their own twins (by their global name in its module).
        The twin sees its module's globals as they are when `twin` is called: call it after every
        name the kernel uses is defined (as the modules do, right below each kernel).

    Returns
    -------
    numba dispatcher
        Named ``<name>_threaded`` (so that Numba's on-disk cache keeps the two compilations apart).
    """
    source = kernel.py_func
    bound = dict(source.__globals__, **calls)
    func = types.FunctionType(source.__code__, bound, f"{source.__name__}_threaded", source.__defaults__,
                              source.__closure__)
    func.__qualname__ = f"{source.__qualname__}_threaded"
    func.__module__, func.__doc__ = source.__module__, source.__doc__
    return numba.njit(cache=True, fastmath=False, parallel=True)(func)
