"""``hlopsim compare`` on real run files written by ``hlopsim run`` (numpy target, tiny protocol).

Files: fine-tuning with seeds 0 and 1, hlop with seed 0 (`cli_helpers.tiny_runs`), and an hlop run
whose Hebbian rate makes its circuit diverge, so the CLI stops it in task 0 and leaves an incomplete
file. Every expected number is recomputed from the raw accuracy matrices with h5py and
`protocols.metrics`.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from hlopsim.protocols.metrics import summarize

from cli_helpers import TINY, cli_command, cli_env, tiny_runs

DIVERGING = ["--set", 'lateral.hebbian_rate=["20000 Hz","20000 Hz"]']


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """{name: path} of the four run files; the two extra runs are written side by side."""
    runs = tiny_runs(tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp("compare")
    extra = {"finetune_s1": ["--method", "finetune", "--seed", "1"], "diverged": ["--method", "hlop", *DIVERGING]}
    started = {name: subprocess.Popen(cli_command("run", "permuted-digits", "--out", str(folder / f"{name}.h5"),
                                                  *TINY, *args),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
               for name, args in extra.items()}
    for name, proc in started.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == (2 if name == "diverged" else 0), stderr
    return {"finetune_s0": runs / "finetune.h5", "finetune_s1": folder / "finetune_s1.h5",
            "hlop_s0": runs / "hlop.h5", "diverged": folder / "diverged.h5"}


def _compare(*args):
    return subprocess.run(cli_command("compare", *map(str, args)), capture_output=True, text=True, env=cli_env(),
                          timeout=120)


def _metrics(path) -> dict:
    with h5py.File(path, "r") as f:
        return summarize(f["metrics/accuracy_matrix"][:])


def test_groups_runs_that_differ_only_in_the_seed(files):
    order = ["finetune_s0", "hlop_s0", "finetune_s1", "diverged"]
    done = _compare(*[files[name] for name in order], "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    runs = result["runs"]
    assert [r["method"] for r in runs] == ["finetune", "hlop", "finetune", "hlop"]
    assert [r["seed"] for r in runs] == [0, 0, 1, 0]
    assert [r["complete"] for r in runs] == [True, True, True, False]
    assert [r["group"] for r in runs] == [0, 1, 0, 2]
    for name, row in zip(order[:3], runs):
        expected = _metrics(files[name])
        for metric in ("ACC", "BWT", "forgetting"):
            assert row[metric] == pytest.approx(expected[metric], abs=1e-9)
        assert row["tasks_evaluated"] == 2 and row["train_samples_per_s"] > 0

    finetune, hlop, diverged = result["groups"]
    assert finetune["name"] == "finetune" and finetune["n"] == 2 and finetune["seeds"] == [0, 1]
    for metric in ("ACC", "BWT", "forgetting"):
        values = [_metrics(files[name])[metric] for name in ("finetune_s0", "finetune_s1")]
        assert finetune[metric]["mean"] == pytest.approx(np.mean(values), abs=1e-9)
        assert finetune[metric]["sd"] == pytest.approx(np.std(values, ddof=1), abs=1e-9)
        assert hlop[metric]["sd"] is None  # one run: no spread to report
    assert hlop["n"] == 1 and hlop["incomplete"] == 0
    # the two hlop groups differ in one setting, which names them
    assert hlop["name"] == 'hlop lateral.hebbian_rate=["16 Hz", "6 Hz"]'
    assert diverged["name"] == 'hlop lateral.hebbian_rate=["20000 Hz", "20000 Hz"]'
    assert diverged["n"] == 0 and diverged["incomplete"] == 1 and diverged["BWT"]["mean"] is None


def test_text_table(files):
    done = _compare(files["finetune_s0"], files["finetune_s1"], files["diverged"])
    assert done.returncode == 0, done.stderr
    values = [_metrics(files[name])["BWT"] for name in ("finetune_s0", "finetune_s1")]
    assert f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}" in done.stdout
    assert "(incomplete: not in the group statistics)" in done.stdout
    assert "[0, 1] finetune" in done.stdout and "1 incomplete" in done.stdout


def test_a_file_written_before_a_setting_existed_groups_at_its_default(files, tmp_path):
    """Run files do not store settings added after they were written (here: lateral.decorrelate and
    gpm.basis_sizes); such a file counts as having the bundled default."""
    old = tmp_path / "older.h5"
    shutil.copy(files["finetune_s1"], old)
    with h5py.File(old, "r+") as f:
        config = json.loads(f.attrs["config"])
        del config["lateral"]["decorrelate"], config["gpm"]["basis_sizes"]
        f.attrs["config"] = json.dumps(config)
    done = _compare(files["finetune_s0"], old, "--json")
    assert done.returncode == 0, done.stderr
    assert [g["seeds"] for g in json.loads(done.stdout)["groups"]] == [[0, 1]]
    with h5py.File(old, "r+") as f:  # a stored value other than the default still separates them
        config["lateral"]["decorrelate"] = True
        f.attrs["config"] = json.dumps(config)
    assert len(json.loads(_compare(files["finetune_s0"], old, "--json").stdout)["groups"]) == 2


@pytest.mark.parametrize("case", ["missing", "twice", "not-a-run-file"])
def test_bad_input_is_one_error_line(files, tmp_path, case):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    args, named = {"missing": ([files["hlop_s0"], tmp_path / "none.h5"], "none.h5"),
                   "twice": ([files["hlop_s0"], files["hlop_s0"]], "named twice"),
                   "not-a-run-file": ([text], "not an HDF5 file")}[case]
    done = _compare(*args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and named in done.stderr
