"""The neural projection (``lateral.projection = "neural"``, docs/design.md): the supervised update takes
its projected presynaptic activity from the simulated circuit's residual, with only the frozen subspace
neurons feeding back; the closed form ``a − H_oldᵀ(H_old a)`` is the check.

Setup of the comparisons: 20 inputs; the circuit's 3 frozen neurons hold the top-3 PCA subspace of one
synthetic stream (`prototype_mixture_rates`, seed 3) and 3 new neurons learn (plastic, active) while
256 samples of a second stream are presented as regular spike trains (up to 500 Hz, 40 steps of 1 ms),
32 samples per batch, learning in 8 copies. At every batch boundary the residual of every copy is
compared with the closed form of the rates the supervised rule sees, relative error
``‖r − a_⊥‖_F / ‖a_⊥‖_F`` over the batch. Measured (numpy target, deterministic), mean over the 8
batches: graded circuit 2e-16; spiking circuit 8.1 % at rate_scale 300 Hz and 4.0 % at 600 Hz, of
which 2.8 % comes from the one-step relay delay (the last step's presynaptic spikes have not yet
reached the subspace units) and the rest from the spike-count code of the frozen neurons' ``y``.
"""
import json
import subprocess

import h5py
import numpy as np
import pytest
from brian2 import Hz, ms

from cli_helpers import cli_command, cli_env
from hlopsim.data import prototype_mixture_rates, regular_encode, top_subspace
from hlopsim.models.lateral import LateralSpec
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import lif
from hlopsim.protocols.experiment.methods import HLOP
from hlopsim.sim.kernels import project_out
from hlopsim.sim.learning import NeuralResidual, apply_update
from hlopsim.sim.network import SimNetwork

N_INPUTS, RANK, BATCH, COPIES = 20, 3, 32, 8


@pytest.fixture(scope="module")
def streams():
    rng = np.random.default_rng(3)
    first, _ = prototype_mixture_rates(N_INPUTS, RANK, 640, rng)
    second, _ = prototype_mixture_rates(N_INPUTS, RANK, 640, rng)
    return first, second


def network(neuron, projection="neural", rate_scale=300 * Hz, batch=BATCH, copies=COPIES):
    spec = NetworkSpec(input_size=N_INPUTS, hidden=(), output_size=2, neuron=lif(), dt=1 * ms,
                       presentation=40 * ms, input_max_rate=500 * Hz, batch_size=batch)
    lateral = LateralSpec(first_task=(RANK,), per_task=(RANK,), dt=5 * ms, window=20 * ms, copies=copies,
                          hebbian_rate=((3 if neuron == "spiking" else 15) * Hz,), neuron=neuron,
                          projection=projection, rate_scale=rate_scale)
    net = SimNetwork(spec, np.random.default_rng(0), lateral=lateral, n_tasks=2, record_spikes=False)
    return net, net.lateral[0]


def frozen_then_growing(net, circuit, first):
    """Frozen rows = the first stream's top-3 subspace; task 1's neurons grown, plastic and active."""
    H = np.zeros_like(circuit.H)
    H[:RANK] = top_subspace(first, RANK).T
    circuit.restore(H, RANK, 0)
    circuit.grow(1)
    net.set_lateral_learning(True)
    return H[:RANK].copy()


