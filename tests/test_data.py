"""Tests of the data package: digits split, permuted tasks, spike encoding, synthetic streams."""


import numpy as np
import pytest
from scipy.linalg import subspace_angles

from hlopsim import data
import hlopsim.data.encoders  # noqa: F401  (data.encoders below)
from hlopsim.data import (
    SpikeTrains,
    load_digits,
    low_rank_rates,
    permuted_tasks,
    poisson_encode,
    top_subspace,
)
from hlopsim.data.tasks import apply_permutation


@pytest.fixture(scope="module")
def digits():
    return load_digits()


# ---------------------------------------------------------------- digits


def test_digits_split_sizes_dtypes_and_range(digits):
    assert digits.name == "digits"
    assert digits.x_train.shape == (1347, 64) and digits.x_test.shape == (450, 64)
    assert digits.y_train.shape == (1347,) and digits.y_test.shape == (450,)
    assert digits.x_train.dtype == np.float64 and digits.y_train.dtype == np.int64
    assert digits.n_classes == 10 and digits.image_shape == (8, 8) and digits.n_features == 64
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0 and x.max() == 1.0


def test_digits_split_is_stratified_and_fixed(digits):
    y_all = np.concatenate([digits.y_train, digits.y_test])
    total = np.bincount(y_all, minlength=10)
    expected_test = total * 450 / len(y_all)
    assert np.all(np.abs(np.bincount(digits.y_test, minlength=10) - expected_test) <= 1)
    again = load_digits()
    assert np.array_equal(again.x_test, digits.x_test)
    assert not np.array_equal(load_digits(split_seed=1).y_test, digits.y_test)


@pytest.mark.parametrize("bad", [0, 9, 1788, 1797, 2.5])
def test_digits_bad_test_size(bad):
    with pytest.raises(ValueError, match="test_size"):
        load_digits(test_size=bad)


# ---------------------------------------------------------------- tasks


def test_permuted_tasks_are_permutations_of_the_data(digits):
    tasks = permuted_tasks(digits, 4, np.random.default_rng(7))
    assert [t.name for t in tasks] == [f"permuted-{i}" for i in range(4)]
    assert [t.index for t in tasks] == list(range(4))
    assert np.array_equal(tasks[0].permutation, np.arange(64))
    for task in tasks:
        assert task.permutation.dtype == np.int64 and task.x_train.flags["C_CONTIGUOUS"]
        assert np.array_equal(np.sort(task.permutation), np.arange(64))
        assert np.array_equal(task.x_train, digits.x_train[:, task.permutation])
        assert np.array_equal(task.x_test, digits.x_test[:, task.permutation])
        assert np.array_equal(task.y_train, digits.y_train)
    for task in tasks[1:]:
        assert not np.array_equal(task.permutation, np.arange(64))
    assert len({t.permutation.tobytes() for t in tasks}) == 4


def test_permuted_tasks_reproducible(digits):
    def perms(seed, **kw):
        return [t.permutation for t in permuted_tasks(digits, 3, np.random.default_rng(seed), **kw)]

    assert all(np.array_equal(a, b) for a, b in zip(perms(3), perms(3)))
    assert not np.array_equal(perms(3)[1], perms(4)[1])
    assert not np.array_equal(perms(3, identity_first=False)[0], np.arange(64))


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_permuted_tasks_bad_n_tasks(digits, bad):
    with pytest.raises(ValueError, match="n_tasks"):
        permuted_tasks(digits, bad, np.random.default_rng(0))


def test_apply_permutation_rejects_non_permutation():
    x = np.arange(6.0).reshape(2, 3)
    assert np.array_equal(apply_permutation(x, np.array([2, 0, 1])), x[:, [2, 0, 1]])
    with pytest.raises(ValueError, match="permutation"):
        apply_permutation(x, np.array([0, 0, 1]))


# ---------------------------------------------------------------- encoder


