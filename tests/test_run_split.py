"""Long presentations split into several Brian2 runs (`SimNetwork.present`, `sim.resources.samples_per_run`)
give exactly what one run gives: the split bounds a run's memory and changes nothing simulated."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from brian2 import Hz, ms
from cli_helpers import assert_same_run_files, tiny_split_tasks

import hlopsim as hs
import hlopsim.sim.network as network_module
import hlopsim.sim.resources as resources
from hlopsim.data.encoders import random_phase_encode
from hlopsim.data.lazy_input import LazyInput
from hlopsim.models.lateral import LateralSpec
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import adaptive_lif
from hlopsim.models.synapses import Conductance
from hlopsim.sim.learning import apply_update, credit
from hlopsim.sim.network import SimNetwork
from hlopsim.sim.resources import RUN_BUDGET_BYTES, estimate_run_memory, samples_per_run
from hlopsim.sim import prefs


def _present(spec, x, y, max_run_samples, lateral=None, lazy=False, blocks=None):
    """Train on ``x`` once (weights updated every batch, lateral circuits learning), with runs of at most
    ``max_run_samples`` presentations; returns the activity, the batches seen and the final weights.
    ``lazy``: the input as a `LazyInput` (encoded a run at a time); ``blocks``: a list that receives every
    run's ``(first, activity)`` (`SimNetwork.present`'s ``on_run``)."""
    prefs.configure("numpy")
    net = SimNetwork(spec, np.random.default_rng(0), lateral=lateral, n_tasks=1)
    net.max_run_samples = max_run_samples
    if lateral is not None:
        for circuit in net.lateral:
            circuit.grow(0)
        net.set_lateral_learning(True)
    seen = []

    def on_batch(batch):
        seen.append((batch.batch, batch.samples.copy()))
        rows = np.where(batch.valid, batch.samples, 0)
        deltas, _ = credit(net.weights, batch.rates, y[rows], batch.valid, 10.0, transfer=net.transfers[:-1])
        apply_update(net.weights, deltas, batch.rates, [c.frozen_H for c in net.lateral] or
                     [np.zeros((0, w.shape[1])) for w in net.weights], 0.1)
        return True

    def encode(rows, rng):
        return random_phase_encode(rows, 500.0, 1e-3, spec.n_steps, rng)

    spikes = LazyInput([(x, None)], encode, spec.n_steps, np.random.default_rng(1)) if lazy else \
        encode(x, np.random.default_rng(1))
    activity = net.present(spikes, on_batch=on_batch,
                           on_run=None if blocks is None else lambda first, run: blocks.append((first, run)))
    return activity, seen, [w.copy() for w in net.weights], [c.H.copy() for c in net.lateral]


@pytest.mark.parametrize("kind", ["reset", "continuous"])
def test_a_split_run_equals_one_run(kind):
    digits = hs.load_digits()
    x, y = digits.x_train[:70], np.asarray(digits.y_train[:70], dtype=np.int64)
    options = {} if kind == "reset" else {"isi": "5 ms", "reset": False, "neuron": adaptive_lif(),
                                          "synapse": Conductance()}
    spec = NetworkSpec(hidden=[12], batch_size=8, presentation="20 ms", **options).with_sizes(64, 10)
    lateral = hs.HLOP(first_task=[4, 4], per_task=[2, 2], copies=4, consolidation_epochs=0).lateral
    whole = _present(spec, x, y, 10 ** 6, lateral)
    split = _present(spec, x, y, 24, lateral)           # 70 samples: runs of 24, 24, 22
    for a, b in zip(whole[0].counts, split[0].counts):
        assert np.array_equal(a, b) and a.sum() > 0
    assert np.array_equal(whole[0].scores, split[0].scores)
    for name in whole[0].spikes:
        assert all(np.array_equal(a, b) for a, b in zip(whole[0].spikes[name], split[0].spikes[name])), name
    assert [(k, s.tolist()) for k, s in whole[1]] == [(k, s.tolist()) for k, s in split[1]]
    assert whole[1][-1][1].tolist() == [64, 65, 66, 67, 68, 69, -1, -1]
    assert all(np.array_equal(a, b) for a, b in zip(whole[2], split[2]))
    assert all(np.array_equal(a, b) for a, b in zip(whole[3], split[3]))


def test_runs_are_capped_at_whole_batches_and_the_estimate_counts_one_run():
    spec = NetworkSpec(hidden=[256, 256], batch_size=64).with_sizes(784, 10)
    cap = samples_per_run(spec, record_spikes=True)
    assert cap % 64 == 0 and 64 <= cap < 24000
    assert samples_per_run(spec, record_spikes=True, budget=1) == 64
    assert samples_per_run(spec, record_spikes=False) > cap
    # permuted-mnist-5k's consolidation run (6 epochs × 4000 samples) is estimated as one capped run
    small = estimate_run_memory(spec, None, n_tasks=5, n_train=4000, n_test=1000, epochs=3,
                                consolidation_epochs=6, encoder="random-phase", record_spikes=True)
    runs = [size for what, size, _ in small.parts if "run" in what]
    assert len(runs) == 1 and runs[0] <= RUN_BUDGET_BYTES, small.parts      # one run of at most the budget
    assert small.total < 10 * 2 ** 30, [(what, size / 2 ** 30) for what, size, _ in small.parts]
    demo = NetworkSpec().with_sizes(64, 10)
    assert 3 * samples_per_run(demo, record_spikes=True) >= 6 * 1347     # 64-128-10: a call in ≤ 3 runs


def _paper_size(n_in, rates):
    spec = NetworkSpec(hidden=(800, 800), batch_size=64, presentation="20 ms").with_sizes(n_in, 10)
    lateral = LateralSpec(first_task=(10, 200, 100), per_task=(10, 70, 70), hebbian_rate=tuple(r * Hz for r in rates),
                          dt=5 * ms, window=10 * ms)
    return spec, lateral


def test_the_estimate_of_a_run_at_the_papers_size_follows_the_run_budget_not_the_calls():
    """784-800-800-10 on mnist-5k (5 tasks, 3 epochs, 6 consolidation epochs, spikes recorded) and
    64-800-800-10 on digits: input encoded a run at a time and spikes written a run at a time, so no part but
    the per-sample bookkeeping grows with a call's length, and the totals stay within 2.5 and 1.5 GB."""
    spec, lateral = _paper_size(784, (2, 4, 4))
    mnist = dict(n_tasks=5, n_train=4000, n_test=1000, epochs=3, encoder="random-phase", record_spikes=True)
    six, sixty = (estimate_run_memory(spec, lateral, consolidation_epochs=c, **mnist) for c in (6, 60))
    assert [what for what, _, _ in six.parts] == [
        "network synapses", "network neurons", "lateral circuit weights", "the largest training run",
        "the input encoder's temporary arrays", "the per-sample arrays of a task's longest call", "the tasks' data",
        "the accuracy matrix"]
    sizes = {what: size for what, size, _ in six.parts}
    assert sizes["the largest training run"] <= RUN_BUDGET_BYTES
    assert sizes["the input encoder's temporary arrays"] < 300e6
    longer = {what: size for what, size, _ in sixty.parts}
    grown = {what for what in sizes if longer[what] != sizes[what]}
    assert grown == {"the per-sample arrays of a task's longest call"}, grown
    assert longer[grown.pop()] == 10 * sizes["the per-sample arrays of a task's longest call"] < 100e6
    assert six.total <= 2.5e9, six.parts
    spec, lateral = _paper_size(64, (16, 2, 2))
    digits = estimate_run_memory(spec, lateral, n_tasks=5, n_train=1347, n_test=450, epochs=3,
                                 consolidation_epochs=6, record_spikes=True)
    assert digits.total <= 1.5e9, digits.parts


