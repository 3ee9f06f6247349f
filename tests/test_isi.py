"""Continuous time between presentations: the inter-stimulus interval (``NetworkSpec.isi``) and
``reset``. The state decays through the silence (and carries over without reset); spikes of the
silence belong to no presentation, so counts, drained spikes and run files see presentations only."""
from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import run_file_datasets
from brian2 import SpikeMonitor, StateMonitor

from hlopsim.data.encoders import SpikeTrains
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import lif
from hlopsim.models.synapses import Delta
from hlopsim.protocols.experiment.config import Experiment, apply_overrides, load_protocol
from hlopsim.sim.network import SimNetwork

TAU = 20e-3      # s
COST = 20e-3     # V
DT = 1e-3        # s
STEPS, ISI = 20, 10


def single_neuron(reset: bool, synapse=Delta(), isi="10 ms"):
    spec = NetworkSpec(hidden=[], neuron=lif(tau_m="20 ms", v_threshold="20 mV"), presentation="20 ms", isi=isi,
                       reset=reset, batch_size=1, synapse=synapse).with_sizes(1, 1)
    return SimNetwork(spec, np.random.default_rng(0), record_spikes=True)


def spikes_at(steps, n_samples, samples=None):
    steps = np.asarray(steps)
    samples = np.zeros(len(steps), dtype=int) if samples is None else np.asarray(samples)
    return SpikeTrains(sample=samples, step=steps, neuron=np.zeros(len(steps), dtype=int), n_samples=n_samples,
                       n_neurons=1, n_steps=STEPS)


@pytest.mark.parametrize("reset", [False, True])
def test_the_membrane_decays_through_the_silence_and_is_reset_only_if_asked(reset):
    net = single_neuron(reset)
    net.weights[0][:] = 0.5
    net.push_weights()
    monitor = StateMonitor(net.groups[-1], "v", record=True, when="end", name="trace")
    net.net.add(monitor)
    # run steps: silence 0–9, presentation 0 at 10–29, silence 30–39, presentation 1 at 40–59
    net.present(spikes_at([15], 2))                               # presentation 0, step 15 = run step 25
    v = np.asarray(monitor.v_[0])
    assert len(v) == 2 * (STEPS + ISI)
    run_step = np.arange(len(v))
    decay = np.where(run_step >= 25, 0.5 * COST * np.exp(-np.maximum(run_step - 25, 0) * DT / TAU), 0.0)
    if reset:   # back to the initial state when presentation 1 starts (run step 40)
        decay[40:] = 0.0
    np.testing.assert_allclose(v, decay, rtol=1e-9, atol=1e-15)


def test_spikes_of_the_silence_are_in_no_presentation():
    # a 6 ms delay: input spikes in a presentation's last steps reach the neuron in the following silence
    net = single_neuron(reset=True, synapse=Delta(delay="6 ms"))
    net.weights[0][:] = 2.0                                         # each arriving spike fires the neuron
    net.push_weights()
    everything = SpikeMonitor(net.groups[-1], name="every_output_spike")
    net.net.add(everything)
    activity = net.present(spikes_at([2, 16, 17, 18, 19, 5], 2, samples=[0, 0, 0, 0, 0, 1]))
    run_steps = np.rint(everything.t_[:] / DT).astype(int)
    # Presentation 0 occupies run steps 10–29, presentation 1 steps 40–59. Input at run step 12 arrives
    # at 18 and the neuron fires at 19; inputs at 26–29 arrive at 32–35 (in the silence) and the
    # neuron fires at 33–39 (each arrival adds 2 spike costs, each spike removes 1); the input at 45
    # arrives at 51, the spike is at 52.
    assert list(run_steps) == [19, 33, 34, 35, 36, 37, 38, 39, 52]
    sample, step, _ = activity.spikes["output"]
    assert list(zip(sample, step)) == [(0, 9), (1, 12)]             # the seven spikes of the silence are dropped
    assert activity.counts[1][:, 0].tolist() == [1, 1]
    assert activity.counts[0][:, 0].tolist() == [5, 1]


