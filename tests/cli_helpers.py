"""Running the real `hlopsim` CLI in a subprocess from tests (no mocks)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def cli_env() -> dict:
    """The environment for a CLI subprocess, with the project importable from any folder."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cli_command(*args) -> list[str]:
    """``python -m protocols.cli ARGS`` with this interpreter."""
    return [sys.executable, "-m", "hlopsim", *args]


# A protocol small enough for the fast tier: 2 tasks, 1 epoch, 128 training samples, numpy target.
TINY = ["--tasks", "2", "--epochs", "1", "--quiet",
        "--set", "data.train_size=128", "--set", "network.hidden=[16]", "--set", "network.batch_size=32",
        "--set", "lateral.copies=8", "--set", "lateral.first_task=[4,4]", "--set", "lateral.per_task=[2,2]",
        "--set", "lateral.consolidation_epochs=0", "--set", 'sim.target="numpy"']


def tiny_runs(base: Path) -> Path:
    """``base/tiny-runs`` holding finetune.h5 and hlop.h5 of the tiny protocol (seed 0), written by the
    CLI in a subprocess the first time any test module of the session asks for it."""
    out = base / "tiny-runs"
    if not (out / "written").exists():
        out.mkdir(exist_ok=True)
        proc = subprocess.run(cli_command("run", "permuted-digits", "--method", "finetune,hlop", "--out", str(out),
                                          "--overwrite", *TINY),
                              capture_output=True, text=True, cwd=out, env=cli_env(), timeout=300)
        assert proc.returncode == 0, proc.stderr
        (out / "written").touch()
    return out


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` imported as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", PROJECT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_file_datasets(path) -> dict:
    """Every dataset of an HDF5 file by name, read into memory."""
    import h5py
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def assert_same_run_files(a, b) -> None:
    """Two run files hold the same datasets, bit for bit (dtype, shape and values; NaN equal to NaN)."""
    import numpy as np
    first, second = run_file_datasets(a), run_file_datasets(b)
    assert sorted(first) == sorted(second), (a, b)
    for name, value in first.items():
        other = second[name]
        assert value.dtype == other.dtype and value.shape == other.shape, f"{a}: dataset {name}"
        assert np.array_equal(value, other, equal_nan=value.dtype.kind == "f"), f"{a}: dataset {name} differs"


def tiny_split_tasks(per_class=40, n_test=60, classes=((0, 1), (2, 3), (4, 5))):
    """Split-digits tasks of two classes each, one head each, the first ``per_class`` training samples
    of each class and the first ``n_test`` test samples (fast on the numpy target)."""
    import numpy as np

    import hlopsim as hs
    out = []
    for task in hs.split_tasks(hs.load_digits(), classes=[tuple(c) for c in classes], heads="per-task"):
        keep = np.concatenate([np.flatnonzero(task.y_train == c)[:per_class] for c in np.unique(task.y_train)])
        out.append(hs.make_task(task.name, task.x_train[keep], task.y_train[keep], task.x_test[:n_test],
                                task.y_test[:n_test], head=task.head))
    return out

