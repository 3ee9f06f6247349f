"""Numba-compiled numerical kernels of hlopsim.

Every compute-heavy routine of the project lives here.  All kernels follow
the same conventions:

* Inputs are numpy arrays (``float64`` unless stated otherwise, C-contiguous
  recommended -- other layouts work but trigger a separate compilation) and
  plain Python ``float`` / ``int`` scalars in SI units.
* Batch rows are samples.  A layer computes ``u = W a`` with ``W`` of shape
  ``(m, n)`` (``m`` post-synaptic, ``n`` pre-synaptic neurons), so for a batch
  ``u = a @ W.T``.
* Kernels documented as *in place* write only into the arrays they name and
  return ``None``.  Scratch memory is allocated once per call or per block
  of four rows, never inside the inner loops.
* Each kernel ``name`` has a plain-numpy twin ``name_numpy`` with the same
  signature and semantics (used as the reference in the tests).  Twins use
  vectorised numpy/BLAS, so results agree with the kernels to round-off, not
  bit for bit.
* Kernels are compiled with ``numba.njit(cache=True, fastmath=False)``:
  loops run sequentially in a fixed order, so a kernel gives bit-identical
  results for identical inputs.  The update kernels' outer loops are
  ``prange`` loops over disjoint outputs (blocks of rows): sequential here,
  split between threads in their twins (``*_threaded``, `sim.threaded`), which
  sum every element in the same order.
* Shapes are validated (``ValueError``) before any memory is touched, because
  Numba does not bounds-check array accesses.  The same validation function
  is used by the kernel (compiled) and its twin (interpreted).

Kernels
-------
project_out
    ``a_perp = a - (a H^T) H`` (projection onto the orthogonal complement of
    the span of the orthonormal rows of ``H``).
projected_update
    HLOP weight update ``W -= lr * delta^T (a - (a H^T) H)``.
output_credit
    Softmax cross-entropy credit on rate-coded logits.
hidden_credit
    Rate-based credit through an integrate-and-fire rate map.
hidden_credit_slope
    Rate-based credit through a tabulated rate map (a measured transfer curve's slope).
oja_discrete
    Discrete Hebbian (Oja subspace) rule with momentum and clipping, for the
    plastic rows of the lateral-weight matrix ``H``.
reduce_shared_weights
    Synchronisation of drifted copies of a weight-shared matrix.
segment_spikes
    A spike monitor's (time, flat index) records of a batched run turned into
    (sample, step, neuron) triples sorted per sample (for the recorder).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from hlopsim.sim.threaded import twin

__all__ = [
    "project_out",
    "project_out_numpy",
    "projected_update",
    "projected_update_numpy",
    "output_credit",
    "output_credit_numpy",
    "hidden_credit",
    "hidden_credit_numpy",
    "projected_update_threaded",
    "hidden_credit_threaded",
    "hidden_credit_slope",
    "hidden_credit_slope_numpy",
    "oja_discrete",
    "oja_discrete_numpy",
    "reduce_shared_weights",
    "reduce_shared_weights_numpy",
    "segment_spikes",
    "segment_spikes_numpy",
    "KERNEL_PAIRS",
]

_JIT = dict(cache=True, fastmath=False)


def _dual(fn):
    """Return ``(fn, njit(fn))``: one validation routine, two executions."""
    return fn, numba.njit(**_JIT)(fn)


# ---------------------------------------------------------------------------
# Shape validation (plain Python source, also compiled for the kernels).
# Messages must be constant strings so that Numba can raise them.
# ---------------------------------------------------------------------------


def _check_project_out(a, H):
    if a.ndim != 2 or H.ndim != 2:
        raise ValueError("project_out: a and H must be 2-D")
    if a.shape[1] != H.shape[1]:
        raise ValueError("project_out: a (B, n) and H (K, n) need the same n")


def _check_projected_update(W, delta, a, H):
    if W.ndim != 2 or delta.ndim != 2 or a.ndim != 2 or H.ndim != 2:
        raise ValueError("projected_update: W, delta, a and H must be 2-D")
    if delta.shape[0] != a.shape[0]:
        raise ValueError("projected_update: delta (B, m) and a (B, n) need the same B")
    if delta.shape[1] != W.shape[0]:
        raise ValueError("projected_update: delta (B, m) must match W (m, n)")
    if a.shape[1] != W.shape[1]:
        raise ValueError("projected_update: a (B, n) must match W (m, n)")
    if H.shape[1] != W.shape[1]:
        raise ValueError("projected_update: H (K, n) must match W (m, n)")


def _check_output_credit(rates, labels, valid):
    if rates.ndim != 2 or labels.ndim != 1 or valid.ndim != 1:
        raise ValueError("output_credit: rates must be 2-D, labels and valid 1-D")
    if labels.shape[0] != rates.shape[0] or valid.shape[0] != rates.shape[0]:
        raise ValueError("output_credit: rates (B, C), labels (B,), valid (B,) need the same B")
    C = rates.shape[1]
    for b in range(rates.shape[0]):
        if valid[b] and (labels[b] < 0 or labels[b] >= C):
            raise ValueError("output_credit: label of a valid row outside [0, C)")


def _check_hidden_credit(W_next, delta_next, u, threshold):
    if W_next.ndim != 2 or delta_next.ndim != 2 or u.ndim != 2:
        raise ValueError("hidden_credit: W_next, delta_next and u must be 2-D")
    if delta_next.shape[1] != W_next.shape[0]:
        raise ValueError("hidden_credit: delta_next (B, m) must match W_next (m, n)")
    if u.shape[1] != W_next.shape[1]:
        raise ValueError("hidden_credit: u (B, n) must match W_next (m, n)")
    if u.shape[0] != delta_next.shape[0]:
        raise ValueError("hidden_credit: delta_next (B, m) and u (B, n) need the same B")
    if not threshold > 0.0:
        raise ValueError("hidden_credit: threshold must be > 0")


def _check_hidden_credit_slope(W_next, delta_next, u, drive, slope):
    if W_next.ndim != 2 or delta_next.ndim != 2 or u.ndim != 2:
        raise ValueError("hidden_credit_slope: W_next, delta_next and u must be 2-D")
    if delta_next.shape[1] != W_next.shape[0]:
        raise ValueError("hidden_credit_slope: delta_next (B, m) must match W_next (m, n)")
    if u.shape[1] != W_next.shape[1]:
        raise ValueError("hidden_credit_slope: u (B, n) must match W_next (m, n)")
    if u.shape[0] != delta_next.shape[0]:
        raise ValueError("hidden_credit_slope: delta_next (B, m) and u (B, n) need the same B")
    if drive.ndim != 1 or slope.ndim != 1 or drive.shape[0] != slope.shape[0] or drive.shape[0] < 2:
        raise ValueError("hidden_credit_slope: drive and slope must be 1-D of the same length >= 2")
    for k in range(drive.shape[0] - 1):
        if not drive[k + 1] > drive[k]:
            raise ValueError("hidden_credit_slope: drive must be strictly increasing")


def _check_oja_discrete(H, X, velocity, rows_start, n_iter, clip):
    if H.ndim != 2 or X.ndim != 2 or velocity.ndim != 2:
        raise ValueError("oja_discrete: H, X and velocity must be 2-D")
    if X.shape[1] != H.shape[1]:
        raise ValueError("oja_discrete: X (R, n) must match H (K, n)")
    if velocity.shape[0] != H.shape[0] or velocity.shape[1] != H.shape[1]:
        raise ValueError("oja_discrete: velocity must have the shape of H")
    if rows_start < 0 or rows_start > H.shape[0]:
        raise ValueError("oja_discrete: rows_start must lie in [0, K]")
    if n_iter < 0:
        raise ValueError("oja_discrete: n_iter must be >= 0")
    if not clip >= 0.0:
        raise ValueError("oja_discrete: clip must be >= 0")


def _check_reduce_shared_weights(copies, shared, plastic_rows):
    if copies.ndim != 3 or shared.ndim != 2 or plastic_rows.ndim != 1:
        raise ValueError("reduce_shared_weights: copies must be 3-D, shared 2-D, plastic_rows 1-D")
    if copies.shape[1] != shared.shape[0] or copies.shape[2] != shared.shape[1]:
        raise ValueError("reduce_shared_weights: copies (C, K, n) must match shared (K, n)")
    if plastic_rows.shape[0] != shared.shape[0]:
        raise ValueError("reduce_shared_weights: plastic_rows must have length K")


_check_project_out_py, _check_project_out_nb = _dual(_check_project_out)
_check_projected_update_py, _check_projected_update_nb = _dual(_check_projected_update)
_check_output_credit_py, _check_output_credit_nb = _dual(_check_output_credit)
_check_hidden_credit_py, _check_hidden_credit_nb = _dual(_check_hidden_credit)
_check_hidden_credit_slope_py, _check_hidden_credit_slope_nb = _dual(_check_hidden_credit_slope)
_check_oja_discrete_py, _check_oja_discrete_nb = _dual(_check_oja_discrete)
_check_reduce_shared_weights_py, _check_reduce_shared_weights_nb = _dual(
    _check_reduce_shared_weights
)


# ---------------------------------------------------------------------------
# Dense helpers.  Every product entry is summed over the contraction index in
# increasing order (as a naive triple loop would), so results do not depend
# on blocking.  Inner loops are axpys over contiguous memory, which LLVM
# vectorises without reassociation (fastmath stays off); rows of the left
# factor are processed four at a time so each loaded row of the right factor
# is used four times.
# ---------------------------------------------------------------------------

_ROW_BLOCK = 4


@numba.njit(**_JIT)
def _rows_matmul(A, i0, Bm, tmp):
    """Row block of a matrix product into scratch.

    ``tmp[t, :] = A[i0 + t, :] @ Bm`` for ``t < nrows``,
    ``nrows = min(4, A.shape[0] - i0)``.

    Parameters
    ----------
    A : ndarray, shape (M, L), float64
        Left factor.  Read only.
    i0 : int
        First row of ``A`` of the block.
    Bm : ndarray, shape (L, N), float64
        Right factor.  Read only.
    tmp : ndarray, shape (4, N), float64
        Scratch, rows ``0:nrows`` **written**.

    Returns
    -------
    nrows : int
    """
    L = A.shape[1]
    N = Bm.shape[1]
    nrows = min(_ROW_BLOCK, A.shape[0] - i0)
    if nrows == _ROW_BLOCK:
        t0 = tmp[0]
        t1 = tmp[1]
        t2 = tmp[2]
        t3 = tmp[3]
        for j in range(N):
            t0[j] = 0.0
            t1[j] = 0.0
            t2[j] = 0.0
            t3[j] = 0.0
        for l in range(L):
            a0 = A[i0, l]
            a1 = A[i0 + 1, l]
            a2 = A[i0 + 2, l]
            a3 = A[i0 + 3, l]
            bl = Bm[l]
            for j in range(N):
                x = bl[j]
                t0[j] += a0 * x
                t1[j] += a1 * x
                t2[j] += a2 * x
                t3[j] += a3 * x
    else:
        for t in range(nrows):
            tt = tmp[t]
            for j in range(N):
                tt[j] = 0.0
            for l in range(L):
                a0 = A[i0 + t, l]
                bl = Bm[l]
                for j in range(N):
                    tt[j] += a0 * bl[j]
    return nrows


@numba.njit(**_JIT)
def _matmul_into(A, Bm, out):
    """``out = A @ Bm`` (out: (M, N), float64, **written**; A, Bm read only); one scratch block per
    four rows (the blocks are independent: a threaded twin computes them in parallel)."""
    N = Bm.shape[1]
    for block in prange(-(-A.shape[0] // _ROW_BLOCK)):
        i0 = block * _ROW_BLOCK
        tmp = np.empty((_ROW_BLOCK, N), dtype=np.float64)
        nrows = _rows_matmul(A, i0, Bm, tmp)
        for t in range(nrows):
            for j in range(N):
                out[i0 + t, j] = tmp[t, j]


_matmul_into_threaded = twin(_matmul_into)


@numba.njit(**_JIT)
def _transpose_into(A, out):
    """``out = A.T`` (A: (M, N) read only; out: (N, M) float64, **written**)."""
    M, N = A.shape
    for i in range(M):
        for j in range(N):
            out[j, i] = A[i, j]


@numba.njit(**_JIT)
def _transpose(A):
    """New C-contiguous float64 array ``A.T``."""
    out = np.empty((A.shape[1], A.shape[0]), dtype=np.float64)
    _transpose_into(A, out)
    return out


# ---------------------------------------------------------------------------
# 1. Orthogonal projection and projected weight update
# ---------------------------------------------------------------------------


@numba.njit(**_JIT)
def project_out(a, H):
    """Remove from each row of ``a`` its component in the span of ``H``.

    Computes ``a_perp = a - (a H^T) H`` without forming the ``n x n``
    projector (cost ``O(B n K)``).  This is the orthogonal projection onto
    the complement of ``span(H)`` when the rows of ``H`` are orthonormal (as
    HLOP's Hebbian rule drives them to be); for other ``H`` it is the same
    formula, not an exact projector.

    Parameters
    ----------
    a : ndarray, shape (B, n), float64
        Presynaptic activities (one sample per row).  Read only.
    H : ndarray, shape (K, n), float64
        Subspace basis, one basis vector per row.  ``K`` may be 0.  Read only.

    Returns
    -------
    a_perp : ndarray, shape (B, n), float64
        New array (a copy of ``a`` when ``K == 0``).

    Raises
    ------
    ValueError
        If the shapes are inconsistent.
    """
    _check_project_out_nb(a, H)
    B, n = a.shape
    K = H.shape[0]
    out = np.empty((B, n), dtype=np.float64)
    if K == 0:
        for b in range(B):
            for j in range(n):
                out[b, j] = a[b, j]
        return out
    # coef = a H^T, computed as coef^T = H a^T (axpys along the batch axis).
    coefT = np.empty((K, B), dtype=np.float64)
    _matmul_into(H, _transpose(a), coefT)
    # out = a - coef H
    _matmul_into(_transpose(coefT), H, out)
    for b in prange(B):
        for j in range(n):
            out[b, j] = a[b, j] - out[b, j]
    return out


_project_out_threaded = twin(project_out, _matmul_into=_matmul_into_threaded)


def project_out_numpy(a, H):
    """Plain-numpy twin of :func:`project_out` (same signature and semantics)."""
    _check_project_out_py(a, H)
    a = np.asarray(a, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    if H.shape[0] == 0:
        return a.copy()
    return a - (a @ H.T) @ H


@numba.njit(**_JIT)
def projected_update(W, delta, a, H, lr):
    """HLOP-projected gradient step on a layer's weights, in place.

    ``W -= lr * delta^T (a - (a H^T) H)``

    i.e. the ordinary batch-summed outer-product update
    ``W -= lr * sum_b delta_b a_b^T`` with the presynaptic activities first
    projected onto the orthogonal complement of ``span(H)`` (see
    :func:`project_out`).  With orthonormal rows of ``H`` the change
    ``dW`` satisfies ``dW H^T = 0``, so the layer's response ``W x`` to any
    ``x`` in ``span(H)`` (old tasks' principal subspace) is preserved.
    The ``n x n`` projector is never formed: cost ``O(B n K + B m n)``.
    ``delta`` is expected to already contain the ``1/B`` (or ``1/n_valid``)
    normalisation, as returned by :func:`output_credit`.

    Parameters
    ----------
    W : ndarray, shape (m, n), float64
        Weights of ``u = W a``.  **Written** in place.
    delta : ndarray, shape (B, m), float64
        Error signals ``dL/du`` per sample.  Read only.
    a : ndarray, shape (B, n), float64
        Presynaptic activities (e.g. firing rates).  Read only.
    H : ndarray, shape (K, n), float64
        Orthonormal rows spanning the protected subspace; ``K`` may be 0
        (plain, unprojected update).  Read only.
    lr : float
        Learning rate.  ``lr == 0`` leaves ``W`` bit-identical.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If the shapes are inconsistent.
    """
    _check_projected_update_nb(W, delta, a, H)
    if lr == 0.0 or a.shape[0] == 0:
        return
    m, n = W.shape
    ap = project_out(a, H)  # (B, n) scratch, once per call
    dT = _transpose(delta)  # (m, B)
    for block in prange(-(-m // _ROW_BLOCK)):
        i0 = block * _ROW_BLOCK
        tmp = np.empty((_ROW_BLOCK, n), dtype=np.float64)
        # tmp = (delta^T a_perp)[i0:i0+4, :]
        nrows = _rows_matmul(dT, i0, ap, tmp)
        for t in range(nrows):
            for j in range(n):
                W[i0 + t, j] -= lr * tmp[t, j]


#: `projected_update` on ``sim.threads`` threads (row blocks of ``W`` and of both products in parallel).
projected_update_threaded = twin(projected_update, project_out=_project_out_threaded)


def projected_update_numpy(W, delta, a, H, lr):
    """Plain-numpy twin of :func:`projected_update` (in place on ``W``)."""
    _check_projected_update_py(W, delta, a, H)
    if lr == 0.0 or a.shape[0] == 0:
        return
    ap = project_out_numpy(a, H)
    W -= lr * (delta.T @ ap)


# ---------------------------------------------------------------------------
# 2. Output-layer credit (softmax cross-entropy on rates)
# ---------------------------------------------------------------------------


@numba.njit(**_JIT)
def output_credit(rates, labels, logit_scale, valid):
    """Softmax cross-entropy loss and its gradient w.r.t. output rates.

    Logits ``z_b = logit_scale * rates_b``; for valid rows

    ``p_b = softmax(z_b)`` (computed stably by subtracting ``max(z_b)``),
    ``CE_b = logsumexp(z_b) - z_b[label_b]``,
    ``loss = (1/n_valid) sum_{valid b} CE_b``,
    ``delta_b = (p_b - onehot(label_b)) * logit_scale / n_valid``
    ``= d loss / d rates_b``.

    Invalid (padding) rows contribute nothing: their ``delta`` rows are 0 and
    their labels are ignored (may be any value, e.g. -1).  If no row is
    valid, ``delta`` is all zeros and ``loss`` is 0.0.

    Parameters
    ----------
    rates : ndarray, shape (B, C), float64
        Output firing rates.  Read only.
    labels : ndarray, shape (B,), int64
        Class indices in ``[0, C)`` for valid rows.  Read only.
    logit_scale : float
        Multiplier turning rates into logits.
    valid : ndarray, shape (B,), bool
        ``True`` for real samples, ``False`` for padding.  Read only.

    Returns
    -------
    delta : ndarray, shape (B, C), float64
        New array, gradient of ``loss`` w.r.t. ``rates``.
    loss : float
        Mean cross-entropy over the valid rows.

    Raises
    ------
    ValueError
        If shapes are inconsistent or a valid row's label is out of range.
    """
    _check_output_credit_nb(rates, labels, valid)
    B, C = rates.shape
    delta = np.zeros((B, C), dtype=np.float64)
    n_valid = 0
    for b in range(B):
        if valid[b]:
            n_valid += 1
    if n_valid == 0:
        return delta, 0.0
    nv = float(n_valid)
    z = np.empty(C, dtype=np.float64)
    loss_sum = 0.0
    for b in range(B):
        if not valid[b]:
            continue
        zmax = -np.inf
        for c in range(C):
            z[c] = logit_scale * rates[b, c]
            if z[c] > zmax:
                zmax = z[c]
        s = 0.0
        for c in range(C):
            z[c] = np.exp(z[c] - zmax)  # z now holds the shifted exponentials
            s += z[c]
        lab = labels[b]
        # CE = logsumexp(z) - z[lab] = log(s) + zmax - z[lab]
        loss_sum += np.log(s) - (logit_scale * rates[b, lab] - zmax)
        for c in range(C):
            p = z[c] / s
            if c == lab:
                p -= 1.0
            delta[b, c] = p * logit_scale / nv
    return delta, loss_sum / nv


def output_credit_numpy(rates, labels, logit_scale, valid):
    """Plain-numpy twin of :func:`output_credit`."""
    _check_output_credit_py(rates, labels, valid)
    B, C = rates.shape
    valid = np.asarray(valid, dtype=bool)
    delta = np.zeros((B, C), dtype=np.float64)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return delta, 0.0
    z = logit_scale * rates[valid]
    lab = np.asarray(labels)[valid]
    zs = z - z.max(axis=1, keepdims=True)
    e = np.exp(zs)
    s = e.sum(axis=1)
    p = e / s[:, None]
    rows = np.arange(z.shape[0])
    ce = np.log(s) - zs[rows, lab]
    p[rows, lab] -= 1.0
    delta[valid] = p * logit_scale / float(n_valid)
    return delta, float(ce.sum() / float(n_valid))


# ---------------------------------------------------------------------------
# 3. Hidden-layer credit (rate-based, integrate-and-fire rate map)
# ---------------------------------------------------------------------------


@numba.njit(**_JIT)
def hidden_credit(W_next, delta_next, u, threshold):
    """Back-propagate credit through an integrate-and-fire rate map.

    For an IF neuron with subtractive reset driven by mean input ``u`` per
    time step, the firing rate per step is ``r(u) = clip(u / threshold, 0, 1)``
    ("differentiation on spike representation").  With the next layer's
    input ``v = r W_next^T``:

    ``delta = (delta_next @ W_next) * g``,
    ``g = 1 / threshold`` where ``0 < u < threshold``, else ``0``

    (the derivative is taken as 0 at the kinks ``u == 0`` and
    ``u == threshold``).

    Parameters
    ----------
    W_next : ndarray, shape (m, n), float64
        Weights from this layer (n neurons) to the next (m neurons).  Read only.
    delta_next : ndarray, shape (B, m), float64
        Credit ``dL/dv`` of the next layer.  Read only.
    u : ndarray, shape (B, n), float64
        Mean input per time step of this layer's neurons.  Read only.
    threshold : float
        Firing threshold, > 0 (same units as ``u``).

    Returns
    -------
    delta : ndarray, shape (B, n), float64
        New array, ``dL/du``.

    Raises
    ------
    ValueError
        If shapes are inconsistent or ``threshold <= 0``.
    """
    _check_hidden_credit_nb(W_next, delta_next, u, threshold)
    n = W_next.shape[1]
    B = u.shape[0]
    g = 1.0 / threshold
    out = np.empty((B, n), dtype=np.float64)
    _matmul_into(delta_next, W_next, out)  # delta_next @ W_next
    for b in prange(B):
        for j in range(n):
            uj = u[b, j]
            if uj > 0.0 and uj < threshold:
                out[b, j] = out[b, j] * g
            else:
                out[b, j] = 0.0
    return out


#: `hidden_credit` on ``sim.threads`` threads (row blocks of the product in parallel).
hidden_credit_threaded = twin(hidden_credit, _matmul_into=_matmul_into_threaded)


def hidden_credit_numpy(W_next, delta_next, u, threshold):
    """Plain-numpy twin of :func:`hidden_credit`."""
    _check_hidden_credit_py(W_next, delta_next, u, threshold)
    g = 1.0 / threshold
    inside = (u > 0.0) & (u < threshold)
    return np.where(inside, (delta_next @ W_next) * g, 0.0)


@numba.njit(**_JIT)
def hidden_credit_slope(W_next, delta_next, u, drive, slope):
    """Back-propagate credit through a tabulated rate map.

    A neuron whose rate per step is ``r(u)`` for a mean input ``u`` per step
    (a measured transfer curve) passes credit ``dL/du = (dL/dr) r'(u)``.
    With the next layer's input ``v = r W_next^T``:

    ``delta = (delta_next @ W_next) * g(u)``,

    ``g`` the piecewise-linear interpolation of ``slope`` sampled at
    ``drive`` (``np.interp`` semantics), and ``g = 0`` outside
    ``[drive[0], drive[-1]]`` (and for NaN ``u``).

    Parameters
    ----------
    W_next : ndarray, shape (m, n), float64
        Weights from this layer (n neurons) to the next (m neurons).  Read only.
    delta_next : ndarray, shape (B, m), float64
        Credit ``dL/dv`` of the next layer.  Read only.
    u : ndarray, shape (B, n), float64
        Mean input per time step of this layer's neurons.  Read only.
    drive : ndarray, shape (N,), float64
        Strictly increasing inputs at which ``slope`` is sampled (units of
        ``u``), ``N >= 2``.  Read only.
    slope : ndarray, shape (N,), float64
        ``r'(drive)``.  Read only.

    Returns
    -------
    delta : ndarray, shape (B, n), float64
        New array, ``dL/du``.

    Raises
    ------
    ValueError
        If shapes are inconsistent or ``drive`` is not strictly increasing.
    """
    _check_hidden_credit_slope_nb(W_next, delta_next, u, drive, slope)
    n = W_next.shape[1]
    B = u.shape[0]
    N = drive.shape[0]
    lo = drive[0]
    hi = drive[N - 1]
    out = np.empty((B, n), dtype=np.float64)
    _matmul_into(delta_next, W_next, out)  # delta_next @ W_next
    for b in range(B):
        for j in range(n):
            x = u[b, j]
            if not (x >= lo and x <= hi):
                out[b, j] = 0.0
                continue
            if x == hi:
                g = slope[N - 1]
            else:
                # largest k with drive[k] <= x (binary search), then linear interpolation
                k = np.searchsorted(drive, x, side="right") - 1
                g = (slope[k + 1] - slope[k]) / (drive[k + 1] - drive[k]) * (x - drive[k]) + slope[k]
            out[b, j] = out[b, j] * g
    return out


def hidden_credit_slope_numpy(W_next, delta_next, u, drive, slope):
    """Plain-numpy twin of :func:`hidden_credit_slope`."""
    _check_hidden_credit_slope_py(W_next, delta_next, u, drive, slope)
    inside = (u >= drive[0]) & (u <= drive[-1])
    g = np.where(inside, np.interp(np.where(inside, u, drive[0]), drive, slope), 0.0)
    return (delta_next @ W_next) * g


# ---------------------------------------------------------------------------
# 4. Discrete Hebbian subspace rule (HLOP lateral weights)
# ---------------------------------------------------------------------------


@numba.njit(**_JIT)
def oja_discrete(H, X, lr, velocity, rows_start, n_iter=5, clip=10.0, momentum=0.9):
    """Discrete Oja subspace rule with momentum and clipping, in place.

    Repeats ``n_iter`` times, with ``p = rows_start:K`` the plastic rows::

        Y = X H^T                                   # (R, K), all rows
        D = clip(Y[:, p]^T (X - Y H) / R, -clip, clip)   # (K - rows_start, n)
        velocity[p] = momentum * velocity[p] + (1 - momentum) * D
        H[p] += lr * velocity[p]

    Frozen rows ``0:rows_start`` (subspaces of earlier tasks) take part in
    the feedback term ``Y H`` -- so new rows learn the principal subspace of
    the residual -- but they and their velocity are never written (stay
    bit-identical).  For zero-mean data whose covariance has ``K`` dominant
    directions, the rows of ``H`` converge to an orthonormal basis of that
    principal subspace.

    Parameters
    ----------
    H : ndarray, shape (K, n), float64
        Hebbian lateral weights / subspace basis.  Rows ``rows_start:K``
        **written** in place.
    X : ndarray, shape (R, n), float64
        Batch of presynaptic activity vectors.  Read only.
    lr : float
        Hebbian learning rate.
    velocity : ndarray, shape (K, n), float64
        Momentum buffer.  Rows ``rows_start:K`` **written** in place.
    rows_start : int
        First plastic row, ``0 <= rows_start <= K`` (``K``: nothing plastic).
    n_iter : int, optional
        Number of iterations on the same batch (default 5).
    clip : float, optional
        Element-wise clipping bound of ``D`` (default 10.0).
    momentum : float, optional
        Momentum coefficient (default 0.9).

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If shapes are inconsistent or ``rows_start``, ``n_iter`` or ``clip``
        are out of range.
    """
    _check_oja_discrete_nb(H, X, velocity, rows_start, n_iter, clip)
    K, n = H.shape
    R = X.shape[0]
    if rows_start >= K or n_iter == 0 or R == 0:
        return
    XT = _transpose(X)  # (n, R)
    YT = np.empty((K, R), dtype=np.float64)  # Y^T = H X^T
    Y = np.empty((R, K), dtype=np.float64)
    E = np.empty((R, n), dtype=np.float64)  # X - Y H
    tmp = np.empty((_ROW_BLOCK, n), dtype=np.float64)
    one_minus_mom = 1.0 - momentum
    for _ in range(n_iter):
        _matmul_into(H, XT, YT)
        _transpose_into(YT, Y)
        _matmul_into(Y, H, E)
        for r in range(R):
            for j in range(n):
                E[r, j] = X[r, j] - E[r, j]
        # Plastic rows only; Y and E stay fixed during this iteration.
        for k0 in range(rows_start, K, _ROW_BLOCK):
            nrows = _rows_matmul(YT, k0, E, tmp)  # (Y^T E)[k0:k0+4]
            for t in range(nrows):
                k = k0 + t
                for j in range(n):
                    d = tmp[t, j] / R
                    if d > clip:
                        d = clip
                    elif d < -clip:
                        d = -clip
                    v = momentum * velocity[k, j] + one_minus_mom * d
                    velocity[k, j] = v
                    H[k, j] += lr * v


def oja_discrete_numpy(H, X, lr, velocity, rows_start, n_iter=5, clip=10.0, momentum=0.9):
    """Plain-numpy twin of :func:`oja_discrete` (in place on ``H``, ``velocity``)."""
    _check_oja_discrete_py(H, X, velocity, rows_start, n_iter, clip)
    K = H.shape[0]
    R = X.shape[0]
    if rows_start >= K or n_iter == 0 or R == 0:
        return
    p = slice(rows_start, K)
    for _ in range(n_iter):
        Y = X @ H.T
        D = np.clip(Y[:, p].T @ (X - Y @ H) / R, -clip, clip)
        velocity[p] = momentum * velocity[p] + (1.0 - momentum) * D
        H[p] += lr * velocity[p]


# ---------------------------------------------------------------------------
# 5. Synchronisation of weight-shared synapse copies
# ---------------------------------------------------------------------------


@numba.njit(**_JIT)
def reduce_shared_weights(copies, shared, plastic_rows):
    """Merge the drift of weight-shared copies into the shared matrix, in place.

    ``C`` simulated copies of one shared ``K x n`` matrix each drifted from
    ``shared`` by local plasticity since the last synchronisation.  For every
    plastic row ``k`` (``plastic_rows[k]`` True)::

        shared[k] += sum_c (copies[c, k] - shared[k])

    (sum of the drifts, as for a gradient accumulated over shared
    positions), then every copy is reset: ``copies[c] = shared`` for all
    ``c``.  Non-plastic rows of ``shared`` stay bit-identical (and any drift
    of the copies on those rows is discarded).

    Parameters
    ----------
    copies : ndarray, shape (C, K, n), float64
        Drifted copies.  **Written** in place (set to the new ``shared``).
    shared : ndarray, shape (K, n), float64
        Common starting value.  Plastic rows **written** in place.
    plastic_rows : ndarray, shape (K,), bool
        Rows that accumulate drift.  Read only.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If the shapes are inconsistent.
    """
    _check_reduce_shared_weights_nb(copies, shared, plastic_rows)
    C = copies.shape[0]
    K, n = shared.shape
    acc = np.empty(n, dtype=np.float64)
    for k in range(K):
        if not plastic_rows[k]:
            continue
        for j in range(n):
            acc[j] = 0.0
        for c in range(C):
            for j in range(n):
                acc[j] += copies[c, k, j] - shared[k, j]
        for j in range(n):
            shared[k, j] += acc[j]
    for c in range(C):
        for k in range(K):
            for j in range(n):
                copies[c, k, j] = shared[k, j]


def reduce_shared_weights_numpy(copies, shared, plastic_rows):
    """Plain-numpy twin of :func:`reduce_shared_weights` (in place)."""
    _check_reduce_shared_weights_py(copies, shared, plastic_rows)
    p = np.asarray(plastic_rows, dtype=bool)
    shared[p] += (copies[:, p, :] - shared[p][None, :, :]).sum(axis=0)
    copies[...] = shared[None, :, :]


# ---------------------------------------------------------------------------
# segment_spikes
# ---------------------------------------------------------------------------


def _check_segment_spikes(t, i, dt, n_steps, batch, n_per_copy):
    if t.ndim != 1 or i.ndim != 1 or t.shape[0] != i.shape[0]:
        raise ValueError("segment_spikes: t and i must be 1-D arrays of equal length")
    if not dt > 0.0:
        raise ValueError("segment_spikes: dt must be positive")
    if n_steps < 1 or batch < 1 or n_per_copy < 1:
        raise ValueError("segment_spikes: n_steps, batch and n_per_copy must be at least 1")


_check_segment_spikes_py, _check_segment_spikes_nb = _dual(_check_segment_spikes)


@numba.njit(nogil=True, **_JIT)
def segment_spikes(t, i, dt, start_step, n_steps, batch, n_per_copy, n_samples):
    """Spikes of one batched run as ``(sample, step, neuron)``, sorted by sample, step, neuron.

    A run presents ``batch`` samples side by side (copy ``c`` of a population of ``n_per_copy``
    neurons holds flat indices ``c·n_per_copy … (c+1)·n_per_copy − 1``), ``n_steps`` steps per
    presentation, presentations back to back from step ``start_step``. A spike at time ``t`` of flat
    index ``i`` belongs to::

        s = round(t / dt) − start_step
        sample = (s // n_steps) · batch + i // n_per_copy,   step = s % n_steps,
        neuron = i % n_per_copy

    Spikes of samples ``≥ n_samples`` (the unused copies of a partial last batch) are dropped. The
    input must be in monitor order (time, then flat index, non-decreasing), so a stable counting
    sort by sample yields (sample, step, neuron) order. Runs without the GIL (nogil), so a
    background thread can overlap with it.

    Parameters
    ----------
    t : ndarray, shape (S,), float64
        Spike times (second).
    i : ndarray, shape (S,), integer
        Flat neuron indices.
    dt : float
        Time step (second).
    start_step, n_steps, batch, n_per_copy, n_samples : int
        Step at which the run started, steps per presentation, samples per batch, neurons per
        copy, samples presented.

    Returns
    -------
    sample, step, neuron : ndarray of int64, shape (S',)
        ``S' ≤ S`` spikes of the presented samples.

    Raises
    ------
    ValueError
        If the shapes or sizes are inconsistent.
    """
    _check_segment_spikes_nb(t, i, dt, n_steps, batch, n_per_copy)
    S = t.shape[0]
    sample_of = np.empty(S, dtype=np.int64)
    step_of = np.empty(S, dtype=np.int64)
    count = np.zeros(n_samples + 1, dtype=np.int64)
    inv_dt = 1.0 / dt
    for k in range(S):
        s = np.int64(np.rint(t[k] * inv_dt)) - start_step
        sample = (s // n_steps) * batch + np.int64(i[k]) // n_per_copy
        if sample >= n_samples or sample < 0:
            sample = -1
        else:
            count[sample + 1] += 1
        sample_of[k] = sample
        step_of[k] = s % n_steps
    for m in range(n_samples):
        count[m + 1] += count[m]
    kept = count[n_samples]
    out_sample = np.empty(kept, dtype=np.int64)
    out_step = np.empty(kept, dtype=np.int64)
    out_neuron = np.empty(kept, dtype=np.int64)
    for k in range(S):
        sample = sample_of[k]
        if sample < 0:
            continue
        pos = count[sample]
        count[sample] = pos + 1
        out_sample[pos] = sample
        out_step[pos] = step_of[k]
        out_neuron[pos] = np.int64(i[k]) % n_per_copy
    return out_sample, out_step, out_neuron


def segment_spikes_numpy(t, i, dt, start_step, n_steps, batch, n_per_copy, n_samples):
    """Plain-numpy twin of :func:`segment_spikes`."""
    t, i = np.asarray(t), np.asarray(i)
    _check_segment_spikes_py(t, i, dt, n_steps, batch, n_per_copy)
    s = np.rint(t / dt).astype(np.int64) - start_step
    flat = i.astype(np.int64)
    sample = (s // n_steps) * batch + flat // n_per_copy
    keep = (sample >= 0) & (sample < n_samples)
    order = np.argsort(sample[keep], kind="stable")
    return sample[keep][order], (s % n_steps)[keep][order], (flat % n_per_copy)[keep][order]


#: name -> (numba kernel, numpy twin); used by tests and benchmarks.
KERNEL_PAIRS = {
    "project_out": (project_out, project_out_numpy),
    "projected_update": (projected_update, projected_update_numpy),
    "output_credit": (output_credit, output_credit_numpy),
    "hidden_credit": (hidden_credit, hidden_credit_numpy),
    "hidden_credit_slope": (hidden_credit_slope, hidden_credit_slope_numpy),
    "oja_discrete": (oja_discrete, oja_discrete_numpy),
    "reduce_shared_weights": (reduce_shared_weights, reduce_shared_weights_numpy),
    "segment_spikes": (segment_spikes, segment_spikes_numpy),
}
