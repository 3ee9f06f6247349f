"""Measured rate maps (`sim.transfer`) and the credit assignment that uses them (`sim.learning.credit`).

Real Brian2 measurements (numpy target): 251 neurons × 40 steps of 1 ms per model, a fraction of a
second each. The credit tests are pure numpy against hand-written references.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from brian2 import ms

from hlopsim.data import regular_encode
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import NeuronModel, adaptive_lif, izhikevich, lif
from hlopsim.sim.kernels import hidden_credit
from hlopsim.sim.learning import credit
from hlopsim.sim.network import SimNetwork
from hlopsim.sim.transfer import (DEFAULT_DRIVE, TransferCurve, TransferError, check_rate_code, measure_transfer,
                                  transfer_for)

N_STEPS = 40
DT = 1 * ms


# ------------------------------------------------------------------------------------ measured curves


def test_lif_measured_curve_is_the_integrate_and_fire_map_when_the_leak_is_negligible():
    model = replace(lif(tau_m="100 s"), transfer="measured")  # leak: 4e-4 of v per presentation
    curve = measure_transfer(model, DT, N_STEPS)
    u = curve.drive
    # a neuron starting at 0 fires on the step after v first exceeds 1: at most 2 spikes short of 40 u
    assert np.max(np.abs(curve.rate - np.clip(u, 0, 1))) <= 2 / N_STEPS + 1e-12
    assert np.all(curve.rate[u <= 0] == 0)
    interior = (u > 0.1) & (u < 0.9)
    assert np.max(np.abs(curve.gain[interior] - 1.0)) < 0.15
    assert np.all(curve.gain[(u < -0.2) | (u > 1.2)] == 0.0)
    check_rate_code(curve, model.name)


@pytest.mark.parametrize("make", [adaptive_lif, izhikevich], ids=["adaptive_lif", "izhikevich"])
def test_built_in_models_have_monotone_non_trivial_curves(make):
    model = make()
    curve = measure_transfer(model, DT, N_STEPS)
    check_rate_code(curve, model.name)            # monotone, not saturated, fires
    u, rate = curve.drive, curve.rate
    assert np.all(np.diff(rate) >= -1e-12)        # exactly monotone on the grid
    assert np.all(rate[u <= 0] == 0) and rate.max() >= 0.4
    assert np.all(curve.gain >= 0) and curve.gain.max() > 0.2
    # not the integrate-and-fire map: the adaptation / recovery makes the rate sub-linear
    at_one = rate[np.argmin(np.abs(u - 1.0))]
    assert at_one < 0.8
    # the slope is positive where the rate rises and 0 where it is flat
    assert np.all(curve.slope(np.array([0.5, 1.0])) > 0.05)
    assert np.all(curve.slope(np.array([-0.5, -5.0, 40.0])) == 0.0)


def test_measurement_is_cached_per_model_dt_and_steps():
    model = adaptive_lif()
    first = measure_transfer(model, DT, N_STEPS)
    assert measure_transfer(adaptive_lif(), DT, N_STEPS) is first    # equal model: cache hit
    other = measure_transfer(model, DT, 20)
    assert other is not first and other.n_steps == 20


def test_refractory_period_bounds_the_measured_rate():
    model = NeuronModel(name="refractory_if", equations="v : volt", threshold="v > theta", reset="v -= theta",
                        parameters={"theta": "20 mV"}, spike_cost="20 mV", initial={"v": "0 mV"}, refractory="3 ms")
    curve = measure_transfer(model, DT, N_STEPS)
    # at most one spike every 3 steps; strong input reaches that bound
    assert curve.rate.max() <= np.ceil(N_STEPS / 3) / N_STEPS
    assert curve.rate.max() >= 12 / N_STEPS
    check_rate_code(curve, model.name)


# ------------------------------------------------------------------------------------ refusals

DEAF = NeuronModel(name="deaf", equations="dv/dt = -v / (20*ms) : volt", threshold="v > 1000*volt",
                   reset="v = 0*volt", parameters={}, spike_cost="20 mV")
HOT = NeuronModel(name="always_on", equations="dv/dt = (50*mV - v) / ms : volt", threshold="v > 10*mV",
                  reset="v = 0*mV", parameters={}, spike_cost="20 mV")


def _one_line_error(model, match):
    with pytest.raises(TransferError, match=match) as info:
        transfer_for(model, DT, N_STEPS)
    message = str(info.value)
    assert "\n" not in message and repr(model.name) in message
    return message


def test_a_model_that_never_fires_is_refused_with_one_line():
    message = _one_line_error(DEAF, "never fires")
    assert "40-step presentation" in message
    assert isinstance(TransferError("x"), ValueError)


def test_a_saturated_model_is_refused_with_one_line():
    message = _one_line_error(HOT, "saturated")
    assert "u ≤ 0" in message


def test_a_non_monotone_model_is_refused_with_one_line():
    # Unmodified Izhikevich equations under forward Euler at 1 ms: strong inhibition makes it fire
    _one_line_error(izhikevich(v_floor=None), "non-monotone")


def test_network_with_a_bad_model_fails_before_any_brian2_object():
    spec = NetworkSpec(hidden=(3,), neuron=DEAF, input_size=4, output_size=2, batch_size=2)
    with pytest.raises(TransferError, match="'deaf' never fires"):
        SimNetwork(spec, np.random.default_rng(0), record_spikes=False)


def test_network_exposes_its_transfer():
    spec = NetworkSpec(hidden=(3,), neuron=lif(), input_size=4, output_size=2, batch_size=2)
    one_sample = regular_encode(np.ones((1, 4)), 500.0, 1e-3, spec.n_steps)
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False)
    assert net.transfer.is_ideal                     # lif declares the analytic map: nothing measured
    net.present(one_sample)                          # (a network never run earns Brian2 warnings)
    spec = replace(spec, neuron=adaptive_lif())
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False)
    assert net.transfer is measure_transfer(adaptive_lif(), spec.dt, spec.n_steps)
    net.present(one_sample)


# ------------------------------------------------------------------------------------ the curve object


def test_ideal_curve_slope_is_the_exact_indicator():
    ideal = TransferCurve.ideal()
    u = np.array([-1.0, 0.0, 1e-12, 0.5, 1.0 - 1e-12, 1.0, 3.0, 10.0])
    assert np.array_equal(ideal.slope(u), np.array([0, 0, 1, 1, 1, 0, 0, 0], dtype=float))
    assert np.array_equal(ideal.rate, np.clip(DEFAULT_DRIVE, 0, 1)) and ideal.is_ideal
    check_rate_code(ideal, "lif")                    # never refused


def test_measured_curve_of_a_staircase_has_unit_slope_inside_and_zero_outside():
    u = DEFAULT_DRIVE
    stairs = np.floor(N_STEPS * np.clip(u, 0, 1)) / N_STEPS
    curve = TransferCurve.measured(u, stairs, N_STEPS)
    assert np.max(np.abs(curve.gain[(u > 0.1) & (u < 0.9)] - 1.0)) < 0.1
    assert np.all(curve.gain[(u < -0.2) | (u > 1.2)] == 0.0)
    # a dip is flattened (monotone estimate): the slope stays >= 0
    dipped = stairs.copy()
    dipped[120] -= 0.1
    assert np.all(TransferCurve.measured(u, dipped, N_STEPS).gain >= 0)
    with pytest.raises(ValueError, match="uniform increasing grid"):
        TransferCurve.measured(u[::-1], stairs, N_STEPS)


# ------------------------------------------------------------------------------------ credit

SIZES = (7, 6, 5, 6)   # input, two hidden layers, output
B = 9


@pytest.fixture
def batch():
    rng = np.random.default_rng(11)
    weights = [rng.normal(0.0, 0.6, size=(n_post, n_pre)) for n_pre, n_post in zip(SIZES[:-1], SIZES[1:])]
    rates = [rng.uniform(0, 1, size=(B, n)) for n in SIZES]
    labels = rng.integers(0, SIZES[-1], size=B)
    valid = np.ones(B, dtype=bool)
    valid[-2:] = False
    return weights, rates, labels, valid


def test_credit_with_the_ideal_curve_is_bit_identical_to_credit_without(batch):
    weights, rates, labels, valid = batch
    plain, loss = credit(weights, rates, labels, valid, 7.0)
    ideal, loss_ideal = credit(weights, rates, labels, valid, 7.0, transfer=TransferCurve.ideal())
    assert loss == loss_ideal
    for a, b in zip(plain, ideal):
        assert np.array_equal(a, b)
    # ... and is today's computation: the integrate-and-fire kernel with threshold 1
    u = rates[1] @ weights[1].T
    assert np.array_equal(plain[1], hidden_credit(weights[2], plain[2], u, 1.0))
    assert np.count_nonzero(plain[0]) > 0 and np.count_nonzero(plain[0] == 0) > 0  # both regimes


def _reference_credit(weights, rates, labels, valid, scale, slope):
    """Hand-written numpy: softmax CE credit on the output, then δ_l = (δ_{l+1} W_{l+1}) · slope(u_l)."""
    z = scale * rates[-1]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    target = np.eye(z.shape[1])[labels]
    delta = np.where(valid[:, None], scale * (p - target), 0.0) / len(valid)
    deltas = [delta]
    for layer in range(len(weights) - 1, 0, -1):
        u = rates[layer - 1] @ weights[layer - 1].T
        delta = (delta @ weights[layer]) * slope(u)
        deltas.append(delta)
    return deltas[::-1]


def test_credit_with_a_measured_slope_matches_a_numpy_reference(batch):
    weights, rates, labels, valid = batch
    curve = measure_transfer(adaptive_lif(), DT, N_STEPS)
    got, _ = credit(weights, rates, labels, valid, 7.0, transfer=curve)

    def slope(u):  # the curve's gain, linearly interpolated, 0 outside the grid
        inside = (u >= curve.drive[0]) & (u <= curve.drive[-1])
        return np.where(inside, np.interp(u, curve.drive, curve.gain), 0.0)

    expect = _reference_credit(weights, rates, labels, valid, 7.0, slope)
    for g, e in zip(got, expect):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
    assert not np.allclose(got[0], credit(weights, rates, labels, valid, 7.0)[0][0])  # not the IF indicator


def test_head_restricted_credit_equals_credit_of_a_network_with_only_that_head(batch):
    weights, rates, labels, valid = batch
    head = slice(2, 5)
    local = labels % 3
    got, loss = credit(weights, rates, local, valid, 7.0, head=head)
    # the same network whose output layer is only the head
    small_w = [*weights[:-1], weights[-1][head]]
    small_r = [*rates[:-1], rates[-1][:, head]]
    want, want_loss = credit(small_w, small_r, local, valid, 7.0)
    assert loss == want_loss
    for g, w in zip(got[:-1], want[:-1]):
        np.testing.assert_array_equal(g, w)
    padded = np.zeros_like(got[-1])
    padded[:, head] = want[-1]
    np.testing.assert_array_equal(got[-1], padded)
    assert np.count_nonzero(got[-1][:, head]) > 0
    # with a measured transfer too
    curve = measure_transfer(adaptive_lif(), DT, N_STEPS)
    got, _ = credit(weights, rates, local, valid, 7.0, transfer=curve, head=head)
    want, _ = credit(small_w, small_r, local, valid, 7.0, transfer=curve)
    for g, w in zip(got[:-1], want[:-1]):
        np.testing.assert_array_equal(g, w)


def test_head_checks(batch):
    weights, rates, labels, valid = batch
    with pytest.raises(ValueError, match="outside head"):
        credit(weights, rates, labels, valid, 7.0, head=slice(0, 2))       # labels up to 5 in a 2-wide head
    zeros = np.zeros_like(labels)
    for bad in (slice(0, 6, 2), slice(3, 3), slice(4, 9), (0, 2)):
        with pytest.raises(ValueError, match="head"):
            credit(weights, rates, zeros, valid, 7.0, head=bad)
    # labels of invalid rows are not checked
    labels_bad_padding = zeros.copy()
    labels_bad_padding[~valid] = 99
    credit(weights, rates, labels_bad_padding, valid, 7.0, head=slice(0, 2))
