"""Continual-learning methods as small strategy objects.

A method decides three things: whether (and which) lateral circuits run, what happens at the start
and end of each task, and what projects each layer's supervised update (rows ``H``, or the circuit's
own residual activity, see `sim.learning.apply_update`). It touches the network only through the
`sim.network.SimNetwork` handle and numpy arrays. The experiment loop (`protocols.experiment.loop`)
calls the hooks in this order per task: ``begin_task``, ``projections`` and ``observe`` after every
training batch, ``end_task``, ``snapshots``.

To write a method, subclass `Finetune` and override the hooks you need; give it a ``name`` and a
``settings()`` dict (stored in the run file and compared when a run is resumed).
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # sim.learning pulls in Numba; the CLI imports this module before any run
    from hlopsim.sim.learning import NeuralResidual


class UnsettledCircuitWarning(UserWarning):
    """A lateral circuit ended a task with rows far from orthonormal (`sim.row_measures`)."""


class Finetune:
    """Sequential fine-tuning: plain updates, nothing protects old tasks (the lower baseline)."""

    name = "finetune"
    uses_lateral = False
    lateral = None                # the LateralSpec of the circuits this method simulates, if any
    consolidation_epochs = 0      # epochs of lateral learning only after each task's training

    def settings(self) -> dict:
        """The method's settings as plain values (stored in run files; a resumed run must match)."""
        return {}

    def begin_task(self, net, task: int) -> None:
        """Prepare for training ``task``."""

    def end_task(self, net, task: int) -> None:
        """Finish ``task``."""

    def observe(self, rates, keep) -> None:
        """See the rates (every population, input first) of a training batch; ``keep`` marks the
        rows of the task's last training epoch (valid samples only)."""

    def snapshots(self, net) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per weight layer, the protecting rows and their frozen mask to record after a task."""
        return []

    def projections(self, net) -> list[np.ndarray]:
        """Rows ``H_l`` (K × n) to project each layer's update out of; K = 0 means no projection."""
        return [np.zeros((0, w.shape[1])) for w in net.weights]


class HLOP(Finetune):
    """Hebbian learning based orthogonal projection (Xiao et al., ICLR 2024).

    At each task the lateral circuits grow new subspace neurons that learn, by Oja's rule in the
    simulated synapses, the principal subspace of the task's presynaptic activity; old neurons
    are frozen. Supervised updates are projected out of the frozen neurons' span: in closed form
    with their rows ``H_old`` (``lateral.projection = "closed-form"``), or with the residual the
    simulated circuit computes with only the frozen neurons feeding back (``"neural"``).

    Parameters
    ----------
    first_task, per_task : sequence of int
        Subspace neurons added per weight layer at task 0 and at each later task.
    hebbian_rate : sequence of Quantity or str, optional
        ``η`` of Oja's rule per layer (default 16 Hz for the first layer, 6 Hz for the others).
    consolidation_epochs : int
        Epochs of lateral (Hebbian) learning only, weights fixed, after each task's training.
    copies, dt, window, neuron, projection, ... :
        The other `LateralSpec` fields (strings with units accepted).
    lateral : LateralSpec, optional
        A whole circuit spec instead of the fields above.
    """

    name = "hlop"
    uses_lateral = True

    def __init__(self, first_task=(16, 32), per_task=(10, 20), *, hebbian_rate=None, consolidation_epochs: int = 6,
                 lateral=None, **options):
        from hlopsim.models.from_config import lateral_spec
        from hlopsim.models.lateral import LateralSpec

        if not (isinstance(consolidation_epochs, int) and not isinstance(consolidation_epochs, bool)
                and consolidation_epochs >= 0):
            raise ValueError(f"lateral.consolidation_epochs = {consolidation_epochs!r} must be a non-negative integer")
        self.consolidation_epochs = consolidation_epochs
        if lateral is None:
            first_task, per_task = tuple(first_task), tuple(per_task)
            if hebbian_rate is None:
                hebbian_rate = ("16 Hz",) + ("6 Hz",) * (len(first_task) - 1)
            options = {"copies": 8, "dt": "5 ms", "window": "20 ms", **options}
            lateral = lateral_spec({"first_task": first_task, "per_task": per_task,
                                    "hebbian_rate": list(hebbian_rate), **options})
        elif not isinstance(lateral, LateralSpec):
            raise ValueError(f"lateral = {lateral!r} must be a LateralSpec")
        self.lateral = lateral

    def settings(self) -> dict:
        return {"lateral": repr(self.lateral), "consolidation_epochs": self.consolidation_epochs}

    def begin_task(self, net, task: int) -> None:
        for circuit in net.lateral:
            circuit.grow(task)

    def end_task(self, net, task: int) -> None:
        from hlopsim.sim.row_measures import UNSETTLED_ROW_DEVIATION

        for circuit in net.lateral:
            deviation = circuit.task_row_deviation()
            if deviation > UNSETTLED_ROW_DEVIATION:
                # Not an error: the run goes on, but the old tasks' projection will be poor (docs/results.md).
                warnings.warn(
                    f"lateral circuit {circuit.name!r}, task {task}: its new subspace neurons end the task "
                    f"{deviation:.2f} per row from orthonormal (a settled circuit: below 0.1); Oja's rule has "
                    f"not settled, probably oscillating near its stability bound: lower {circuit.rate_key} for "
                    f"this layer or lateral.copies", UnsettledCircuitWarning, stacklevel=2)
            circuit.freeze()

    def snapshots(self, net) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(circuit.H.copy(), np.arange(circuit.k_max) < circuit.n_frozen) for circuit in net.lateral]

    def projections(self, net) -> list[np.ndarray | NeuralResidual]:
        """Per layer the frozen rows, or (neural projection) the circuit's residual of the batch just presented."""
        from hlopsim.sim.learning import NeuralResidual
        return [NeuralResidual(circuit.residual()) if circuit.neural_projection else circuit.frozen_H
                for circuit in net.lateral]


