"""Task sequences for continual learning: permuted inputs, class splits, and user-made tasks.

A task is plain arrays (`Task`); a sequence is any list of them. The builders
here derive sequences from a `Dataset`; `make_task` checks arrays a user brings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlopsim.data._validate import DataError, check_int, check_matrix, check_rng
from hlopsim.data.digits import Dataset

_HEADS = ("per-task", "shared")


@dataclass(frozen=True)
class Task:
    """One task of a continual-learning sequence.

    The constructor checks every field and stores the arrays in canonical form
    (float64 / int64, C-contiguous); bad input raises `DataError` naming the field.

    Attributes
    ----------
    name : str
        Identifier used in run files and reports, e.g. ``"permuted-2"``.
    x_train, x_test : np.ndarray
        float64, shape (n_train | n_test, n_features), intensities in [0, 1]
        (dimensionless), at least one row each.
    y_train, y_test : np.ndarray
        int64, shape (n_train | n_test,), labels >= 0. With ``head=None`` they
        index the one shared output layer; with an int ``head`` they index the
        outputs of that head (``0 .. len(classes) - 1`` for `split_tasks`).
    index : int or None, default None
        Position of the task in its sequence (0-based); ``None`` leaves it to
        the sequence order.
    head : int or None, default None
        Output head of multi-head protocols (the task's own read-out layer);
        ``None`` means one head shared by all tasks.
    permutation : np.ndarray or None, default None
        int64, shape (n_features,), the pixel permutation that made the inputs
        (``x = source_x[:, permutation]``), or ``None`` if none was applied.
    classes : tuple of int or None, default None
        Original class labels the task holds (``Dataset.classes`` values). With
        an int ``head``, task label ``k`` stands for ``classes[k]``. ``None``:
        not restricted to a subset of classes.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    index: int | None = None
    head: int | None = None
    permutation: np.ndarray | None = None
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataError(f"task name = {self.name!r} must be a non-empty string")
        where = f"task {self.name!r}"
        for field, value in (("index", self.index), ("head", self.head)):
            if value is not None:
                try:
                    object.__setattr__(self, field, check_int(f"{where}: {field}", value, minimum=0))
                except ValueError as err:
                    raise DataError(f"{err} (or None)") from None
        n_features = None
        for part in ("train", "test"):
            try:
                x = check_matrix(f"{where}: x_{part}", getattr(self, f"x_{part}"), low=0.0, high=1.0)
            except ValueError as err:
                raise DataError(str(err)) from None
            if x.shape[0] == 0:
                raise DataError(f"{where}: x_{part} has no samples, expected at least one")
            if n_features is not None and x.shape[1] != n_features:
                raise DataError(f"{where}: x_test has {x.shape[1]} features, x_train has {n_features}")
            n_features = x.shape[1]
            y = _check_labels(f"{where}: y_{part}", getattr(self, f"y_{part}"), x.shape[0])
            object.__setattr__(self, f"x_{part}", np.ascontiguousarray(x))
            object.__setattr__(self, f"y_{part}", y)
        if self.permutation is not None:
            perm = np.asarray(self.permutation)
            if (
                perm.shape != (n_features,)
                or not np.issubdtype(perm.dtype, np.integer)
                or not np.array_equal(np.sort(perm), np.arange(n_features))
            ):
                raise DataError(
                    f"{where}: permutation (shape {perm.shape}, dtype {perm.dtype}) must hold "
                    f"each of 0..{n_features - 1} exactly once, or be None"
                )
            object.__setattr__(self, "permutation", perm.astype(np.int64, copy=False))
        if self.classes is not None:
            classes = _check_class_tuple(f"{where}: classes", self.classes)
            object.__setattr__(self, "classes", classes)
            if self.head is not None:
                top = max(int(self.y_train.max()), int(self.y_test.max()))
                if top >= len(classes):
                    raise DataError(
                        f"{where}: label {top} has no entry in classes = {classes} "
                        f"(head {self.head} has {len(classes)} outputs, labels 0..{len(classes) - 1})"
                    )

    @property
    def n_features(self) -> int:
        """Number of input features per sample."""
        return int(self.x_train.shape[1])


def _check_labels(name: str, y, n_samples: int) -> np.ndarray:
    """Return ``y`` as int64 of shape (n_samples,) with values >= 0, or raise `DataError`."""
    arr = np.asarray(y)
    if arr.shape != (n_samples,) or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"{name} has shape {arr.shape} and dtype {arr.dtype}, "
            f"expected integer labels of shape ({n_samples},)"
        )
    if arr.size and arr.min() < 0:
        raise DataError(f"{name} has label {arr.min()}, expected labels >= 0")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_class_tuple(name: str, classes) -> tuple[int, ...]:
    """Return ``classes`` as a non-empty tuple of distinct ints, or raise `DataError`."""
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise DataError(f"{name} = {classes!r} must be a tuple of ints")
    values = tuple(classes)
    if not values or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in values):
        raise DataError(f"{name} = {classes!r} must be a non-empty tuple of ints")
    values = tuple(int(c) for c in values)
    repeated = sorted({c for c in values if values.count(c) > 1})
    if repeated:
        raise DataError(f"{name} = {values} lists class {repeated[0]} more than once")
    return values


