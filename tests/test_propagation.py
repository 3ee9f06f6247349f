"""Spike propagation through one shared weight matrix (`sim.propagation`) against Brian2's own synapses.

The shared path must simulate exactly what the per-copy Brian2 ``Synapses`` simulate: same float additions
in the same order, hence bit-identical spikes, state variables and scores (numpy target; the cython target
for `Delta` in the slow test at the end, and at the demo's size in docs/benchmarks.md).
"""
import numpy as np
import pytest
from brian2 import Hz, Synapses, second, volt

from hlopsim.data import poisson_encode
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import lif
from hlopsim.models.synapses import Conductance, Delta, ExpCurrent
from hlopsim.sim.network import SimNetwork
from hlopsim.sim.propagation import (SharedPropagation, choose_propagation, propagate_spikes,
                                     propagate_spikes_numpy)


def spikespace(spikes, n):
    """A Brian2-style spikespace of ``n`` neurons holding ``spikes`` (ascending), count last."""
    space = np.full(n + 1, -1, dtype=np.int32)
    space[:len(spikes)] = spikes
    space[-1] = len(spikes)
    return space


def test_kernel_adds_each_spikes_row_to_its_own_copy_only():
    n_copies, n_pre, n_post = 3, 4, 5
    inc = np.arange(n_pre * n_post, dtype=float).reshape(n_pre, n_post) + 1.0
    target = np.zeros((n_copies, n_post))
    propagate_spikes(spikespace([1 * n_pre + 2], n_copies * n_pre), inc, target, n_pre, n_post)
    expected = np.zeros((n_copies, n_post))
    expected[1] = inc[2]                 # spike of neuron 2 in copy 1: row 2, copy 1's neurons only
    assert np.array_equal(target, expected)


def test_kernel_matches_its_numpy_twin_bit_for_bit():
    rng = np.random.default_rng(3)
    n_copies, n_pre, n_post = 5, 7, 11
    inc = rng.normal(size=(n_pre, n_post)) * 10.0 ** rng.integers(-6, 3, size=(n_pre, n_post))
    for _ in range(20):
        spikes = np.flatnonzero(rng.random(n_copies * n_pre) < 0.4)
        space = spikespace(spikes, n_copies * n_pre)
        start = rng.normal(size=(n_copies, n_post))
        fast, twin = start.copy(), start.copy()
        propagate_spikes(space, inc, fast, n_pre, n_post)
        propagate_spikes_numpy(space, inc, twin, n_pre, n_post)
        assert np.array_equal(fast, twin)
    # with no spike nothing changes
    quiet = start.copy()
    propagate_spikes(spikespace([], n_copies * n_pre), inc, quiet, n_pre, n_post)
    assert np.array_equal(quiet, start)


def tiny_spec(synapse, batch_size=4):
    return NetworkSpec(hidden=[6, 5], neuron=lif(tau_m="20 ms", v_threshold="20 mV"), dt="1 ms",
                       presentation="12 ms", input_max_rate="400 Hz", batch_size=batch_size, init_gain=3.0,
                       synapse=synapse).with_sizes(8, 3)


def run_twice(spec, propagation, n_samples=10):
    """Build with ``propagation``, present twice with a weight update at every batch boundary."""
    net = SimNetwork(spec, np.random.default_rng(7), record_spikes=True, propagation=propagation)
    x = np.random.default_rng(11).random((n_samples, spec.input_size))
    rng = np.random.default_rng(12)
    spikes = [poisson_encode(x, float(spec.input_max_rate / Hz), float(spec.dt / second), spec.n_steps, rng)
              for _ in range(2)]

    def update(batch):   # a weight change that depends on the activity: wrong propagation shows up later
        for layer, w in enumerate(net.weights):
            w += 0.05 * np.outer(batch.rates[layer + 1].mean(0) - 0.1, batch.rates[layer].mean(0))
        return True

    activities = [net.present(s, on_batch=update) for s in spikes]
    states = {g.name: {var: np.asarray(g.variables[var].get_value()).copy()
                       for var in ("v", "I_syn", "g_e", "g_i") if var in g.variables} for g in net.groups[1:]}
    return net, activities, states