def residual_errors(neuron, streams, rate_scale=300 * Hz):
    """Relative error of the neural residual against the closed form at every batch boundary.

    Also returns, per batch, the error that the relay's one-step delay alone would cause (the closed
    form with the feedback of the presentation's last-step spikes missing) and the error of a residual
    projected out of all grown neurons (what a feedback not restricted to frozen neurons would give).
    """
    first, second = streams
    net, circuit = network(neuron, rate_scale=rate_scale)
    frozen = frozen_then_growing(net, circuit, first)
    spikes = regular_encode(second[:256], 500.0, 1e-3, 40)
    errors, delay, full = [], [], []

    def on_batch(batch):
        r = circuit.residual()
        a = batch.rates[0]
        closed = project_out(a, frozen)
        errors.append(np.linalg.norm(r - closed) / np.linalg.norm(closed))
        last = np.zeros_like(a)  # the batch's spikes in the last step of the presentation, per step
        at_end = (spikes.step == 39) & (spikes.sample // BATCH == batch.batch)
        np.add.at(last, (spikes.sample[at_end] % BATCH, spikes.neuron[at_end]), 1 / 40)
        without_last = project_out(a - last, frozen) + last  # a − (a − last) P: exact but for the delay
        delay.append(np.linalg.norm(without_last - closed) / np.linalg.norm(closed))
        assert circuit.projection_error(a, r) == pytest.approx(errors[-1], rel=1e-12)
        # The update must not be projected out of the new neurons too: that residual is far off.
        full.append(np.linalg.norm(project_out(a, circuit.grown_H) - closed) / np.linalg.norm(closed))
        return False

    net.present(spikes, on_batch=on_batch)
    assert len(errors) == 256 // BATCH  # the last batch is read after the run, the others inside it
    assert np.array_equal(circuit.frozen_H, frozen)
    assert not np.array_equal(circuit.grown_H[RANK:], top_subspace(first, RANK).T)
    return np.array(errors), np.array(delay), np.array(full)


def test_graded_residual_equals_the_closed_form(streams):
    """Measured: 2e-16 (float summation order), every batch, the run's last one included."""
    errors, _, full = residual_errors("graded", streams)
    print(f"graded circuit: neural vs closed-form relative error per batch {errors}")
    assert errors.max() < 1e-12
    assert full.min() > 0.1


def test_spiking_residual_is_close_to_the_closed_form(streams):
    """Measured: 8.1 % at 300 Hz, 4.0 % at 600 Hz (issue 3's target: < 5 %); the relay delay alone: 2.8 %."""
    at_300, delay, full = residual_errors("spiking", streams, 300 * Hz)
    at_600, _, _ = residual_errors("spiking", streams, 600 * Hz)
    print(f"spiking circuit: neural vs closed-form relative error, mean over batches: "
          f"{at_300.mean():.4f} at 300 Hz, {at_600.mean():.4f} at 600 Hz; relay delay alone {delay.mean():.4f}")
    assert 0.01 < delay.mean() < at_600.mean()
    assert at_600.mean() < 0.05 and at_600.max() < 0.06
    assert at_300.mean() < 0.10
    assert at_600.mean() < 0.7 * at_300.mean()  # more spikes per unit of y, finer count code
    assert full.min() > 0.1


@pytest.mark.parametrize("neuron", ["graded", "spiking"])
def test_extra_readout_copies_leave_learning_bit_identical(streams, neuron):
    """Neural mode simulates the circuit in all 16 copies but learns in 4: H as in closed-form mode."""
    first, second = streams
    H = {}
    for projection in ("closed-form", "neural"):
        net, circuit = network(neuron, projection, batch=16, copies=4)
        assert circuit.simulated == (16 if projection == "neural" else 4) and circuit.copies == 4
        for task, rates in enumerate((first[:96], second[:96])):
            circuit.grow(task)
            net.set_lateral_learning(True)
            net.present(regular_encode(rates, 500.0, 1e-3, 40))
            circuit.freeze()
        assert circuit.copies_agree()
        H[projection] = circuit.H.copy()
    assert np.array_equal(H["closed-form"], H["neural"])
    assert np.abs(H["neural"][RANK:]).sum() > 0


def test_update_from_the_neural_residual_equals_the_closed_form_update(streams):
    """HLOP's projections() hands the circuit's residual to apply_update: same ΔW as the closed form."""
    first, second = streams
    net, circuit = network("graded")
    frozen_then_growing(net, circuit, first)
    method, rng = HLOP(), np.random.default_rng(5)
    W0 = rng.normal(size=(2, N_INPUTS))
    result = {}

    def on_batch(batch):
        deltas = [rng.normal(size=(BATCH, 2))]
        neural, closed = [W0.copy()], [W0.copy()]
        projections = method.projections(net)
        assert isinstance(projections[0], NeuralResidual)
        apply_update(neural, deltas, batch.rates, projections, 0.1)
        apply_update(closed, deltas, batch.rates, [circuit.frozen_H], 0.1)
        result["gap"] = np.abs(neural[0] - closed[0]).max()
        result["step"] = np.abs(closed[0] - W0).max()
        with pytest.raises(ValueError, match="neural residual of shape"):
            apply_update(neural, deltas, [batch.rates[0][:4]], projections, 0.1)
        return False

    net.present(regular_encode(second[:BATCH], 500.0, 1e-3, 40), on_batch=on_batch)
    assert result["step"] > 1e-3 and result["gap"] < 1e-12


def test_residual_needs_neural_mode_and_a_running_circuit(streams):
    one_sample = regular_encode(streams[1][:1], 500.0, 1e-3, 40)
    net, circuit = network("spiking", projection="closed-form")
    frozen_then_growing(net, circuit, streams[0])
    net.present(one_sample)
    with pytest.raises(RuntimeError, match="closed-form"):
        circuit.residual()
    net, circuit = network("spiking")
    frozen_then_growing(net, circuit, streams[0])
    net.set_lateral_learning(False)
    net.present(one_sample)
    with pytest.raises(RuntimeError, match="switched off"):
        circuit.residual()


def test_projection_setting_is_parsed_and_checked():
    from hlopsim.models.from_config import lateral_spec
    from hlopsim.protocols.experiment.config import apply_overrides, load_protocol

    config = load_protocol("permuted-digits")
    assert lateral_spec(config["lateral"]).projection == "closed-form"
    neural = apply_overrides(config, ['lateral.projection="neural"'])
    assert lateral_spec(neural["lateral"]).projection == "neural"
    bad = apply_overrides(config, ['lateral.projection="closed form"'])
    with pytest.raises(ValueError, match="lateral.projection = 'closed form' is unknown"):
        lateral_spec(bad["lateral"])
    del config["lateral"]["projection"]  # run files written before the key existed
    assert lateral_spec(config["lateral"]).projection == "closed-form"


def test_cli_rejects_a_bad_projection_in_one_line(tmp_path):
    done = subprocess.run(cli_command("run", "permuted-digits", "--set", 'lateral.projection="magic"', "--out",
                                      str(tmp_path / "x.h5")), capture_output=True, text=True, cwd=tmp_path,
                          env=cli_env(), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "'magic'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.h5").exists()


def test_cli_continual_run_with_the_neural_projection(tmp_path):
    """A tiny 2-task hlop run with spiking circuits and ``lateral.projection="neural"``.

    Task 1's weight change is nearly orthogonal to the frozen rows of task 0 (measured
    ‖ΔW H_oldᵀ‖_F / ‖ΔW‖_F = 0.047 and 0.117 for w_1 and w_2).
    """
    out = tmp_path / "neural.h5"
    tiny = ["--tasks", "2", "--epochs", "1", "--quiet", "--set", "data.train_size=128", "--set", "network.hidden=[16]",
            "--set", "network.batch_size=32", "--set", "lateral.copies=8", "--set", "lateral.first_task=[4,4]",
            "--set", "lateral.per_task=[2,2]", "--set", 'sim.target="numpy"', "--set", 'lateral.neuron="spiking"',
            "--set", 'lateral.spiking_hebbian_rate=["2 Hz", "1 Hz"]', "--set", 'lateral.projection="neural"']
    done = subprocess.run(cli_command("run", "permuted-digits", "--method", "hlop", "--out", str(out), *tiny),
                          capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["config"])["lateral"]["projection"] == "neural"
        assert f.attrs["complete"]
        assert np.isfinite(f["metrics/accuracy_matrix"][:]).all()
        for layer in ("w_1", "w_2"):
            H0 = f[f"lateral/{layer}/H_after_task_0"][:]
            frozen0 = f[f"lateral/{layer}/frozen_after_task_0"][:]
            H1 = f[f"lateral/{layer}/H_after_task_1"][:]
            assert np.array_equal(H0[frozen0], H1[frozen0])
            change = f[f"weights/{layer}/after_task_1"][:] - f[f"weights/{layer}/after_task_0"][:]
            leak = np.linalg.norm(change @ H0[frozen0].T) / np.linalg.norm(change)
            print(f"{layer}: ‖ΔW H_oldᵀ‖_F / ‖ΔW‖_F = {leak:.3f}")
            assert leak < 0.2, (layer, leak)