def make_task(
    name: str,
    x_train,
    y_train,
    x_test,
    y_test,
    head: int | None = None,
    classes=None,
    index: int | None = None,
) -> Task:
    """Check a user's arrays and wrap them as a `Task`.

    Parameters
    ----------
    name : str
        Non-empty task name.
    x_train, x_test : array_like
        Real numbers (any int, uint, float or bool dtype) already scaled to
        [0, 1], finite; shape (n_samples, n_features) or image-shaped
        (n_samples, height, width), which is flattened row-major. At least one
        sample each; both with the same number of features.
    y_train, y_test : array_like
        Integer labels >= 0, one per sample of the matching ``x``.
    head : int or None, default None
        Output head for multi-head protocols; ``None`` = the shared head.
    classes : sequence of int or None, default None
        Original class labels the task holds (see `Task`).
    index : int or None, default None
        Position in the sequence, if the caller wants to fix it.

    Returns
    -------
    Task
        float64 ``x`` in [0, 1] and int64 ``y``, both C-contiguous copies or
        views of the inputs; ``permutation=None``.

    Raises
    ------
    DataError
        One line naming the array and what is wrong (shape, dtype, NaN/inf,
        values outside [0, 1], negative labels, length mismatch).
    """
    arrays = {}
    for part, x in (("train", x_train), ("test", x_test)):
        arr = np.asarray(x)
        if arr.ndim == 3:
            arr = arr.reshape(arr.shape[0], -1)
        elif arr.ndim != 2:
            raise DataError(
                f"task {name!r}: x_{part} has shape {arr.shape}, expected (n_samples, n_features) "
                f"or (n_samples, height, width)"
            )
        if arr.dtype == np.bool_:
            arr = arr.astype(np.float64)
        arrays[part] = arr
    return Task(
        name=name,
        x_train=arrays["train"],
        y_train=y_train,
        x_test=arrays["test"],
        y_test=y_test,
        index=index,
        head=head,
        classes=classes,
    )


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
        ``n_tasks`` tasks named ``"permuted-0"``, ``"permuted-1"``, ... with
        ``index`` = position, ``head=None`` (all tasks share the labels
        ``0 .. n_classes - 1`` and one output layer), ``permutation`` set and
        ``classes=None``.
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


