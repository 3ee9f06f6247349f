"""Continual-learning metrics of an accuracy matrix (numpy only; private to the run-file package).

The formulas live here, beside the run-file reader that summarises a stored accuracy matrix;
`hlopsim.protocols.metrics` re-exports the public ones (import them from there). All functions
take an accuracy matrix ``R`` of shape ``(N, N)`` where ``R[i, j]`` is the test accuracy on task
``j`` measured after training task ``i``. Values may be fractions or percentages; the metrics
are in the same unit as ``R``.

Only the entries a metric uses must be finite, so a matrix whose upper triangle (tasks not
trained yet) is NaN is accepted. A matrix from an incomplete run whose last row is NaN is
rejected; pass the leading block ``R[:k, :k]`` with ``k = filled_tasks(R)`` instead.
"""

import numpy as np

__all__ = ["average_accuracy", "backward_transfer", "forgetting", "summarize", "filled_tasks"]


def _as_matrix(R):
    """Return ``R`` as a float ``(N, N)`` array, or raise ValueError."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2:
        raise ValueError(
            f"accuracy matrix must be 2-D, got {R.ndim}-D with shape {R.shape}"
        )
    if R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(
            f"accuracy matrix must be square (N, N) with N >= 1, got shape {R.shape}"
        )
    return R


def _check_finite(R, used, metric):
    """Raise ValueError if an entry of ``R`` selected by mask ``used`` is not finite."""
    bad = np.argwhere(used & ~np.isfinite(R))
    if len(bad):
        i, j = bad[0]
        raise ValueError(
            f"{metric}: R[{i}, {j}] is {R[i, j]}, expected a finite accuracy"
        )


def average_accuracy(R):
    """Mean accuracy over all tasks after training the last task.

    Parameters
    ----------
    R : array_like, shape (N, N)
        Accuracy matrix, ``R[i, j]`` = accuracy on task ``j`` after task ``i``.

    Returns
    -------
    float
        ``mean_j R[N-1, j]``.

    Raises
    ------
    ValueError
        If ``R`` is not a non-empty square 2-D matrix or its last row is
        not finite.
    """
    R = _as_matrix(R)
    used = np.zeros(R.shape, dtype=bool)
    used[-1, :] = True
    _check_finite(R, used, "average_accuracy")
    return float(R[-1].mean())


def backward_transfer(R):
    """Mean change of accuracy on earlier tasks since they were trained.

    Parameters
    ----------
    R : array_like, shape (N, N)
        Accuracy matrix, ``R[i, j]`` = accuracy on task ``j`` after task ``i``.

    Returns
    -------
    float
        ``mean_{j < N-1} (R[N-1, j] - R[j, j])``; negative values mean the
        network forgot. ``0.0`` when ``N == 1``.

    Raises
    ------
    ValueError
        If ``R`` is not a non-empty square 2-D matrix or a used entry
        (last row, diagonal) is not finite.
    """
    R = _as_matrix(R)
    n = R.shape[0]
    if n == 1:
        return 0.0
    used = np.eye(n, dtype=bool)
    used[-1, :] = True
    _check_finite(R, used, "backward_transfer")
    earlier = np.arange(n - 1)
    return float(np.mean(R[-1, earlier] - R[earlier, earlier]))


def forgetting(R):
    """Mean drop from the best earlier accuracy to the final accuracy.

    For each task ``j < N-1`` the best accuracy is taken over the rows
    ``j <= i < N-1``, i.e. after task ``j`` had been trained and before
    the last task was trained.

    Parameters
    ----------
    R : array_like, shape (N, N)
        Accuracy matrix, ``R[i, j]`` = accuracy on task ``j`` after task ``i``.

    Returns
    -------
    float
        ``mean_{j < N-1} (max_{j <= i < N-1} R[i, j] - R[N-1, j])``;
        ``0.0`` when ``N == 1``.

    Raises
    ------
    ValueError
        If ``R`` is not a non-empty square 2-D matrix or a used entry
        (lower triangle including the diagonal) is not finite.
    """
    R = _as_matrix(R)
    n = R.shape[0]
    if n == 1:
        return 0.0
    _check_finite(R, np.tri(n, dtype=bool), "forgetting")
    drops = [R[j : n - 1, j].max() - R[n - 1, j] for j in range(n - 1)]
    return float(np.mean(drops))


def summarize(R):
    """All metrics of an accuracy matrix.

    Parameters
    ----------
    R : array_like, shape (N, N)
        Accuracy matrix, ``R[i, j]`` = accuracy on task ``j`` after task ``i``.

    Returns
    -------
    dict
        ``{"ACC": average_accuracy(R), "BWT": backward_transfer(R),
        "forgetting": forgetting(R)}``.

    Raises
    ------
    ValueError
        As the individual metric functions.
    """
    return {
        "ACC": average_accuracy(R),
        "BWT": backward_transfer(R),
        "forgetting": forgetting(R),
    }


def filled_tasks(R):
    """Number of leading tasks evaluated: ``k + 1`` for the last row ``k`` of ``R`` with a finite entry.

    Parameters
    ----------
    R : array_like, shape (N, N)
        Accuracy matrix, NaN where not measured yet.

    Returns
    -------
    int
        ``k + 1``, or 0 when no row holds a finite entry. ``R[:k+1, :k+1]`` is the block the
        metrics of a run that ended after task ``k`` are computed on.
    """
    filled = np.flatnonzero(np.isfinite(np.asarray(R, dtype=np.float64)).any(axis=1))
    return int(filled[-1]) + 1 if len(filled) else 0
