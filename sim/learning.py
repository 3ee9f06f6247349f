"""Rate-based supervised learning of the spiking network (in the spirit of DSR).

Differentiation on spike representation: an integrate-and-fire neuron with subtractive reset fires
``r = clip(u, 0, 1)`` spikes per step when its mean input per step is ``u`` (in units of the spike
cost). The network's forward pass is the Brian2 simulation; the backward pass uses the measured
rates ``a_l`` and this map:

- mean input of layer l:   ``u_l = a_{l-1} W_lᵀ``
- output credit:            ``δ_L = ∂CE(softmax(s · a_L), label) / ∂a_L`` (straight through the output map),
  summed over the batch's samples and divided by the batch size
- hidden credit:            ``δ_l = (δ_{l+1} W_{l+1}) ⊙ 1[0 < u_l < 1]``
- weight update:            ``ΔW_l = −η δ_lᵀ (a_{l-1} − (a_{l-1} Hᵀ) H)`` with ``H`` the projection rows
  (none for plain fine-tuning; the frozen lateral neurons for HLOP), or ``ΔW_l = −η δ_lᵀ r_{l-1}`` with
  ``r`` the residual read from the simulated lateral circuit (the neural projection, method.md §5).

All arrays are float64 in units of the spike cost; the Numba kernels do the arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sim.kernels import hidden_credit, output_credit, projected_update


def credit(weights: Sequence[np.ndarray], rates: Sequence[np.ndarray], labels: np.ndarray, valid: np.ndarray,
           logit_scale: float) -> tuple[list[np.ndarray], float]:
    """Credit ``δ_l`` of every weight layer and the batch loss.

    Parameters
    ----------
    weights : list of ndarray, shape (n_l, n_{l-1})
    rates : list of ndarray, shape (B, n_l)
        Rates of every population, input first (spikes per step).
    labels : ndarray of int64, shape (B,)
        Class of each row (any value for invalid rows).
    valid : ndarray of bool, shape (B,)
    logit_scale : float

    Returns
    -------
    deltas : list of ndarray, shape (B, n_l)
        One per weight layer, in layer order.
    loss : float
        Mean cross-entropy over valid rows.
    """
    delta, loss = output_credit(rates[-1], labels, logit_scale, valid)
    # output_credit averages over the valid rows; rescale so the step is the sum over samples
    # divided by the full batch size: a last, partial batch of 3 samples must make a step 3/B as
    # large, not one as large as a whole batch (that overshoot measurably wrecked whole tasks).
    delta *= valid.sum() / len(valid)
    deltas = [delta]
    for layer in range(len(weights) - 1, 0, -1):
        u = rates[layer - 1] @ weights[layer - 1].T
        delta = hidden_credit(weights[layer], delta, u, 1.0)
        deltas.append(delta)
    return deltas[::-1], loss


@dataclass(frozen=True)
class NeuralResidual:
    """A layer's projected presynaptic activity as the simulated lateral circuit computed it.

    Attributes
    ----------
    activity : ndarray, shape (B, n)
        ``a_⊥`` per sample (spikes per step): the circuit's residual with only its frozen neurons
        feeding back (`sim.lateral_base.SharedSubspaceWeights.residual`). It replaces both the rates
        and the closed-form projection in the update.
    """

    activity: np.ndarray


def apply_update(weights: Sequence[np.ndarray], deltas: Sequence[np.ndarray], rates: Sequence[np.ndarray],
                 projections: Sequence[np.ndarray | NeuralResidual], lr: float) -> None:
    """``W_l −= lr · δ_lᵀ a_⊥`` for every layer, in place.

    Parameters
    ----------
    weights : list of ndarray, shape (n_l, n_{l-1})
        Written in place.
    deltas : list of ndarray, shape (B, n_l)
    rates : list of ndarray, shape (B, n_l)
        Rates of every population, input first (spikes per step).
    projections : list
        Per weight layer either rows ``H`` (K × n, K may be 0): closed form
        ``a_⊥ = a − (a Hᵀ) H`` of the layer's presynaptic rates ``a``; or a `NeuralResidual`, whose
        ``activity`` is ``a_⊥`` itself.
    lr : float
    """
    for layer, weight in enumerate(weights):
        projection = projections[layer]
        if isinstance(projection, NeuralResidual):
            activity, rows = projection.activity, np.zeros((0, weight.shape[1]))
            if activity.shape != rates[layer].shape:
                raise ValueError(f"layer {layer + 1}: neural residual of shape {activity.shape} for rates of shape "
                                 f"{rates[layer].shape}")
        else:
            activity, rows = rates[layer], projection
        projected_update(weight, deltas[layer], np.ascontiguousarray(activity, dtype=np.float64),
                         np.ascontiguousarray(rows), lr)
