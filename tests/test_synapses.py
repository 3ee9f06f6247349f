"""Synapse models (`models.synapses`): single-neuron responses against their analytic form, delays,
the neuron + synapse composition, the measured transfer through the synaptic kinetics, protocol keys,
and a conductance-based network with refractoriness that learns split-digits with HLOP.

Single-neuron set-up: a network ``input (1) → output (1)`` with one weight, one input spike at step
``K0``, and a StateMonitor in the ``end`` slot, so that sample ``k`` holds the state after step ``k``:
``(k − K0) · dt`` after the spike took effect.
"""
from __future__ import annotations

import numpy as np
import pytest
from brian2 import StateMonitor, mV, ms
from scipy.integrate import solve_ivp

from hlopsim.data.encoders import SpikeTrains, regular_encode
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import NeuronModel, izhikevich, lif
from hlopsim.models.synapses import Conductance, Delta, ExpCurrent, compose, synapse_model
from hlopsim.protocols.experiment.config import ConfigError, Experiment, apply_overrides, load_protocol
from hlopsim.sim.network import SimNetwork
from hlopsim.sim.transfer import DEFAULT_DRIVE, measure_rates, transfer_for

DT = 0.1e-3        # s
TAU_M = 20e-3      # s
COST = 20e-3       # V: lif's spike cost (its threshold)
K0 = 10            # step of the input spike
WEIGHT = 0.5       # spike costs: stays below threshold


def respond(synapse, variables=("v",), weight=WEIGHT, neuron=None, presentation="30 ms"):
    """State traces (SI floats, one per step) of one neuron after one input spike of ``weight`` at step K0."""
    spec = NetworkSpec(hidden=[], neuron=neuron or lif(tau_m="20 ms", v_threshold="20 mV"), dt="0.1 ms",
                       presentation=presentation, batch_size=1, synapse=synapse).with_sizes(1, 1)
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False)
    net.weights[0][:] = weight
    net.push_weights()
    monitor = StateMonitor(net.groups[-1], list(variables), record=True, when="end", name="trace")
    net.net.add(monitor)
    one = np.array([0])
    net.present(SpikeTrains(sample=one, step=np.array([K0]), neuron=one, n_samples=1, n_neurons=1,
                            n_steps=spec.n_steps))
    return {var: np.asarray(getattr(monitor, var + "_")[0]) for var in variables}


def elapsed(n):
    """Time since the spike took effect at every recorded step (negative before it)."""
    return (np.arange(n) - K0) * DT


# ------------------------------------------------------------------------------ analytic responses


def test_delta_psp_is_a_jump_of_w_then_the_membrane_decay():
    v = respond(Delta())["v"]
    t = elapsed(len(v))
    expected = np.where(t >= 0, WEIGHT * COST * np.exp(-np.maximum(t, 0) / TAU_M), 0.0)
    np.testing.assert_allclose(v, expected, rtol=1e-9, atol=1e-15)


