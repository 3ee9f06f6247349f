"""One entry point for protocol files: a data set by name or by path."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from hlopsim.data._validate import DataError
from hlopsim.data.digits import Dataset, load_digits
from hlopsim.data.files import load_idx, load_npz
from hlopsim.data.mnist5k import load_mnist_5k

# Built-in data sets by name.
NAMED_DATASETS = {"digits": load_digits, "mnist-5k": load_mnist_5k}

_EXPECTED = (
    "'digits', 'mnist-5k', a folder of MNIST-format IDX files, "
    "or an .npz file with x_train, y_train, x_test, y_test"
)


def _call(loader, what: str, first_args: tuple, options: dict) -> Dataset:
    """Call ``loader(*first_args, **options)`` after checking the option names (one-line error)."""
    params = list(inspect.signature(loader).parameters)[len(first_args):]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise DataError(
            f"data set {what} takes no option {', '.join(map(repr, unknown))} "
            f"(its options: {', '.join(params) or 'none'})"
        )
    return loader(*first_args, **options)


def load_dataset(name_or_path, **options) -> Dataset:
    """Load a data set named in a protocol file.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        ``"digits"`` (`load_digits`), ``"mnist-5k"`` (`load_mnist_5k`), an
        existing folder (`load_idx`) or a path ending in ``.npz``
        (`load_npz`). The names win over a same-named folder in the working
        directory (write ``./digits`` for the folder). Relative paths are
        taken from the current working directory; ``~`` is expanded.
    **options
        Passed to that loader: ``test_size``, ``split_seed`` for the named
        sets; ``name`` (and for ``.npz`` ``image_shape``) for files.

    Returns
    -------
    Dataset
        What the chosen loader returns.

    Raises
    ------
    DataError
        ``name_or_path`` is none of the above (the message lists what is
        expected), an option the loader does not take, or any loader error.
    """
    if isinstance(name_or_path, str) and name_or_path in NAMED_DATASETS:
        return _call(NAMED_DATASETS[name_or_path], repr(name_or_path), (), options)
    if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
        raise DataError(f"data set {name_or_path!r} must be {_EXPECTED}")
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_dir():
        return _call(load_idx, f"folder {str(path)!r}", (path,), options)
    if path.suffix.lower() == ".npz":
        return _call(load_npz, f"file {str(path)!r}", (path,), options)
    reason = "an existing file that is not .npz" if path.exists() else "no such name, file or folder"
    raise DataError(f"data set {os.fspath(name_or_path)!r} ({reason}) must be {_EXPECTED}")
