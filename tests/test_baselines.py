"""Baselines beside finetune/hlop/gpm (multitask, ewc, replay, hlop+replay), per-row output heads, and
forward transfer (the initial evaluation and `forward_transfer` / `learning_accuracy`)."""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
from cli_helpers import assert_same_run_files, run_file_datasets

from hlopsim.protocols.experiment import loop
from hlopsim.protocols.experiment.config import ConfigError, Experiment, apply_overrides, load_protocol
from hlopsim.protocols.experiment.methods import EWC, METHODS, HLOPReplay, Multitask, Replay, replay_rows
from hlopsim.protocols.experiment.protocol import run_protocol
from hlopsim.protocols.metrics import forgetting, forward_transfer, learning_accuracy
from hlopsim.sim.learning import credit, masked_output_credit
from hlopsim.sim.runfile import open_run

# Two permuted-digits tasks, small enough for seconds per run on the numpy target, large enough that
# fine-tuning forgets task 0 (BWT about -12 over seeds 0-2).
TINY = ["protocol.tasks=2", "protocol.epochs=2", "data.train_size=256", "data.test_size=150",
        'sim.target="numpy"', "network.hidden=[64]"]
SEEDS = (0, 1, 2)


def tiny_config(*extra, protocol="permuted-digits", record=False):
    return apply_overrides(load_protocol(protocol), TINY + [f"sim.record_spikes={str(record).lower()}", *extra])




# -- per-row heads in the credit ------------------------------------------------------------------
def _random_batch(rng, batch=12, sizes=(6, 9, 7)):
    weights = [rng.normal(0, 0.5, (sizes[i + 1], sizes[i])) for i in range(len(sizes) - 1)]
    rates = [rng.uniform(0, 1, (batch, n)) for n in sizes]
    return weights, rates


def test_masked_credit_with_one_head_equals_the_head_slice():
    rng = np.random.default_rng(0)
    weights, rates = _random_batch(rng)
    valid = np.ones(12, dtype=bool)
    valid[-3:] = False
    labels = rng.integers(0, 3, 12)
    mask = np.zeros((12, 7), dtype=bool)
    mask[:, 2:5] = True
    sliced, loss_sliced = credit(weights, rates, labels, valid, 10.0, head=slice(2, 5))
    masked, loss_masked = credit(weights, rates, labels, valid, 10.0, head=mask)
    assert loss_masked == pytest.approx(loss_sliced, rel=1e-12)
    for a, b in zip(masked, sliced):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert not masked[-1][:, [0, 1, 5, 6]].any()


def test_masked_credit_mixes_heads_row_by_row():
    """Rows of two heads: each row's credit is the one its own head's slice path gives it."""
    rng = np.random.default_rng(1)
    weights, rates = _random_batch(rng)
    first = np.arange(12) % 3 == 0                  # rows of head A = outputs 0-2, the others head B = 3-6
    labels = np.where(first, rng.integers(0, 3, 12), rng.integers(0, 4, 12))
    valid = np.ones(12, dtype=bool)
    valid[5] = False
    mask = np.zeros((12, 7), dtype=bool)
    mask[first, 0:3] = True
    mask[~first, 3:7] = True
    mixed, loss = credit(weights, rates, labels, valid, 10.0, head=mask)
    part_a, loss_a = credit(weights, rates, labels, valid & first, 10.0, head=slice(0, 3))
    part_b, loss_b = credit(weights, rates, labels, valid & ~first, 10.0, head=slice(3, 7))
    for m, a, b in zip(mixed, part_a, part_b):
        np.testing.assert_allclose(m, a + b, rtol=1e-12, atol=1e-15)   # each row belongs to one of the parts
    n_a, n_b = (valid & first).sum(), (valid & ~first).sum()
    assert loss == pytest.approx((n_a * loss_a + n_b * loss_b) / (n_a + n_b), rel=1e-12)


def test_masked_credit_refuses_a_label_outside_its_head():
    rates = np.full((2, 4), 0.5)
    mask = np.array([[True, True, False, False], [False, False, True, True]])
    with pytest.raises(ValueError, match="label 2 of valid row 1 is outside its head of 2 outputs"):
        masked_output_credit(rates, np.array([1, 2]), 10.0, np.array([True, True]), mask)
    with pytest.raises(ValueError, match="head mask of shape"):
        masked_output_credit(rates, np.array([1, 1]), 10.0, np.array([True, True]), mask[:, :3])


# -- training sets ---------------------------------------------------------------------------------
def test_replay_rows_are_the_first_of_each_class():
    labels = np.array([3, 1, 3, 3, 1, 0])
    np.testing.assert_array_equal(replay_rows(labels, 2), [0, 1, 2, 4, 5])
    np.testing.assert_array_equal(replay_rows(labels, 0), [])