def test_exp_current_psc_and_psp_match_the_analytic_shape_peak_time_and_value():
    tau_s = 5e-3
    trace = respond(ExpCurrent(tau_syn="5 ms"), variables=("v", "I_syn"))
    v, current = trace["v"], trace["I_syn"]
    t = elapsed(len(v))
    after = np.maximum(t, 0)
    w = WEIGHT * COST
    psc = np.where(t >= 0, w / tau_s * np.exp(-after / tau_s), 0.0)
    psp = np.where(t >= 0, w * TAU_M / (TAU_M - tau_s) * (np.exp(-after / TAU_M) - np.exp(-after / tau_s)), 0.0)
    np.testing.assert_allclose(current, psc, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(v, psp, rtol=1e-7, atol=1e-12)
    # a weight carries w of depolarisation (∫ I_syn dt = w; the window ends 29 ms after the spike)
    assert np.trapezoid(current[K0:], dx=DT) == pytest.approx(w * (1 - np.exp(-t[-1] / tau_s)), rel=1e-3)
    t_peak = TAU_M * tau_s / (TAU_M - tau_s) * np.log(TAU_M / tau_s)
    v_peak = w * TAU_M / (TAU_M - tau_s) * (np.exp(-t_peak / TAU_M) - np.exp(-t_peak / tau_s))
    assert abs(t[np.argmax(v)] - t_peak) <= DT
    assert v.max() == pytest.approx(v_peak, rel=1e-4)


def _conductance_reference(t_end, g0, tau, reversal, n):
    """``dv/dt = −v/τ_m + g0 e^{−t/τ} (E − v)``, v(0) = 0, solved to 1e-12 at ``n`` points 0, dt, …"""
    def rhs(t, v):
        return -v / TAU_M + g0 * np.exp(-t / tau) * (reversal - v)
    times = np.arange(n) * DT
    solution = solve_ivp(rhs, (0, max(t_end, DT)), [0.0], t_eval=times, rtol=1e-12, atol=1e-15, method="DOP853")
    return solution.y[0]


@pytest.mark.parametrize("sign", [1, -1])
def test_conductance_psp_follows_the_conductance_equation_and_the_sign_chooses_the_receptor(sign):
    synapse = Conductance(tau_e="5 ms", tau_i="10 ms", E_e="70 mV", E_i="-10 mV")   # not the defaults
    trace = respond(synapse, variables=("v", "g_e", "g_i"), weight=sign * WEIGHT)
    v, g_e, g_i = trace["v"], trace["g_e"], trace["g_i"]
    t = elapsed(len(v))
    after = np.maximum(t, 0)
    w = WEIGHT * COST
    if sign > 0:   # Δg_e = w / (τ_e (E_e − v_rest)), v_rest = 0
        tau, reversal, active, silent = 5e-3, 70e-3, g_e, g_i
    else:          # Δg_i = |w| / (τ_i (v_rest − E_i))
        tau, reversal, active, silent = 10e-3, -10e-3, g_i, g_e
    g0 = w / (tau * abs(reversal))
    np.testing.assert_allclose(active, np.where(t >= 0, g0 * np.exp(-after / tau), 0.0), rtol=1e-9, atol=1e-12)
    assert np.all(silent == 0)
    reference = _conductance_reference(t[-1], g0, tau, reversal, len(v) - K0)
    assert np.all(v[:K0] == 0)
    # exponential Euler holds g constant over a step: first-order error, ≈ dt / (2 τ) of the response
    assert np.max(np.abs(v[K0:] - reference)) < 0.02 * np.max(np.abs(reference))
    assert np.sign(v[K0 + 50]) == sign
    # at rest the total depolarisation of one spike is the weight: ∫ g (E − v_rest) dt = w (up to the window's end)
    window = t[-1]
    assert np.trapezoid(active[K0:] * abs(reversal), dx=DT) == pytest.approx(w * (1 - np.exp(-window / tau)), rel=1e-3)


@pytest.mark.parametrize("kind", ["delta", "exp_current", "conductance"])
def test_a_delay_shifts_the_response_exactly(kind):
    variables = ("v",) if kind == "delta" else ("v", "I_syn") if kind == "exp_current" else ("v", "g_e")
    plain = respond(synapse_model(kind), variables=variables)
    delayed = respond(synapse_model(kind, delay="2 ms"), variables=variables)
    shift = 20   # 2 ms of 0.1 ms steps
    for var in variables:
        assert np.all(delayed[var][:K0 + shift] == 0), var
        assert np.array_equal(delayed[var][K0 + shift:], plain[var][K0:-shift]), var


# ------------------------------------------------------------------------------ composition


def test_delta_leaves_the_neuron_model_unchanged_and_lif_keeps_its_exact_map():
    neuron = lif()
    assert compose(neuron, Delta()) is neuron
    assert transfer_for(neuron, 1 * ms, 40, synapse=Delta()).is_ideal
    assert not transfer_for(neuron, 1 * ms, 40, synapse=Delta(delay="3 ms")).is_ideal
    assert not transfer_for(neuron, 1 * ms, 40, synapse=ExpCurrent()).is_ideal


def test_compose_appends_the_input_term_to_the_membrane_equation_of_any_model():
    custom = NeuronModel("leaky", equations="dv/dt = (v_rest - v) / tau : volt (unless refractory)\nx : 1",
                         threshold="v > v_th", reset="v = v_rest", refractory="2 ms",
                         parameters={"tau": "10 ms", "v_rest": "-70 mV", "v_th": "-50 mV"}, spike_cost="20 mV",
                         initial={"v": "-70 mV"})
    model = compose(custom, Conductance(E_e="0 mV", E_i="-80 mV"))
    assert "dv/dt = ((v_rest - v) / tau) + (g_e * (E_e - v) + g_i * (E_i - v)) : volt (unless refractory)" \
        in model.equations
    assert set(model.initial) == {"v", "g_e", "g_i"} and model.parameters["E_i"] == -80 * mV
    assert model.method == ("exponential_euler", "euler", "heun")        # Brian2 tries them in this order
    assert compose(lif(), Conductance()).method == "exponential_euler"
    assert model.refractory == 2 * ms and model.transfer == "measured" and model.name == "leaky+conductance"
    assert compose(izhikevich(), ExpCurrent()).method == "euler"       # a non-exact method is kept


@pytest.mark.parametrize("neuron, synapse, message", [
    (NeuronModel("clash", equations="dv/dt = -v / tau_syn : volt", threshold="v > 1 * mV", reset="v = 0 * mV",
                 parameters={"tau_syn": "10 ms"}, spike_cost="1 mV"), ExpCurrent(), "already uses.*tau_syn"),
    (NeuronModel("sub", equations="v = 3 * mV : volt", threshold="v > 1 * mV", reset="", parameters={},
                 spike_cost="1 mV"), ExpCurrent(), "differential equation"),
    (izhikevich(), Conductance(), "starting potential .* between E_i"),
])
def test_compose_refuses_what_it_cannot_extend(neuron, synapse, message):
    with pytest.raises(ValueError, match=message):
        compose(neuron, synapse)


@pytest.mark.parametrize("make, message", [
    (lambda: ExpCurrent(tau_syn="-1 ms"), "network.tau_syn"),
    (lambda: Conductance(E_e="-20 mV", E_i="-10 mV"), "network.E_i .* below network.E_e"),
    (lambda: Delta(delay="-1 ms"), "network.delay"),
    (lambda: synapse_model("alpha"), "network.synapse = 'alpha' is unknown"),
    (lambda: NetworkSpec(synapse=ExpCurrent(delay="0.5 ms")), "whole number of dt"),
    (lambda: NetworkSpec(hidden=[8], synapse=(Delta(),)), "names 1 synapse models.*2 weight layers"),
])
def test_bad_synapse_settings_are_one_line_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_each_hidden_layer_gets_the_rate_map_of_its_own_synapses():
    neuron = lif(tau_m="100 ms", v_threshold="20 mV")
    synapses = (ExpCurrent(tau_syn="5 ms"), Conductance(), Delta())
    net = SimNetwork(NetworkSpec(hidden=[4, 4], neuron=neuron, synapse=synapses).with_sizes(3, 2),
                     np.random.default_rng(0), record_spikes=False)
    for layer, synapse in enumerate(synapses):
        expected = transfer_for(neuron, 1 * ms, 40, synapse=synapse)
        assert np.array_equal(net.transfers[layer].rate, expected.rate), synapse
    assert not np.array_equal(net.transfers[0].rate, net.transfers[1].rate)
    assert net.transfers[2].is_ideal and net.transfer is net.transfers[0]


def test_the_credit_uses_each_hidden_layers_own_rate_map():
    """Numpy twin of the backward pass with a different measured slope per hidden layer."""
    from hlopsim.sim.learning import credit
    neuron = lif(tau_m="100 ms", v_threshold="20 mV")
    maps = [transfer_for(neuron, 1 * ms, 40, synapse=s) for s in (ExpCurrent(tau_syn="5 ms"), Conductance())]
    rng = np.random.default_rng(1)
    sizes = (6, 5, 4, 3)
    weights = [rng.normal(0, 0.6, size=(sizes[i + 1], sizes[i])) for i in range(3)]
    rates = [rng.uniform(0, 0.8, size=(8, n)) for n in sizes]
    labels, valid = rng.integers(0, 3, size=8), np.ones(8, dtype=bool)
    deltas, _ = credit(weights, rates, labels, valid, 10.0, transfer=maps)
    top = (deltas[2] @ weights[2]) * maps[1].slope(rates[1] @ weights[1].T)
    bottom = (top @ weights[1]) * maps[0].slope(rates[0] @ weights[0].T)
    assert np.allclose(deltas[1], top, rtol=1e-12, atol=1e-15) and np.allclose(deltas[0], bottom, rtol=1e-12, atol=1e-15)
    swapped, _ = credit(weights, rates, labels, valid, 10.0, transfer=maps[::-1])
    assert not np.allclose(swapped[0], deltas[0])
    one, _ = credit(weights, rates, labels, valid, 10.0, transfer=maps[0])
    same, _ = credit(weights, rates, labels, valid, 10.0, transfer=[maps[0], maps[0]])
    assert all(np.array_equal(a, b) for a, b in zip(one, same))
    with pytest.raises(ValueError, match="3 rate maps given for 2 hidden layers"):
        credit(weights, rates, labels, valid, 10.0, transfer=maps + maps[:1])


# ------------------------------------------------------------------------------ measured transfer


def test_the_measured_transfer_is_the_networks_rate_for_an_input_firing_every_step():
    neuron = lif(tau_m="100 ms", v_threshold="20 mV")
    for synapse in (ExpCurrent(tau_syn="5 ms"), Conductance(), ExpCurrent(delay="3 ms")):
        expected = measure_rates(neuron, 1 * ms, 40, DEFAULT_DRIVE, synapse=synapse)
        spec = NetworkSpec(hidden=[], neuron=neuron, input_max_rate="1000 Hz", batch_size=1,
                           synapse=synapse).with_sizes(1, len(DEFAULT_DRIVE))
        net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False)
        net.weights[0][:, 0] = DEFAULT_DRIVE
        net.push_weights()
        activity = net.present(regular_encode(np.ones((1, 1)), 1000.0, 1e-3, 40))   # a spike at every step
        assert np.array_equal(activity.counts[1][0] / 40, expected), synapse
        assert expected[-1] > 0.5 and expected[DEFAULT_DRIVE <= 0].max() == 0


