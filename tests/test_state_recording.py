"""State recording (`hlopsim.StateRecording`): recorded traces against analytic responses, bounded
monitors, the run file's ``/states`` (round trip, resume, nothing else changed), neo and NWB export, and
the protocol file's ``[record]`` section through the CLI."""
from __future__ import annotations

import json

import subprocess

import numpy as np
import pytest
from cli_helpers import TINY, cli_command, cli_env, run_file_datasets, tiny_split_tasks

import hlopsim as hs
from hlopsim.data.encoders import SpikeTrains
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import lif
from hlopsim.models.recording import StateRecording
from hlopsim.models.synapses import Conductance, ExpCurrent
from hlopsim.sim.network import SimNetwork

DT = 0.1e-3        # s
TAU_M = 20e-3      # s
COST = 20e-3       # V: the lif's spike cost (its threshold)
WEIGHT = 0.5       # spike costs: below threshold
K0 = 10            # base step of the input spike


def one_neuron(synapse, recording, batch_size=4, isi="0 ms"):
    """A 1 → 2 network (no hidden layer) with every weight ``WEIGHT``."""
    spec = NetworkSpec(hidden=[], neuron=lif(tau_m="20 ms", v_threshold="20 mV"), dt="0.1 ms",
                       presentation="30 ms", batch_size=batch_size, synapse=synapse, isi=isi).with_sizes(1, 2)
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False, record_states=recording)
    net.weights[0][:] = WEIGHT
    net.push_weights()
    return net


def one_spike_each(net, n_samples, steps):
    """Sample s gets one input spike at step ``steps[s]``."""
    sample = np.arange(n_samples)
    return SpikeTrains(sample=sample, step=np.asarray(steps), neuron=np.zeros(n_samples, dtype=int),
                       n_samples=n_samples, n_neurons=1, n_steps=net.n_steps)


def since_effect(n, k0):
    """Time since an input spike at step ``k0`` shows in the recorded values: the synapse acts in step
    ``k0`` after the state update, so the value at the start of step ``k0 + 1`` is the first to hold it."""
    return (np.arange(n) - (k0 + 1)) * DT


def test_recorded_v_and_current_match_the_exp_current_psp():
    tau_s = 5e-3
    net = one_neuron(ExpCurrent(tau_syn="5 ms"), StateRecording(variables=("v", "I_syn"), neurons=2, presentations=3))
    activity = net.present(one_spike_each(net, 6, np.full(6, K0)), record_states=True)
    v, current = activity.states["output"]["v"], activity.states["output"]["I_syn"]
    assert v.shape == current.shape == (3, 2, net.n_steps)
    assert net.state_units == {"output": {"v": "V", "I_syn": "V/s"}}
    t = since_effect(net.n_steps, K0)
    after = np.maximum(t, 0)
    w = WEIGHT * COST
    psc = np.where(t >= 0, w / tau_s * np.exp(-after / tau_s), 0.0)
    # the current shows one step after it (exact integration of the linear system)
    psp = np.where(t >= 0, w * TAU_M / (TAU_M - tau_s) * (np.exp(-after / TAU_M) - np.exp(-after / tau_s)), 0.0)
    for trace in current.reshape(-1, net.n_steps):
        np.testing.assert_allclose(trace, psc, rtol=1e-9, atol=1e-12)
    for trace in v.reshape(-1, net.n_steps):
        np.testing.assert_allclose(trace, psp, rtol=1e-7, atol=1e-12)
    # a run without record_states records nothing
    assert net.present(one_spike_each(net, 2, [K0, K0])).states == {}


def test_recorded_g_e_decays_with_tau_e():
    synapse = Conductance(tau_e="5 ms", tau_i="10 ms", E_e="70 mV", E_i="-10 mV")
    net = one_neuron(synapse, StateRecording(variables=("g_e", "g_i", "v"), neurons=(1,), presentations=1))
    activity = net.present(one_spike_each(net, 1, [K0]), record_states=True)
    g_e, g_i, v = (activity.states["output"][name][0, 0] for name in ("g_e", "g_i", "v"))
    t = since_effect(net.n_steps, K0)
    g0 = WEIGHT * COST / (5e-3 * 70e-3)         # Δg_e = w / (τ_e (E_e − v_rest)), v_rest = 0
    np.testing.assert_allclose(g_e, np.where(t >= 0, g0 * np.exp(-np.maximum(t, 0) / 5e-3), 0.0), rtol=1e-9, atol=0)
    assert np.all(g_i == 0) and np.all(v[:K0 + 2] == 0) and v[K0 + 2] > 0
    assert net.state_units["output"]["g_e"] == "Hz"


