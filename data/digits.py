"""The `Dataset` container and the scikit-learn 8x8 handwritten digits as a fixed train/test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlopsim.data._validate import check_int, check_matrix

_PIXEL_MAX = 16.0  # sklearn digits pixels are integers 0..16


@dataclass(frozen=True)
class Dataset:
    """A labelled image data set split into train and test parts.

    Attributes
    ----------
    name : str
        Short identifier, e.g. ``"digits"``.
    x_train : np.ndarray
        float64, shape (n_train, n_features), pixel intensities in [0, 1]
        (dimensionless); images flattened row-major from ``image_shape``.
    y_train : np.ndarray
        int64, shape (n_train,), class labels in [0, n_classes).
    x_test : np.ndarray
        float64, shape (n_test, n_features), values in [0, 1].
    y_test : np.ndarray
        int64, shape (n_test,), class labels in [0, n_classes).
    n_classes : int
        Number of classes.
    image_shape : tuple of int
        (height, width) of one image; height * width == n_features.
    classes : tuple of int, optional
        The original label of each class: label ``k`` in ``y_*`` stands for
        ``classes[k]`` (e.g. the integers a user's file used). Length
        ``n_classes``, distinct values. Default ``None`` is stored as
        ``(0, 1, ..., n_classes - 1)`` (the labels are the class values).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, int]
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        n_classes = check_int("n_classes", self.n_classes, minimum=1)
        object.__setattr__(self, "classes", _check_classes(self.classes, n_classes))
        n_features = int(np.prod(self.image_shape))
        for part in ("train", "test"):
            x = check_matrix(f"x_{part}", getattr(self, f"x_{part}"), low=0.0, high=1.0)
            y = np.asarray(getattr(self, f"y_{part}"))
            if x.shape[1] != n_features:
                raise ValueError(
                    f"x_{part} has {x.shape[1]} features, expected {n_features} "
                    f"(image_shape = {self.image_shape})"
                )
            if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(
                    f"y_{part} has shape {y.shape} and dtype {y.dtype}, "
                    f"expected integer labels of shape ({x.shape[0]},)"
                )
            if y.size and (y.min() < 0 or y.max() >= n_classes):
                raise ValueError(
                    f"y_{part} has labels in [{y.min()}, {y.max()}], expected [0, {n_classes})"
                )
            object.__setattr__(self, f"x_{part}", np.ascontiguousarray(x))
            object.__setattr__(self, f"y_{part}", y.astype(np.int64, copy=False))

    @property
    def n_features(self) -> int:
        """Number of input features (pixels) per sample."""
        return int(self.x_train.shape[1])


def _check_classes(classes, n_classes: int) -> tuple[int, ...]:
    """Return ``classes`` as a tuple of ``n_classes`` distinct ints (``None`` -> 0..n_classes-1)."""
    if classes is None:
        return tuple(range(n_classes))
    values = tuple(classes) if isinstance(classes, (tuple, list, np.ndarray)) else None
    if values is None or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in values):
        raise ValueError(f"classes = {classes!r} must be a tuple of ints (the original label of each class)")
    values = tuple(int(c) for c in values)
    if len(values) != n_classes or len(set(values)) != n_classes:
        raise ValueError(f"classes = {values} must hold {n_classes} distinct values (one per class)")
    return values


def stratified_split(
    x: np.ndarray, y: np.ndarray, n_classes: int, test_size: int, split_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split samples into train and test parts with the class proportions kept.

    Parameters
    ----------
    x : np.ndarray
        Shape (n_samples, n_features).
    y : np.ndarray
        int, shape (n_samples,), labels in [0, n_classes).
    n_classes : int
        Number of classes.
    test_size : int
        Number of test samples, in [n_classes, n_samples - n_classes] so that
        every class can appear on both sides.
    split_seed : int
        ``random_state`` of scikit-learn's ``train_test_split`` (stratified by
        ``y``); the split is a pure function of the inputs and
        ``(test_size, split_seed)``.

    Returns
    -------
    x_train, x_test, y_train, y_test : np.ndarray
        Rows of ``x`` and ``y``, shuffled by the split.
    """
    from sklearn.model_selection import train_test_split

    n_samples = len(y)
    test_size = check_int("test_size", test_size)
    if not n_classes <= test_size <= n_samples - n_classes:
        raise ValueError(
            f"test_size = {test_size} must be in [{n_classes}, {n_samples - n_classes}] "
            f"(at least one sample of each of the {n_classes} classes on both sides "
            f"of the {n_samples}-sample split)"
        )
    split_seed = check_int("split_seed", split_seed, minimum=0, maximum=2**32 - 1)
    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=split_seed)


def load_digits(test_size: int = 450, split_seed: int = 0) -> Dataset:
    """Load scikit-learn's bundled digits (1797 images, 8x8) with a stratified split.

    Parameters
    ----------
    test_size : int, default 450
        Number of test samples; the rest (1347 by default) are for training.
        Must leave at least one sample per class (10) on each side.
    split_seed : int, default 0
        ``random_state`` of the stratified split; the split is a pure function
        of ``(test_size, split_seed)``.

    Returns
    -------
    Dataset
        ``name="digits"``, ``n_classes=10``, ``image_shape=(8, 8)``; pixels
        divided by 16 so ``x`` is float64 in [0, 1].
    """
    from sklearn.datasets import load_digits as _sklearn_digits

    bunch = _sklearn_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / _PIXEL_MAX
    y = np.asarray(bunch.target, dtype=np.int64)
    n_classes = int(y.max()) + 1

    x_train, x_test, y_train, y_test = stratified_split(x, y, n_classes, test_size, split_seed)
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        n_classes=n_classes,
        image_shape=(8, 8),
    )