def _class_groups(dataset: Dataset, classes, n_tasks) -> list[tuple[int, ...]]:
    """The class groups of `split_tasks` as tuples of ``dataset.classes`` values (checked)."""
    if (classes is None) == (n_tasks is None):
        raise DataError(
            "split_tasks needs exactly one of classes=[(a, b), ...] or n_tasks=<int>, "
            f"got classes={classes!r}, n_tasks={n_tasks!r}"
        )
    known = dataset.classes
    if n_tasks is not None:
        try:
            n_tasks = check_int("n_tasks", n_tasks, minimum=1, maximum=dataset.n_classes)
        except ValueError as err:
            raise DataError(f"{err} (the data set has {dataset.n_classes} classes)") from None
        if dataset.n_classes % n_tasks:
            raise DataError(
                f"n_tasks = {n_tasks} does not divide the {dataset.n_classes} classes into equal "
                f"groups; pick a divisor of {dataset.n_classes} or pass classes=[(a, b), ...]"
            )
        size = dataset.n_classes // n_tasks
        return [tuple(known[i * size:(i + 1) * size]) for i in range(n_tasks)]
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise DataError(f"classes = {classes!r} must be a list of class groups, e.g. [(0, 1), (2, 3)]")
    groups = [_check_class_tuple(f"classes[{i}]", group) for i, group in enumerate(classes)]
    if not groups:
        raise DataError("classes = [] must hold at least one class group, e.g. [(0, 1), (2, 3)]")
    seen: dict[int, int] = {}
    for i, group in enumerate(groups):
        for c in group:
            if c not in known:
                raise DataError(f"classes[{i}] holds class {c}, which the data set lacks (its classes: {known})")
            if c in seen:
                raise DataError(f"classes[{i}] and classes[{seen[c]}] both hold class {c}; groups must not overlap")
            seen[c] = i
    return groups


def split_tasks(
    dataset: Dataset,
    classes=None,
    n_tasks: int | None = None,
    heads: str = "per-task",
) -> list[Task]:
    """Split a data set by class into a task sequence (class-incremental / multi-head protocols).

    Parameters
    ----------
    dataset : Dataset
        Source data; task ``i`` holds the samples whose class is in group ``i``,
        in the data set's order (no randomness).
    classes : sequence of sequence of int, optional
        Explicit class groups in ``dataset.classes`` values, e.g.
        ``[(0, 1), (2, 3)]``; groups must be non-empty, must not overlap and
        need not cover every class. Give this or ``n_tasks``.
    n_tasks : int, optional
        Number of equal groups of consecutive classes (in ``dataset.classes``
        order, sorted for every loader in this package); must divide
        ``n_classes``.
    heads : {"per-task", "shared"}, default "per-task"
        ``"per-task"``: each task has its own output head (``head = index``)
        and its labels are remapped to ``0 .. k-1`` in the order the group
        lists its classes. ``"shared"``: one output layer (``head=None``);
        labels keep their data set values ``0 .. n_classes - 1``.

    Returns
    -------
    list of Task
        Named ``"split-0"``, ``"split-1"``, ...; ``index`` = position,
        ``classes`` = the group, ``permutation=None``.

    Raises
    ------
    DataError
        One line for: both or neither of ``classes``/``n_tasks``, an unknown or
        repeated class, overlapping groups, ``n_tasks`` not dividing
        ``n_classes``, an unknown ``heads``, or a group with no train or no test
        samples.
    """
    if heads not in _HEADS:
        raise DataError(f"heads = {heads!r} must be one of {', '.join(map(repr, _HEADS))}")
    groups = _class_groups(dataset, classes, n_tasks)
    position = {c: k for k, c in enumerate(dataset.classes)}  # original label -> data set label
    tasks = []
    for index, group in enumerate(groups):
        labels = np.array([position[c] for c in group], dtype=np.int64)
        parts = {}
        for part in ("train", "test"):
            y = getattr(dataset, f"y_{part}")
            keep = np.isin(y, labels)
            if not keep.any():
                raise DataError(f"classes {group} (task {index}) have no {part} samples in data set {dataset.name!r}")
            y_kept = y[keep]
            if heads == "per-task":
                local = np.empty(dataset.n_classes, dtype=np.int64)
                local[labels] = np.arange(len(labels))
                y_kept = local[y_kept]
            parts[part] = (np.ascontiguousarray(getattr(dataset, f"x_{part}")[keep]), y_kept)
        tasks.append(
            Task(
                name=f"split-{index}",
                x_train=parts["train"][0],
                y_train=parts["train"][1],
                x_test=parts["test"][0],
                y_test=parts["test"][1],
                index=index,
                head=index if heads == "per-task" else None,
                classes=group,
            )
        )
    return tasks
