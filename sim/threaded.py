"""The hot kernels on several threads (``sim.threads``), with the serial kernels' arithmetic.

One training run can use more than one core: the kernels that dominate an epoch at the paper's
sizes — the shared-matrix propagation of spikes, the supervised update (projection and the
``δᵀ a_⊥`` product), the hidden credit and the graded lateral circuit's two passes — each have a
variant here whose ``numba.prange`` loop splits the *outputs* between threads: batch copies for the
propagation and the circuit's activity, row blocks of a product, rows of ``H`` for Oja's step.
Every output element is still computed by one thread with the additions in the serial kernel's
order (the same helpers: `sim.kernels._rows_matmul`, the same loops), so a run on ``n`` threads
writes the same run file, bit for bit, as on one (tests/test_threaded.py). Brian2's own code objects
(neuron updates, thresholds, monitors) and the per-step Python scheduling stay on one thread; that
part bounds the speed-up (docs/benchmarks.md §4d).

`set_threads` is called once, by `sim.prefs.configure`; `active` tells the call sites
(`sim.propagation`, `sim.learning`, `sim.shared_lateral`) to use these variants.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from hlopsim.sim.kernels import _ROW_BLOCK, _check_hidden_credit_nb, _check_projected_update_nb, _rows_matmul, _transpose

_JIT = dict(cache=True, fastmath=False, parallel=True)
_threads = 1


def set_threads(n: int) -> int:
    """Run the hot kernels on ``n`` threads (1: the serial kernels), at most Numba's limit for this
    process (``NUMBA_NUM_THREADS``: the machine's cores, or 1 in a `hlopsim sweep` worker).

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
    """Threads in force; the call sites use this module's kernels when it is above 1."""
    return _threads


def propagate_spikes(spikespace, increments, target, n_pre, n_post):
    """`sim.propagation.propagate_spikes` with the batch copies split between threads: a thread adds
    the spikes of its copies, in the order listed, to its copies' rows of ``target`` (same arguments)."""
    _propagate_parts(spikespace, increments, target, n_pre, n_post, min(_threads, target.shape[0]))


@numba.njit(**_JIT)
def _propagate_parts(spikespace, increments, target, n_pre, n_post, parts):
    n_spikes = spikespace[spikespace.shape[0] - 1]
    n_copies = target.shape[0]
    for part in prange(parts):
        lo = (part * n_copies // parts) * n_pre
        hi = ((part + 1) * n_copies // parts) * n_pre
        for k in range(n_spikes):
            s = spikespace[k]
            if s >= lo and s < hi:
                copy = s // n_pre
                pre = s - copy * n_pre
                for j in range(n_post):
                    target[copy, j] += increments[pre, j]


@numba.njit(**_JIT)
def _matmul_into(A, Bm, out):
    """``out = A @ Bm`` as `sim.kernels._matmul_into`, its blocks of four rows on different threads."""
    n_cols = Bm.shape[1]
    blocks = -(-A.shape[0] // _ROW_BLOCK)
    for block in prange(blocks):
        tmp = np.empty((_ROW_BLOCK, n_cols), dtype=np.float64)
        i0 = block * _ROW_BLOCK
        rows = _rows_matmul(A, i0, Bm, tmp)
        for t in range(rows):
            for j in range(n_cols):
                out[i0 + t, j] = tmp[t, j]


@numba.njit(**_JIT)
def _project_out(a, H):
    """`sim.kernels.project_out` (``a − (a Hᵀ) H``) with threaded products (shapes checked by the caller)."""
    B, n = a.shape
    K = H.shape[0]
    out = np.empty((B, n), dtype=np.float64)
    if K == 0:
        for b in prange(B):
            for j in range(n):
                out[b, j] = a[b, j]
        return out
    coefT = np.empty((K, B), dtype=np.float64)
    _matmul_into(H, _transpose(a), coefT)
    _matmul_into(_transpose(coefT), H, out)
    for b in prange(B):
        for j in range(n):
            out[b, j] = a[b, j] - out[b, j]
    return out


@numba.njit(**_JIT)
def projected_update(W, delta, a, H, lr):
    """`sim.kernels.projected_update` (``W −= lr δᵀ (a − (a Hᵀ) H)``, in place), rows of ``W`` in
    blocks of four on different threads."""
    _check_projected_update_nb(W, delta, a, H)
    if lr == 0.0 or a.shape[0] == 0:
        return
    n = W.shape[1]
    ap = _project_out(a, H)
    dT = _transpose(delta)
    blocks = -(-W.shape[0] // _ROW_BLOCK)
    for block in prange(blocks):
        tmp = np.empty((_ROW_BLOCK, n), dtype=np.float64)
        i0 = block * _ROW_BLOCK
        rows = _rows_matmul(dT, i0, ap, tmp)
        for t in range(rows):
            for j in range(n):
                W[i0 + t, j] -= lr * tmp[t, j]


@numba.njit(**_JIT)
def hidden_credit(W_next, delta_next, u, threshold):
    """`sim.kernels.hidden_credit` (``δ = (δ_next W_next) ⊙ 1[0 < u < θ] / θ``), the product threaded."""
    _check_hidden_credit_nb(W_next, delta_next, u, threshold)
    n = W_next.shape[1]
    B = u.shape[0]
    g = 1.0 / threshold
    out = np.empty((B, n), dtype=np.float64)
    _matmul_into(delta_next, W_next, out)
    for b in prange(B):
        for j in range(n):
            uj = u[b, j]
            if uj > 0.0 and uj < threshold:
                out[b, j] = out[b, j] * g
            else:
                out[b, j] = 0.0
    return out


@numba.njit(**_JIT)
def subspace_activity(H, HT, x, rows, y, xhat):
    """`sim.shared_lateral.subspace_activity` (``y = H x``, ``x̂ = Hᵀ y`` per copy), copies on different threads."""
    copies, n = x.shape
    for c in prange(copies):
        for i in range(rows):
            y[c, i] = 0.0
        for j in range(n):
            xj = x[c, j]
            if xj != 0.0:
                for i in range(rows):
                    y[c, i] += HT[j, i] * xj
        for j in range(n):
            xhat[c, j] = 0.0
        for i in range(rows):
            yi = y[c, i]
            if yi != 0.0:
                for j in range(n):
                    xhat[c, j] += H[i, j] * yi


@numba.njit(**_JIT)
def hebbian_step(H, HT, x, y, xhat, first, stop, step, acc):
    """`sim.shared_lateral.hebbian_step` (Oja's Euler step summed over copies, in place), rows of ``H``
    on different threads (each with its own scratch; ``acc`` is unused, kept for the same signature)."""
    copies, n = x.shape
    for i in prange(first, stop):
        row = np.empty(n, dtype=np.float64)
        for j in range(n):
            row[j] = 0.0
        for c in range(copies):
            yi = y[c, i]
            for j in range(n):
                row[j] += (H[i, j] + step * (yi * (x[c, j] - xhat[c, j]))) - H[i, j]
        for j in range(n):
            H[i, j] += row[j]
            HT[j, i] = H[i, j]
