"""Synthetic rate streams with a known low-dimensional subspace."""

from __future__ import annotations

import math

import numpy as np

from hlopsim.data._validate import check_int, check_matrix, check_rng


def low_rank_rates(
    n_inputs: int,
    rank: int,
    n_samples: int,
    rng: np.random.Generator,
    noise: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw nonnegative inputs that lie close to a ``rank``-dimensional subspace.

    ``rank`` prototypes are drawn uniformly from [0, 1]^n_inputs and each
    sample is ``coeffs @ prototypes / rank`` with coefficients uniform in
    [0, 1], plus ``noise * |N(0, 1)|`` per entry. If the result exceeds 1 it
    is divided by its maximum (which leaves the subspace unchanged).

    Parameters
    ----------
    n_inputs : int
        Input dimension, >= 1.
    rank : int
        Dimension of the signal subspace, 1 <= rank <= n_inputs.
    n_samples : int
        Number of samples, >= 1.
    rng : np.random.Generator
        Source of randomness.
    noise : float, default 0.02
        Scale of the additive half-normal noise (dimensionless, same units
        as ``x``), >= 0.

    Returns
    -------
    x : np.ndarray
        float64, shape (n_samples, n_inputs), values in [0, 1].
    basis : np.ndarray
        float64, shape (n_inputs, rank), orthonormal columns spanning the
        prototypes.
    """
    n_inputs = check_int("n_inputs", n_inputs, minimum=1)
    rank = check_int("rank", rank, minimum=1, maximum=n_inputs)
    n_samples = check_int("n_samples", n_samples, minimum=1)
    rng = check_rng(rng)
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)):
        raise ValueError(f"noise = {noise!r} must be a real number")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise = {noise} must be finite and >= 0")

    prototypes = rng.random((rank, n_inputs))
    coeffs = rng.random((n_samples, rank))
    x = coeffs @ prototypes / rank + noise * np.abs(rng.standard_normal((n_samples, n_inputs)))
    if x.max() > 1.0:
        x /= x.max()
    basis, _ = np.linalg.qr(prototypes.T)
    return x, basis


def top_subspace(x: np.ndarray, k: int) -> np.ndarray:
    """Principal ``k``-dimensional subspace of the uncentered second moment.

    Parameters
    ----------
    x : np.ndarray
        Shape (n_samples, n_inputs), finite real values. Not centered: the
        result spans the top eigenvectors of ``x.T @ x / n_samples``, the
        fixed point of Oja's subspace rule.
    k : int
        Subspace dimension, 1 <= k <= min(n_samples, n_inputs).

    Returns
    -------
    np.ndarray
        float64, shape (n_inputs, k), orthonormal columns: the top-k right
        singular vectors of ``x`` (signs arbitrary).
    """
    x = check_matrix("x", x)
    k = check_int("k", k, minimum=1, maximum=min(x.shape))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return vt[:k].T


def prototype_mixture_rates(
    n_inputs: int,
    rank: int,
    n_samples: int,
    rng: np.random.Generator,
    concentration: float = 0.2,
    noise: float = 0.01,
    density: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """Nonnegative inputs near a ``rank``-dimensional subspace with a well-spread spectrum.

    Each sample mixes ``rank`` sparse prototypes (entries uniform in [0.3, 1] on a random
    ``density`` fraction of inputs, else 0) with Dirichlet(``concentration``) weights: a small
    concentration makes most samples close to one prototype, like stimuli of a few categories.
    Unlike `low_rank_rates`, whose shared mean dominates ``E[x xᵀ]`` (eigenvalue ratios of
    ~100), the top ``rank`` eigenvalues here are within a factor of a few of each other, so a
    Hebbian circuit can learn all of them in a short test. ``noise * |N(0, 1)|`` is added and the
    result clipped to [0, 1].

    Returns
    -------
    x : np.ndarray
        Shape (n_samples, n_inputs), values in [0, 1].
    basis : np.ndarray
        Shape (n_inputs, rank): orthonormal basis of the prototypes' span.
    """
    n_inputs = check_int("n_inputs", n_inputs, minimum=1)
    rank = check_int("rank", rank, minimum=1, maximum=n_inputs)
    n_samples = check_int("n_samples", n_samples, minimum=1)
    rng = check_rng(rng)
    for name, value in (("concentration", concentration), ("density", density)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} = {value!r} must be a positive number")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise = {noise!r} must be a non-negative number")
    prototypes = rng.uniform(0.3, 1.0, (rank, n_inputs)) * (rng.random((rank, n_inputs)) < density)
    weights = rng.dirichlet(np.full(rank, concentration), size=n_samples)
    x = np.clip(weights @ prototypes + noise * np.abs(rng.normal(size=(n_samples, n_inputs))), 0.0, 1.0)
    basis, _ = np.linalg.qr(prototypes.T)
    return x, basis
