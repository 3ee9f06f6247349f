"""What every lateral circuit shares: the shared weights ``H``, growth, freezing, restoring, and the
readout of the neural projection.

A circuit keeps one shared ``H`` (K_max × n, dimensionless) and writes it into its simulated copies:
the weight arrays of its synapses, each laid out (copy, subspace neuron, input) — the graded circuit has
forward and feedback synapses, the spiking circuit one set of reciprocal synapses. ``_weight_blocks``
lists them as ``(rows, views)``: a block of rows of ``H`` and, for each synapse array (the learning one
first), a (copies, rows, n) view of that block's weights. The spiking circuit has one block for all
rows; the graded circuit creates each task's synapses when the task's neurons grow, one block per
task. Subclasses build the Brian2 objects and set ``H``, ``_plastic``, ``y`` (with a ``plastic``
variable, and a ``frozen`` variable in neural-projection mode), ``objects``, ``_weight_blocks`` and
``_residual_now``.

Copies. The circuit is simulated in ``simulated`` copies of the network (the first ones) and learns in
the first ``copies`` of them (``lateral.copies``): only these have ``plastic = 1`` on the current task's
neurons, and only their drift is merged into ``H``. With ``lateral.projection = "closed-form"`` the
two numbers are equal. With ``"neural"`` the circuit runs in every copy of the batch, because the
supervised update of every sample takes its projected activity from that copy's circuit; the extra
copies carry the same ``H`` and compute residuals but never learn, so ``H`` follows exactly the same
trajectory as in closed-form mode for the same input (tested).

The neural projection (docs/design.md). During task ``t`` the circuit holds frozen neurons (old tasks)
and plastic ones (task ``t``), all active. The supervised update must be projected with the frozen
neurons only, so in neural mode each circuit has a second feedback variable ``x̂_old`` that sums the
feedback of the neurons whose ``frozen`` flag is 1 (``x̂_old_j = Σ_i frozen_i H_ij y_i``), next to
the full feedback ``x̂`` that the plasticity reads. A subspace neuron's activity ``y_i`` depends only on
``x`` and its own row of ``H`` (no interaction between subspace neurons), so ``x − x̂_old`` is the
residual of a circuit in which only the frozen neurons are active: ``a_⊥ = a − H_oldᵀ(H_old a)`` when
``x = a`` and ``y = H x`` exactly. `residual` returns it per copy at a presentation boundary;
`projection_error` compares it with the closed form.
"""
from __future__ import annotations

import numpy as np
from brian2 import second

from hlopsim.sim.kernels import project_out, reduce_shared_weights
from hlopsim.sim.row_measures import row_deviation


# Oja's rule keeps every row of H near unit norm (HHᵀ = I at its fixed points); a row this long means the
# summed Hebbian step has left the rule's stable range and H is growing without bound.
DIVERGED_ROW_NORM = 10.0


class CircuitDiverged(ValueError):
    """A lateral circuit's weights ran away: its Hebbian rate is too large for its input (a settings error)."""


def simulated_copies(spec, pre_group, n_inputs: int) -> int:
    """Copies in which a circuit is simulated: all of the batch in neural mode, else ``spec.copies``."""
    return pre_group.N // n_inputs if spec.projection == "neural" else spec.copies


