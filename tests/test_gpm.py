"""The ``gpm`` method (exact, energy-threshold bases; the closed-form reference for HLOP's circuit)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from protocols.analysis import open_run
from protocols.config import apply_overrides, load_protocol
from protocols.continual import run_continual
from protocols.methods import GPM, grow_basis, make_method

TINY = ["protocol.tasks=2", "protocol.epochs=2", "data.train_size=128", "network.hidden=[16]",
        "network.batch_size=32", 'sim.target="numpy"', "gpm.threshold=0.9"]


def energy_held(basis, A):
    return float(np.sum((A @ basis.T) ** 2) / np.sum(A * A))


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.99, 1.0])
def test_grow_basis_takes_the_fewest_top_directions(threshold):
    rng = np.random.default_rng(0)
    n = 12
    A = rng.normal(size=(200, n)) * (0.7 ** np.arange(n))          # decaying spectrum
    basis, k = grow_basis(np.zeros((0, n)), A, threshold)
    assert basis.shape == (k, n)
    np.testing.assert_allclose(basis @ basis.T, np.eye(k), atol=1e-12)
    assert energy_held(basis, A) >= threshold - 1e-9
    if k > 1:                                                       # one direction fewer is not enough
        assert energy_held(basis[:-1], A) < threshold
    # a second task's directions are orthogonal to the first's and the union holds its energy
    B = rng.normal(size=(200, n)) * (0.7 ** np.arange(n))[::-1]
    grown, k2 = grow_basis(basis, B, threshold)
    np.testing.assert_array_equal(grown[:k], basis)
    np.testing.assert_allclose(grown @ grown.T, np.eye(k + k2), atol=1e-10)
    assert energy_held(grown, B) >= threshold - 1e-9


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError, match="gpm.threshold = 1.5"):
        GPM(1.5)
    config = apply_overrides(load_protocol("permuted-digits"), ["gpm.threshold=0.0"])
    with pytest.raises(ValueError, match="gpm.threshold"):
        make_method("gpm", config)


def test_gpm_run_projects_out_its_recorded_bases(tmp_path):
    """A real 2-task run: task 1's weight change is orthogonal to the bases kept after task 0, and
    those bases hold ≥ threshold of task 0's last-epoch activity (recomputed from the recorded spikes)."""
    path = tmp_path / "gpm.h5"
    result = run_continual(apply_overrides(load_protocol("permuted-digits"), TINY), "gpm", path, progress=False)
    assert np.all(np.isfinite(result.accuracy))
    with open_run(path) as run:
        for layer in run.weight_names:
            rows, frozen = run.lateral(layer, 0)
            basis = rows[frozen]
            assert 0 < len(basis) < rows.shape[1]
            change = run.weights(layer, 1) - run.weights(layer, 0)
            assert np.linalg.norm(change) > 1e-3                     # task 1 was learned...
            assert np.linalg.norm(change @ basis.T) < 1e-10 * np.linalg.norm(change)  # ...outside the bases
            pop = run.presynaptic_population(layer)
            A = run.rates(pop, run.select(task=0, phase="train", epoch=1))
            assert energy_held(basis, A) >= 0.9 - 1e-9
    with h5py.File(path, "r") as f:
        assert f.attrs["method"] == "gpm"
