"""The graded lateral circuit on one shared ``H`` (`sim.shared_lateral`) against the per-copy Brian2 circuit.

The shared circuit computes what the Brian2 synapses of `sim.lateral` compute — the same sums in the same
order — so on the numpy target both hold bit-identical ``H`` after learning, the neural residuals are equal,
and a whole HLOP run writes the same run file either way. The kernels are checked against numpy twins that
sum as Brian2's numpy target does.
"""
import subprocess
from dataclasses import replace

import numpy as np
import pytest
from brian2 import Hz, NetworkOperation, Synapses, ms

from cli_helpers import TINY, assert_same_run_files, cli_command, cli_env
from hlopsim.data import prototype_mixture_rates, regular_encode
from hlopsim.models.lateral import LateralSpec
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import lif
from hlopsim.sim.lateral import GradedLateralCircuit
from hlopsim.sim.network import SimNetwork
from hlopsim.sim.resources import estimate_run_memory
from hlopsim.sim.shared_lateral import (SharedGradedLateralCircuit, choose_lateral, hebbian_step, hebbian_step_numpy,
                                        subspace_activity, subspace_activity_numpy)

N_IN, N_HIDDEN = 20, 16


def sparse_input(rng, copies, n):
    """Spike-count-like inputs: multiples of 1/40 with many exact zeros (the kernel skips them)."""
    x = rng.integers(0, 6, size=(copies, n)) / 40.0
    x[rng.random(x.shape) < 0.4] = 0.0
    return x


def test_activity_kernel_matches_its_numpy_twin_bit_for_bit():
    rng = np.random.default_rng(0)
    k, n, copies, rows = 9, 13, 5, 7
    H = np.zeros((k, n))
    H[:rows] = rng.normal(size=(rows, n))
    x = sparse_input(rng, copies, n)
    y, xhat = np.full((copies, k), np.nan), np.full((copies, n), np.nan)
    subspace_activity(H, np.ascontiguousarray(H.T), x, rows, y, xhat)
    y_ref, xhat_ref = subspace_activity_numpy(H, x, rows)
    assert np.array_equal(y[:, :rows], y_ref) and np.array_equal(xhat, xhat_ref)
    assert np.isnan(y[:, rows:]).all()                      # rows not grown are not touched
    np.testing.assert_allclose(y[:, :rows], x @ H[:rows].T, rtol=1e-12)   # and it is y = Hx


def test_hebbian_kernel_matches_its_numpy_twin_and_moves_only_plastic_rows():
    rng = np.random.default_rng(1)
    k, n, copies = 8, 11, 6
    H = rng.normal(size=(k, n)) / np.sqrt(n)
    x = sparse_input(rng, copies, n)
    y, xhat = subspace_activity_numpy(H, x, k)
    twin, kernel, HT = H.copy(), H.copy(), np.ascontiguousarray(H.T)
    hebbian_step_numpy(twin, x, y, xhat, 3, 6, 0.01)
    hebbian_step(kernel, HT, x, y, xhat, 3, 6, 0.01)
    assert np.array_equal(kernel, twin) and np.array_equal(HT, kernel.T)
    assert np.array_equal(kernel[:3], H[:3]) and np.array_equal(kernel[6:], H[6:])
    # the batch form of Oja's rule, ΔH = η dt Σ_c y_c (x_c − x̂_c)ᵀ
    np.testing.assert_allclose(kernel[3:6] - H[3:6], 0.01 * y[:, 3:6].T @ (x - xhat), rtol=1e-9, atol=1e-15)


def two_layer_network(propagation, **options):
    spec = NetworkSpec(input_size=N_IN, hidden=(N_HIDDEN,), output_size=2, neuron=lif(), dt=1 * ms,
                       presentation=40 * ms, input_max_rate=500 * Hz, batch_size=32)
    lateral = LateralSpec(first_task=(3, 4), per_task=(3, 4), hebbian_rate=(15 * Hz, 10 * Hz), dt=5 * ms,
                          window=20 * ms, copies=8, **options)
    return SimNetwork(spec, np.random.default_rng(0), lateral=lateral, n_tasks=2, record_spikes=False,
                      propagation=propagation)


def learn_two_tasks(net, streams, neural):
    """Two tasks of lateral learning (two epochs each, the last batch partial): each circuit's H after its
    first growth and at the end, and the neural residuals of every batch."""
    residuals, grown = [], None

    def read(batch):
        if neural:
            residuals.append([circuit.residual().copy() for circuit in net.lateral])
        return False

    for task, rates in enumerate(streams):
        for circuit in net.lateral:
            circuit.grow(task)
        grown = grown or [circuit.H.copy() for circuit in net.lateral]
        net.set_lateral_learning(True)
        for _ in range(2):
            net.present(regular_encode(rates, 500.0, 1e-3, 40), on_batch=read)
        net.set_lateral_learning(False)
        for circuit in net.lateral:
            circuit.freeze()
    return grown, [circuit.H.copy() for circuit in net.lateral], residuals


