"""NWB export of a run file written with `RunRecorder` (synthetic spikes, weights, lateral circuits,
accuracy matrix and task permutations): metadata from `to_nwb` keywords and the CLI, the network
tables, unit identity through `neo.io.NWBIO`, and nwbinspector finding no CRITICAL issue and no
BEST_PRACTICE_VIOLATION.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from hlopsim.sim.runfile import RunFileError, RunRecorder, open_run

from cli_helpers import cli_command, cli_env

pynwb = pytest.importorskip("pynwb")

N_STEPS, DT, N_IN, N_HID, N_OUT, N_TASKS = 20, 1e-3, 6, 4, 3, 2


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nwb") / "run.h5"
    rng = np.random.default_rng(5)
    config = {"neuron": {"model": "lif", "parameters": {}}, "network": {"tau_m": "100 ms", "v_threshold": "20 mV",
                                                                        "input_max_rate": "500 Hz"},
              "data": {"encoder": "regular", "dataset": "digits"}}
    attrs = {"dt": DT, "n_steps_per_presentation": N_STEPS, "method": "hlop", "protocol": "synthetic", "seed": 9,
             "config": json.dumps(config)}
    R = np.full((N_TASKS, N_TASKS), np.nan)
    with RunRecorder.create(path, attrs=attrs) as rec:
        for name, n, role in (("input", N_IN, "input"), ("hidden_1", N_HID, "hidden"), ("output", N_OUT, "output")):
            rec.add_population(name, n, "synthetic", role)
        rec.add_state("hidden_1", "v", [0, 2], "V", N_STEPS)     # recorded states: a TimeSeries in the NWB file
        for task in range(N_TASKS):
            rec.write_task(task, f"task {task}", permutation=rng.permutation(N_IN))
            for stage_phase in ("train", "test"):
                n_seg = 8
                spikes = {}
                for pop, n in (("input", N_IN), ("hidden_1", N_HID), ("output", N_OUT)):
                    seg, step, neuron = np.nonzero(rng.random((n_seg, N_STEPS, n)) < 0.1)
                    spikes[pop] = (seg, step, neuron)
                states = {"hidden_1": {"v": (np.array([0, 1, 5]), rng.normal(0, 0.01, (3, 2, N_STEPS)))}} \
                    if stage_phase == "test" else None
                rec.append_block({"task": task, "stage": task, "epoch": 0 if stage_phase == "train" else -1,
                                  "phase": stage_phase, "trial": np.arange(n_seg), "label": np.arange(n_seg) % 3},
                                 spikes, N_STEPS, states=states)
            rec.write_weights("w_1", task, rng.normal(size=(N_HID, N_IN)))
            rec.write_weights("w_2", task, rng.normal(size=(N_OUT, N_HID)))
            H = np.zeros((4, N_IN))
            H[:2 * (task + 1)] = rng.normal(size=(2 * (task + 1), N_IN))
            rec.write_lateral("w_1", task, H, np.arange(4) < 2 * (task + 1))
            R[task, :task + 1] = 50 + 10 * np.arange(task + 1)
            rec.write_metrics(R, {"ACC": float(np.nanmean(R[task])), "BWT": 0.0, "forgetting": 0.0})
    return path


@pytest.fixture(scope="module")
def nwb_file(run_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("nwb-out") / "run.nwb"
    proc = subprocess.run(cli_command("export", str(run_file), "--nwb", str(out), "--subject-id", "net-9",
                                      "--experimenter", "Doe, Jane", "--institution", "Example Institute",
                                      "--session-description", "a test of the export"),
                          capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def test_metadata_and_network_tables(run_file, nwb_file):
    with open_run(run_file) as run, pynwb.NWBHDF5IO(str(nwb_file), "r") as io:
        nwb = io.read()
        assert nwb.subject.subject_id == "net-9"
        assert nwb.subject.species == "http://purl.obolibrary.org/obo/NCBITaxon_32630"
        assert nwb.subject.sex == "U" and nwb.subject.age == "P0D"
        assert list(nwb.experimenter) == ["Doe, Jane"] and nwb.institution == "Example Institute"
        assert nwb.session_description.startswith("a test of the export (hlopsim run: protocol synthetic")
        assert json.loads(nwb.stimulus_notes)["data"]["encoder"] == "regular"
        misc = nwb.processing["misc"]
        for layer in ("w_1", "w_2"):
            table = misc[f"weights_{layer}"]
            assert list(table["after_task"][:]) == list(range(N_TASKS))
            for task in range(N_TASKS):
                assert np.array_equal(table["weights"][task], run.weights(layer, task))
            assert "0.02 V" in table.description  # lif: spike cost = v_threshold = 20 mV
        lateral = misc["lateral_w_1"]
        for task in range(N_TASKS):
            H, frozen = run.lateral("w_1", task)
            assert np.array_equal(lateral["H"][task], H) and np.array_equal(lateral["frozen"][task], frozen)
        assert np.array_equal(np.asarray(misc["accuracy"]["percent_correct"][:]), run.accuracy_matrix(),
                              equal_nan=True)
        tasks = misc["tasks"]
        assert list(tasks["task_name"][:]) == ["task 0", "task 1"]
        for task, entry in enumerate(run.tasks()):
            assert np.array_equal(tasks["permutation"][task], entry["permutation"])
        trials = nwb.trials
        seg = run.segments()
        for column in ("task", "stage", "label"):
            assert np.array_equal(np.asarray(trials[column][:]), seg[column])
        assert list(trials["phase"][:]) == list(seg["phase"])


def test_streamed_spike_times_match_the_run_file(run_file, nwb_file):
    with open_run(run_file) as run, pynwb.NWBHDF5IO(str(nwb_file), "r") as io:
        units = io.read().units
        names = list(units["_name"][:])
        i = 0
        for pop in run.populations:
            times, neurons = run.spikes(pop)
            for neuron in range(run.n_neurons(pop)):
                assert names[i] == f"{pop} {neuron}"
                assert np.array_equal(np.asarray(units.get_unit_spike_times(i)), times[neurons == neuron])
                i += 1
        assert i == len(units)


def test_neo_nwbio_keeps_unit_identity(run_file, tmp_path):
    pytest.importorskip("neo")
    from neo.io import NWBIO

    from hlopsim.protocols.reports.export import to_nwb

    out = to_nwb(run_file, tmp_path / "plain.nwb")  # no experimenter: NWBIO cannot read string arrays
    (block,) = NWBIO(str(out), "r").read_all_blocks()
    trains = block.segments[0].spiketrains
    with open_run(run_file) as run:
        for train in trains:
            pop, neuron = train.name.split()
            times, neurons = run.spikes(pop)
            assert np.array_equal(train.rescale("s").magnitude, times[neurons == int(neuron)])
        assert sorted(t.name for t in trains) == sorted(f"{p} {i}" for p in run.populations
                                                        for i in range(run.n_neurons(p)))


def test_nwbinspector_finds_nothing_serious(nwb_file, tmp_path, run_file):
    nwbinspector = pytest.importorskip("nwbinspector")
    from hlopsim.protocols.reports.export import to_nwb

    default = to_nwb(run_file, tmp_path / "default.nwb")  # without any metadata option
    for path in (nwb_file, default):
        messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(path)))
        serious = [m for m in messages if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION", "ERROR",
                                                               "PYNWB_VALIDATION")]
        assert serious == [], [(m.importance.name, m.check_function_name, m.message) for m in serious]


def test_bad_metadata_is_refused(run_file, tmp_path):
    from hlopsim.protocols.reports.export import to_nwb

    with pytest.raises(RunFileError, match="sex 'X'"):
        to_nwb(run_file, tmp_path / "x.nwb", sex="X")
    with pytest.raises(RunFileError, match="'colour'"):
        to_nwb(run_file, tmp_path / "x.nwb", colour="red")
    with pytest.raises(RunFileError, match="slashes"):
        to_nwb(run_file, tmp_path / "x.nwb", subject_id="a/b")
    assert not (tmp_path / "x.nwb").exists()


def test_streamed_slices_equal_one_sort(run_file):
    """The slice-by-slice counting sort of the export gives the same times as one stable sort, for
    slices that split neurons' spikes anywhere."""
    from hlopsim.protocols.reports.export import _population_time_chunks, unit_spike_times

    with open_run(run_file) as run:
        for pop in run.populations:
            expected, _ = unit_spike_times(run, pop)
            for chunk in (1, 7, 1000):
                parts = list(_population_time_chunks(run, pop, chunk))
                assert all(p.size <= chunk for p in parts)
                assert np.array_equal(np.concatenate(parts), expected)


def test_recorded_states_become_one_time_series_inside_their_trials(run_file, nwb_file):
    with open_run(run_file) as run, pynwb.NWBHDF5IO(str(nwb_file), "r") as io:
        state = run.states("hidden_1", "v")
        series = io.read().acquisition["state_hidden_1_v"]
        assert series.unit == "V" and series.data.shape == (N_TASKS * 3 * N_STEPS, 2)
        np.testing.assert_array_equal(series.data[:], state["values"].transpose(0, 2, 1).reshape(-1, 2))
        seg = run.segments()
        expected = (seg["start_step"][state["segment"]][:, None] + np.arange(N_STEPS)).ravel() * DT
        np.testing.assert_array_equal(series.timestamps[:], expected)
