"""Forward transfer, learning accuracy and the lateral circuits' fill and spectrum, as ``hlopsim inspect``
and ``hlopsim compare`` show them (real CLI subprocesses on the tiny run files of `cli_helpers.tiny_runs`).

Every expected number is recomputed here with h5py and numpy from the raw datasets: FWT =
mean_{j>=1} (R[j-1, j] - b[j]) with b = /metrics/initial_accuracy, learning accuracy = diag R, fill =
frozen rows / inputs, spectrum = squared singular values of the frozen rows of H.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from cli_helpers import cli_command, cli_env, tiny_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tiny_runs(tmp_path_factory.getbasetemp())
    return {"finetune": folder / "finetune.h5", "hlop": folder / "hlop.h5"}


def _cli(*args):
    done = subprocess.run(cli_command(*map(str, args)), capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _expected(path):
    """(FWT, learning accuracy per task) from the file's raw datasets."""
    with h5py.File(path, "r") as f:
        R, b = f["metrics/accuracy_matrix"][()], f["metrics/initial_accuracy"][()]
    n = len(R)
    assert n == 2 and np.isfinite(R).all() and np.isfinite(b).all()
    return np.mean([R[j - 1, j] - b[j] for j in range(1, n)]), np.diagonal(R)


@pytest.mark.parametrize("method", ["finetune", "hlop"])
def test_inspect_shows_forward_transfer_and_learning_accuracy(runs, method):
    fwt, learned = _expected(runs[method])
    acc = json.loads(_cli("inspect", runs[method], "--json"))["accuracy"]
    assert acc["FWT"] == pytest.approx(fwt, abs=1e-9)
    assert acc["learning_accuracy"] == pytest.approx(learned.tolist(), abs=1e-9)
    assert acc["learning_accuracy_mean"] == pytest.approx(learned.mean(), abs=1e-9)
    with h5py.File(runs[method], "r") as f:
        assert acc["initial_accuracy"] == pytest.approx(f["metrics/initial_accuracy"][()].tolist())
    text = _cli("inspect", runs[method])
    assert f"FWT {fwt:.1f}  learning accuracy {learned.mean():.1f}" in text
    assert "learning accuracy R[j, j] per task: " + "  ".join(f"{v:.1f}" for v in learned) in text


def test_compare_shows_forward_transfer_and_learning_accuracy(runs):
    result = json.loads(_cli("compare", runs["finetune"], runs["hlop"], "--json"))
    for row, method in zip(result["runs"], ("finetune", "hlop")):
        fwt, learned = _expected(runs[method])
        assert row["FWT"] == pytest.approx(fwt, abs=1e-9)
        assert row["learning_accuracy"] == pytest.approx(learned.mean(), abs=1e-9)
    for group, method in zip(result["groups"], ("finetune", "hlop")):
        fwt, learned = _expected(runs[method])
        assert group["FWT"] == {"mean": pytest.approx(fwt, abs=1e-9), "sd": None}
        assert group["learning_accuracy"]["mean"] == pytest.approx(learned.mean(), abs=1e-9)
    text = _cli("compare", runs["finetune"], runs["hlop"])
    header = [line.split() for line in text.splitlines() if line.split()[:1] == ["group"]]
    assert header[0][7:9] == ["FWT", "LA"] and header[1][5:7] == ["FWT", "LA"], header
    fwt, learned = _expected(runs["hlop"])
    hlop_row = next(line for line in text.splitlines() if line.rstrip().endswith("hlop.h5"))
    assert hlop_row.split()[7:9] == [f"{fwt:.1f}", f"{learned.mean():.1f}"]


def test_a_file_without_initial_accuracy_shows_na(runs, tmp_path):
    """Files written before /metrics/initial_accuracy existed: FWT is n/a (null); the rest is shown."""
    old = tmp_path / "old.h5"
    shutil.copy(runs["hlop"], old)
    with h5py.File(old, "r+") as f:
        del f["metrics/initial_accuracy"]
    _, learned = _expected(runs["hlop"])
    acc = json.loads(_cli("inspect", old, "--json"))["accuracy"]
    assert acc["FWT"] is None and acc["initial_accuracy"] is None
    assert acc["learning_accuracy"] == pytest.approx(learned.tolist(), abs=1e-9)
    text = _cli("inspect", old)
    assert f"FWT n/a  learning accuracy {learned.mean():.1f}" in text and "n/a (not stored in this file)" in text
    result = json.loads(_cli("compare", old, "--json"))
    assert result["runs"][0]["FWT"] is None and result["groups"][0]["FWT"] == {"mean": None, "sd": None}
    assert result["runs"][0]["learning_accuracy"] == pytest.approx(learned.mean(), abs=1e-9)
    row = next(line for line in _cli("compare", old).splitlines() if line.rstrip().endswith("old.h5"))
    assert row.split()[7:9] == ["n/a", f"{learned.mean():.1f}"]


def test_one_evaluated_task_has_no_forward_transfer(runs, tmp_path):
    """After one task no task has been seen after another: FWT is undefined (null), LA is R[0, 0]."""
    cut = tmp_path / "cut.h5"
    shutil.copy(runs["hlop"], cut)
    with h5py.File(cut, "r+") as f:
        R = f["metrics/accuracy_matrix"]
        R[1] = np.nan
        first = float(R[0, 0])
    acc = json.loads(_cli("inspect", cut, "--json"))["accuracy"]
    assert acc["tasks_evaluated"] == 1 and acc["FWT"] is None
    assert acc["learning_accuracy"] == pytest.approx([first]) and acc["learning_accuracy_mean"] == pytest.approx(first)


def test_inspect_shows_each_circuits_fill_and_spectrum(runs):
    info = json.loads(_cli("inspect", runs["hlop"], "--json"))
    with h5py.File(runs["hlop"], "r") as f:
        layers = sorted(f["lateral"])
        assert [layer["layer"] for layer in info["lateral"]] == layers
        for layer in info["lateral"]:
            group = f["lateral"][layer["layer"]]
            assert [row["task"] for row in layer["tasks"]] == [0, 1]
            for row in layer["tasks"]:
                H = group[f"H_after_task_{row['task']}"][()]
                kept = H[group[f"frozen_after_task_{row['task']}"][()].astype(bool)]
                assert len(kept) > 0 and row["protected"] == len(kept) and row["inputs"] == H.shape[1]
                assert row["fill"] == pytest.approx(len(kept) / H.shape[1])
                expected = np.sort(np.linalg.svd(kept, compute_uv=False) ** 2)
                np.testing.assert_allclose(row["spectrum"], expected, rtol=1e-10, atol=1e-12)
    text = _cli("inspect", runs["hlop"])
    assert "fill (protected rows / layer inputs) and eigenvalues of H Hᵀ" in text
    first = info["lateral"][0]["tasks"][0]
    s = first["spectrum"]
    cell = f"{100 * first['fill']:.0f}% {min(s):.2f}/{np.median(s):.2f}/{max(s):.2f}"
    assert any(line.split()[:3] == [info["lateral"][0]["layer"], *cell.split()] for line in text.splitlines()), text
    assert json.loads(_cli("inspect", runs["finetune"], "--json"))["lateral"] == []