def test_a_delayed_delta_drive_is_the_undelayed_one_started_later():
    neuron = lif(tau_m="100 ms")
    delayed = np.rint(measure_rates(neuron, 1 * ms, 40, DEFAULT_DRIVE, synapse=Delta(delay="5 ms")) * 40)
    shorter = np.rint(measure_rates(neuron, 1 * ms, 35, DEFAULT_DRIVE) * 35)   # spike counts
    assert np.array_equal(delayed, shorter) and shorter.max() > 30


# ------------------------------------------------------------------------------ protocol files


def test_protocol_keys_build_the_synapse_model_and_default_to_delta():
    base = load_protocol("split-digits")
    assert Experiment.from_config(base).network.synapse == Delta()
    config = apply_overrides(base, ['network.synapse="exp_current"', 'network.tau_syn="3 ms"', 'network.delay="2 ms"'])
    assert Experiment.from_config(config).network.synapse == ExpCurrent(tau_syn="3 ms", delay="2 ms")
    config = apply_overrides(base, ['network.synapse="conductance"', 'network.E_i="-10 mV"'])
    assert Experiment.from_config(config).network.synapse == Conductance(E_i="-10 mV")
    config = apply_overrides(base, ['network.synapse="conductance"'])
    assert Experiment.from_config(config).network.synapse == Conductance()
    with pytest.raises(ConfigError, match="network.synapse = 'alpha'"):
        Experiment.from_config(apply_overrides(base, ['network.synapse="alpha"']))
    with pytest.raises(ConfigError, match="starting potential"):
        Experiment.from_config(apply_overrides(base, ['network.synapse="conductance"', 'network.E_i="5 mV"']))