def test_the_monitor_holds_only_the_chosen_copies_and_one_batch_at_most():
    """Presentations 0 … 5 with batches of 4: copies 0–3 of batch 0 and 0–1 of batch 1 are kept, each
    sample with its own input step; the monitor records 4 copies × 2 neurons and is empty after
    every batch boundary (a monitor that kept growing fails the check of `_keep_states`)."""
    net = one_neuron(ExpCurrent(tau_syn="5 ms"), StateRecording(variables=("I_syn",), neurons=2, presentations=6))
    monitor = net.state_monitors["output"]
    assert monitor.name == "state_output" and len(monitor.record) == 4 * 2
    held = []

    def on_batch(batch):
        held.append(len(monitor.t))
        return False

    steps = K0 + np.arange(40)
    activity = net.present(one_spike_each(net, 40, steps), on_batch=on_batch, record_states=True)
    assert held == [0] * 10 and len(monitor.t) == 0
    current = activity.states["output"]["I_syn"]
    assert current.shape == (6, 2, net.n_steps)
    onsets = np.argmax(current[:, 0] > 0, axis=1)
    np.testing.assert_array_equal(onsets, steps[:6] + 1)     # sample s, whichever copy and batch showed it


def test_with_an_isi_only_the_presentation_is_kept():
    """A silence before every presentation (reset at its start): the kept traces are those without it."""
    recording = StateRecording(variables=("v",), neurons=1, presentations=3)
    plain = one_neuron(ExpCurrent(tau_syn="5 ms"), recording)
    spaced = one_neuron(ExpCurrent(tau_syn="5 ms"), recording, isi="2 ms")
    spikes = one_spike_each(plain, 5, K0 + np.arange(5))
    a = plain.present(spikes, record_states=True).states["output"]["v"]
    b = spaced.present(spikes, record_states=True).states["output"]["v"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("recording, message", [
    (dict(variables=("vm",)), r"variable 'vm' does not exist in population 'output' .*its variables are v\b"),
    (dict(populations=("hidden_9",)), r"population\(s\) \['hidden_9'\] unknown"),
    (dict(neurons=(0, 7)), r"neuron 7 is out of range for population 'output' of 2 neurons"),
])
def test_bad_recordings_are_refused_in_one_line_when_the_network_is_built(recording, message):
    with pytest.raises(ValueError, match=message) as err:
        SimNetwork(NetworkSpec(hidden=[], batch_size=2).with_sizes(1, 2), np.random.default_rng(0),
                   record_states=StateRecording(**recording))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fields, message", [
    (dict(variables=()), "variables is empty"), (dict(phases=("tests",)), "phases"),
    (dict(presentations=0), "presentations = 0"), (dict(neurons=(1, 1)), "distinct"), (dict(neurons=0), "count"),
])
def test_bad_specs_are_one_line_value_errors(fields, message):
    with pytest.raises(ValueError, match=message) as err:
        StateRecording(**fields)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------ run files

NET = dict(hidden=[16], batch_size=16)
KWARGS = dict(epochs=1, seed=3, target="numpy", encoder="poisson")
RECORDING = StateRecording(variables=("v",), neurons=(0, 2, 5), presentations=3, phases=("train", "test"))


class StopAtEndOfTask1(hs.Finetune):
    """Fine-tuning interrupted (as by Ctrl-C) after task 1's training was recorded, before its checkpoint."""

    def end_task(self, net, task):
        if task == 1:
            raise KeyboardInterrupt
        super().end_task(net, task)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("states")
    tasks = tiny_split_tasks()
    hs.run_tasks(tasks, hs.NetworkSpec(**NET), "finetune", out=folder / "plain.h5", **KWARGS)
    hs.run_tasks(tasks, hs.NetworkSpec(**NET), "finetune", out=folder / "rec.h5", record_states=RECORDING, **KWARGS)
    return {"tasks": tasks, "plain": folder / "plain.h5", "rec": folder / "rec.h5"}


def test_recording_changes_no_other_dataset(runs):
    plain, rec = run_file_datasets(runs["plain"]), run_file_datasets(runs["rec"])
    assert sorted(set(rec) - set(plain)) == sorted(f"states/{pop}/v/{name}" for pop in ("hidden_1", "output")
                                                   for name in ("neuron", "segment", "values"))
    for name, value in plain.items():
        np.testing.assert_array_equal(rec[name], value, err_msg=name)


