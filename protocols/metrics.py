"""Continual-learning metrics computed from an accuracy matrix.

All functions take an accuracy matrix ``R`` of shape ``(N, N)`` where ``R[i, j]`` is the test
accuracy on task ``j`` measured after training task ``i``; the metrics are in the unit of ``R``:

- `average_accuracy` (ACC): ``mean_j R[N-1, j]``;
- `backward_transfer` (BWT): ``mean_{j<N-1} (R[N-1, j] - R[j, j])``, negative when the network forgot;
- `forgetting`: ``mean_{j<N-1} (max_{j<=i<N-1} R[i, j] - R[N-1, j])``;
- `forward_transfer` (FWT): ``mean_{j>=1} (R[j-1, j] - b_j)`` with ``b_j`` task j's accuracy before
  any training (the run file's ``/metrics/initial_accuracy``);
- `learning_accuracy`: the diagonal ``R[j, j]``, each task's accuracy right after it was learned;
- `summarize`: ACC, BWT and forgetting as ``{"ACC", "BWT", "forgetting"}``;
- `filled_tasks`: how many leading rows of a partly filled ``R`` were measured.

Only the entries a metric uses must be finite. For a run that has not finished, pass the filled
block ``R[:k, :k]`` with ``k = filled_tasks(R)`` (and ``b[:k]``). ACC, BWT and forgetting are defined
once, in the run-file package (whose reader summarises stored matrices without importing this
layer), and re-exported here.
"""

import numpy as np

from hlopsim.sim.runfile._metrics import (_as_matrix, _check_finite, average_accuracy, backward_transfer,
                                          filled_tasks, forgetting, summarize)

__all__ = ["average_accuracy", "backward_transfer", "forgetting", "forward_transfer", "learning_accuracy",
           "summarize", "filled_tasks"]


def learning_accuracy(R) -> np.ndarray:
    """Each task's accuracy right after training it: the diagonal ``R[j, j]``.

    Its mean is the "learning accuracy" of Riemer et al. (ICLR 2019): how well new tasks are learned,
    apart from what happens to them later (a method that protects old tasks by freezing too much
    scores low here).

    Parameters
    ----------
    R : array_like, shape (N, N)

    Returns
    -------
    ndarray, shape (N,)

    Raises
    ------
    ValueError
        If ``R`` is not a non-empty square 2-D matrix or a diagonal entry is not finite.
    """
    R = _as_matrix(R)
    _check_finite(R, np.eye(len(R), dtype=bool), "learning_accuracy")
    return np.diagonal(R).copy()


def forward_transfer(R, b) -> float:
    """Mean gain on each task, before it is trained, from the tasks trained before it
    (Lopez-Paz & Ranzato, NeurIPS 2017)::

        FWT = mean_{1 <= j < N} (R[j-1, j] - b[j])

    with ``b[j]`` the accuracy on task ``j`` of the network before any training (randomly initialised).
    Positive: earlier tasks already help with task j; about 0: no transfer.

    Parameters
    ----------
    R : array_like, shape (N, N)
    b : array_like, shape (N,)
        Accuracy on every task before training, in the unit of ``R``.

    Returns
    -------
    float
        ``0.0`` when ``N == 1`` (no task is seen after another).

    Raises
    ------
    ValueError
        If ``R`` is not a non-empty square 2-D matrix, ``b`` does not hold one value per task, or a
        used entry (``R[j-1, j]``, ``b[j]`` for ``j >= 1``) is not finite.
    """
    R = _as_matrix(R)
    n = len(R)
    b = np.asarray(b, dtype=np.float64)
    if b.shape != (n,):
        raise ValueError(f"forward_transfer: b has shape {b.shape}; expected one accuracy per task, ({n},)")
    if n == 1:
        return 0.0
    _check_finite(R, np.eye(n, k=1, dtype=bool), "forward_transfer")
    if not np.isfinite(b[1:]).all():
        j = 1 + int(np.argmax(~np.isfinite(b[1:])))
        raise ValueError(f"forward_transfer: b[{j}] is {b[j]}, expected a finite accuracy")
    later = np.arange(1, n)
    return float(np.mean(R[later - 1, later] - b[later]))