def test_training_rows_of_each_method():
    tasks = [type("T", (), {"y_train": np.array([0, 1, 0, 1, 1])})() for _ in range(3)]
    assert Replay(per_class=0).training_rows(tasks, 2) == [(2, None)]
    rows = Replay(per_class=1).training_rows(tasks, 2)
    assert [index for index, _ in rows] == [2, 0, 1]
    np.testing.assert_array_equal(rows[1][1], [0, 1])
    assert Multitask().training_rows(tasks, 2) == [(2, None), (0, None), (1, None)]
    assert HLOPReplay(per_class=1).training_rows(tasks, 1)[1][0] == 0


def test_training_set_gives_per_row_heads_only_when_heads_differ():
    make = lambda head, y: type("T", (), {"x_train": np.full((len(y), 3), head / 10), "y_train": np.array(y),
                                          "head": head})()
    tasks = [make(0, [0, 1, 1]), make(1, [1, 0])]
    heads = [slice(0, 2), slice(2, 4)]
    alone = loop.training_set(tasks, [(1, None)], heads, 4)
    assert alone.mask is None and alone.head == slice(2, 4) and alone.x is tasks[1].x_train
    mixed = loop.training_set(tasks, [(1, None), (0, np.array([2]))], heads, 4)
    np.testing.assert_array_equal(mixed.task, [1, 1, 0])
    np.testing.assert_array_equal(mixed.row, [0, 1, 2])
    np.testing.assert_array_equal(mixed.y, [1, 0, 1])
    np.testing.assert_array_equal(mixed.mask, [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0]])
    shared = loop.training_set(tasks, [(1, None), (0, None)], [None, None], 2)
    assert shared.mask is None and shared.head is None and len(shared.y) == 5


# -- settings --------------------------------------------------------------------------------------
def test_methods_are_built_from_protocol_settings():
    experiment = Experiment.from_config(tiny_config("ewc.strength=5", "ewc.decay=0.5", "replay.per_class=3"))
    ewc = experiment.method("ewc")
    assert isinstance(ewc, EWC) and ewc.settings() == {"strength": 5.0, "decay": 0.5}
    assert experiment.method("replay").settings() == {"per_class": 3}
    assert experiment.method("hlop+replay").settings()["per_class"] == 3
    assert isinstance(experiment.method("multitask"), Multitask)
    assert {"multitask", "ewc", "replay", "hlop+replay"} <= set(METHODS)


@pytest.mark.parametrize("override, message", [
    ("ewc.strength=-1", "ewc.strength = -1.0 must be a finite number ≥ 0"),
    ("ewc.decay=0", r"ewc.decay = 0.0 must be in \(0, 1\]"),
    ("replay.per_class=-2", "replay.per_class = -2 must be a non-negative integer"),
])
def test_bad_method_settings_are_one_line_config_errors(override, message):
    experiment = Experiment.from_config(tiny_config(override))
    name = override.split(".")[0]
    with pytest.raises(ConfigError, match=message):
        experiment.method(name)


def test_an_interrupted_ewc_run_is_refused_at_resume():
    ewc = EWC(strength=1.0)

    class Net:
        weights = [np.zeros((2, 2))]
    with pytest.raises(ValueError, match="an ewc run cannot continue at task 1"):
        ewc.begin_task(Net(), 1)


