"""`benchmarks/rate_scaling.py`: its dense reference is the network `SimNetwork` simulates, and it runs end to end."""
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import PROJECT, cli_env, load_benchmark

SCRIPT = str(PROJECT / "benchmarks" / "rate_scaling.py")


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_dense_reference_spikes_exactly_as_simnetwork(factor):
    """Same weights, regular input trains, Delta synapses, learning off: the dense time-step simulation's spike
    counts equal `SimNetwork.present`'s in every neuron of every sample, at the built-in ``lif`` (factor 1) and
    at a raised threshold. Exactly, not nearly: the only arithmetic difference is the order in which a step's
    synaptic inputs are summed (one BLAS product against Brian2's additions spike by spike, ~1e-16 relative),
    which flips a spike only if a membrane lands within that of the threshold — none does here."""
    from brian2 import volt

    from hlopsim.data import load_digits
    from hlopsim.data.encoders import regular_encode
    from hlopsim.models.network import NetworkSpec
    from hlopsim.sim import prefs
    from hlopsim.sim.network import SimNetwork

    bench = load_benchmark("rate_scaling")
    prefs.configure("numpy")
    neuron = bench.raised_lif("100 ms", "20 mV", factor)
    spec = NetworkSpec(hidden=(48, 32), neuron=neuron, presentation="20 ms", batch_size=32, input_size=64,
                       output_size=10)
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False)
    for drawn, simulated in zip(bench.initial_weights(spec), net.weights):   # the calibration's weights
        assert np.array_equal(drawn, simulated)
    spikes = regular_encode(load_digits().x_train[:80], 500.0, 1e-3, spec.n_steps)   # 2.5 batches
    activity = net.present(spikes)
    cost = float(neuron.spike_cost / volt)
    theta = float(neuron.parameters["v_threshold"] / volt)
    assert math.isclose(theta, factor * 0.02)
    counts, _ = bench.dense_present(bench.dense_inputs(spikes, 0, spikes.n_samples),
                                    [(w * cost).T.copy() for w in net.weights], theta, math.exp(-1e-3 / 0.1))
    for simulated, dense in zip(activity.counts, counts):
        assert simulated.sum() > 50
        assert np.array_equal(simulated, dense.astype(np.int64))


def test_raising_network_v_threshold_alone_changes_no_spike():
    """Why the benchmark raises the threshold above the spike cost (`raised_lif`): the built-in ``lif``'s weight
    unit is its threshold, so doubling ``v_threshold`` doubles every weight in volt and every spike stays
    (bit for bit: the factor is a power of two), while the raised threshold at the same spike cost fires less."""
    from hlopsim.data import load_digits
    from hlopsim.data.encoders import regular_encode
    from hlopsim.models.network import NetworkSpec
    from hlopsim.models.neurons import lif
    from hlopsim.sim import prefs
    from hlopsim.sim.network import SimNetwork

    bench = load_benchmark("rate_scaling")
    prefs.configure("numpy")
    spikes = regular_encode(load_digits().x_train[:32], 500.0, 1e-3, 20)
    counts = []
    for neuron in (lif("100 ms", "20 mV"), lif("100 ms", "40 mV"), bench.raised_lif("100 ms", "20 mV", 2.0)):
        spec = NetworkSpec(hidden=(24,), neuron=neuron, presentation="20 ms", batch_size=32, input_size=64,
                           output_size=10)
        counts.append(SimNetwork(spec, np.random.default_rng(0), record_spikes=False).present(spikes).counts)
    assert all(np.array_equal(a, b) for a, b in zip(counts[0], counts[1]))
    assert counts[2][1].sum() < 0.75 * counts[0][1].sum()


def test_crossover_interpolates_log_log():
    bench = load_benchmark("rate_scaling")
    # ratio 0.5 at density 0.1, 2 at 0.01: log r is linear in log d and crosses 0 half way, at √(0.1·0.01)
    text = bench.crossover([(0.01, 2.0), (0.1, 0.5)])
    assert re.search(r"faster below ([0-9.]+) ", text).group(1) == f"{math.sqrt(0.001):.4f}"
    assert bench.crossover([(0.1, 1.5), (0.05, 3.0)]).startswith("hlopsim is faster at every measured density")
    assert bench.crossover([(0.1, 0.5), (0.05, 0.9)]).startswith("never")


@pytest.mark.slow   # a benchmark's end-to-end run (seconds to tens of seconds); the fast tier keeps its parts
def test_quick_run_prints_the_table_and_density_falls_with_the_scale():
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--target", "numpy"], capture_output=True, text=True,
                          env=cli_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    calibration = re.compile(r"scale (\S+): threshold × (\S+) \(calibration hidden density (\S+), target (\S+)\)")
    calibrations = [calibration.match(line) for line in lines if line.startswith("scale ")]
    assert [float(m.group(1)) for m in calibrations] == [1, 0.5, 0.25, 0.125]
    for m in calibrations:   # the bisection found the threshold that gives the target density
        assert abs(float(m.group(3)) - float(m.group(4))) <= 0.02 * float(m.group(4))
    header = next(line for line in lines if line.startswith("method")).split()
    assert header == ["method", "scale", "thresh×", "input", "hidden_1", "output", "hidden", "samples/s", "s/epoch",
                      "speed-up", "dense/s", "dense_hid", "hl/dense"]
    rows = [dict(zip(header, line.split())) for line in lines if line.split()[:1] in (["finetune"], ["hlop"])]
    assert [(r["method"], float(r["scale"])) for r in rows] == [
        (method, scale) for scale in (1, 0.5, 0.25, 0.125) for method in ("finetune", "hlop")]
    for method in ("finetune", "hlop"):
        mine = [r for r in rows if r["method"] == method]
        hidden = [float(r["hidden"]) for r in mine]
        assert all(a > b > 0 for a, b in zip(hidden, hidden[1:])), hidden
        assert 0.4 < hidden[1] / hidden[0] < 0.65            # about halved at scale 0.5
        assert all(float(a["input"]) > float(b["input"]) for a, b in zip(mine, mine[1:]))
        for r in mine:   # the dense reference trained the same network on the same spikes: the same density
            assert abs(float(r["dense_hid"]) - float(r["hidden"])) <= 5e-4
            assert math.isclose(float(r["hl/dense"]), float(r["samples/s"]) / float(r["dense/s"]), rel_tol=0.02)
        assert float(mine[0]["speed-up"]) == 1.0
    assert sum(line.startswith("target ") and line.endswith(("met", "missed")) for line in lines) == 2
    assert sum(line.startswith("crossover ") for line in lines) == 2


@pytest.mark.parametrize("args, named", [(["--scales", "0.5,0.25"], "--scales"), (["--scales", "1,3"], "--scales 3"),
                                         (["--methods", "gpm"], "--methods"), (["--samples", "0"], "--samples"),
                                         (["--net", "64-5-10"], "--net")])
def test_bad_arguments_exit_2_with_one_line(args, named):
    done = subprocess.run([sys.executable, SCRIPT, "--target", "numpy", *args], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and named in done.stderr
    assert done.stdout == ""
