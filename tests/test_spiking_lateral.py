"""The spiking lateral circuit (ON/OFF spiking subspace neurons, event-driven plasticity) learns the
principal subspace of its input, on the same synthetic streams as tests/test_lateral_circuit.py.

Streams: `prototype_mixture_rates(20, 3, 640)` (seed 3), regular spike trains at up to 500 Hz, 40 steps
of 1 ms per sample, 32 copies. Circuit: η = 3 Hz, rate_scale = 300 Hz (≤ 0.3 spikes per step on these
streams, |y| ≤ 1), trace_tau = 200 ms, window 20 ms, weights merged every 5 ms, 3 passes per stream.
Measured with exactly these settings (numpy target, deterministic): task 0 — largest principal angle
to the top-3 PCA subspace 1.77°, ‖HHᵀ − I‖_F = 0.007; task 1 — 3.0° to the top-3 subspace of the
residual, ‖HHᵀ − I‖_F = 0.024, all 6 rows 0.070; 14.6 (task 0) and 18.6 (task 1) subspace spikes per
sample. The bounds below are the issue's targets (10°, 0.15). The graded circuit on the same streams
(η = 15 Hz) reaches 1.73° / 2.24° and ‖HHᵀ − I‖_F ≈ 1e-4. The spiking circuit needs the smaller η:
at η ≥ 7 Hz it loses orthonormality on this stream (0.4–0.7), at 5 Hz on streams whose
λ_max(E[xxᵀ]) is 0.7 instead of 0.47 (docs/results.md, the spiking circuit section).
"""
import numpy as np
import pytest
from brian2 import Hz, Synapses, ms, second
from scipy.linalg import subspace_angles

from hlopsim.data import prototype_mixture_rates, regular_encode, top_subspace
from hlopsim.models.lateral import LateralSpec
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import lif
from hlopsim.sim.shared_lateral import SharedGradedLateralCircuit
from hlopsim.sim.network import SimNetwork
from hlopsim.sim.spiking_lateral import SpikingLateralCircuit

N_INPUTS, RANK = 20, 3
MAX_RATE, DT, STEPS = 500.0, 1e-3, 40
EPOCHS = 3
MAX_ANGLE, MAX_ORTHO = 10.0, 0.15


def lateral_spec(neuron="spiking", rate=3 * Hz, **extra):
    return LateralSpec(first_task=(RANK,), per_task=(RANK,), hebbian_rate=(rate,), dt=5 * ms, window=20 * ms,
                       copies=32, neuron=neuron, **({"rate_scale": 300 * Hz, "trace_tau": 200 * ms} | extra))


def circuit_network(**kwargs):
    """A network whose input layer carries a spiking lateral circuit; no supervised learning is run."""
    spec = NetworkSpec(input_size=N_INPUTS, hidden=(), output_size=2, neuron=lif(), dt=DT * 1000 * ms,
                       presentation=STEPS * ms, input_max_rate=MAX_RATE * Hz, batch_size=32)
    net = SimNetwork(spec, np.random.default_rng(0), lateral=lateral_spec(**kwargs), n_tasks=2, record_spikes=False)
    return net, net.lateral[0]


def learn(net, circuit, task, rates, epochs=EPOCHS):
    circuit.grow(task)
    net.set_lateral_learning(True)
    spikes = regular_encode(rates, MAX_RATE, DT, STEPS)
    for _ in range(epochs):
        net.present(spikes)
    net.set_lateral_learning(False)


def max_angle_deg(H, basis):
    return float(np.degrees(subspace_angles(H.T, basis)).max())


def ortho(H):
    return float(np.linalg.norm(H @ H.T - np.eye(len(H))))


@pytest.fixture(scope="module")
def streams():
    rng = np.random.default_rng(3)
    first, _ = prototype_mixture_rates(N_INPUTS, RANK, 640, rng)
    second, _ = prototype_mixture_rates(N_INPUTS, RANK, 640, rng)
    return first, second


def test_spiking_circuit_is_built_for_lateral_neuron_spiking(streams):
    net, circuit = circuit_network()
    assert isinstance(circuit, SpikingLateralCircuit)
    graded_net, graded = circuit_network(neuron="graded")
    assert isinstance(graded, SharedGradedLateralCircuit)      # the graded circuit's default simulation
    # Growth draws the same initial rows as the graded circuit from the same generator.
    circuit.grow(0), graded.grow(0)
    assert np.array_equal(circuit.H, graded.H)
    for network in (net, graded_net):
        network.present(regular_encode(streams[0][:1], MAX_RATE, DT, STEPS))