# -- runs --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, override", [("ewc", "ewc.strength=0"), ("replay", "replay.per_class=0")])
def test_zero_strength_or_buffer_is_finetune_bit_for_bit(tmp_path, method, override):
    config = tiny_config(override, "protocol.epochs=1", "data.train_size=128", record=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_protocol(config, "finetune", tmp_path / "finetune.h5", progress=False)
        run_protocol(config, method, tmp_path / f"{method}.h5", progress=False)
    assert_same_run_files(tmp_path / "finetune.h5", tmp_path / f"{method}.h5")


@pytest.fixture(scope="module")
def summaries():
    """Per method, the accuracy matrices of seeds 0-2 on the tiny protocol (no run files)."""
    found = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("finetune", "multitask", "ewc", "replay"):
            found[method] = [run_protocol(tiny_config(f"protocol.seed={seed}"), method, None,
                                          progress=False).accuracy for seed in SEEDS]
    return found


def test_multitask_keeps_task_0(summaries):
    bwt = [R[1, 0] - R[0, 0] for R in summaries["multitask"]]
    assert np.mean(bwt) >= -2, bwt


@pytest.mark.parametrize("method", ["multitask", "ewc", "replay"])
def test_each_baseline_forgets_less_than_finetune(summaries, method):
    finetune = np.mean([forgetting(R) for R in summaries["finetune"]])
    assert finetune > 5                    # the protocol does make fine-tuning forget
    assert np.mean([forgetting(R) for R in summaries[method]]) < finetune - 3


def _multitask_stage_1(tmp_path, *settings):
    """A tiny two-task multitask run (64 training samples per task) with its segments recorded: the
    tasks and the segment table's rows of stage 1's training."""
    config = tiny_config("data.train_size=64", *settings, record=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_protocol(config, "multitask", tmp_path / "multitask.h5", progress=False)
    experiment = Experiment.from_config(config)
    tasks = experiment.make_tasks(np.random.default_rng(np.random.SeedSequence(experiment.seed).spawn(4)[0]))
    with open_run(tmp_path / "multitask.h5") as run:
        seg = run.segments()
    second = (seg["stage"] == 1) & (seg["phase"] == "train")
    for task in (0, 1):   # every presented sample carries its own task's label
        rows = second & (seg["task"] == task)
        np.testing.assert_array_equal(seg["label"][rows], tasks[task].y_train[seg["trial"][rows]])
    return seg, second


def test_multitask_records_which_task_each_training_sample_came_from(tmp_path):
    seg, second = _multitask_stage_1(tmp_path, "protocol.epochs=1")
    assert second.sum() == 128 and sorted(set(seg["task"][second])) == [0, 1]
    for task in (0, 1):
        assert sorted(seg["trial"][second & (seg["task"] == task)]) == list(range(64))


def test_multitask_task_budget_draws_one_tasks_worth_from_every_seen_task(tmp_path):
    """``multitask.samples = "task"``: each epoch of stage 1 presents 64 samples (task 1's size), drawn
    without repeats from both tasks' 128, anew every epoch."""
    seg, second = _multitask_stage_1(tmp_path, "protocol.epochs=2", 'multitask.samples="task"')
    assert second.sum() == 2 * 64
    drawn = []
    for epoch in (0, 1):
        rows = second & (seg["epoch"] == epoch)
        pairs = set(zip(seg["task"][rows].tolist(), seg["trial"][rows].tolist()))
        assert len(pairs) == 64 and {task for task, _ in pairs} == {0, 1}
        drawn.append(pairs)
    assert drawn[0] != drawn[1]


def test_multitask_samples_must_be_all_or_task():
    with pytest.raises(ConfigError, match="multitask.samples = 'some'"):
        Experiment.from_config(tiny_config('multitask.samples="some"'))


# -- forward transfer --------------------------------------------------------------------------------
def test_forward_transfer_and_learning_accuracy_by_hand():
    R = np.array([[90.0, 99.0, 12.0],
                  [93.0, 95.0, 11.0],
                  [70.0, 85.0, 60.0]])
    b = np.array([10.0, 20.0, 10.0])
    # FWT = ((R[0,1] - b1) + (R[1,2] - b2)) / 2 = ((99 - 20) + (11 - 10)) / 2 = 40
    assert forward_transfer(R, b) == pytest.approx(40.0)
    np.testing.assert_array_equal(learning_accuracy(R), [90.0, 95.0, 60.0])
    assert forward_transfer(R[:1, :1], b[:1]) == 0.0
    with pytest.raises(ValueError, match="one accuracy per task"):
        forward_transfer(R, b[:2])
    with pytest.raises(ValueError, match=r"R\[0, 1\] is nan"):
        forward_transfer(np.where(np.eye(3, k=1, dtype=bool), np.nan, R), b)
    with pytest.raises(ValueError, match=r"R\[0, 0\] is nan"):
        learning_accuracy(np.where(np.eye(3, dtype=bool), np.nan, R))


def test_initial_accuracy_is_the_untrained_networks(tmp_path):
    """With a step too small to change any weight, the accuracy after task 0 is the initial one."""
    config = tiny_config("protocol.epochs=1", "data.train_size=64", "learning.lr=1e-300", record=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_protocol(config, "finetune", tmp_path / "run.h5", progress=False)
    with h5py.File(tmp_path / "run.h5", "r") as f:
        initial = f["metrics/initial_accuracy"][()]
    assert initial.shape == (2,) and np.isfinite(initial).all()
    np.testing.assert_array_equal(initial, result.accuracy[0])


def test_initial_evaluation_changes_nothing_else(tmp_path, monkeypatch):
    """A run with the initial evaluation and one without it (stubbed out) write the same datasets."""
    config = tiny_config("protocol.epochs=1", "data.train_size=64", "lateral.consolidation_epochs=1", record=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_protocol(config, "hlop", tmp_path / "with.h5", progress=False)
        monkeypatch.setattr(loop, "initial_accuracy", lambda net, tasks, *args, **kwargs: np.full(len(tasks), -1.0))
        run_protocol(config, "hlop", tmp_path / "without.h5", progress=False)
    first, second = run_file_datasets(tmp_path / "with.h5"), run_file_datasets(tmp_path / "without.h5")
    assert (second.pop("metrics/initial_accuracy") == -1).all() and (first.pop("metrics/initial_accuracy") >= 0).all()
    assert sorted(first) == sorted(second)
    for name in first:
        assert np.array_equal(first[name], second[name], equal_nan=first[name].dtype.kind == "f"), name
