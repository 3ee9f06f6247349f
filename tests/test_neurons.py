"""Neuron models (`models.neurons`): validation, the built-in models, and how `sim.network` simulates them.

The network tests are real Brian2 runs (numpy target) of a 4-input, 2-output network with 2 copies,
40 steps of 1 ms per presentation.
"""
from __future__ import annotations

import numpy as np
import pytest
from brian2 import Network, NeuronGroup, SpikeMonitor, mV, ms

from hlopsim.data import regular_encode
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import NEURON_MODELS, NeuronModel, adaptive_lif, izhikevich, lif
from hlopsim.sim.network import SimNetwork

IF = dict(name="if_test", equations="dv/dt = -v / tau : volt", threshold="v > theta", reset="v -= theta",
          parameters={"tau": "1 s", "theta": "20 mV"}, spike_cost="20 mV", initial={"v": "0 mV"})


# ------------------------------------------------------------------------------------ validation


def test_text_values_are_parsed_with_units():
    model = NeuronModel(**{**IF, "refractory": "2 ms"})
    assert model.parameters["tau"] == 1000 * ms and model.parameters["theta"] == 20 * mV
    assert model.spike_cost == 20 * mV and model.initial["v"] == 0 * mV and model.refractory == 2 * ms
    assert NeuronModel(**{**IF, "parameters": {"tau": "1 s", "theta": "20 mV", "k": 0.5}}).parameters["k"] == 0.5
    assert model.transfer == "measured"                       # default for every model


@pytest.mark.parametrize("change, match", [
    ({"equations": "dv/dt = -v / tau : volt (unless refractory)"}, "unless refractory.*refractory is None"),
    ({"refractory": "-1 ms"}, "refractory = '-1 ms' must be a time"),
    ({"refractory": "2 mV"}, "refractory = '2 mV' has the wrong dimensions"),
    ({"transfer": "sigmoid"}, "transfer = 'sigmoid' is unknown"),
    ({"spike_cost": "-3 mV"}, "spike_cost"),
    ({"spike_cost": "3 ms"}, "spike_cost"),
    ({"parameters": {"tau": "1 parsec", "theta": "20 mV"}}, r"parameters\['tau'\].*unknown unit"),
    ({"initial": {"v": "zero"}}, r"initial\['v'\]"),
])
def test_bad_fields_are_one_line_value_errors(change, match):
    with pytest.raises(ValueError, match=match) as info:
        NeuronModel(**{**IF, **change})
    assert "\n" not in str(info.value) and "'if_test'" in str(info.value)


def test_unless_refractory_with_a_refractory_period_is_accepted():
    model = NeuronModel(**{**IF, "equations": "dv/dt = -v / tau : volt (unless refractory)", "refractory": "0 ms"})
    assert model.refractory == 0 * ms


def test_built_in_models():
    assert set(NEURON_MODELS) == {"lif", "adaptive_lif", "izhikevich"}
    model = lif()
    assert (model.equations, model.threshold, model.reset) == ("dv/dt = -v / tau_m : volt", "v > v_threshold",
                                                               "v -= v_threshold")
    assert model.spike_cost == 20 * mV and model.initial == {"v": 0 * mV} and model.method == "exact"
    assert model.transfer == "integrate-and-fire" and model.refractory is None
    for name, make in NEURON_MODELS.items():
        assert make().name == name
    assert adaptive_lif().transfer == izhikevich().transfer == "measured"
    assert izhikevich().method == "euler" and izhikevich().initial == {"v": -65 * mV, "u": -13 * mV}
    # keyword parameters as text or Quantities
    assert adaptive_lif(tau_adapt="50 ms", refractory="2 ms").refractory == 2 * ms
    assert "(unless refractory)" in adaptive_lif(refractory="2 ms").equations
    assert izhikevich(d=2 * mV).parameters["d"] == 2 * mV
    with pytest.raises(ValueError, match="v_floor"):
        izhikevich(v_floor="-60 mV")


def test_izhikevich_floor_stops_the_euler_overshoot_after_inhibition():
    """One inhibitory step of −45, −90, −135 mV from rest: the unmodified equations spike, the floored don't."""
    counts = {}
    for floor in (None, "-85 mV"):
        model = izhikevich(v_floor=floor)
        group = NeuronGroup(3, model.equations, threshold=model.threshold, reset=model.reset, method=model.method,
                            namespace=dict(model.parameters), dt=1 * ms, name="izhikevich_kick")
        group.v, group.u = -70 * mV, -14 * mV                      # rest of the regular-spiking model
        group.run_regularly("v += -45*mV * (i + 1) * int(t > 0.5*ms) * int(t < 1.5*ms)", when="synapses",
                            name="izhikevich_kick_input")
        monitor = SpikeMonitor(group, name="izhikevich_kick_spikes")
        Network(group, monitor, name="izhikevich_kick_net").run(30 * ms, namespace={})
        counts[floor] = np.asarray(monitor.count[:])
    assert np.all(counts[None] == 1) and np.all(counts["-85 mV"] == 0)


# ------------------------------------------------------------------------------------ in the network


def _network(model, weight):
    spec = NetworkSpec(hidden=(), neuron=model, input_size=4, output_size=2, batch_size=2)
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=True)
    net.weights[0][:] = weight
    net.push_weights()
    spikes = regular_encode(np.ones((3, 4)), 500.0, 1e-3, spec.n_steps)  # 2 input spikes per step
    return net, net.present(spikes)


def _intervals(activity):
    """Steps between consecutive spikes of the same output neuron in the same sample."""
    sample, step, neuron = activity.spikes["output"]
    gaps = []
    for s in np.unique(sample):
        for n in (0, 1):
            steps = np.sort(step[(sample == s) & (neuron == n)])
            gaps.extend(np.diff(steps))
    return np.array(gaps)


def test_refractory_neuron_never_fires_twice_within_its_refractory_period():
    refractory = NeuronModel(**{**IF, "equations": "dv/dt = -v / tau : volt (unless refractory)",
                                "refractory": "3 ms"})
    _, activity = _network(refractory, 2.0)                  # 4 spike costs per step: fires whenever allowed
    gaps = _intervals(activity)
    assert gaps.min() == 3 and activity.counts[-1].min() >= 12
    _, free = _network(NeuronModel(**IF), 2.0)               # the same neuron without: every step
    assert _intervals(free).min() == 1


def test_scores_are_counts_plus_the_potential_change():
    # lif at rest: exactly 0 (today's formula: count + v / spike_cost)
    _, activity = _network(lif(), 0.0)
    assert np.array_equal(activity.scores, np.zeros((3, 2)))
    # Izhikevich at rest drifts from v = c = -65 mV to about -70 mV: measured from c, not from 0 V
    _, activity = _network(izhikevich(), 0.0)
    assert np.all(np.abs(activity.scores) < 0.1) and np.all(activity.scores == activity.scores[0, 0])
    # driven: the voltage term never outweighs a spike
    _, activity = _network(izhikevich(), 0.3)
    surplus = activity.scores - activity.counts[-1]
    assert activity.counts[-1].min() > 0 and np.all(np.abs(surplus) <= 1.0)
