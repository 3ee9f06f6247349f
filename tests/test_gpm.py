"""The ``gpm`` method (exact, energy-threshold bases; the closed-form reference for HLOP's circuit)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from hlopsim.sim.runfile import open_run
from hlopsim.protocols.experiment.config import apply_overrides, load_protocol
from hlopsim.protocols.experiment.protocol import run_protocol
from hlopsim.protocols.experiment.config import Experiment
from hlopsim.protocols.experiment.methods import GPM, grow_basis

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
        Experiment.from_config(config).method("gpm")


def test_gpm_run_projects_out_its_recorded_bases(tmp_path):
    """A real 2-task run: task 1's weight change is orthogonal to the bases kept after task 0, and
    those bases hold ≥ threshold of task 0's last-epoch activity (recomputed from the recorded spikes)."""
    path = tmp_path / "gpm.h5"
    result = run_protocol(apply_overrides(load_protocol("permuted-digits"), TINY), "gpm", path, progress=False)
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


def test_grow_basis_by_count_takes_exactly_the_top_residual_directions():
    from scipy.linalg import subspace_angles
    rng = np.random.default_rng(1)
    n = 10
    A = rng.normal(size=(300, n)) * (0.8 ** np.arange(n))
    first, k1 = grow_basis(np.zeros((0, n)), A, threshold=0.5, count=3)   # the threshold is ignored
    assert k1 == 3 and first.shape == (3, n)
    top = np.linalg.svd(A, full_matrices=False)[2][:3]
    assert np.rad2deg(subspace_angles(first.T, top.T)).max() < 1e-6
    B = rng.normal(size=(300, n))
    grown, k2 = grow_basis(first, B, threshold=1.0, count=4)
    np.testing.assert_array_equal(grown[:3], first)
    np.testing.assert_allclose(grown @ grown.T, np.eye(7), atol=1e-10)
    residual = B - (B @ first.T) @ first
    top_residual = np.linalg.svd(residual, full_matrices=False)[2][:4]
    assert k2 == 4 and np.rad2deg(subspace_angles(grown[3:].T, top_residual.T)).max() < 1e-6
    full, k3 = grow_basis(grown, B, threshold=1.0, count=50)               # capped at the input width
    assert k3 == n - 7 and full.shape == (n, n)


def test_gpm_with_lateral_sizes_grows_the_circuits_counts(tmp_path):
    """``gpm.basis_sizes = "lateral"``: exact rows, as many per task as the lateral circuits' neurons."""
    path = tmp_path / "gpm_counts.h5"
    config = apply_overrides(load_protocol("permuted-digits"),
                             [*TINY, 'gpm.basis_sizes="lateral"', "lateral.first_task=[3,4]", "lateral.per_task=[2,5]"])
    run_protocol(config, "gpm", path, progress=False)
    with open_run(path) as run:
        counts = {task: [int(run.lateral(layer, task)[1].sum()) for layer in run.weight_names] for task in (0, 1)}
    assert counts == {0: [3, 4], 1: [5, 9]}


def test_unknown_basis_sizes_is_refused():
    config = apply_overrides(load_protocol("permuted-digits"), ['gpm.basis_sizes="energy"'])
    with pytest.raises(ValueError, match="gpm.basis_sizes = 'energy'"):
        Experiment.from_config(config).method("gpm")