def test_learns_top_pca_subspace_with_orthonormal_rows(streams):
    """Measured: 1.77°, ‖HHᵀ − I‖_F = 0.007 after 3 passes (graded circuit: 1.73°, 1e-4)."""
    first, _ = streams
    net, circuit = circuit_network()
    learn(net, circuit, 0, first)
    H = circuit.grown_H
    assert max_angle_deg(H, top_subspace(first, RANK)) < MAX_ANGLE
    assert ortho(H) < MAX_ORTHO
    assert circuit.copies_agree()
    on, off = circuit.spike_counts()
    presented = len(first) * EPOCHS
    assert presented < on + off < RANK * STEPS * 0.3 * presented  # they spike, at well below 1 per step


def test_one_set_of_reciprocal_synapses_carries_H_both_ways(streams):
    """Forward drive, feedback and plasticity are pathways of one `Synapses` (one copy of H per network
    copy); with the merging switched off every copy drifts on its own and the shared H stays put."""
    first, _ = streams
    net, circuit = circuit_network()
    synapses = [obj for obj in circuit.objects if isinstance(obj, Synapses) and obj is not circuit.drive]
    assert synapses == [circuit.synapses] and len(circuit.synapses) == 32 * circuit.k_max * N_INPUTS
    assert {p.prepost for p in circuit.synapses._pathways} == {"pre", "post"}
    circuit.grow(0)
    net.set_lateral_learning(True)
    circuit.sync.active = False
    ((_, (weights,)),) = circuit._weight_blocks
    before = weights.copy()
    net.present(regular_encode(first[:32], MAX_RATE, DT, STEPS))
    assert not np.array_equal(weights, before)
    # Copies saw different samples, so they drifted differently; the shared H has not moved.
    assert not np.array_equal(weights[0], weights[1])
    assert np.array_equal(circuit.grown_H, before[0, :RANK])


def test_frozen_neurons_stay_bit_identical_and_new_ones_learn_the_residual(streams):
    """Measured: new neurons 3.0° from the residual's subspace, ‖HHᵀ − I‖_F = 0.024; all 6 rows 0.070."""
    first, second = streams
    net, circuit = circuit_network()
    learn(net, circuit, 0, first)
    circuit.freeze()
    frozen_before = circuit.frozen_H.copy()
    learn(net, circuit, 1, second)
    assert np.array_equal(circuit.frozen_H, frozen_before)
    assert circuit.copies_agree()

    new = circuit.grown_H[RANK:]
    residual = second - (second @ frozen_before.T) @ frozen_before
    assert max_angle_deg(new, top_subspace(residual, RANK)) < MAX_ANGLE
    assert ortho(new) < MAX_ORTHO
    assert ortho(circuit.grown_H) < MAX_ORTHO


def test_no_plasticity_without_learning(streams):
    first, _ = streams
    net, circuit = circuit_network()
    circuit.grow(0)
    before = circuit.H.copy()
    spikes = regular_encode(first[:64], MAX_RATE, DT, STEPS)
    net.present(spikes)  # lateral circuits switched off
    assert np.array_equal(circuit.H, before)
    assert circuit.spike_counts() == (0, 0)
    # Switched on but every neuron frozen: the units spike, the synapses change by exactly zero.
    circuit.freeze()
    net.set_lateral_learning(True)
    net.present(spikes)
    assert sum(circuit.spike_counts()) > 0
    assert np.array_equal(circuit.H, before) and circuit.copies_agree()


def test_bad_spiking_settings_are_value_errors():
    for bad in (0 * Hz, -5 * Hz):
        with pytest.raises(ValueError, match="rate_scale") as err:
            lateral_spec(rate_scale=bad)
        assert f"{bad}" in str(err.value)
    with pytest.raises(ValueError, match="rate_scale"):
        lateral_spec(rate_scale=5 * ms)
    with pytest.raises(ValueError, match="trace_tau"):
        lateral_spec(trace_tau=0 * ms)
    with pytest.raises(ValueError, match="'quantum'"):
        lateral_spec(neuron="quantum")
    with pytest.raises(ValueError, match="1000 spikes per step"):
        circuit_network(rate_scale=1e6 * Hz)  # 1 ms steps: a unit at |y| = 1 would fire 1000× per step


def test_malformed_subspace_neuron_equations_are_value_errors():
    """A user's subspace-neuron model is checked when it is made, before any Brian2 object exists."""
    from dataclasses import replace
    from hlopsim.models.subspace_neurons import integrate_and_fire

    model = integrate_and_fire()
    with pytest.raises(ValueError, match=r"malformed equations 'dv/dt = -v / tau_m volt'"):
        replace(model, equations="dv/dt = -v / tau_m volt")        # no ':' before the unit
    with pytest.raises(ValueError, match="membrane variable 'v'"):
        replace(model, equations="u : volt")
    with pytest.raises(ValueError, match="subspace_neuron.v_threshold"):
        integrate_and_fire(v_threshold="-3 mV")


