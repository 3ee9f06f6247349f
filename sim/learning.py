"""Rate-based supervised learning of the spiking network (in the spirit of DSR).

Differentiation on spike representation: a neuron's firing rate per step ``r = f(u)`` is a function of
its mean input per step ``u`` (in units of the spike cost, the weight unit). For an integrate-and-fire
neuron with subtractive reset ``f(u) = clip(u, 0, 1)``; for other models ``f`` is measured with Brian2
(`sim.transfer`). The network's forward pass is the Brian2 simulation; the backward pass uses the
measured rates ``a_l`` and the slope ``f'``:

- mean input of layer l:   ``u_l = a_{l-1} W_lᵀ``
- output credit:            ``δ_L = ∂CE(softmax(s · a_L[head]), label) / ∂a_L`` (straight through the output
  map; zero outside the head), summed over the batch's samples and divided by the batch size
- hidden credit:            ``δ_l = (δ_{l+1} W_{l+1}) ⊙ f'(u_l)``, with ``f'(u) = 1[0 < u < 1]`` for the
  integrate-and-fire map
- weight update:            ``ΔW_l = −η δ_lᵀ (a_{l-1} − (a_{l-1} Hᵀ) H)`` with ``H`` the projection rows
  (none for plain fine-tuning; the frozen lateral neurons for HLOP), or ``ΔW_l = −η δ_lᵀ r_{l-1}`` with
  ``r`` the residual read from the simulated lateral circuit (the neural projection).

All arrays are float64 in units of the spike cost; the Numba kernels do the arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from hlopsim.sim import threaded
from hlopsim.sim.kernels import (hidden_credit, hidden_credit_slope, hidden_credit_threaded, output_credit,
                                 projected_update, projected_update_threaded)

if TYPE_CHECKING:
    from hlopsim.sim.transfer import TransferCurve


def _head_range(head, n_out: int) -> tuple[int, int]:
    """``(start, stop)`` of a head slice of ``n_out`` outputs; ValueError unless contiguous and non-empty."""
    if not isinstance(head, slice):
        raise ValueError(f"head = {head!r} must be a slice of the output layer (or None)")
    start, stop, step = head.indices(n_out)
    if step != 1 or stop <= start or (head.stop is not None and head.stop > n_out):
        raise ValueError(f"head = {head!r} must be a non-empty contiguous slice of the {n_out} outputs")
    return start, stop


def credit(weights: Sequence[np.ndarray], rates: Sequence[np.ndarray], labels: np.ndarray, valid: np.ndarray,
           logit_scale: float, transfer: "TransferCurve | Sequence[TransferCurve] | None" = None,
           head: slice | np.ndarray | None = None) -> tuple[list[np.ndarray], float]:
    """Credit ``δ_l`` of every weight layer and the batch loss.

    Output layer (``L``), over the outputs of ``head`` only (all outputs when None), with ``B`` the
    batch size and ``V`` the valid rows::

        p = softmax(logit_scale · a_L[:, head]),   δ_L[:, head] = logit_scale (p − onehot(label)) / B
                                                    (valid rows; 0 elsewhere and outside the head)

    Hidden layers, from the top down, with ``u_l = a_{l-1} W_lᵀ`` (spike costs per step)::

        δ_l = (δ_{l+1} W_{l+1}) ⊙ f'(u_l)

    ``f' = transfer.slope`` (a measured curve), or the integrate-and-fire indicator ``1[0 < u_l < 1]``
    when ``transfer`` is None or the analytic map (then computed exactly as without a transfer). Each
    hidden layer may have its own map (its neurons receive their input through their own synapse model).

    Parameters
    ----------
    weights : list of ndarray, shape (n_l, n_{l-1})
    rates : list of ndarray, shape (B, n_l)
        Rates of every population, input first (spikes per step).
    labels : ndarray of int64, shape (B,)
        Class of each row, counted within the head (0 … k−1 for a head of k outputs; the whole output
        layer without a head); any value for invalid rows.
    valid : ndarray of bool, shape (B,)
    logit_scale : float
    transfer : TransferCurve, sequence of TransferCurve or None
        Rate map of the hidden neurons (`sim.transfer`): one for every hidden layer, or one per hidden
        layer (first hidden layer first, e.g. ``SimNetwork.transfers[:-1]``); None: integrate-and-fire.
    head : slice, ndarray of bool or None
        Contiguous slice of the output layer that is the current task's head (multi-head protocols);
        or a per-row output mask, shape (B, n_out), for a batch whose rows belong to different heads
        (joint training, replay): each valid row's softmax runs over its own ``True`` outputs and its
        label counts among them (see `masked_output_credit`); None: the whole output layer.

    Returns
    -------
    deltas : list of ndarray, shape (B, n_l)
        One per weight layer, in layer order.
    loss : float
        Mean cross-entropy over valid rows (softmax over the head).

    Raises
    ------
    ValueError
        A head that is not a non-empty contiguous slice of the outputs, or a valid row's label outside it.
    """
    if head is None:
        delta, loss = output_credit(rates[-1], labels, logit_scale, valid)
    elif isinstance(head, np.ndarray):
        delta, loss = masked_output_credit(rates[-1], labels, logit_scale, valid, head)
    else:
        n_out = rates[-1].shape[1]
        start, stop = _head_range(head, n_out)
        width = stop - start
        bad = np.asarray(valid, dtype=bool) & ((labels < 0) | (labels >= width))
        if bad.any():
            raise ValueError(f"label {int(labels[np.argmax(bad)])} of a valid row is outside head {head!r} "
                             f"(labels count within the head: 0 … {width - 1})")
        local, loss = output_credit(np.ascontiguousarray(rates[-1][:, start:stop]), labels, logit_scale, valid)
        delta = np.zeros((local.shape[0], n_out))
        delta[:, start:stop] = local
    # output_credit averages over the valid rows; rescale so the step is the sum over samples
    # divided by the full batch size: a last, partial batch of 3 samples must make a step 3/B as
    # large, not one as large as a whole batch (that overshoot measurably wrecked whole tasks).
    delta *= valid.sum() / len(valid)
    deltas = [delta]
    n_hidden = len(weights) - 1
    maps = list(transfer) if isinstance(transfer, (list, tuple)) else [transfer] * n_hidden
    if len(maps) != n_hidden:
        raise ValueError(f"{len(maps)} rate maps given for {n_hidden} hidden layers (give one, or one per hidden layer)")
    for layer in range(n_hidden, 0, -1):
        u = rates[layer - 1] @ weights[layer - 1].T
        curve = maps[layer - 1]      # hidden population `layer` is fed by weight layer `layer - 1`
        if curve is not None and not curve.is_ideal:
            delta = hidden_credit_slope(weights[layer], delta, u, curve.drive, curve.gain)
        else:
            delta = (hidden_credit_threaded if threaded.active() > 1 else hidden_credit)(weights[layer], delta, u, 1.0)
        deltas.append(delta)
    return deltas[::-1], loss


def masked_output_credit(rates: np.ndarray, labels: np.ndarray, logit_scale: float, valid: np.ndarray,
                         mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Output credit with a head per row: `output_credit` where each row sees only its ``mask`` outputs.

    For a valid row ``b`` with outputs ``M_b = {c : mask[b, c]}`` and label ``y_b`` counted within
    ``M_b`` (the ``y_b``-th ``True`` output, ``c_b``)::

        p_b = softmax(logit_scale · a_b[M_b]),   CE_b = −log p_b[c_b]
        δ_b[M_b] = logit_scale (p_b − onehot(c_b)) / n_valid,   δ_b = 0 outside M_b

    and ``loss = mean_b CE_b`` over the valid rows (invalid rows: δ = 0). With every row's mask the
    same contiguous head this is the head-slice path of `credit` (to rounding). Why: a batch of joint
    or replayed training mixes tasks, and each sample must be scored by its own task's head.

    Parameters
    ----------
    rates : ndarray, shape (B, n_out)
        Output rates (spikes per step).
    labels : ndarray of int, shape (B,)
    logit_scale : float
    valid : ndarray of bool, shape (B,)
    mask : ndarray of bool, shape (B, n_out)

    Returns
    -------
    delta : ndarray, shape (B, n_out)
    loss : float

    Raises
    ------
    ValueError
        A mask of another shape, or a valid row whose label is not below its count of ``True`` outputs.
    """
    mask = np.asarray(mask, dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    labels = np.asarray(labels, dtype=np.int64)
    if mask.shape != rates.shape:
        raise ValueError(f"head mask of shape {mask.shape}; expected one row per sample and output {rates.shape}")
    width = mask.sum(axis=1)
    bad = valid & ((labels < 0) | (labels >= width))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"label {int(labels[row])} of valid row {row} is outside its head of {int(width[row])} "
                         f"outputs (labels count within the head: 0 … {int(width[row]) - 1})")
    delta = np.zeros(rates.shape)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return delta, 0.0
    z = np.where(mask[valid], logit_scale * rates[valid], -np.inf)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)                                   # exactly 0 outside the head
    s = e.sum(axis=1)
    p = e / s[:, None]
    rows = np.arange(n_valid)
    target = np.argmax(np.cumsum(mask[valid], axis=1) > labels[valid][:, None], axis=1)
    loss = float(np.sum(np.log(s) - z[rows, target]) / n_valid)
    p[rows, target] -= 1.0
    delta[valid] = p * (logit_scale / n_valid)
    return delta, loss


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
        (projected_update_threaded if threaded.active() > 1 else projected_update)(
            weight, deltas[layer], np.ascontiguousarray(activity, dtype=np.float64), np.ascontiguousarray(rows), lr)
