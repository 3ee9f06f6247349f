"""The run-file reader (`hlopsim.sim.runfile.RunFile`) against a real run file written by ``hlopsim run`` (numpy target, tiny protocol).

Every expectation is recomputed here from the raw datasets with plain h5py, following the layout
documented in `hlopsim.sim.runfile.schema`; nothing of the project is mocked.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from hlopsim.protocols.metrics import summarize
from hlopsim.sim.runfile import RunFile, RunFileError, open_run

from cli_helpers import tiny_runs

POPULATIONS = ["input", "hidden_1", "output"]
TRAIN_SIZE, TEST_PER_TASK = 128, 450


@pytest.fixture(scope="module")
def run_path(tmp_path_factory) -> Path:
    """The hlop run file of the tiny protocol."""
    return tiny_runs(tmp_path_factory.getbasetemp()) / "hlop.h5"


@pytest.fixture(scope="module")
def raw(run_path) -> dict:
    """Everything the tests compare against, read with plain h5py."""
    with h5py.File(run_path, "r") as f:
        data = {"attrs": dict(f.attrs), "segments": {k: f["segments"][k][()] for k in f["segments"]},
                "phase_names": f["segments/phase"].attrs["phase_names"],
                "R": f["metrics/accuracy_matrix"][()], "metrics": dict(f["metrics"].attrs), "pops": {}}
        for pop in f["populations"]:
            g = f["populations"][pop]
            data["pops"][pop] = {"step": g["spike_step"][()], "neuron": g["spike_neuron"][()],
                                 "end": g["segment_end"][()].astype(np.int64),
                                 "n_neurons": int(g.attrs["n_neurons"])}
    return data


@pytest.fixture(scope="module")
def run(run_path):
    with open_run(run_path) as opened:
        yield opened


def _owner(ends):
    """Segment index of every spike, from segment_end."""
    return np.repeat(np.arange(len(ends)), np.diff(ends, prepend=0))


def test_description(run, raw):
    attrs = raw["attrs"]
    assert run.protocol == "permuted-digits" and run.method == "hlop" and run.seed == attrs["seed"] == 0
    assert run.dt == attrs["dt"] == pytest.approx(1e-3)
    assert run.n_steps == attrs["n_steps_per_presentation"]
    assert run.presentation_s == pytest.approx(run.n_steps * run.dt)
    assert run.config["protocol"]["tasks"] == 2 and run.config["network"]["hidden"] == [16]
    assert {"python", "numpy", "brian2", "h5py"} <= set(run.software)
    assert run.complete is True and run.complete_flag is True and run.partial_rows == {}
    assert run.populations == POPULATIONS
    for pop in POPULATIONS:
        assert run.n_neurons(pop) == raw["pops"][pop]["n_neurons"]
    assert run.n_tasks == 2 and run.format_version == 1


def test_segments_are_the_raw_table(run, raw):
    seg = run.segments()
    n = len(raw["segments"]["task"])
    assert n == 2 * TRAIN_SIZE + 2 * 2 * TEST_PER_TASK
    assert run.n_segments == n and run.last_complete_segment == n - 1
    for name, values in raw["segments"].items():
        if name != "phase":
            assert np.array_equal(seg[name], values), name
    assert seg["phase"].dtype.kind == "U"
    assert np.array_equal(seg["phase"] == "test", raw["segments"]["epoch"] == -1)
    assert np.array_equal(seg["phase_code"], raw["segments"]["phase"])
    np.testing.assert_allclose(seg["start_s"], raw["segments"]["start_step"] * run.dt)
    train = run.select(task=1, phase="train")
    assert len(train) == TRAIN_SIZE and np.all(seg["task"][train] == 1) and np.all(seg["epoch"][train] == 0)
    assert len(run.select(phase="test", stage=0)) == 2 * TEST_PER_TASK


@pytest.mark.parametrize("pop", POPULATIONS)
def test_spikes_of_each_segment_match_segment_end(run, raw, pop):
    p, seg = raw["pops"][pop], raw["segments"]
    per_segment = np.diff(p["end"], prepend=0)
    assert np.array_equal(run.spikes_per_segment(pop), per_segment)
    rng = np.random.default_rng(0)
    n = len(per_segment)
    chosen = sorted({0, 1, TRAIN_SIZE - 1, TRAIN_SIZE, n - 1, *rng.integers(0, n, 40).tolist()})
    for s in chosen:
        times, neurons = run.spikes(pop, segment=s)
        assert len(times) == len(neurons) == per_segment[s], s
        lo, hi = (p["end"][s - 1] if s else 0), p["end"][s]
        expected = (p["step"][lo:hi].astype(np.int64) - int(seg["start_step"][s])) * run.dt
        np.testing.assert_array_equal(times, expected)
        np.testing.assert_array_equal(neurons, p["neuron"][lo:hi])
        assert np.all((times >= 0) & (times < run.presentation_s))


@pytest.mark.parametrize("pop", POPULATIONS)
def test_all_spikes_are_the_raw_arrays(run, raw, pop):
    times, neurons = run.spikes(pop)
    p = raw["pops"][pop]
    np.testing.assert_array_equal(times, p["step"] * run.dt)
    np.testing.assert_array_equal(neurons, p["neuron"])


@pytest.mark.parametrize("pop", POPULATIONS)
def test_spike_counts_equal_a_bincount_of_the_raw_spikes(run, raw, pop):
    p = raw["pops"][pop]
    n_seg, n_neurons = len(p["end"]), p["n_neurons"]
    expected = np.bincount(_owner(p["end"]) * n_neurons + p["neuron"].astype(np.int64),
                           minlength=n_seg * n_neurons).reshape(n_seg, n_neurons)
    counts = run.spike_counts(pop)
    assert counts.shape == (n_seg, n_neurons) and counts.dtype.kind == "i"
    np.testing.assert_array_equal(counts, expected)
    # selections: indices in any order, a bool mask, a task/phase selection
    some = np.array([900, 3, 17, 1500, 4])
    np.testing.assert_array_equal(run.spike_counts(pop, some), expected[some])
    mask = raw["segments"]["task"] == 1
    np.testing.assert_array_equal(run.spike_counts(pop, mask), expected[mask])
    test0 = run.select(task=0, phase="test")
    np.testing.assert_array_equal(run.spike_counts(pop, test0), expected[test0])
    assert run.spike_counts(pop, []).shape == (0, n_neurons)


@pytest.mark.parametrize("pop", POPULATIONS)
def test_rates_are_counts_over_the_presentation(run, pop):
    counts = run.spike_counts(pop)
    rates = run.rates(pop)
    np.testing.assert_allclose(rates, counts / (run.n_steps * run.dt), rtol=1e-12)
    sel = run.select(task=1, phase="test")
    np.testing.assert_allclose(run.rates(pop, sel), counts[sel] / (run.n_steps * run.dt), rtol=1e-12)


@pytest.mark.parametrize("window", [(0.1234, 0.5678), (0.04, 0.08), (0.0, 0.001), (40.0, 41.3),
                                    (82.0, 1000.0), (5000.0, 6000.0)])
@pytest.mark.parametrize("pop", ["input", "output"])
def test_window_returns_exactly_the_spikes_in_it(run, raw, pop, window):
    p = raw["pops"][pop]
    all_times = p["step"] * run.dt
    inside = (all_times >= window[0]) & (all_times < window[1])
    times, neurons = run.spikes(pop, window=window)
    np.testing.assert_array_equal(times, all_times[inside])
    np.testing.assert_array_equal(neurons, p["neuron"][inside])


def test_local_spikes_of_a_sparse_selection(run, raw):
    sel = np.array([5, 700, 1200, 1201, 2055])
    owner, local, neurons = run.local_spikes("hidden_1", sel)
    for s in sel:
        times, expected_neurons = run.spikes("hidden_1", segment=int(s))
        np.testing.assert_array_equal(local[owner == s] * run.dt, times)
        np.testing.assert_array_equal(neurons[owner == s], expected_neurons)
    assert set(owner.tolist()) <= set(sel.tolist())


def test_accuracy_and_summary(run, raw):
    R = run.accuracy_matrix()
    np.testing.assert_array_equal(R, raw["R"])
    summary = run.summary()
    assert summary["tasks_evaluated"] == 2 == raw["metrics"]["tasks_evaluated"]
    for key, value in summarize(raw["R"]).items():
        assert summary[key] == pytest.approx(value, abs=1e-12)
        assert summary[key] == pytest.approx(raw["metrics"][key], abs=1e-12)


def test_weights_lateral_and_tasks(run, run_path):
    assert run.weight_names == ["w_1", "w_2"] and run.lateral_layers == ["w_1", "w_2"]
    with h5py.File(run_path, "r") as f:
        for name in run.weight_names:
            assert run.weight_tasks(name) == [0, 1]
            for task in (0, 1):
                np.testing.assert_array_equal(run.weights(name, task), f[f"weights/{name}/after_task_{task}"][()])
                H, frozen = run.lateral(name, task)
                np.testing.assert_array_equal(H, f[f"lateral/{name}/H_after_task_{task}"][()])
                np.testing.assert_array_equal(frozen, f[f"lateral/{name}/frozen_after_task_{task}"][()])
        tasks = run.tasks()
        assert [t["index"] for t in tasks] == [0, 1]
        for t in tasks:
            assert t["name"] == f["tasks"][str(t["index"])].attrs["name"]
            np.testing.assert_array_equal(t["permutation"], f[f"tasks/{t['index']}/permutation"][()])
    assert run.weights("w_1", 0).shape == (16, 64)
    # first_task=[4,4], per_task=[2,2]: 4 neurons after task 0, 6 after task 1, all frozen at the end of a task
    for layer, sizes in run.lateral_sizes().items():
        assert [(s["task"], s["grown"], s["frozen"], s["allocated"]) for s in sizes] == [(0, 4, 4, 6), (1, 6, 6, 6)]


@pytest.mark.parametrize("call, message", [
    (lambda r: r.n_neurons("hiden_1"), "population 'hiden_1' is unknown"),
    (lambda r: r.spikes("input", segment=10**6), "segment 1000000 is out of range"),
    (lambda r: r.spikes("input", window=(0.5, 0.1)), "window"),
    (lambda r: r.spikes("input", window="abc"), "window 'abc' is malformed"),
    (lambda r: r.spikes("input", segment=1, window=(0, 1)), "not both"),
    (lambda r: r.spike_counts("input", [-1]), "segment -1 is out of range"),
    (lambda r: r.select(phase="tset"), "phase 'tset' is unknown"),
    (lambda r: r.select(task=2), "task 2 is out of range"),
    (lambda r: r.weights("w_3", 0), "weight layer 'w_3' is unknown"),
    (lambda r: r.weights("w_1", 5), "no snapshot after task 5"),
    (lambda r: r.lateral("w_1", 9), "no snapshot after task 9"),
])
def test_bad_arguments_name_the_file_and_the_value(run, run_path, call, message):
    with pytest.raises(RunFileError) as info:
        call(run)
    text = str(info.value)
    assert text.startswith(f"{run_path}: ") and message in text and "\n" not in text


def test_a_cut_copy_shows_only_complete_segments(run_path, raw, tmp_path):
    """segments/* one block (the last evaluation, 900 rows) longer than every segment_end."""
    copy = tmp_path / "cut.h5"
    shutil.copy(run_path, copy)
    n = len(raw["segments"]["task"])
    cut = n - 2 * TEST_PER_TASK
    with h5py.File(copy, "r+") as f:
        for pop in f["populations"]:
            f[f"populations/{pop}/segment_end"].resize((cut,))
    with RunFile(copy) as r:
        assert r.n_segments == cut and r.last_complete_segment == cut - 1
        assert r.complete_flag is True and r.complete is False
        partial = r.partial_rows
        assert partial["segments/task"] == 2 * TEST_PER_TASK
        for pop in POPULATIONS:
            p = raw["pops"][pop]
            assert partial.get(f"populations/{pop}/spikes") == len(p["step"]) - p["end"][cut - 1]
            times, _ = r.spikes(pop)
            assert len(times) == p["end"][cut - 1]
            assert r.spike_counts(pop).shape == (cut, p["n_neurons"])
        seg = r.segments()
        assert len(seg["task"]) == cut and seg["phase"][-1] == "train" and seg["task"][-1] == 1


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(RunFileError, match="no such file"):
        RunFile(tmp_path / "missing.h5")


def test_subspace_angles_against_known_subspaces(tmp_path):
    """`protocols.reports.plots.subspace_angles_by_layer` on a run file whose answers are known by construction.

    Task 0's input rates lie in a 3-dimensional subspace A and its lateral rows are exactly the top-3
    right singular vectors of the recorded rate matrix (angles 0); task 1's rates lie in a subspace B
    orthogonal to A (other neurons: angles between the tasks 90°) and its rows are random (large
    angles).
    """
    from hlopsim.protocols.reports.plots import subspace_angles_by_layer
    from hlopsim.sim.runfile import RunRecorder

    rng = np.random.default_rng(7)
    n, n_steps, n_seg, k = 12, 50, 40, 3
    # non-negative rows; A on neurons 0..5, B on neurons 6..11
    basis = np.zeros((2 * k, n))
    basis[:k, : n // 2] = rng.random((k, n // 2))
    basis[k:, n // 2 :] = rng.random((k, n // 2))
    path = tmp_path / "known.h5"
    rows = {}
    attrs = {"dt": 1e-3, "n_steps_per_presentation": n_steps, "method": "hlop", "protocol": "permuted-digits"}
    with RunRecorder.create(path, attrs=attrs) as rec:
        rec.add_population("input", n, "poisson", "input")
        rec.add_population("output", 2, "LIF", "output")
        H = np.zeros((2 * k, n))
        for task, span in enumerate((basis[:k], basis[k:])):
            rec.write_task(task, f"task {task}")
            rates = rng.random((n_seg, k)) @ span * 0.2                      # spikes per step, rank k
            counts = rng.poisson(rates * n_steps)
            seg, neuron = np.nonzero(counts)
            seg, neuron = np.repeat(seg, counts[seg, neuron]), np.repeat(neuron, counts[seg, neuron])
            step = rng.integers(0, n_steps, len(seg))
            rec.append_block({"task": task, "stage": task, "epoch": 0, "phase": "train",
                              "trial": np.arange(n_seg), "label": np.zeros(n_seg, int)},
                             {"input": (seg, step, neuron)}, n_steps)
            if task == 0:
                rows[0] = np.linalg.svd(counts / (n_steps * 1e-3), full_matrices=False)[2][:k]
            else:
                rows[1] = np.linalg.qr(rng.normal(size=(n, k)))[0].T
            H[task * k:(task + 1) * k] = rows[task]
            rec.write_weights("w_1", task, np.zeros((2, n)))
            rec.write_lateral("w_1", task, H.copy(), np.arange(2 * k) < (task + 1) * k)
    with open_run(path) as run:
        assert run.presynaptic_population("w_1") == "input"
        (found,) = subspace_angles_by_layer(run)
    assert found.layer == "w_1" and found.population == "input"
    (t0, angles_0), (t1, angles_1) = found.learned_vs_activity
    assert (t0, t1) == (0, 1)
    assert angles_0.max() < 1e-4                   # exact PCA rows
    assert angles_1.max() > 20                     # random rows
    ((a, b, between),) = found.between_tasks
    assert (a, b) == (0, 1) and np.all(between > 89.99)