class SharedSubspaceWeights:
    """Growth, freezing and weight sharing of a lateral circuit (mixed into the circuit classes)."""

    def _init_shared(self, name: str, n_inputs: int, sizes_per_task: list[int], copies: int,
                     rng: np.random.Generator, *, simulated: int | None = None,
                     neural_projection: bool = False, residual_growth: bool = False) -> None:
        """The state every circuit starts with: no neuron grown, ``H`` all zero (K_max × n).

        ``copies`` learn, ``simulated`` (≥ ``copies``, default equal) are simulated. With
        ``residual_growth`` (``lateral.growth = "residual"``) ``sizes_per_task`` are the most each
        task grows, the neurons kept are decided when it ends (`freeze_rows`), and K_max = n.
        """
        self.name = name
        self.n_inputs = n_inputs
        self.sizes_per_task = list(sizes_per_task)
        self.residual_growth = residual_growth
        self.k_max = n_inputs if residual_growth else max(1, sum(sizes_per_task))
        self.copies = copies
        self.simulated = copies if simulated is None else simulated
        if self.simulated < copies:
            raise ValueError(f"{name}: simulated in {self.simulated} copies, fewer than the {copies} learning ones")
        self.neural_projection = neural_projection
        self.rng = rng
        self.H = np.zeros((self.k_max, n_inputs))
        self.n_frozen = 0
        self.n_grown = 0
        self.task = -1

    # -- growth and freezing -------------------------------------------------------------------
    def grow(self, task: int) -> int:
        """Add the neurons of ``task``: orthonormal rows, orthogonal to the frozen ones; returns how many."""
        add = self.growth_count(task)
        self.task = task
        start = self.n_grown
        if add > 0:
            rows = self.rng.normal(size=(add, self.n_inputs))
            frozen = self.H[: self.n_frozen]
            rows -= (rows @ frozen.T) @ frozen
            q, _ = np.linalg.qr(rows.T)
            self.H[start:start + add] = q.T[:add]
        self.n_grown = start + add
        self._plastic[:] = False
        self._plastic[start:self.n_grown] = True
        self._write_flags()
        self._write_copies()
        return add

    def growth_count(self, task: int) -> int:
        """Neurons ``task`` grows: its size, and with residual growth no more than the room left (K_max − frozen)."""
        add = self.sizes_per_task[task] if task < len(self.sizes_per_task) else 0
        return min(add, self.k_max - self.n_frozen) if self.residual_growth else add

    def freeze(self) -> None:
        """Freeze every grown neuron: its synapses never change again."""
        self.n_frozen = self.n_grown
        self._plastic[:] = False
        self._write_flags()

    def freeze_rows(self, rows: np.ndarray) -> None:
        """Replace the current task's neurons by ``rows`` (m × n, m ≤ grown − frozen) and freeze them.

        The rows after them (the task's neurons not kept) are set to zero and are no longer grown:
        the next task grows from there. ``rows`` spanning the same space as the task's rows leave
        the circuit's feedback ``Hᵀ H`` unchanged (residual growth keeps a rotated, cut basis).
        """
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_inputs or len(rows) > self.n_grown - self.n_frozen:
            raise ValueError(f"{self.name}: cannot keep rows of shape {rows.shape}; the task grew "
                             f"{self.n_grown - self.n_frozen} rows of {self.n_inputs} inputs")
        stop = self.n_frozen + len(rows)
        self.H[self.n_frozen:stop] = rows
        self.H[stop:self.n_grown] = 0.0
        self.n_grown = self.n_frozen = stop
        self._plastic[:] = False
        self._write_flags()
        self._write_copies()

    def restore(self, H: np.ndarray, n_frozen: int, task: int) -> None:
        """Set the state reached after finishing ``task``: shared weights and the frozen neurons."""
        if H.shape != self.H.shape or not 0 <= n_frozen <= self.k_max:
            raise ValueError(f"{self.name}: cannot restore H of shape {H.shape} with {n_frozen} frozen neurons "
                             f"into a circuit of shape {self.H.shape}")
        self.H[:] = H
        self.n_grown = self.n_frozen = n_frozen
        self.task = task
        self._plastic[:] = False
        self._write_flags()
        self._write_copies()

    @property
    def frozen_H(self) -> np.ndarray:
        """Rows of the frozen neurons, shape (n_frozen, n): the projection of supervised updates."""
        return self.H[: self.n_frozen]

    @property
    def grown_H(self) -> np.ndarray:
        """Rows of all grown neurons, shape (n_grown, n)."""
        return self.H[: self.n_grown]

    def _plastic_step(self, operation) -> bool:
        """True when some neuron learns and ``operation``'s lateral step lies inside the plasticity window
        (graded circuits: ``_t_start`` is the presentation's start and ``_open_after`` the window's opening, s)."""
        return bool(self._plastic.any()) and float(operation.clock.t / second) - self._t_start > self._open_after

    # -- the neural projection ------------------------------------------------------------------
    def residual(self) -> np.ndarray:
        """The circuit's residual with only the frozen neurons feeding back, ``x − x̂_old``, per copy.

        Read at a presentation boundary (in the batch callback), it is the neural form of the
        projected presynaptic activity ``a_⊥ = a − H_oldᵀ(H_old a)`` in spikes per step.

        Returns
        -------
        ndarray, shape (simulated, n)

        Raises
        ------
        RuntimeError
            If the circuit was not built with ``lateral.projection = "neural"`` or is switched off
            (its state would not describe the presentation).
        """
        if not self.neural_projection:
            raise RuntimeError(f"{self.name}: built with lateral.projection = 'closed-form'; it has no neural residual")
        if not self.objects[0].active:
            raise RuntimeError(f"{self.name}: the circuit is switched off; its residual describes no presentation")
        return self._residual_now().reshape(self.simulated, self.n_inputs)

    def projection_error(self, rates: np.ndarray, residual: np.ndarray | None = None) -> float:
        """Relative error of the neural residual against the closed form, ``‖r − a_⊥‖_F / ‖a_⊥‖_F``.

        Parameters
        ----------
        rates : ndarray, shape (simulated, n)
            The presynaptic rates ``a`` (spikes per step) of the presentation just finished.
        residual : ndarray, shape (simulated, n), optional
            The neural residual; read with `residual` if not given.
        """
        r = self.residual() if residual is None else residual
        closed = project_out(np.ascontiguousarray(rates, dtype=np.float64), np.ascontiguousarray(self.frozen_H))
        return float(np.linalg.norm(r - closed) / np.linalg.norm(closed))

    def task_row_deviation(self) -> float:
        """`sim.row_measures.row_deviation` of the current task's rows (grown, not yet frozen)."""
        return row_deviation(self.H[self.n_frozen: self.n_grown])

    def check_stable(self, when: str) -> None:
        """Raise `CircuitDiverged` if a grown row of ``H`` is not finite or longer than `DIVERGED_ROW_NORM`.

        Called after every batch: a diverged circuit turns the projected updates, and with them the
        network's weights, into NaN within a few batches, and the run would go on producing chance
        accuracy. ``when`` says where the run was (for the message).
        """
        norms = np.sqrt(np.sum(self.H[: self.n_grown] ** 2, axis=1))
        if np.all(norms <= DIVERGED_ROW_NORM):  # False for NaN too
            return
        worst = float(np.nanmax(np.where(np.isfinite(norms), norms, np.inf)))
        raise CircuitDiverged(
            f"lateral circuit {self.name!r} diverged {when}: a subspace neuron's weight row has norm {worst:.3g} "
            f"(Oja's rule keeps it near 1); the Hebbian step summed over lateral.copies = {self.copies} is too "
            f"large for this input: lower {self.rate_key} for this layer or lateral.copies")

    # -- switching and weight copies ------------------------------------------------------------
    def set_active(self, on: bool) -> None:
        for obj in self.objects:
            obj.active = on

    def copies_agree(self) -> bool:
        """True when every weight array (forward and feedback, if separate) of every copy equals the shared H."""
        return all(np.array_equal(view, np.broadcast_to(self.H[rows], view.shape))
                   for rows, views in self._weight_blocks for view in views)

    def _write_flags(self) -> None:
        """``plastic`` on the current task's neurons in the learning copies; ``frozen`` in every copy."""
        plastic = np.zeros((self.simulated, self.k_max))
        plastic[: self.copies] = self._plastic
        self.y.plastic = plastic.ravel()
        if self.neural_projection:
            frozen = (np.arange(self.k_max) < self.n_frozen).astype(float)
            self.y.frozen = np.tile(frozen, self.simulated)

    def _write_copies(self) -> None:
        for rows, views in self._weight_blocks:
            for view in views:
                view[:] = self.H[rows][None]

    def _merge_copies(self, columns: slice = slice(None)) -> None:
        """Sum the learning copies' drift into the shared ``H`` and set every copy to it.

        Only the plastic rows (the current task's neurons, a contiguous block) are read and written:
        the plasticity of every other row is gated off, so its copies still equal ``H`` (frozen rows
        and rows not grown yet make up most of a circuit after the first tasks). ``columns`` limits the
        merge further to the inputs whose weights may have changed since the last merge (the caller
        knows which; see `sim.spiking_lateral.SpikingLateralCircuit._live_columns`).
        """
        plastic = np.flatnonzero(self._plastic)
        if not len(plastic):
            return
        first, stop = int(plastic[0]), int(plastic[-1]) + 1
        for block, (learning, *mirrors) in self._weight_blocks:   # the first array learns; others mirror it
            start, end = max(first, block.start), min(stop, block.stop)
            if start >= end:
                continue
            rows, local = slice(start, end), slice(start - block.start, end - block.start)
            reduce_shared_weights(learning[: self.copies, local, columns], self.H[rows, columns],
                                  self._plastic[rows])
            learning[self.copies:, local, columns] = self.H[rows, columns]
            for view in mirrors:
                view[:, local, columns] = self.H[rows, columns]
