"""Long presentations split into several Brian2 runs (`SimNetwork.present`, `sim.resources.samples_per_run`)
give exactly what one run gives: the split bounds a run's memory and changes nothing simulated."""
from __future__ import annotations

import numpy as np
import pytest

import hlopsim as hs
from hlopsim.data.encoders import random_phase_encode
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import adaptive_lif
from hlopsim.models.synapses import Conductance
from hlopsim.sim.learning import apply_update, credit
from hlopsim.sim.network import SimNetwork
from hlopsim.sim.resources import estimate_run_memory, samples_per_run
from hlopsim.sim import prefs


def _present(spec, x, y, max_run_samples, lateral=None):
    """Train on ``x`` once (weights updated every batch, lateral circuits learning), with runs of at most
    ``max_run_samples`` presentations; returns the activity, the batches seen and the final weights."""
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

    spikes = random_phase_encode(x, 500.0, 1e-3, spec.n_steps, np.random.default_rng(1))
    activity = net.present(spikes, on_batch=on_batch)
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
    assert len(runs) == 1 and runs[0] <= 2 ** 31, small.parts      # one run of at most RUN_BUDGET_BYTES
    assert small.total < 10 * 2 ** 30, [(what, size / 2 ** 30) for what, size, _ in small.parts]
    demo = NetworkSpec().with_sizes(64, 10)
    assert samples_per_run(demo, record_spikes=True) >= 6 * 1347     # the demo's runs are not split
