"""Trial-aligned spike data: `RunFile.trial_spikes` and ``to_neo_block(per="presentation")``.

The run file is written with `RunRecorder` from synthetic spikes whose statistics are known: a
regular train (one spike every ``PERIOD`` steps from step ``PHASE`` of each trial, so its CV is 0
within a trial but not across the trial boundary) and a Bernoulli train (probability ``P`` per step,
geometric intervals: CV = sqrt(1 - P), close to 1). elephant computes ISI and CV on the neo trains.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from hlopsim.sim.runfile import RunFileError, RunRecorder, open_run

DT = 1e-4            # s; 0.1 ms is not a binary fraction, so sloppy arithmetic shows
N_STEPS = 200        # steps per presentation
N_TRIALS = 30
PERIOD, PHASE = 7, 3  # the last spike of a trial is at step 199, the next trial's first 4 steps later
P = 0.05             # Bernoulli spike probability per step
BLOCKS = ((0, 0, "train"), (0, 0, "test"), (0, 1, "test"), (1, 1, "train"), (1, 0, "test"), (1, 1, "test"))
"""(stage, task, phase) of each block of N_TRIALS presentations, in clock order."""
WEIGHTS = np.array([[-0.5, 0.25, 1.0]])


@pytest.fixture(scope="module")
def trial_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("trials") / "synthetic.h5"
    rng = np.random.default_rng(3)
    config = {"neuron": {"model": "lif", "parameters": {}}, "network": {"tau_m": "100 ms", "v_threshold": "20 mV"}}
    attrs = {"dt": DT, "n_steps_per_presentation": N_STEPS, "method": "finetune", "protocol": "synthetic",
             "seed": 3, "config": json.dumps(config)}
    regular = np.arange(PHASE, N_STEPS, PERIOD)
    with RunRecorder.create(path, attrs=attrs) as rec:
        rec.add_population("regular", 1, "synthetic", "input")
        rec.add_population("poisson", 2, "synthetic", "hidden")
        rec.write_task(0, "task 0")
        rec.write_task(1, "task 1")
        for stage, task, phase in BLOCKS:
            seg_r = np.repeat(np.arange(N_TRIALS), regular.size)
            step_r = np.tile(regular, N_TRIALS)
            fired = rng.random((N_TRIALS, N_STEPS, 2)) < P
            seg_p, step_p, neuron_p = np.nonzero(fired)
            rec.append_block({"task": task, "stage": stage, "epoch": 0 if phase == "train" else -1, "phase": phase,
                              "trial": np.arange(N_TRIALS), "label": np.arange(N_TRIALS) % 10},
                             {"regular": (seg_r, step_r, np.zeros_like(seg_r)),
                              "poisson": (seg_p, step_p, neuron_p)}, N_STEPS)
            if phase == "train":
                rec.write_weights("w_1", task, WEIGHTS * (task + 1))
    return path


def test_trial_spikes_are_exact_steps_from_each_trial_start(trial_file):
    with open_run(trial_file) as run:
        sel = run.select(phase="test")
        trials = run.trial_spikes("regular", sel[::-1])  # any order: one entry per index given
        assert len(trials) == sel.size
        expected = np.arange(PHASE, N_STEPS, PERIOD) * DT
        for times, neurons in trials:
            assert np.array_equal(times, expected)  # bit for bit: integer steps times dt once
            assert np.array_equal(neurons, np.zeros(expected.size, dtype=np.int64))
        poisson = run.trial_spikes("poisson")
        local = run.local_spikes("poisson")
        assert sum(t.size for t, _ in poisson) == local[1].size
        assert all(t.size == 0 or (t.min() >= 0 and t.max() < N_STEPS * DT) for t, _ in poisson)
        with pytest.raises(RunFileError, match="out of range"):
            run.trial_spikes("poisson", [run.n_segments])


def test_neo_block_per_presentation_for_elephant(trial_file):
    pytest.importorskip("neo")
    elephant_stats = pytest.importorskip("elephant.statistics")
    from hlopsim.protocols.reports.export import to_neo_block

    block = to_neo_block(trial_file, phases="test", per="presentation")
    assert len(block.segments) == 4 * N_TRIALS
    assert len(block.groups) == 3 and [g.name for g in block.groups] == ["regular 0", "poisson 0", "poisson 1"]
    expected = np.arange(PHASE, N_STEPS, PERIOD) * DT
    regular_isi, poisson_isi = [], []
    for segment in block.segments:
        assert segment.annotations["phase"] == "test"
        assert segment.annotations["stage"] in (0, 1)
        for train in segment.spiketrains:
            ann = train.annotations
            assert {"population", "neuron", "task", "stage", "phase", "label", "trial"} <= set(ann)
            assert ann["task"] == segment.annotations["task"] and ann["label"] == ann["trial"] % 10
            assert float(train.t_start) == 0.0 and float(train.t_stop) == N_STEPS * DT
            times = train.rescale("s").magnitude
            assert np.array_equal(times, np.rint(times / DT) * DT)  # exact multiples of dt
            isi = elephant_stats.isi(train).rescale("s").magnitude
            if ann["population"] == "regular":
                assert np.array_equal(times, expected)
                regular_isi.append(isi)
            else:
                poisson_isi.append(isi)
    regular_isi, poisson_isi = np.concatenate(regular_isi), np.concatenate(poisson_isi)
    # no interval spans two trials: the regular train's intervals are all one period
    assert np.allclose(regular_isi, PERIOD * DT, rtol=0, atol=1e-12)
    assert elephant_stats.cv(regular_isi) == pytest.approx(0.0, abs=1e-9)
    assert elephant_stats.cv(poisson_isi) == pytest.approx(np.sqrt(1 - P), abs=0.08)
    # unit identity: a group holds its unit's train of every trial
    assert all(len(g.spiketrains) == 4 * N_TRIALS for g in block.groups)
    assert all(t.annotations["neuron"] == 1 for t in block.groups[2].spiketrains)


def test_block_mode_mixes_trials(trial_file):
    """The default (one segment per block) keeps the presentation clock: the intervals across trial
    boundaries (4 steps, not 7) make the regular train's CV nonzero; that is what per="presentation" avoids."""
    pytest.importorskip("neo")
    elephant_stats = pytest.importorskip("elephant.statistics")
    from hlopsim.protocols.reports.export import to_neo_block

    block = to_neo_block(trial_file, phases="test", tasks=0, populations="regular")
    assert block.annotations["per"] == "block" and len(block.segments) == 2
    (train,) = block.segments[0].spiketrains
    assert elephant_stats.cv(elephant_stats.isi(train)) > 0.05
    with pytest.raises(RunFileError, match="per='trial'"):
        to_neo_block(trial_file, per="trial")


