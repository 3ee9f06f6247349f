"""What every lateral circuit shares: the shared weights ``H``, growth, freezing and restoring.

A circuit keeps one shared ``H`` (K_max × n, dimensionless) and writes it into its simulated copies
(forward and feedback synapses, both laid out (copy, subspace neuron, input)). Subclasses build the
Brian2 objects and set ``H``, ``_plastic``, ``y`` (with a ``plastic`` variable), ``copies``,
``objects``, ``_forward_view`` and ``_feedback_view``.
"""
from __future__ import annotations

import numpy as np


class SharedSubspaceWeights:
    """Growth, freezing and weight sharing of a lateral circuit (mixed into the circuit classes)."""

    def _init_shared(self, name: str, n_inputs: int, sizes_per_task: list[int], copies: int,
                     rng: np.random.Generator) -> None:
        """The state every circuit starts with: no neuron grown, ``H`` all zero (K_max × n)."""
        self.name = name
        self.n_inputs = n_inputs
        self.sizes_per_task = list(sizes_per_task)
        self.k_max = max(1, sum(sizes_per_task))
        self.copies = copies
        self.rng = rng
        self.H = np.zeros((self.k_max, n_inputs))
        self.n_frozen = 0
        self.n_grown = 0
        self.task = -1

    # -- growth and freezing -------------------------------------------------------------------
    def grow(self, task: int) -> int:
        """Add the neurons of ``task``: orthonormal rows, orthogonal to the frozen ones; returns how many."""
        add = self.sizes_per_task[task] if task < len(self.sizes_per_task) else 0
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
        self.y.plastic = np.tile(self._plastic.astype(float), self.copies)
        self._write_copies()
        return add

    def freeze(self) -> None:
        """Freeze every grown neuron: its synapses never change again."""
        self.n_frozen = self.n_grown
        self._plastic[:] = False
        self.y.plastic = 0.0

    def restore(self, H: np.ndarray, n_frozen: int, task: int) -> None:
        """Set the state reached after finishing ``task``: shared weights and the frozen neurons."""
        if H.shape != self.H.shape or not 0 <= n_frozen <= self.k_max:
            raise ValueError(f"{self.name}: cannot restore H of shape {H.shape} with {n_frozen} frozen neurons "
                             f"into a circuit of shape {self.H.shape}")
        self.H[:] = H
        self.n_grown = self.n_frozen = n_frozen
        self.task = task
        self._plastic[:] = False
        self.y.plastic = 0.0
        self._write_copies()

    @property
    def frozen_H(self) -> np.ndarray:
        """Rows of the frozen neurons, shape (n_frozen, n): the projection of supervised updates."""
        return self.H[: self.n_frozen]

    @property
    def grown_H(self) -> np.ndarray:
        """Rows of all grown neurons, shape (n_grown, n)."""
        return self.H[: self.n_grown]

    # -- switching and weight copies ------------------------------------------------------------
    def set_active(self, on: bool) -> None:
        for obj in self.objects:
            obj.active = on

    def copies_agree(self) -> bool:
        """True when forward and feedback weights of every copy equal the shared H."""
        return bool(np.array_equal(self._forward_view, np.broadcast_to(self.H, self._forward_view.shape))
                    and np.array_equal(self._feedback_view, self._forward_view))

    def _write_copies(self) -> None:
        self._forward_view[:] = self.H[None]
        self._feedback_view[:] = self.H[None]
