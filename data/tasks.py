"""Permuted-input task sequences for continual learning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data._validate import check_int, check_rng
from data.digits import Dataset


@dataclass(frozen=True)
class Task:
    """One task of a sequence: a data set with its inputs permuted.

    Attributes
    ----------
    index : int
        Position of the task in the sequence (0-based).
    name : str
        ``"permuted-<index>"``.
    x_train, x_test : np.ndarray
        float64, shape (n_train | n_test, n_features), values in [0, 1];
        equal to the source data set's ``x[:, permutation]``.
    y_train, y_test : np.ndarray
        int64, shape (n_train | n_test,), class labels (unchanged).
    permutation : np.ndarray
        int64, shape (n_features,), a permutation of ``range(n_features)``.
    """

    index: int
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    permutation: np.ndarray

    @property
    def n_features(self) -> int:
        """Number of input features per sample."""
        return int(self.permutation.shape[0])


def apply_permutation(x: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Reorder the feature columns of ``x``.

    Parameters
    ----------
    x : np.ndarray
        Shape (n_samples, n_features), any dtype.
    permutation : np.ndarray
        Integer array of shape (n_features,) holding each of
        ``0 .. n_features - 1`` exactly once.

    Returns
    -------
    np.ndarray
        New C-contiguous array ``x[:, permutation]``, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    perm = np.asarray(permutation)
    if x.ndim != 2:
        raise ValueError(f"x has shape {x.shape}, expected a 2-D array (n_samples, n_features)")
    n_features = x.shape[1]
    if (
        perm.shape != (n_features,)
        or not np.issubdtype(perm.dtype, np.integer)
        or not np.array_equal(np.sort(perm), np.arange(n_features))
    ):
        raise ValueError(
            f"permutation (shape {perm.shape}, dtype {perm.dtype}) must be an integer "
            f"array holding each of 0..{n_features - 1} exactly once"
        )
    return np.ascontiguousarray(x[:, perm])


def permuted_tasks(
    dataset: Dataset,
    n_tasks: int,
    rng: np.random.Generator,
    identity_first: bool = True,
) -> list[Task]:
    """Build a sequence of tasks that share labels but permute the input pixels.

    Parameters
    ----------
    dataset : Dataset
        Source data; each task's inputs are ``dataset.x_*[:, permutation]``.
    n_tasks : int
        Number of tasks, >= 1.
    rng : np.random.Generator
        Source of the permutations, drawn in task order with
        ``rng.permutation(n_features)``; the same generator state gives the same
        tasks.
    identity_first : bool, default True
        If True, task 0 uses the identity permutation (the original images)
        and consumes no random numbers.

    Returns
    -------
    list of Task
        ``n_tasks`` tasks named ``"permuted-0"``, ``"permuted-1"``, ...
    """
    n_tasks = check_int("n_tasks", n_tasks, minimum=1)
    rng = check_rng(rng)
    n_features = dataset.n_features
    tasks = []
    for index in range(n_tasks):
        if index == 0 and identity_first:
            perm = np.arange(n_features, dtype=np.int64)
        else:
            perm = rng.permutation(n_features).astype(np.int64, copy=False)
        tasks.append(
            Task(
                index=index,
                name=f"permuted-{index}",
                x_train=apply_permutation(dataset.x_train, perm),
                y_train=dataset.y_train.copy(),
                x_test=apply_permutation(dataset.x_test, perm),
                y_test=dataset.y_test.copy(),
                permutation=perm,
            )
        )
    return tasks