def test_the_reader_returns_the_chosen_presentations_with_units(runs):
    with hs.open_run(runs["rec"]) as run, hs.open_run(runs["plain"]) as plain:
        assert plain.state_variables() == {}
        assert run.state_variables() == {"hidden_1": ["v"], "output": ["v"]}
        seg = run.segments()
        # expected: the first 3 presentations of every train run and of every test run (one per task here)
        expected = []
        for stage in range(3):
            train = np.flatnonzero((seg["stage"] == stage) & (seg["phase"] == "train"))
            expected += list(train[:3])
            for task in range(3):
                test = np.flatnonzero((seg["stage"] == stage) & (seg["phase"] == "test") & (seg["task"] == task))
                expected += list(test[:3])
        state = run.states("hidden_1", "v")
        np.testing.assert_array_equal(state["segment"], np.sort(expected))
        assert state["unit"] == "V" and state["neuron"].tolist() == [0, 2, 5]
        assert state["values"].shape == (len(expected), 3, run.n_steps) and state["values"].dtype == np.float64
        np.testing.assert_allclose(state["times_s"], np.arange(run.n_steps) * run.dt)
        assert np.all(state["values"][:, :, 0] == 0)          # every presentation starts from rest
        assert np.ptp(state["values"]) > 0.005                # and the neurons are driven (volts)
        some = run.states("output", "v", segments=state["segment"][3:5])
        np.testing.assert_array_equal(some["segment"], state["segment"][3:5])
        with pytest.raises(hs.RunFileError, match=r"state 'u' of population 'output' was not recorded; recorded: "
                                                  r"hidden_1: v; output: v"):
            run.states("output", "u")


def spikes_from_v(v, v_threshold=0.02, dt=1e-3, tau_m=0.1):
    """Steps at which a subtractive-reset lif with delta synapses spikes, from ``v`` at the start of each
    step: it integrates ``v ← v·e^{−dt/τ}`` and fires if that exceeds the threshold (synaptic input lands
    after the threshold test, so it shows in the next step's value)."""
    return v * np.exp(-dt / tau_m) > v_threshold


def test_neo_analog_signals_line_up_with_the_trials_spikes(runs):
    pytest.importorskip("neo")
    block = hs.to_neo_block(runs["rec"], per="presentation", populations=["output"], phases="test")
    with hs.open_run(runs["rec"]) as run:
        recorded = set(run.states("output", "v")["segment"].tolist())
    checked = 0
    for segment in block.segments:
        signals = segment.analogsignals
        assert bool(signals) == (segment.annotations["segment"] in recorded)
        if not signals:
            continue
        (signal,) = signals
        assert signal.annotations["population"] == "output" and signal.annotations["variable"] == "v"
        assert str(signal.units.dimensionality) == "V" and float(signal.t_start) == 0.0
        assert float(signal.sampling_period.rescale("s")) == pytest.approx(1e-3)
        neurons = signal.array_annotations["neuron"].tolist()
        v = signal.magnitude.T                                 # (neuron, step)
        for row, neuron in zip(v, neurons):
            (train,) = [t for t in segment.spiketrains if t.annotations["neuron"] == neuron]
            steps = np.rint(train.rescale("s").magnitude / 1e-3).astype(int)
            np.testing.assert_array_equal(np.flatnonzero(spikes_from_v(row)), steps)
            checked += len(steps)
    assert checked > 10
    per_block = hs.to_neo_block(runs["rec"], populations=["hidden_1"], phases="test")
    assert [len(s.analogsignals) for s in per_block.segments] == [9, 9, 9]
    with hs.open_run(runs["rec"]) as run:
        seg = run.segments()
        first = per_block.segments[0].analogsignals[0]
        assert float(first.t_start) == pytest.approx(seg["start_s"][first.annotations["segment"]])


def test_nwb_holds_one_time_series_per_recorded_variable(runs, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    nwbinspector = pytest.importorskip("nwbinspector")
    from hlopsim.protocols.reports.export import to_nwb

    out = to_nwb(runs["rec"], tmp_path / "rec.nwb")
    with hs.open_run(runs["rec"]) as run, pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        state = run.states("output", "v")
        series = nwb.acquisition["state_output_v"]
        assert series.unit == "V" and series.data.shape == (state["values"].shape[0] * run.n_steps, 3)
        np.testing.assert_array_equal(series.data[:run.n_steps], state["values"][0].T)
        times = series.timestamps[:]
        trials = nwb.trials.to_dataframe()
        for k, s in enumerate(state["segment"]):
            chunk = times[k * run.n_steps:(k + 1) * run.n_steps]
            assert trials["start_time"][s] <= chunk[0] and chunk[-1] < trials["stop_time"][s]
    messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(out)))
    serious = [m for m in messages if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION", "ERROR",
                                                           "PYNWB_VALIDATION")]
    assert serious == [], [(m.importance.name, m.check_function_name, m.message) for m in serious]