def test_protocol_files_give_one_synapse_model_per_layer():
    base = apply_overrides(load_protocol("split-digits"), ["network.hidden=[16, 16]"])
    config = apply_overrides(base, ['network.synapse=["exp_current", "conductance", "delta"]',
                                    'network.tau_syn="3 ms"', 'network.delay=["1 ms", "0 ms", "2 ms"]'])
    assert Experiment.from_config(config).network.synapse == (
        ExpCurrent(tau_syn="3 ms", delay="1 ms"), Conductance(), Delta(delay="2 ms"))
    config = apply_overrides(base, ['network.synapse="exp_current"', 'network.tau_syn=["3 ms", "4 ms", "5 ms"]'])
    assert Experiment.from_config(config).network.synapse == tuple(ExpCurrent(tau_syn=t) for t in ("3 ms", "4 ms", "5 ms"))
    with pytest.raises(ConfigError, match=r'network.synapse = \["delta", "delta"\] names 2 layers; the network has 3'):
        Experiment.from_config(apply_overrides(base, ['network.synapse=["delta", "delta"]']))
    with pytest.raises(ConfigError, match="network.synapse = 'alpha' is unknown"):
        Experiment.from_config(apply_overrides(base, ['network.synapse=["delta", "alpha", "delta"]']))
    with pytest.raises(ConfigError, match="or a list of one per weight layer"):
        apply_overrides(base, ["network.delay=[1, 2, 3]"])


# ------------------------------------------------------------------------------ learning


def test_conductance_network_with_refractoriness_learns_split_digits_with_hlop():
    """Default `Conductance` synapses (E_i 20 mV below rest) on a LIF with a 2 ms refractory period:
    five 2-class tasks, one head each, HLOP; about 40 s on the numpy target."""
    import hlopsim as hs
    neuron = NeuronModel("lif_refractory", equations="dv/dt = -v / tau_m : volt (unless refractory)",
                         threshold="v > v_threshold", reset="v -= v_threshold", refractory="2 ms",
                         parameters={"tau_m": "100 ms", "v_threshold": "20 mV"}, spike_cost="20 mV",
                         initial={"v": "0 mV"})
    tasks = hs.split_tasks(hs.load_digits(), classes=[(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)], heads="per-task")
    network = hs.NetworkSpec(hidden=[64], neuron=neuron, synapse=Conductance(), batch_size=32)
    method = hs.HLOP(first_task=[8, 16], per_task=[4, 8], consolidation_epochs=2)
    result = hs.run_tasks(tasks, network, method, epochs=3, seed=0, target="numpy", record_spikes=False)
    assert result.accuracy[-1].mean() >= 85.0, np.round(result.accuracy, 1)
