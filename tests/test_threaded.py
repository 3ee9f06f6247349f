"""`sim.threaded`: the hot kernels' threaded twins give the serial kernels' results bit for bit, and a
run on two threads writes the same run file as on one."""
from __future__ import annotations

import re
import warnings

import numba
import numpy as np
import pytest
from cli_helpers import assert_same_run_files

from hlopsim.protocols.experiment.config import ConfigError, Experiment, apply_overrides, load_protocol
from hlopsim.protocols.experiment.protocol import run_protocol
from hlopsim.sim import kernels, prefs, shared_lateral, threaded
from hlopsim.sim.propagation import propagate_spikes, propagate_spikes_threaded

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two cores (Numba's thread limit)")


@pytest.fixture
def two_threads():
    assert threaded.set_threads(2) == 2
    yield
    threaded.set_threads(1)


def _spikespace(rng, n_copies, n_pre, p):
    spikes = np.flatnonzero(rng.random(n_copies * n_pre) < p).astype(np.int32)
    space = np.zeros(n_copies * n_pre + 1, dtype=np.int32)
    space[:len(spikes)] = spikes
    space[-1] = len(spikes)
    return space


@pytest.mark.parametrize("n_copies", [1, 3, 64])
def test_propagation_on_two_threads_is_the_serial_propagation(two_threads, n_copies):
    rng = np.random.default_rng(n_copies)
    n_pre, n_post = 37, 29
    increments = rng.normal(0, 1e-3, (n_pre, n_post))
    target = rng.normal(0, 1e-2, (n_copies, n_post))
    serial, grouped, parallel = target.copy(), target.copy(), target.copy()
    parts = min(2, n_copies)
    for p in (0.0, 0.1, 0.6):      # no spikes, sparse, dense; the same target accumulates
        space = _spikespace(rng, n_copies, n_pre, p)
        propagate_spikes(space, increments, serial, n_pre, n_post)
        propagate_spikes(space, increments, grouped, n_pre, n_post, n_copies)      # serial, a group per copy
        propagate_spikes_threaded(space, increments, parallel, n_pre, n_post, parts)
        np.testing.assert_array_equal(grouped, serial)
        np.testing.assert_array_equal(parallel, serial)
    assert not np.array_equal(serial, target)


@pytest.mark.parametrize("shape", [(64, 30, 41, 7), (5, 9, 13, 0), (3, 1, 6, 2)])   # B, m, n, K
def test_update_and_credit_on_two_threads_are_the_serial_kernels(two_threads, shape):
    B, m, n, K = shape
    rng = np.random.default_rng(sum(shape))
    W = rng.normal(0, 1, (m, n))
    delta, a = rng.normal(0, 1, (B, m)), rng.uniform(0, 1, (B, n))
    H = np.linalg.qr(rng.normal(0, 1, (n, max(K, 1))))[0].T[:K].copy()
    serial, parallel = W.copy(), W.copy()
    kernels.projected_update(serial, delta, a, H, 0.05)
    kernels.projected_update_threaded(parallel, delta, a, H, 0.05)
    np.testing.assert_array_equal(parallel, serial)
    assert not np.array_equal(serial, W)
    u = rng.uniform(-0.5, 1.5, (B, n))
    np.testing.assert_array_equal(kernels.hidden_credit_threaded(W, delta, u, 1.0), kernels.hidden_credit(W, delta, u, 1.0))
    with pytest.raises(ValueError, match="same B"):
        kernels.projected_update_threaded(parallel, delta[:-1], a, H, 0.05)


def test_lateral_circuit_passes_on_two_threads_are_the_serial_ones(two_threads):
    rng = np.random.default_rng(3)
    copies, n, K, rows = 8, 33, 12, 9
    H = np.zeros((K, n))
    H[:rows] = rng.normal(0, 0.3, (rows, n))
    x = rng.uniform(0, 1, (copies, n)) * (rng.random((copies, n)) < 0.5)
    results = []
    for activity, step in ((shared_lateral.subspace_activity, shared_lateral.hebbian_step),
                           (shared_lateral.subspace_activity_threaded, shared_lateral.hebbian_step_threaded)):
        Hm, HTm = H.copy(), np.ascontiguousarray(H.T)
        y, xhat = np.full((copies, K), 7.0), np.zeros((copies, n))
        activity(Hm, HTm, x, rows, y, xhat)
        step(Hm, HTm, x, y, xhat, 4, rows, 0.02)
        results.append((Hm, HTm, y, xhat))
    for serial, parallel in zip(*results):
        np.testing.assert_array_equal(parallel, serial)
    assert not np.array_equal(results[0][0], H) and np.array_equal(results[0][0][:4], H[:4])


TINY = ["protocol.tasks=2", "protocol.epochs=1", "data.train_size=128", "network.hidden=[24,16]",
        "network.batch_size=32", "lateral.copies=8", "lateral.first_task=[4,4]", "lateral.per_task=[2,2]",
        "lateral.consolidation_epochs=1", 'sim.target="numpy"']


def test_a_run_on_two_threads_writes_the_run_file_of_one_thread(tmp_path):
    files = []
    for threads in (1, 2):
        config = apply_overrides(load_protocol("permuted-digits"), [*TINY, f"sim.threads={threads}"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_protocol(config, "hlop", tmp_path / f"threads{threads}.h5", progress=False)
        assert threaded.active() == threads
        files.append(tmp_path / f"threads{threads}.h5")
    prefs.configure("numpy", threads=1)
    assert_same_run_files(*files)


@pytest.mark.parametrize("value, expected", [(0, "sim.threads = 0 must be at least 1"),
                                             (-2, "sim.threads = -2 must be at least 1"),
                                             (1.5, "sim.threads = 1.5: expected a value like 1"),
                                             (True, "sim.threads = true: expected a value like 1"),
                                             ("2", 'sim.threads = "2": expected a value like 1')])
def test_threads_must_be_a_whole_number_of_at_least_one(value, expected):
    config = load_protocol("permuted-digits")
    config["sim"]["threads"] = value
    with pytest.raises(ConfigError, match=re.escape(expected)):
        Experiment.from_config(config)