@pytest.fixture(scope="module")
def streams():
    rng = np.random.default_rng(3)
    return [prototype_mixture_rates(N_IN, 3, 80, rng)[0] for _ in range(2)]


@pytest.mark.parametrize("options", [{}, {"projection": "neural"}, {"growth": "residual"}],
                         ids=["closed-form", "neural", "residual-growth"])
def test_shared_circuit_learns_bit_identically_to_the_brian2_synapses(streams, options):
    shared, brian2 = two_layer_network("auto", **options), two_layer_network("brian2", **options)
    assert all(isinstance(c, SharedGradedLateralCircuit) for c in shared.lateral)
    assert all(isinstance(c, GradedLateralCircuit) for c in brian2.lateral)
    neural = options.get("projection") == "neural"
    grown, H_shared, residuals_shared = learn_two_tasks(shared, streams, neural)
    _, H_brian2, residuals_brian2 = learn_two_tasks(brian2, streams, neural)
    for a, b, initial in zip(H_shared, H_brian2, grown):
        assert np.array_equal(a, b)
        assert np.abs(a - initial).max() > 0.05               # it learned
    assert len(residuals_shared) == (12 if neural else 0)      # 3 batches × 2 epochs × 2 tasks
    for per_batch_a, per_batch_b in zip(residuals_shared, residuals_brian2):
        for a, b in zip(per_batch_a, per_batch_b):
            assert np.array_equal(a, b)


def test_shared_circuit_holds_no_synapses(streams):
    net = two_layer_network("auto")
    for circuit in net.lateral:
        assert [type(obj) for obj in circuit.objects] == [NetworkOperation]
    assert not [obj for obj in net.net.objects if isinstance(obj, Synapses) and "lateral" in obj.name]


def test_the_path_is_chosen_where_supported_and_refused_otherwise():
    graded = LateralSpec(first_task=(2,), per_task=(2,), hebbian_rate=(10 * Hz,), dt=5 * ms, window=20 * ms)
    assert choose_lateral("auto", graded) == "shared"
    assert choose_lateral("brian2", graded) == "brian2"
    for spec in (replace(graded, decorrelate=True), replace(graded, neuron="spiking")):
        assert choose_lateral("auto", spec) == "brian2"
        with pytest.raises(ValueError, match="propagation = 'shared' for the lateral circuits"):
            choose_lateral("shared", spec)


def test_memory_estimate_has_no_per_copy_lateral_synapses_on_the_shared_path():
    """784-800-800-10 with the authors' subspace sizes: the per-copy synapses were GBs, H is a few MB."""
    spec = NetworkSpec(input_size=784, hidden=(800, 800), output_size=10, neuron=lif(), batch_size=64)
    lateral = LateralSpec(first_task=(10, 200, 100), per_task=(10, 70, 70), hebbian_rate=(16 * Hz, 6 * Hz, 6 * Hz),
                          dt=5 * ms, window=10 * ms)
    settings = dict(n_tasks=5, n_train=5000, n_test=1000, epochs=3, record_spikes=False)
    parts = {path: dict((name, size) for name, size, _ in estimate_run_memory(spec, lateral, propagation=path,
                                                                               **settings).parts)
             for path in ("auto", "brian2")}
    assert parts["auto"]["lateral circuit weights"] < 30e6
    assert parts["brian2"]["lateral circuit synapses"] > 50 * parts["auto"]["lateral circuit weights"]


def test_cli_runs_are_identical_with_either_path(tmp_path):
    """`sim.propagation` in a protocol: a whole HLOP run file is bit-identical on the numpy target."""
    for path in ("auto", "brian2"):
        proc = subprocess.run(cli_command("run", "permuted-digits", "--method", "hlop", "--out", str(tmp_path / f"{path}.h5"),
                                          *TINY, "--set", f'sim.propagation="{path}"'),
                              capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert_same_run_files(tmp_path / "auto.h5", tmp_path / "brian2.h5")


@pytest.mark.parametrize("setting, expected", [('sim.propagation="fast"', "sim.propagation = 'fast'"),
                                               ('lateral.neuron="spiking"', "propagation = 'shared' for the lateral")])
def test_bad_paths_are_one_line_config_errors(setting, expected):
    from hlopsim.protocols.experiment.config import ConfigError, Experiment, apply_overrides, load_protocol

    config = apply_overrides(load_protocol("permuted-digits"), ['sim.propagation="shared"', setting])
    with pytest.raises(ConfigError, match=expected) as caught:
        Experiment.from_config(config).method("hlop")
    assert "\n" not in str(caught.value)