def test_a_resumed_run_with_states_equals_the_uninterrupted_one(runs, tmp_path):
    """Interrupted after task 1's training block (and its states) were written but before its
    checkpoint: the resume cuts them away and writes them again."""
    cut = tmp_path / "cut.h5"
    with pytest.raises(KeyboardInterrupt):
        hs.run_tasks(runs["tasks"], hs.NetworkSpec(**NET), StopAtEndOfTask1(), out=cut, record_states=RECORDING,
                     **KWARGS)
    with hs.open_run(cut) as run:
        stages = run.segments()["stage"][run.states("output", "v")["segment"]]
        assert not run.complete and stages.max() == 1         # task 1's training states past the checkpoint
    hs.run_tasks(runs["tasks"], hs.NetworkSpec(**NET), "finetune", out=cut, record_states=RECORDING, **KWARGS)
    full, again = run_file_datasets(runs["rec"]), run_file_datasets(cut)
    assert full.keys() == again.keys()
    for name in full:
        np.testing.assert_array_equal(again[name], full[name], err_msg=name)


def test_record_states_needs_a_run_file_and_a_state_recording(runs):
    with pytest.raises(ValueError, match="record_states needs out"):
        hs.run_tasks(runs["tasks"], hs.NetworkSpec(**NET), "finetune", record_states=RECORDING, **KWARGS)
    with pytest.raises(ValueError, match="expected a StateRecording"):
        hs.run_tasks(runs["tasks"], hs.NetworkSpec(**NET), "finetune", record_states=("v",), **KWARGS)


# ------------------------------------------------------------------------------ CLI

SMALL = [*TINY, "--set", "data.test_size=40"]


def test_cli_refuses_an_unknown_variable_in_one_line_and_writes_nothing(tmp_path):
    proc = subprocess.run(cli_command("run", "permuted-digits", *SMALL, "--set", 'record.variables=["v", "w"]',
                                      "--out", str(tmp_path / "x.h5")),
                          capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "variable 'w' does not exist in population 'hidden_1'" in lines[0] \
        and "its variables are v" in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_protocol_files_record_section_runs_through_the_cli(tmp_path):
    (tmp_path / "rec.toml").write_text('[protocol]\nname = "recorded"\n\n[record]\nvariables = ["v"]\n'
                                       'populations = ["output"]\nneurons = [0, 3]\npresentations = 2\n'
                                       'phases = ["test"]\nstages = [1]\n')
    proc = subprocess.run(cli_command("run", "rec.toml", *SMALL, "--method", "finetune", "--out", "rec.h5"),
                          capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    with hs.open_run(tmp_path / "rec.h5") as run:
        assert run.state_variables() == {"output": ["v"]}
        state = run.states("output", "v")
        seg = run.segments()
        assert state["neuron"].tolist() == [0, 3]
        assert set(seg["phase"][state["segment"]]) == {"test"} and set(seg["stage"][state["segment"]]) == {1}
        # both 40-sample test sets share one Brian2 run: its first two presentations are task 0's
        assert seg["task"][state["segment"]].tolist() == [0, 0] and seg["trial"][state["segment"]].tolist() == [0, 1]
        assert run.config["record"]["variables"] == ["v"]
    shown = subprocess.run(cli_command("inspect", "rec.h5"), capture_output=True, text=True, cwd=tmp_path,
                           env=cli_env(), timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "states     output.v (V): neurons 0, 3, 2 presentations (test; stages 1)" in shown.stdout, shown.stdout
    plain = subprocess.run(cli_command("inspect", "rec.h5", "--json"), capture_output=True, text=True, cwd=tmp_path,
                           env=cli_env(), timeout=120)
    assert json.loads(plain.stdout)["states"] == [{"population": "output", "variable": "v", "unit": "V",
                                                   "neurons": [0, 3], "presentations": 2, "stages": [1],
                                                   "phases": ["test"]}]


def test_the_record_section_builds_a_state_recording_and_names_a_bad_key():
    from hlopsim.protocols.experiment.config import ConfigError, Experiment, apply_overrides, load_protocol

    config = load_protocol("permuted-digits")
    assert Experiment.from_config(config).record_states is None          # no variables: nothing recorded
    config = apply_overrides(config, ['record.variables=["v"]', "record.stages=[0, 4]"])
    assert Experiment.from_config(config).record_states == StateRecording(
        variables=("v",), neurons=(0, 1, 2, 3, 4), presentations=3, phases=("test",), stages=(0, 4))
    config["record"]["phases"] = ["tests"]
    with pytest.raises(ConfigError, match=r"^record\.phases = \['tests'\]; expected some of train, consolidate, test$"):
        Experiment.from_config(config)


def test_a_summary_read_leaves_the_values_out(runs):
    with hs.open_run(runs["rec"]) as run:
        full, summary = run.states("output", "v"), run.states("output", "v", values=False)
        assert "values" not in summary and set(full) - set(summary) == {"values"}
        np.testing.assert_array_equal(summary["segment"], full["segment"])
