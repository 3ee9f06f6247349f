"""Continual-learning methods as small strategy objects.

A method decides three things: whether the lateral circuits run, what happens at the start and end
of each task, and what projects each layer's supervised update (rows ``H``, or the circuit's own
residual activity, see `sim.learning.apply_update`). It touches the network only through the
`sim.network.SimNetwork` handle and numpy arrays.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # sim.learning pulls in Numba; the CLI imports this module before any run
    from sim.learning import NeuralResidual


class Finetune:
    """Sequential fine-tuning: plain updates, nothing protects old tasks (the lower baseline)."""

    name = "finetune"
    uses_lateral = False

    def begin_task(self, net, task: int) -> None:
        """Prepare for training ``task``."""

    def end_task(self, net, task: int) -> None:
        """Finish ``task``."""

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
    """

    name = "hlop"
    uses_lateral = True

    def begin_task(self, net, task: int) -> None:
        for circuit in net.lateral:
            circuit.grow(task)

    def end_task(self, net, task: int) -> None:
        for circuit in net.lateral:
            circuit.freeze()

    def projections(self, net) -> list[np.ndarray | NeuralResidual]:
        """Per layer the frozen rows, or (neural projection) the circuit's residual of the batch just presented."""
        from sim.learning import NeuralResidual
        return [NeuralResidual(circuit.residual()) if circuit.neural_projection else circuit.frozen_H
                for circuit in net.lateral]


METHODS = {cls.name: cls for cls in (Finetune, HLOP)}


def make_method(name: str):
    """A fresh method object by name."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]()
