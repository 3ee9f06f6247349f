"""Invariants of real runs (numpy target, in-process): seeding, learning off, spike bookkeeping.

Uses `protocols.experiment.protocol.run_protocol` for whole runs and `sim.network.SimNetwork` directly for
the batch-level properties, with real Brian2 simulations and real HDF5 files under ``tmp_path``.
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from cli_helpers import run_file_datasets
from brian2 import Hz, second, volt

from hlopsim.data import load_digits, poisson_encode
from hlopsim.models.from_config import lateral_spec, network_spec
from hlopsim.protocols.experiment.config import apply_overrides, load_protocol
from hlopsim.protocols.experiment.protocol import run_protocol
from hlopsim.sim.network import SimNetwork
from hlopsim.sim.runfile import RunRecorder

TINY = ["protocol.tasks=2", "protocol.epochs=1", "data.train_size=128", "network.hidden=[16]",
        "network.batch_size=32", "lateral.copies=8", "lateral.first_task=[4,4]", "lateral.per_task=[2,2]",
        'sim.target="numpy"']


def tiny_config(*extra):
    return apply_overrides(load_protocol("permuted-digits"), [*TINY, *extra])



# ------------------------------------------------------------------------------------ seeding


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory):
    """Two hlop runs with seed 0 and one with seed 1, each written to its own run file."""
    folder = tmp_path_factory.mktemp("seeds")
    runs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        path = folder / f"{label}.h5"
        result = run_protocol(tiny_config(f"protocol.seed={seed}"), "hlop", path, progress=False)
        runs[label] = (result, path)
    return runs


def test_same_seed_gives_identical_results_and_spikes(seeded_runs):
    (ra, pa), (rb, pb) = seeded_runs["a"], seeded_runs["b"]
    assert np.all(np.isfinite(ra.accuracy))
    assert np.array_equal(ra.accuracy, rb.accuracy)
    da, db = run_file_datasets(pa), run_file_datasets(pb)
    assert set(da) == set(db)
    spike_names = [n for n in da if n.startswith("populations/")]
    assert {n.rsplit("/", 1)[1] for n in spike_names} == {"spike_step", "spike_neuron", "segment_end"}
    assert all(len(da[n]) > 0 for n in spike_names)
    for name in da:  # spikes, segments, weights, lateral H, metrics: all bit-identical
        assert da[name].dtype == db[name].dtype and np.array_equal(da[name], db[name]), name
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        assert fa.attrs["config"] == fb.attrs["config"]


def test_different_seed_gives_different_content(seeded_runs):
    (ra, pa), (rc, pc) = seeded_runs["a"], seeded_runs["c"]
    da, dc = run_file_datasets(pa), run_file_datasets(pc)
    differs = [n for n in da if n not in dc or da[n].shape != dc[n].shape or not np.array_equal(da[n], dc[n])]
    assert "populations/input/spike_step" in differs
    assert "weights/w_1/after_task_0" in differs
    assert any(n.startswith("segments/") for n in differs)  # training order
    assert not np.array_equal(ra.accuracy, rc.accuracy)


# ---------------------------------------------------------------------------- a bare network

N_SAMPLES = 40  # with batch_size 16: two full batches and a partial one


def build(record_spikes=True, with_lateral=False, batch_size=16, seed=3):
    config = apply_overrides(load_protocol("permuted-digits"), [
        "network.hidden=[12]", f"network.batch_size={batch_size}", "lateral.copies=4",
        "lateral.first_task=[3,3]", "lateral.per_task=[2,2]"])
    dataset = load_digits(test_size=config["data"]["test_size"], split_seed=0)
    spec = network_spec(config["network"], dataset.n_features, dataset.n_classes)
    lateral = lateral_spec(config["lateral"]) if with_lateral else None
    net = SimNetwork(spec, np.random.default_rng(seed), lateral=lateral, n_tasks=2, record_spikes=record_spikes)
    rng = np.random.default_rng(seed + 1)
    encode = lambda x: poisson_encode(x, float(spec.input_max_rate / Hz), float(spec.dt / second),  # noqa: E731
                                      spec.n_steps, rng)
    return net, spec, dataset, encode


def brian2_weights(net, layer):
    """The weights straight from the Brian2 Synapses object, shape (batch, n_post, n_pre), volt,
    placed by each synapse's own pre- and postsynaptic index (no assumption on their order); for a
    layer with shared propagation (`sim.propagation`), the one matrix every copy's spikes read."""
    batch = net.spec.batch_size
    n_pre, n_post = net.spec.layer_sizes[layer], net.spec.layer_sizes[layer + 1]
    if net.propagators[layer] is not None:
        return np.repeat(net.propagators[layer].w.T[None], batch, axis=0)
    syn = net.synapses[layer]
    i, j = np.asarray(syn.i[:]), np.asarray(syn.j[:])
    assert np.array_equal(i // n_pre, j // n_post)  # block-diagonal: synapses stay within their copy
    out = np.full((batch, n_post, n_pre), np.nan)
    out[j // n_post, j % n_post, i % n_pre] = np.asarray(syn.w_[:])
    assert not np.isnan(out).any()                   # every (copy, post, pre) pair has its synapse
    return out


@pytest.mark.parametrize("with_lateral", [False, True], ids=["plain", "lateral-circuits-learning"])
def test_learning_off_leaves_weights_bit_identical(with_lateral):
    net, spec, dataset, encode = build(record_spikes=False, with_lateral=with_lateral)
    if with_lateral:  # Hebbian learning of H runs, but it must never touch the feed-forward weights
        for circuit in net.lateral:
            circuit.grow(0)
        net.set_lateral_learning(True)
        H_before = [circuit.H.copy() for circuit in net.lateral]
    spike_cost = float(spec.neuron.spike_cost / volt)
    before = [w.copy() for w in net.weights]
    synapses_before = [net.synapse_weights(layer) for layer in range(len(net.weights))]
    for layer, w in enumerate(before):
        assert synapses_before[layer].shape == (spec.batch_size, *w.shape)
        assert np.array_equal(brian2_weights(net, layer), synapses_before[layer])

    spikes = encode(dataset.x_train[:N_SAMPLES])
    first = net.present(spikes)
    calls = []

    def observe(batch):
        calls.append((batch.batch, batch.samples.copy(), [r.copy() for r in batch.rates]))
        return False

    second_run = net.present(spikes, on_batch=observe)

    assert [c[0] for c in calls] == [0, 1, 2]
    assert np.array_equal(np.concatenate([c[1] for c in calls]),
                          np.where(np.arange(48) < N_SAMPLES, np.arange(48), -1))
    assert sum(r[1].sum() for r in [c[2] for c in calls]) > 0, "hidden layer never fired: a vacuous test"
    assert first.counts[1].sum() > 0 and first.counts[-1].sum() > 0
    if with_lateral:  # the lateral circuits really learned meanwhile
        assert any(not np.array_equal(c.H, h) for c, h in zip(net.lateral, H_before))
    else:
        # same weights and reset dynamics: presenting the same spikes again gives the same activity
        for a, b in zip(first.counts, second_run.counts):
            assert np.array_equal(a, b)
    for layer, w in enumerate(net.weights):
        assert w.dtype == before[layer].dtype and np.array_equal(w, before[layer])
        held = net.synapse_weights(layer)
        assert np.array_equal(held, synapses_before[layer])
        assert np.array_equal(brian2_weights(net, layer), synapses_before[layer])
        for copy in range(spec.batch_size):
            assert np.array_equal(held[copy], w * spike_cost), copy


def test_weights_returned_true_reach_every_copy():
    """Control for the test above: an update the callback reports does reach Brian2 (so it can fail)."""
    net, spec, dataset, encode = build(record_spikes=False)
    spike_cost = float(spec.neuron.spike_cost / volt)

    def scale(batch):
        for w in net.weights:
            w *= 0.5
        return True

    net.present(encode(dataset.x_train[:N_SAMPLES]), on_batch=scale)
    for layer, w in enumerate(net.weights):
        held = brian2_weights(net, layer)
        for copy in range(spec.batch_size):
            assert np.array_equal(held[copy], w * spike_cost)


def _counts_from_spikes(spikes, n_samples, n_neurons):
    sample, _, neuron = spikes
    return np.bincount(np.asarray(sample) * n_neurons + np.asarray(neuron),
                       minlength=n_samples * n_neurons).reshape(n_samples, n_neurons)


def test_recorded_spikes_match_counts_and_survive_the_run_file(tmp_path):
    net, spec, dataset, encode = build(record_spikes=True)
    names, sizes, n_steps = spec.population_names, spec.layer_sizes, spec.n_steps
    inputs = [encode(dataset.x_train[:N_SAMPLES]), encode(dataset.x_test[:23])]
    activities = []
    for spikes in inputs:  # two runs: the second starts where the first ended on Brian2's clock
        activity = net.present(spikes)
        activities.append(activity)
        assert sorted(activity.spikes) == sorted(names)
        for layer, name in enumerate(names):
            sample, step, neuron = activity.spikes[name]
            assert len(sample) == len(step) == len(neuron)
            if len(sample):
                assert sample.min() >= 0 and sample.max() < spikes.n_samples
                assert step.min() >= 0 and step.max() < n_steps
                assert neuron.min() >= 0 and neuron.max() < sizes[layer]
            counts = _counts_from_spikes(activity.spikes[name], spikes.n_samples, sizes[layer])
            assert activity.counts[layer].shape == (spikes.n_samples, sizes[layer])
            assert np.array_equal(counts, activity.counts[layer]), name
            assert counts.sum() > 0, name
        # the input population replays exactly the spikes it was given
        got = activity.spikes["input"]
        order = np.lexsort((got[2], got[1], got[0]))
        for given, recorded in zip((spikes.sample, spikes.step, spikes.neuron), got):
            assert np.array_equal(np.asarray(recorded)[order], given)

    path = tmp_path / "spikes.h5"
    with RunRecorder.create(path, attrs={"dt": float(spec.dt / second)}) as recorder:
        for name, size in zip(names, sizes):
            recorder.add_population(name, size, "test", "input" if name == "input" else "neuron")
        for spikes, activity in zip(inputs, activities):
            n = spikes.n_samples
            recorder.append_block({"task": 0, "stage": 0, "epoch": 0, "phase": "train", "trial": np.arange(n),
                                   "label": np.zeros(n, dtype=int)}, activity.spikes, n_steps)

    expected = [np.concatenate([a.counts[layer] for a in activities]) for layer in range(len(names))]
    n_seg = sum(s.n_samples for s in inputs)
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) is True
        start = f["segments/start_step"][()]
        assert len(start) == n_seg
        for layer, name in enumerate(names):
            pop = f["populations"][name]
            step, neuron, end = pop["spike_step"][()], pop["spike_neuron"][()], pop["segment_end"][()]
            assert len(end) == n_seg and int(end[-1]) == len(step)
            bounds = np.concatenate([[0], end.astype(np.int64)])
            for s in range(n_seg):
                lo, hi = bounds[s], bounds[s + 1]
                local = step[lo:hi].astype(np.int64) - int(start[s])
                assert np.all((local >= 0) & (local < n_steps)), (name, s)
                counts = np.bincount(neuron[lo:hi], minlength=sizes[layer])
                assert np.array_equal(counts, expected[layer][s]), (name, s)


# ------------------------------------------------------------------------------ consolidation


def test_consolidation_epochs_train_only_the_lateral_circuit(tmp_path):
    """`lateral.consolidation_epochs`: after each task's training, more presentations of its data
    with lateral plasticity on and the supervised weights untouched (recorded as phase "consolidate")."""
    paths = {n: tmp_path / f"consolidation-{n}.h5" for n in (0, 2)}
    for n, path in paths.items():
        run_protocol(tiny_config(f"lateral.consolidation_epochs={n}"), "hlop", path, progress=False)
    plain, with_c = run_file_datasets(paths[0]), run_file_datasets(paths[2])       # same seed
    path = paths[2]
    # Task 0's training is identical (its orders are drawn before the consolidation's): same weights.
    for name in ("weights/w_1/after_task_0", "weights/w_2/after_task_0"):
        assert np.array_equal(with_c[name], plain[name])
    # ...and the extra epochs moved the grown lateral rows (learning continued).
    for layer in ("w_1", "w_2"):
        grown = np.any(plain[f"lateral/{layer}/H_after_task_0"] != 0, axis=1)
        assert np.abs(with_c[f"lateral/{layer}/H_after_task_0"][grown]
                      - plain[f"lateral/{layer}/H_after_task_0"][grown]).max() > 1e-3
    with h5py.File(path, "r") as f:
        names = json.loads(f["segments/phase"].attrs["phase_names"])
        phase = np.array(names)[f["segments/phase"][:]]
        task, epoch = f["segments/task"][:], f["segments/epoch"][:]
    for t in (0, 1):
        consolidate = (phase == "consolidate") & (task == t)
        assert consolidate.sum() == 2 * 128
        assert set(epoch[consolidate]) == {1, 2}           # numbered after the training epoch (0)
    # finetune has no lateral circuit: the setting changes nothing
    ft = run_protocol(tiny_config("lateral.consolidation_epochs=2"), "finetune", None, progress=False)
    ft0 = run_protocol(tiny_config("lateral.consolidation_epochs=0"), "finetune", None, progress=False)
    assert np.array_equal(ft.accuracy, ft0.accuracy)


# ------------------------------------------------------------------------- grouped test runs


def test_group_test_sets_packs_consecutive_sets_up_to_the_limit():
    from hlopsim.protocols.experiment.loop import group_test_sets
    assert group_test_sets([450] * 5, limit=4041) == [[0, 1, 2, 3, 4]]
    assert group_test_sets([450] * 5, limit=1000) == [[0, 1], [2, 3], [4]]
    assert group_test_sets([450, 450], limit=100) == [[0], [1]]          # a set larger than the limit runs alone
    assert group_test_sets([], limit=10) == []


def test_test_sets_in_one_run_give_the_same_file_as_one_run_per_set(tmp_path):
    """Evaluating both tasks' test sets in one Brian2 run (batches then straddle the sets) records the
    same accuracies, segments and spikes as one run per set: presentations do not interact."""
    files = {}
    for label, limit in (("together", 10_000), ("apart", 1)):
        path = tmp_path / f"{label}.h5"
        result = run_protocol(tiny_config("data.test_size=300"), "hlop", path, progress=False, test_run_samples=limit)
        files[label] = (result.accuracy, run_file_datasets(path))
    (acc_a, da), (acc_b, db) = files["together"], files["apart"]
    assert np.array_equal(acc_a, acc_b)
    assert set(da) == set(db)
    for name in da:
        assert np.array_equal(da[name], db[name]), name