def test_spiking_circuit_from_the_protocol_configuration():
    """``--set lateral.neuron='"spiking"'``: the permuted-digits settings build and run the spiking circuits."""
    from hlopsim.models.from_config import lateral_spec as spec_from_config, network_spec
    from hlopsim.protocols.experiment.config import Experiment, apply_overrides, load_protocol

    config = Experiment.from_config(apply_overrides(   # the [lateral] lists extended to the network's depth
        load_protocol("permuted-digits"),
        ['lateral.neuron="spiking"', 'lateral.rate_scale="250 Hz"', "network.batch_size=16"])).config
    lateral = spec_from_config(config["lateral"])
    assert lateral.neuron == "spiking" and lateral.rate_scale == 250 * Hz and lateral.trace_tau == 200 * ms
    with pytest.raises(ValueError, match="lateral.rate_scale"):
        spec_from_config(apply_overrides(config, ['lateral.rate_scale="0 Hz"'])["lateral"])

    spec = network_spec(config["network"], 64, 10)
    net = SimNetwork(spec, np.random.default_rng(0), lateral=lateral, n_tasks=5, record_spikes=False)
    assert all(isinstance(c, SpikingLateralCircuit) for c in net.lateral)
    for circuit in net.lateral:
        circuit.grow(0)
    before = [c.H.copy() for c in net.lateral]
    net.set_lateral_learning(True)
    rates = np.random.default_rng(1).random((16, 64))
    activity = net.present(regular_encode(rates, float(spec.input_max_rate / Hz), float(spec.dt / second), spec.n_steps))
    assert activity.counts[0].shape == (16, 64)
    for circuit, H in zip(net.lateral, before):
        assert sum(circuit.spike_counts()) > 0
        assert circuit.copies_agree()
        k = circuit.n_grown
        assert not np.array_equal(circuit.H[:k], H[:k]) and np.array_equal(circuit.H[k:], H[k:])


def test_cli_run_with_spiking_lateral_circuits(tmp_path):
    """``hlopsim run permuted-digits --set lateral.neuron='"spiking"'`` runs end to end and records H."""
    import json
    import subprocess

    import h5py
    from cli_helpers import cli_command, cli_env

    out = tmp_path / "spiking.h5"
    tiny = ["--tasks", "2", "--epochs", "1", "--quiet", "--set", "data.train_size=128", "--set", "network.hidden=[16]",
            "--set", "network.batch_size=32", "--set", "lateral.copies=8", "--set", "lateral.first_task=[4,4]",
            "--set", "lateral.per_task=[2,2]", "--set", 'sim.target="numpy"', "--set", 'lateral.neuron="spiking"',
            "--set", 'lateral.spiking_hebbian_rate=["2 Hz", "1 Hz"]']
    done = subprocess.run(cli_command("run", "permuted-digits", "--method", "hlop", "--out", str(out), *tiny),
                          capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["config"])["lateral"]["neuron"] == "spiking"
        for layer in ("w_1", "w_2"):
            H0, H1 = f[f"lateral/{layer}/H_after_task_0"][:], f[f"lateral/{layer}/H_after_task_1"][:]
            frozen0, frozen1 = f[f"lateral/{layer}/frozen_after_task_0"][:], f[f"lateral/{layer}/frozen_after_task_1"][:]
            assert frozen0.sum() == 4 and frozen1.sum() == 6
            assert np.array_equal(H0[frozen0], H1[frozen0])  # task 0's neurons never changed again
            rows = H1[frozen1]
            assert np.linalg.norm(rows @ rows.T - np.eye(6)) < 0.5


def test_each_circuit_takes_its_own_hebbian_rate_from_the_protocol():
    """permuted-digits holds one η per circuit kind: the spiking circuit is unstable at the graded η."""
    from brian2 import Hz

    from hlopsim.models.from_config import lateral_spec
    from hlopsim.protocols.experiment.config import apply_overrides, load_protocol

    base = load_protocol("permuted-digits")
    graded = lateral_spec(base["lateral"])
    spiking = lateral_spec(apply_overrides(base, ['lateral.neuron="spiking"'])["lateral"])
    assert [float(r / Hz) for r in graded.hebbian_rate] == [16.0, 6.0]
    assert [float(r / Hz) for r in spiking.hebbian_rate] == [4.0, 1.5]
    bad = apply_overrides(base, ['lateral.neuron="spiking"', 'lateral.spiking_hebbian_rate=["-1 Hz", "1 Hz"]'])
    with pytest.raises(ValueError, match="lateral.spiking_hebbian_rate"):
        lateral_spec(bad["lateral"])