def test_counts_and_recorded_spikes_agree_with_an_isi_in_a_batched_run():
    from hlopsim.data import load_digits
    from hlopsim.data.encoders import random_phase_encode
    spec = NetworkSpec(hidden=[16], batch_size=8, isi="15 ms", reset=False).with_sizes(64, 10)
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=True)
    spikes = random_phase_encode(load_digits().x_train[:20], 500.0, 1e-3, spec.n_steps, np.random.default_rng(0))
    activity = net.present(spikes)
    assert int(round(float(net.net.t / net.spec.dt))) == 3 * spec.period_steps
    for population, counts in zip(spec.population_names[1:], activity.counts[1:]):
        sample, step, neuron = activity.spikes[population]
        assert step.min() >= 0 and step.max() < spec.n_steps
        recount = np.zeros_like(counts)
        np.add.at(recount, (sample, neuron), 1)
        assert np.array_equal(recount, counts) and counts.sum() > 0, population


def test_isi_keys_in_protocol_files_and_their_checks():
    base = load_protocol("permuted-digits")
    network = Experiment.from_config(base).network
    assert network.isi_steps == 0 and network.reset is True and network.period_steps == network.n_steps
    network = Experiment.from_config(apply_overrides(base, ['network.isi="20 ms"', "network.reset=false"])).network
    assert network.isi_steps == 20 and network.reset is False and network.period_steps == 60
    from hlopsim.models.from_config import lateral_spec
    from hlopsim.protocols.experiment.config import _lateral_fields
    lateral = lateral_spec(_lateral_fields(base["lateral"]))      # lateral clock 5 ms
    spec = NetworkSpec(hidden=[8], isi="3 ms").with_sizes(4, 2)
    with pytest.raises(ValueError, match="network.isi = 3. ms must be a whole number of lateral.dt"):
        SimNetwork(spec, np.random.default_rng(0), lateral=lateral)



def _tiny_run(path, lateral="graded", **network):
    import hlopsim as hs
    from hlopsim.data import load_digits
    tasks = hs.split_tasks(load_digits(), classes=[(0, 1), (2, 3)], heads="per-task")
    tasks = [hs.make_task(t.name, t.x_train[:64], t.y_train[:64], t.x_test[:32], t.y_test[:32], head=t.head)
             for t in tasks]
    spec = hs.NetworkSpec(hidden=[16], batch_size=16, **network)
    rates = {"hebbian_rate": ["4 Hz", "1.5 Hz"]} if lateral == "spiking" else {}
    method = hs.HLOP(first_task=[4, 4], per_task=[2, 2], consolidation_epochs=1, neuron=lateral, **rates)
    return hs.run_tasks(tasks, spec, method, epochs=1, seed=0, target="numpy", encoder="random-phase", out=path)


@pytest.mark.parametrize("lateral", ["graded", "spiking"])
def test_with_reset_and_instantaneous_synapses_an_isi_changes_nothing_but_time(tmp_path, lateral):
    """Reset at every presentation, no delays: the silence cannot influence a presentation, so the run
    file (spikes on the presentation clock, weights, lateral H, accuracies) equals the run without ISI;
    the lateral circuits learn only inside their presentation's window, not in the silence."""
    plain = _tiny_run(tmp_path / "plain.h5", lateral)
    spaced = _tiny_run(tmp_path / "isi.h5", lateral, isi="30 ms", reset=True)   # longer than presentation − window
    assert np.array_equal(plain.accuracy, spaced.accuracy, equal_nan=True)
    a, b = run_file_datasets(tmp_path / "plain.h5"), run_file_datasets(tmp_path / "isi.h5")
    assert set(a) == set(b) and any(name.startswith("lateral/") for name in a)
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


def test_a_continuous_run_writes_presentations_only(tmp_path):
    import hlopsim as hs
    result = _tiny_run(tmp_path / "continuous.h5", isi="10 ms", reset=False)
    assert np.all(np.isfinite(result.accuracy[np.tril_indices(2)]))
    with hs.open_run(tmp_path / "continuous.h5") as run:
        assert run.n_steps == 40 and run.spikes_per_segment("hidden_1").sum() > 0
        segments = run.segments()
        assert np.array_equal(segments["stop_step"] - segments["start_step"], np.full(len(segments["task"]), 40))