SYNAPSES = {
    "delta": Delta(),
    "exp_current": ExpCurrent(tau_syn="3 ms"),
    "conductance": Conductance(),
    "mixed": (ExpCurrent(tau_syn="4 ms"), Conductance(tau_e="3 ms"), Delta()),
}


@pytest.mark.parametrize("kind", list(SYNAPSES))
def test_shared_path_is_bit_identical_to_brian2_synapses(kind):
    spec = tiny_spec(SYNAPSES[kind])
    shared, act_s, states_s = run_twice(spec, "shared")
    brian, act_b, states_b = run_twice(spec, "brian2")
    assert all(p is not None for p in shared.propagators)
    assert all(isinstance(s, Synapses) for s in brian.synapses)
    fired = sum(a.counts[2].sum() + a.counts[3].sum() for a in act_b)
    assert fired > 0, "no spikes beyond the first hidden layer: a vacuous comparison"
    for a, b in zip(act_s, act_b):
        for cs, cb in zip(a.counts, b.counts):
            assert np.array_equal(cs, cb)
        assert np.array_equal(a.scores, b.scores)
        assert a.spikes.keys() == b.spikes.keys()
        for name in a.spikes:
            for xs, xb in zip(a.spikes[name], b.spikes[name]):
                assert np.array_equal(xs, xb), name
    assert states_s.keys() == states_b.keys() and all(states_s[g].keys() == states_b[g].keys() for g in states_b)
    for group, variables in states_b.items():
        for var, values in variables.items():
            assert np.array_equal(states_s[group][var], values), (group, var)
    for layer in range(len(spec.weight_names)):
        assert np.array_equal(shared.weights[layer], brian.weights[layer])
        assert np.array_equal(shared.synapse_weights(layer), brian.synapse_weights(layer))


def test_weights_pushed_reach_the_shared_matrix():
    spec = tiny_spec(Delta())
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False, propagation="shared")
    cost = float(spec.neuron.spike_cost / volt)
    net.weights[1] *= -2.0
    net.push_weights()
    held = net.synapse_weights(1)
    assert held.shape == (spec.batch_size, 5, 6)
    for copy in range(spec.batch_size):
        assert np.array_equal(held[copy], net.weights[1] * cost)
    assert np.array_equal(net.propagators[1].w, (net.weights[1] * cost).T)


def test_automatic_choice_and_bad_requests():
    assert choose_propagation("auto", Delta(), "w_1") == "shared"
    assert choose_propagation("auto", Delta(delay="2 ms"), "w_1") == "brian2"
    assert choose_propagation("auto", ExpCurrent(), "w_1") == "brian2"
    assert choose_propagation("shared", Conductance(), "w_1") == "shared"
    with pytest.raises(ValueError, match="propagation = 'shared' for weight layer 'w_2'.*not supported"):
        choose_propagation("shared", Delta(delay="1 ms"), "w_2")
    with pytest.raises(ValueError, match="propagation = 'fast' is unknown"):
        choose_propagation("fast", Delta(), "w_1")
    spec = tiny_spec((Delta(), Delta(delay="2 ms"), Delta()))
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False)   # auto: the delayed layer falls back
    assert [type(p) for p in net.propagators] == [SharedPropagation, type(None), SharedPropagation]
    assert isinstance(net.synapses[1], Synapses)


@pytest.mark.slow
def test_shared_delta_is_bit_identical_under_cython():
    """The demo's target: Brian2's compiled loop adds ``v_post += w`` per synapse; the kernel the same."""
    from hlopsim.sim import prefs
    prefs.configure("cython")
    spec = tiny_spec(Delta())
    shared, act_s, states_s = run_twice(spec, "shared")
    brian, act_b, states_b = run_twice(spec, "brian2")
    assert sum(a.counts[3].sum() for a in act_b) > 0
    for a, b in zip(act_s, act_b):
        assert all(np.array_equal(x, y) for x, y in zip(a.counts, b.counts))
        assert np.array_equal(a.scores, b.scores)
        assert all(np.array_equal(x, y) for name in b.spikes for x, y in zip(a.spikes[name], b.spikes[name]))
    assert all(np.array_equal(states_s[g]["v"], states_b[g]["v"]) for g in states_b)
