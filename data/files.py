"""Loaders for a user's own data files: MNIST-format IDX folders and ``.npz`` archives.

Both return a `Dataset` with float64 inputs in [0, 1] and labels renumbered
``0 .. n_classes - 1`` in sorted order of the original label values (kept in
``Dataset.classes``). Every problem with a file raises `DataError` with one line
naming the file (and key) and what is wrong.
"""

from __future__ import annotations

import gzip
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from hlopsim.data._validate import DataError
from hlopsim.data.digits import Dataset

# IDX type code (third byte of the magic number) -> big-endian numpy dtype.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The four files of an MNIST-format folder: role -> base name (each may end in ".gz").
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_idx(path) -> np.ndarray:
    """Read one IDX file (the MNIST container format), optionally gzip-compressed.

    The format is a 4-byte big-endian magic number ``0x0000TTDD`` -- two zero
    bytes, a type code ``TT`` (08 uint8, 09 int8, 0B int16, 0C int32,
    0D float32, 0E float64) and the number of dimensions ``DD`` -- then ``DD``
    big-endian uint32 sizes, then the values in C order, big-endian.

    Parameters
    ----------
    path : str or os.PathLike
        The file; a name ending in ``.gz`` is decompressed first.

    Returns
    -------
    np.ndarray
        Shape = the header's sizes, the header's type in native byte order.

    Raises
    ------
    DataError
        The file is missing, not valid gzip, has a bad magic number, a
        truncated header, or a data length that does not match the sizes.
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot be read as {'gzip' if path.name.endswith('.gz') else 'a file'} "
                        f"({' '.join(str(err).split())})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, shorter than the 4-byte IDX magic number")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_TYPES or ndim == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{magic:08X}, expected 0x0000TTDD with type code TT in "
            f"08/09/0B/0C/0D/0E and DD >= 1 dimensions (MNIST images: 0x00000803, labels: 0x00000801)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header, {len(raw)} bytes but {ndim} dimensions need {header}")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: {len(raw) - header} data bytes after the header, but sizes {shape} of "
            f"{dtype.newbyteorder('=').name} need {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_idx_file(folder: Path, base: str) -> Path:
    """The file ``base`` in ``folder``, or ``base.gz``, or the ``train-images.idx3-ubyte`` spelling."""
    dotted = base.replace("-idx", ".idx")
    for name in (base, base + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{folder}: no {base} (or {base}.gz); an IDX folder holds "
        f"{', '.join(IDX_FILES.values())} (each optionally .gz)"
    )


def load_idx(folder, name: str | None = None) -> Dataset:
    """Load an MNIST-format folder of four IDX files (MNIST, Fashion-MNIST, KMNIST, ...).

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` from ``folder``;
    each may instead be the same name plus ``.gz`` (the uncompressed file wins
    if both exist) or spelled with a dot (``train-images.idx3-ubyte``). The
    files' own train/test split is used as is.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder holding the files.
    name : str, optional
        ``Dataset.name``; default the folder's name.

    Returns
    -------
    Dataset
        ``image_shape`` = the images' (height, width). Pixels: uint8 images are
        divided by 255; any other IDX type must be >= 0 and is divided by the
        largest value over train and test when that exceeds 1 (as
        `load_npz`). Labels renumbered ``0 .. n_classes - 1`` in sorted order of
        the file's labels, which are kept in ``classes``.

    Raises
    ------
    DataError
        Missing folder or file, a file that is not valid IDX (see `read_idx`),
        images that are not 3-D, labels that are not 1-D integers, counts or
        image sizes that disagree, or test labels absent from the training set.
    """
    folder = Path(os.fspath(folder)).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected a folder of MNIST-format IDX files)")
    paths = {role: _find_idx_file(folder, base) for role, base in IDX_FILES.items()}
    arrays = {role: read_idx(path) for role, path in paths.items()}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        x_path, y_path = paths[f"x_{part}"], paths[f"y_{part}"]
        if x.ndim != 3:
            raise DataError(
                f"{x_path}: images have {x.ndim} dimensions {x.shape}, expected 3 (n_images, height, width)"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{y_path}: labels have shape {y.shape} and type {y.dtype}, expected 1-D integers")
        if len(y) != len(x):
            raise DataError(f"{y_path}: {len(y)} labels, but {x_path.name} holds {len(x)} images")
        if len(x) == 0:
            raise DataError(f"{x_path}: holds no images, expected at least one")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{paths['x_test']}: images are {arrays['x_test'].shape[1:]}, but "
            f"{paths['x_train'].name} holds {arrays['x_train'].shape[1:]} images"
        )
    image_shape = tuple(int(n) for n in arrays["x_train"].shape[1:])
    x = {part: arrays[f"x_{part}"].reshape(len(arrays[f"x_{part}"]), -1) for part in ("train", "test")}
    if arrays["x_train"].dtype == np.uint8 and arrays["x_test"].dtype == np.uint8:
        x = {part: v.astype(np.float64) for part, v in x.items()}
        for v in x.values():
            v /= 255.0  # in place: full MNIST is 376 MB as float64
    else:
        x = _scale_to_unit({str(paths[f"x_{part}"]): v for part, v in x.items()})
        x = dict(zip(("train", "test"), x))
    y_train, y_test, classes = _renumber_labels(
        (str(paths["y_train"]), arrays["y_train"]), (str(paths["y_test"]), arrays["y_test"])
    )
    return Dataset(
        name=folder.name if name is None else name,
        x_train=x["train"],
        y_train=y_train,
        x_test=x["test"],
        y_test=y_test,
        n_classes=len(classes),
        image_shape=image_shape,
        classes=classes,
    )


def _scale_to_unit(named: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Check real, finite, >= 0 values; divide all arrays by their common max if it exceeds 1.

    ``named`` maps a description used in error messages to an array. Returns
    float64 arrays in the same order.
    """
    out = []
    for where, arr in named.items():
        if arr.dtype == np.bool_:
            arr = arr.astype(np.float64)
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise DataError(f"{where} has dtype {arr.dtype}, expected real numbers (int, uint, float or bool)")
        arr = arr.astype(np.float64)
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise DataError(f"{where} contains {bad} NaN or infinite values, expected finite values")
        if arr.size and arr.min() < 0:
            raise DataError(f"{where} has minimum {arr.min()}, expected values >= 0 (they are scaled to [0, 1])")
        out.append(arr)
    top = max((float(a.max()) for a in out if a.size), default=0.0)
    if top > 1.0:
        for arr in out:
            arr /= top
    return out


def _label_vector(where: str, y: np.ndarray, n_samples: int) -> np.ndarray:
    """Return labels as int64 of shape (n_samples,); whole-number floats are accepted."""
    if y.ndim != 1 or len(y) != n_samples:
        raise DataError(f"{where} has shape {y.shape}, expected ({n_samples},), one label per sample")
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{where} has non-integer values, expected integer class labels")
        return y.astype(np.int64)
    raise DataError(f"{where} has dtype {y.dtype}, expected integer class labels")


def _renumber_labels(train: tuple[str, np.ndarray], test: tuple[str, np.ndarray]):
    """Map labels to ``0 .. n_classes - 1`` by sorted training-label value.

    Returns ``(y_train, y_test, classes)``; raises `DataError` if a test label
    never occurs in training.
    """
    (_, y_train), (test_where, y_test) = train, test
    values = np.unique(y_train)
    unseen = np.setdiff1d(np.unique(y_test), values)
    if unseen.size:
        raise DataError(
            f"{test_where} holds label {unseen[0]}, which no training sample has "
            f"(training labels: {', '.join(map(str, values.tolist()))})"
        )
    return (
        np.searchsorted(values, y_train).astype(np.int64),
        np.searchsorted(values, y_test).astype(np.int64),
        tuple(int(v) for v in values),
    )


def _default_image_shape(n_features: int) -> tuple[int, int]:
    """(side, side) if ``n_features`` is a perfect square, else (1, n_features)."""
    side = math.isqrt(n_features)
    return (side, side) if side * side == n_features else (1, n_features)


def load_npz(path, name: str | None = None, image_shape: tuple[int, int] | None = None) -> Dataset:
    """Load a user's data set from an ``.npz`` archive with its own train/test split.

    The archive must hold ``x_train``, ``y_train``, ``x_test`` and ``y_test``
    (other keys are ignored). ``x_*``: shape (n, n_features) or image-shaped
    (n, height, width), any int, uint, float or bool dtype, finite, >= 0, at
    least one sample each. ``y_*``: 1-D integer labels (whole-number floats are
    accepted), one per sample; any integer values.

    Scaling: if the largest value over ``x_train`` and ``x_test`` exceeds 1,
    both are divided by it (so 0..255 images with a 255 somewhere become
    value / 255); otherwise the values are kept as they are. Labels are
    renumbered ``0 .. n_classes - 1`` in sorted order of the values in
    ``y_train``; the original values are kept in ``Dataset.classes``.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file (written e.g. by ``np.savez``); read without pickle.
    name : str, optional
        ``Dataset.name``; default the file name without ``.npz``.
    image_shape : (int, int), optional
        (height, width) for 2-D ``x``; default ``(s, s)`` when ``n_features``
        is a square ``s * s``, else ``(1, n_features)``. For image-shaped ``x``
        it must equal the images' shape if given.

    Returns
    -------
    Dataset
        float64 ``x`` in [0, 1] (flattened row-major), int64 ``y``.

    Raises
    ------
    DataError
        Missing or unreadable file, missing keys, wrong shapes or dtypes,
        mismatched lengths or feature counts, NaN/inf or negative inputs, or
        test labels absent from the training set.
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected an .npz archive with keys {', '.join(NPZ_KEYS)})")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: cannot be read as an .npz archive ({' '.join(str(err).split())})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, expected an .npz archive with keys {', '.join(NPZ_KEYS)}")
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataError(
                f"{path}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(found: {', '.join(archive.files) or 'none'}; expected {', '.join(NPZ_KEYS)})"
            )
        arrays = {}
        for key in NPZ_KEYS:
            try:
                arrays[key] = np.asarray(archive[key])
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise DataError(f"{path}: key {key} cannot be read ({' '.join(str(err).split())}); "
                                f"expected a numeric array") from None
    shapes = {}
    for part in ("train", "test"):
        x = arrays[f"x_{part}"]
        if x.ndim not in (2, 3):
            raise DataError(
                f"{path}: x_{part} has shape {x.shape}, expected (n, n_features) or (n, height, width)"
            )
        if len(x) == 0:
            raise DataError(f"{path}: x_{part} has no samples, expected at least one")
        shapes[part] = x.shape[1:]
        arrays[f"y_{part}"] = _label_vector(f"{path}: y_{part}", arrays[f"y_{part}"], len(x))
    if shapes["train"] != shapes["test"]:
        raise DataError(f"{path}: x_test samples have shape {shapes['test']}, x_train samples {shapes['train']}")
    n_features = math.prod(shapes["train"])
    if len(shapes["train"]) == 2:
        found = tuple(int(n) for n in shapes["train"])
        if image_shape is not None and tuple(image_shape) != found:
            raise DataError(f"image_shape = {tuple(image_shape)} but {path} holds images of shape {found}")
        image_shape = found
    elif image_shape is None:
        image_shape = _default_image_shape(n_features)
    else:
        shape = tuple(image_shape)
        if len(shape) != 2 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
                                  for n in shape) or math.prod(shape) != n_features:
            raise DataError(
                f"image_shape = {image_shape!r} must be two positive ints with product {n_features} "
                f"(the features per sample in {path})"
            )
        image_shape = tuple(int(n) for n in shape)
    x_train, x_test = _scale_to_unit({
        f"{path}: x_{part}": arrays[f"x_{part}"].reshape(len(arrays[f"x_{part}"]), -1)
        for part in ("train", "test")
    })
    y_train, y_test, classes = _renumber_labels(
        (f"{path}: y_train", arrays["y_train"]), (f"{path}: y_test", arrays["y_test"])
    )
    return Dataset(
        name=path.name.removesuffix(".npz") if name is None else name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        n_classes=len(classes),
        image_shape=image_shape,
        classes=classes,
    )