class GPM(Finetune):
    """Gradient projection memory (Saha et al., ICLR 2021): HLOP's projection with exact subspaces.

    The closed-form reference for HLOP's circuit: no lateral neurons, the same projected update,
    but each layer's protected basis ``B`` (orthonormal rows) grows at the end of every task by
    the top right singular vectors of the residual ``R = A − (A Bᵀ) B`` of that task's presynaptic
    rates ``A`` (samples of the task's last training epoch × inputs). How many: by default as many
    as it takes for the basis to hold the fraction ``threshold`` of ``A``'s energy::

        ‖A Bᵀ‖²_F + Σ_{i ≤ k} σ_i(R)² ≥ threshold · ‖A‖²_F

    or, with ``sizes``, exactly as many as the lateral circuits would grow neurons at that task
    (``[gpm] basis_sizes = "lateral"``): the control that separates what the Hebbian circuit's rows
    cost from what the neuron counts cost.

    Parameters
    ----------
    threshold : float
        Energy fraction in (0, 1], the ``[gpm] threshold`` of the protocol.
    sizes : tuple of (list of int, list of int) or None
        ``(first_task, per_task)``: directions added per layer at task 0 and at every later task
        (``lateral.first_task``, ``lateral.per_task``); None for the energy threshold.
    """

    name = "gpm"

    def __init__(self, threshold: float = 0.97, sizes: tuple[list[int], list[int]] | None = None):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"gpm.threshold = {threshold} must be in (0, 1]")
        self.threshold = float(threshold)
        self.sizes = sizes
        self.bases: list[np.ndarray] | None = None
        self._seen: list[list[np.ndarray]] = []

    def settings(self) -> dict:
        return {"threshold": self.threshold, "sizes": None if self.sizes is None else [list(s) for s in self.sizes]}

    def begin_task(self, net, task: int) -> None:
        if self.bases is None:
            self.bases = [np.zeros((0, w.shape[1])) for w in net.weights]
            if self.sizes is not None and not len(self.sizes[0]) == len(self.sizes[1]) == len(net.weights):
                raise ValueError(f"gpm.basis_sizes = 'lateral': lateral.first_task {self.sizes[0]} and "
                                 f"lateral.per_task {self.sizes[1]} must name all {len(net.weights)} weight layers")
        self._seen = [[] for _ in net.weights]

    def observe(self, rates, keep) -> None:
        """Keep the presynaptic rates of the last training epoch's samples."""
        for layer, seen in enumerate(self._seen):
            seen.append(rates[layer][keep])

    def end_task(self, net, task: int) -> None:
        for layer, seen in enumerate(self._seen):
            count = None if self.sizes is None else self.sizes[0 if task == 0 else 1][layer]
            self.bases[layer], _ = grow_basis(self.bases[layer], np.concatenate(seen), self.threshold, count=count)
        self._seen = []

    def projections(self, net) -> list[np.ndarray]:
        return self.bases

    def snapshots(self, net) -> list[tuple[np.ndarray, np.ndarray]]:
        """The bases padded with zero rows to the layer's input width (as a lateral circuit's ``H``)."""
        found = []
        for basis in self.bases:
            padded = np.zeros((basis.shape[1], basis.shape[1]))
            padded[: len(basis)] = basis
            found.append((padded, np.arange(basis.shape[1]) < len(basis)))
        return found


def grow_basis(basis: np.ndarray, A: np.ndarray, threshold: float, count: int | None = None) -> tuple[np.ndarray, int]:
    """GPM's basis update: ``basis`` (K × n, orthonormal rows) extended by the fewest top singular
    vectors of the residual of ``A`` (S × n) that bring the energy of ``A`` it holds to ``threshold``
    — or, if ``count`` is given, by exactly the top ``count`` of them (fewer only where the residual
    has fewer directions or the basis would exceed ``n`` rows).

    Returns the new basis and the number of rows added.
    """
    residual = A - (A @ basis.T) @ basis
    if count is None:
        total = float(np.sum(A * A))
        held = total - float(np.sum(residual * residual))
        if total == 0.0 or held >= threshold * total:
            return basis, 0
    _, sigma, vt = np.linalg.svd(residual, full_matrices=False)
    if count is None:
        needed = threshold * total - held
        k = int(np.searchsorted(np.cumsum(sigma ** 2), needed * (1 - 1e-12)) + 1)
    else:
        k = int(np.count_nonzero(sigma > sigma[0] * 1e-10)) if len(sigma) and sigma[0] > 0 else 0
        k = min(count, k)
    k = min(k, basis.shape[1] - basis.shape[0], len(sigma))
    return np.vstack([basis, vt[:k]]), k


METHODS = {cls.name: cls for cls in (Finetune, HLOP, GPM)}