def test_poisson_counts_match_rate():
    n_samples, n_steps, rate_hz, dt_s = 1000, 40, 200.0, 1e-3
    levels = np.linspace(0.0, 1.0, 64)
    x = np.tile(levels, (n_samples, 1))
    spikes = poisson_encode(x, rate_hz, dt_s, n_steps, np.random.default_rng(0))
    counts = spikes.counts()
    assert counts.shape == (n_samples, 64) and counts.dtype == np.int64
    p = levels * rate_hz * dt_s
    std_of_mean = np.sqrt(n_steps * p * (1 - p) / n_samples)
    assert np.all(np.abs(counts.mean(axis=0) - n_steps * p) <= 5 * std_of_mean + 1e-12)
    # Pooled over neurons the test is sharp enough to catch a ~1% rate bias.
    total_std = np.sqrt(np.sum(n_samples * n_steps * p * (1 - p)))
    assert abs(counts.sum() - n_samples * n_steps * p.sum()) <= 4 * total_std
    assert counts[:, 0].sum() == 0  # intensity 0 never fires


def test_poisson_output_sorted_and_in_range():
    x = np.random.default_rng(1).random((30, 10))
    s = poisson_encode(x, 500.0, 1e-3, 25, np.random.default_rng(2))
    assert (s.n_samples, s.n_neurons, s.n_steps) == (30, 10, 25)
    assert s.n_spikes > 0
    for arr in (s.sample, s.step, s.neuron):
        assert arr.dtype == np.int64 and arr.shape == (s.n_spikes,)
    order = np.lexsort((s.neuron, s.step, s.sample))
    assert np.array_equal(order, np.arange(s.n_spikes))
    assert s.step.max() < 25 and s.neuron.max() < 10
    keys = (s.sample * 25 + s.step) * 10 + s.neuron
    assert np.all(np.diff(keys) > 0)  # at most one spike per (sample, step, neuron)


def test_poisson_zeros_give_no_spikes():
    s = poisson_encode(np.zeros((5, 8)), 1000.0, 1e-3, 50, np.random.default_rng(0))
    assert s.n_spikes == 0 and s.counts().shape == (5, 8) and not s.counts().any()


def test_poisson_chunking_does_not_change_result(monkeypatch):
    x = np.random.default_rng(3).random((50, 16))
    whole = poisson_encode(x, 300.0, 1e-3, 20, np.random.default_rng(4))
    monkeypatch.setattr(data.encoders, "_CHUNK_BYTES", 7 * 5 * 20 * 16)  # 7 samples per chunk
    chunked = poisson_encode(x, 300.0, 1e-3, 20, np.random.default_rng(4))
    for name in ("sample", "step", "neuron"):
        assert np.array_equal(getattr(whole, name), getattr(chunked, name))


def test_poisson_reproducible_and_seed_dependent():
    x = np.full((10, 10), 0.5)
    a = poisson_encode(x, 200.0, 1e-3, 30, np.random.default_rng(5)).counts()
    b = poisson_encode(x, 200.0, 1e-3, 30, np.random.default_rng(5)).counts()
    c = poisson_encode(x, 200.0, 1e-3, 30, np.random.default_rng(6)).counts()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_select_renumbers_in_given_order():
    x = np.random.default_rng(7).random((6, 5))
    s = poisson_encode(x, 400.0, 1e-3, 40, np.random.default_rng(8))
    picks = np.array([4, 1, 4, 0])
    sub = s.select(picks)
    assert sub.n_samples == 4 and (sub.n_neurons, sub.n_steps) == (5, 40)
    assert np.array_equal(sub.counts(), s.counts()[picks])
    for new, old in enumerate(picks):
        new_mask, old_mask = sub.sample == new, s.sample == old
        assert np.array_equal(sub.step[new_mask], s.step[old_mask])
        assert np.array_equal(sub.neuron[new_mask], s.neuron[old_mask])
    assert s.select(np.array([], dtype=np.int64)).n_spikes == 0
    with pytest.raises(ValueError, match="samples"):
        s.select(np.array([6]))