# ---------------------------------------------------------------------------------- plots


def test_psth_defaults_to_the_test_of_the_last_stage(trial_file):
    pytest.importorskip("matplotlib")
    from hlopsim.protocols.reports.plots import psth_figure

    with open_run(trial_file) as run:
        fig = psth_figure(run, ["regular"])
        title = fig.get_suptitle()
        assert "stage 1, tasks 0–1, test" in title and f"{2 * N_TRIALS} presentations" in title, title
        fig = psth_figure(run, ["regular"], phase="test", stage=0, task=1)
        assert "stage 0, task 1, test" in fig.get_suptitle() and f"{N_TRIALS} presentations" in fig.get_suptitle()


def test_raster_of_a_task_and_phase_shows_the_last_stage_unless_told(trial_file):
    pytest.importorskip("matplotlib")
    from hlopsim.protocols.reports.plots import raster_figure

    with open_run(trial_file) as run:
        assert "of stage 1, task 0, test" in raster_figure(run, task=0, phase="test").get_suptitle()
        assert "of stage 0, task 0, test" in raster_figure(run, task=0, phase="test", stage=0).get_suptitle()
        assert "of stage 0, task 0, train" in raster_figure(run).get_suptitle()  # the first presentations
        with pytest.raises(RunFileError, match="stage=1"):
            raster_figure(run, task=0, phase="train", stage=1)


def test_weights_are_plotted_in_millivolts(trial_file, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("brian2")
    from hlopsim.protocols.reports.plots import spike_cost_volts, weights_figure

    with open_run(trial_file) as run:
        assert spike_cost_volts(run) == pytest.approx(0.020)  # lif: spike cost = v_threshold
        fig = weights_figure(run, task=1)
    (ax,) = fig.axes
    assert "mV, jump of v per spike" in ax.get_xlabel() and "spike cost 20 mV" in ax.get_xlabel()
    x = ax.patches[0].get_xy()[:, 0]
    assert x.min() == pytest.approx(-0.5 * 2 * 20) and x.max() == pytest.approx(1.0 * 2 * 20)
    # without a stored configuration the unit is said to be the spike cost
    bare = tmp_path / "bare.h5"
    with RunRecorder.create(bare, attrs={"dt": DT, "n_steps_per_presentation": N_STEPS}) as rec:
        rec.add_population("input", 3, "synthetic", "input")
        rec.write_task(0, "task 0")
        rec.write_weights("w_1", 0, WEIGHTS)
    with open_run(bare) as run:
        assert spike_cost_volts(run) is None
        (ax,) = weights_figure(run).axes
    assert "units of the spike cost" in ax.get_xlabel()
    assert ax.patches[0].get_xy()[:, 0].max() == pytest.approx(1.0)


def test_plot_command_takes_a_stage(trial_file, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from hlopsim.protocols.reports.plots import plot_command

    out = tmp_path / "r.png"
    assert plot_command(trial_file, "raster", task="1", phase="test", stage="0", out=out) == 0
    assert out.stat().st_size > 5000
    with pytest.raises(RunFileError, match="stage 5 is out of range"):
        plot_command(trial_file, "psth", stage="5", out=out)
    with pytest.raises(RunFileError, match="does not use --stage"):
        plot_command(trial_file, "weights", stage="0", out=out)