def test_a_lazy_call_written_run_by_run_equals_one_eager_run():
    """The input encoded a run at a time and each run's activity handed on as it ends (`on_run`) give
    the activity of one run on input encoded at once, batch for batch."""
    digits = hs.load_digits()
    x, y = digits.x_train[:70], np.asarray(digits.y_train[:70], dtype=np.int64)
    spec = NetworkSpec(hidden=[12], batch_size=8, presentation="20 ms").with_sizes(64, 10)
    lateral = hs.HLOP(first_task=[4, 4], per_task=[2, 2], copies=4, consolidation_epochs=0).lateral
    whole = _present(spec, x, y, 10 ** 6, lateral)
    blocks = []
    lazy = _present(spec, x, y, 24, lateral, lazy=True, blocks=blocks)
    assert [first for first, _ in blocks] == [0, 24, 48]
    assert lazy[0].counts == [] and lazy[0].spikes == {}          # the runs' counts and spikes went to on_run
    assert np.array_equal(whole[0].scores, lazy[0].scores)
    for layer, counts in enumerate(whole[0].counts):
        assert np.array_equal(counts, np.concatenate([run.counts[layer] for _, run in blocks]))
    for name, (sample, step, neuron) in whole[0].spikes.items():
        joined = [np.concatenate([run.spikes[name][k] + (first if k == 0 else 0) for first, run in blocks])
                  for k in range(3)]
        assert len(sample) and all(np.array_equal(a, b) for a, b in zip((sample, step, neuron), joined)), name
    assert [(k, s.tolist()) for k, s in whole[1]] == [(k, s.tolist()) for k, s in lazy[1]]
    assert all(np.array_equal(a, b) for a, b in zip(whole[2] + whole[3], lazy[2] + lazy[3]))


def test_run_files_are_the_same_whatever_the_run_size(tmp_path, monkeypatch):
    """A run (supervised epochs, consolidation, test groups) with runs of one batch — every call's input
    encoded batch by batch and written batch by batch — writes the run file of one run per call."""
    def run(out):
        method = hs.HLOP(first_task=[4, 4], per_task=[2, 2], copies=4, consolidation_epochs=1)
        return hs.run_tasks(tiny_split_tasks(8, 20, classes=((0, 1), (2, 3))), NetworkSpec(hidden=[12], batch_size=8),
                            method, epochs=2, target="numpy", out=out, test_run_samples=30)

    whole = run(tmp_path / "whole.h5")
    monkeypatch.setattr(network_module, "samples_per_run", functools.partial(resources.samples_per_run, budget=1))
    split = run(tmp_path / "split.h5")
    assert np.array_equal(whole.accuracy, split.accuracy)
    assert_same_run_files(tmp_path / "whole.h5", tmp_path / "split.h5")