def test_spike_trains_rejects_unsorted():
    with pytest.raises(ValueError, match="sorted"):
        SpikeTrains(np.array([1, 0]), np.array([0, 0]), np.array([0, 0]), 2, 1, 1)
    with pytest.raises(ValueError, match="neuron"):
        SpikeTrains(np.array([0]), np.array([0]), np.array([3]), 1, 3, 1)


@pytest.mark.parametrize(
    "x, rate, dt, steps, match",
    [
        (np.full((2, 2), 1.5), 100.0, 1e-3, 10, r"x has maximum 1\.5"),
        (np.full((2, 2), -0.1), 100.0, 1e-3, 10, r"x has minimum -0\.1"),
        (np.array([[np.nan, 0.0]]), 100.0, 1e-3, 10, "non-finite"),
        (np.zeros(4), 100.0, 1e-3, 10, r"x has shape \(4,\)"),
        (np.zeros((2, 2)), 0.0, 1e-3, 10, "max_rate_hz = 0"),
        (np.zeros((2, 2)), 100.0, -1e-3, 10, "dt_s = -0.001"),
        (np.zeros((2, 2)), 100.0, 1e-3, 0, "n_steps = 0"),
        (np.zeros((2, 2)), 100.0, 1e-3, 2.5, "n_steps = 2.5"),
        (np.zeros((2, 2)), 1200.0, 1e-3, 10, r"max_rate_hz \* dt_s = 1\.2 must be <= 1"),
    ],
)
def test_poisson_bad_inputs(x, rate, dt, steps, match):
    with pytest.raises(ValueError, match=match):
        poisson_encode(x, rate, dt, steps, np.random.default_rng(0))


def test_poisson_requires_generator():
    with pytest.raises(ValueError, match="rng"):
        poisson_encode(np.zeros((1, 1)), 100.0, 1e-3, 10, 42)


# ---------------------------------------------------------------- synthetic


@pytest.mark.parametrize("n_inputs, rank", [(32, 1), (64, 4), (20, 6)])
def test_low_rank_subspace_recovered(n_inputs, rank):
    x, basis = low_rank_rates(n_inputs, rank, 2000, np.random.default_rng(rank))
    assert x.shape == (2000, n_inputs) and basis.shape == (n_inputs, rank)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.allclose(basis.T @ basis, np.eye(rank))
    top = top_subspace(x, rank)
    assert top.shape == (n_inputs, rank) and np.allclose(top.T @ top, np.eye(rank))
    assert np.degrees(subspace_angles(top, basis)).max() < 5.0


def test_top_subspace_is_uncentered():
    # Data on a line through the origin offset along e0: centered PCA would
    # find e1, the uncentered second moment is dominated by e0.
    t = np.linspace(-0.1, 0.1, 101)
    x = np.stack([np.ones_like(t), t], axis=1)
    assert abs(top_subspace(x, 1)[0, 0]) > 0.99


def test_noise_scaling_keeps_data_in_unit_range():
    x, _ = low_rank_rates(16, 2, 500, np.random.default_rng(0), noise=1.0)
    assert x.min() >= 0.0 and x.max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_inputs=4, rank=5, n_samples=10), "rank = 5 must be <= 4"),
        (dict(n_inputs=4, rank=0, n_samples=10), "rank = 0 must be >= 1"),
        (dict(n_inputs=4, rank=2, n_samples=0), "n_samples = 0"),
        (dict(n_inputs=4, rank=2, n_samples=10, noise=-0.1), "noise = -0.1"),
    ],
)
def test_low_rank_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        low_rank_rates(rng=np.random.default_rng(0), **kwargs)


def test_top_subspace_bad_k():
    with pytest.raises(ValueError, match="k = 3 must be <= 2"):
        top_subspace(np.ones((5, 2)), 3)


def test_package_exports():
    for name in ("Dataset", "load_digits", "Task", "permuted_tasks", "SpikeTrains",
                 "poisson_encode", "low_rank_rates", "top_subspace"):
        assert hasattr(data, name)
