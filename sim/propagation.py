"""Spike propagation through one weight matrix shared by every copy of a batched network.

A weight layer of a network simulated as ``C`` side-by-side copies (`sim.blocks`) connects presynaptic
neuron ``c·n_pre + i`` to postsynaptic neurons ``c·n_post + j`` (``j = 0 … n_post − 1``) with the weight
``W[j, i]``, the same in every copy. Brian2 ``Synapses`` would hold ``C·n_pre·n_post`` weights and indices
and a batch boundary would rewrite all of them; here one ``(n_pre, n_post)`` matrix serves every copy.

`SharedPropagation` is a Brian2 ``NetworkOperation`` in the ``synapses`` slot of the layer's clock. At
every step it reads which presynaptic neurons spiked (the pre group's ``_spikespace``: the indices of
this step's spikes in ascending order, the count in its last entry) and, for every spike ``s`` in that
order, adds row ``s mod n_pre`` of each increment matrix to the postsynaptic variable of copy
``s div n_pre``::

    X[c·n_post + j] += A[i, j]          for each spike s = c·n_pre + i, j ascending

with ``X`` and ``A`` given by the synapse model's ``on_pre`` statement (`models.synapses`), ``w`` the
weight in volt (``weight · spike_cost``):

- `Delta`: ``v += w`` (volt);
- `ExpCurrent`: ``I_syn += (1/tau_syn) · w`` (volt/second);
- `Conductance`: ``g_e += k_e · (w · [w > 0])`` and ``g_i += −(k_i · (w · [w < 0]))`` (1/second).

These are the float operations of Brian2's generated propagation code (spikes in ascending index order,
each spike's synapses in ascending postsynaptic order, one addition per synapse, the increment computed
as Brian2 computes it), so a postsynaptic variable receives the same additions in the same order: the
simulation is bit-identical to the ``Synapses`` path on Brian2's numpy target for all three models, and
on the cython target for `Delta` (pure additions). Brian2's cython code is compiled with ``-ffast-math``
and may fuse ``I_syn += _lio_1 * w`` into one multiply-add, rounded once: `ExpCurrent` then differs in
the last bits, which is why only `Delta` takes this path automatically (`automatic_choice`).
Transmission delays are not supported (the ``Synapses`` path handles them).

Why: the per-copy synapses' arrays are ``C`` times the weights (memory, and a rewrite of all of them at
every batch boundary), and Brian2's synaptic loop reads a synapse's index and weight per addition; the
shared matrix stays in cache and the kernel's inner loop is a vectorised row addition.
"""
from __future__ import annotations

import numba
import numpy as np
from brian2 import NetworkOperation, second
from numba import prange

from hlopsim.models.neurons import NeuronModel
from hlopsim.models.synapses import Conductance, Delta, ExpCurrent, SynapseModel
from hlopsim.sim import threaded
from hlopsim.sim.threaded import twin

#: How a weight layer's spikes are propagated: ``"shared"`` (`SharedPropagation`), ``"brian2"`` (a Brian2
#: ``Synapses`` holding every copy's weights) or ``"auto"`` (shared wherever `automatic_choice` says so).
PROPAGATIONS = ("auto", "shared", "brian2")


def shared_supported(synapse: SynapseModel) -> bool:
    """True if `SharedPropagation` can simulate ``synapse``: a built-in model without delay."""
    return type(synapse) in (Delta, ExpCurrent, Conductance) and synapse.delay is None


def automatic_choice(synapse: SynapseModel) -> str:
    """``"shared"`` for an undelayed `Delta` synapse, ``"brian2"`` otherwise.

    Only `Delta` is chosen automatically: its propagation is additions alone, bit-identical to Brian2's
    under every code-generation target. The other built-in models multiply the weight before adding, which
    Brian2's cython code (compiled with ``-ffast-math``) may fuse into one multiply-add with another
    rounding; they use the shared path only when asked for.
    """
    return "shared" if type(synapse) is Delta and synapse.delay is None else "brian2"


def choose_propagation(requested: str, synapse: SynapseModel, layer_name: str) -> str:
    """The propagation a layer uses: ``requested`` resolved (``"auto"``) and checked.

    Raises
    ------
    ValueError
        ``requested`` is unknown, or ``"shared"`` for a synapse model it does not support.
    """
    if requested not in PROPAGATIONS:
        raise ValueError(f"propagation = {requested!r} is unknown; expected one of "
                         f"{', '.join(map(repr, PROPAGATIONS))}")
    if requested == "auto":
        return automatic_choice(synapse)
    if requested == "shared" and not shared_supported(synapse):
        raise ValueError(f"propagation = 'shared' for weight layer {layer_name!r}: its synapse {synapse!r} is not "
                         "supported (built-in delta, exp_current or conductance without delay); use 'brian2' or 'auto'")
    return requested


@numba.njit(cache=True, fastmath=False)
def propagate_spikes(spikespace, increments, target, n_pre, n_post, parts=1):
    """Add each spiking neuron's row of ``increments`` to its own copy's postsynaptic variable, in place.

    ``target[c, j] += increments[i, j]`` for every spike ``s = c·n_pre + i`` listed in
    ``spikespace[:spikespace[-1]]``, spikes in the order listed, ``j`` ascending; sequential additions
    (no reassociation), so the result is that of Brian2's synaptic loop. (Two-dimensional indexing lets
    the compiler vectorise the loop over ``j``: each element still gets its additions in spike order.)
    The copies are taken in ``parts`` consecutive groups, each adding only its own copies' spikes: the
    threaded twin (`propagate_spikes_threaded`, `sim.threaded`) runs the groups in parallel.

    Parameters
    ----------
    spikespace : ndarray of int32, shape (C·n_pre + 1,)
        Indices of this step's presynaptic spikes, their count in the last entry (Brian2's ``_spikespace``).
    increments : ndarray of float64, shape (n_pre, n_post)
        What one spike of presynaptic neuron ``i`` adds to postsynaptic neuron ``j`` (unit of ``target``).
    target : ndarray of float64, shape (C, n_post)
        Postsynaptic variable of all copies (written; a view of Brian2's ``C·n_post`` array).
    n_pre, n_post : int
        Neurons per copy before and after the layer.
    parts : int
        Groups of copies (1 ≤ parts ≤ C); the result does not depend on it.
    """
    n_spikes = spikespace[spikespace.shape[0] - 1]
    n_copies = target.shape[0]
    for part in prange(parts):
        lo = (part * n_copies // parts) * n_pre
        hi = ((part + 1) * n_copies // parts) * n_pre
        for k in range(n_spikes):
            s = spikespace[k]
            if s >= lo and s < hi:
                copy = s // n_pre
                pre = s - copy * n_pre
                for j in range(n_post):
                    target[copy, j] += increments[pre, j]


#: `propagate_spikes` with its groups of copies on ``sim.threads`` threads.
propagate_spikes_threaded = twin(propagate_spikes)


def propagate_spikes_numpy(spikespace, increments, target, n_pre, n_post):
    """Numpy twin of `propagate_spikes`, written as Brian2's numpy target propagates: ``add.at`` over the
    synapses of the spikes in order (spike, then postsynaptic neuron)."""
    spikes = np.asarray(spikespace[:spikespace[-1]], dtype=np.int64)
    copy, pre = np.divmod(spikes, n_pre)
    post = (copy[:, None] * n_post + np.arange(n_post)[None, :]).ravel()
    flat = target.reshape(-1)
    if not np.shares_memory(flat, target):
        raise ValueError("propagate_spikes_numpy: target must be C-contiguous")
    np.add.at(flat, post, increments[pre].ravel())


def increments_for(synapse: SynapseModel, neuron: NeuronModel, w: np.ndarray) -> dict[str, np.ndarray]:
    """Per-spike increments of the postsynaptic variables for weights ``w`` (volt, float64 array).

    Computed with the operations and operand order of Brian2's generated ``on_pre`` code (division by a
    constant hoisted as a reciprocal; a subtraction as the addition of the negated increment, which IEEE
    arithmetic makes identical).

    Returns
    -------
    dict of str to ndarray
        Postsynaptic variable name → increment array of ``w``'s shape, in that variable's SI unit.
    """
    if type(synapse) is Delta:
        return {"v": w}
    if type(synapse) is ExpCurrent:
        reciprocal = 1.0 / float(synapse.tau_syn / second)
        return {"I_syn": reciprocal * w}
    if type(synapse) is Conductance:
        k = {name: float(value) for name, value in synapse.synapse_namespace(neuron).items()}   # SI: 1/(volt·second)
        return {"g_e": k["k_e"] * (w * (w > 0.0)), "g_i": -(k["k_i"] * (w * (w < 0.0)))}
    raise ValueError(f"no shared propagation for synapse {synapse!r}")


class SharedPropagation:
    """One weight layer's spike propagation with a single weight matrix for all copies (module docstring).

    Parameters
    ----------
    pre_group, post_group : brian2 groups
        The populations before and after the layer, each ``n_copies`` copies side by side.
    n_copies, n_pre, n_post : int
        Copies, and neurons per copy before and after the layer.
    synapse : SynapseModel
        The layer's synapse model (`shared_supported`).
    neuron : NeuronModel
        The postsynaptic neuron model (for `Conductance`'s rest potential).
    dt : Quantity
        The layer's clock.
    name : str
        Name of the Brian2 ``NetworkOperation``.

    Attributes
    ----------
    operation : brian2.NetworkOperation
        Add it to the network; ``when="synapses"``, as a ``Synapses`` pathway without delay.
    w : ndarray, shape (n_pre, n_post)
        The weights in volt (``Wᵀ · spike_cost``), as `set_weights` wrote them.
    """

    def __init__(self, pre_group, post_group, n_copies: int, n_pre: int, n_post: int, synapse: SynapseModel,
                 neuron: NeuronModel, dt, name: str):
        if not shared_supported(synapse):
            raise ValueError(f"no shared propagation for synapse {synapse!r} (layer {name!r})")
        if pre_group.N != n_copies * n_pre or post_group.N != n_copies * n_post:
            raise ValueError(f"layer {name!r}: groups of {pre_group.N} and {post_group.N} neurons are not {n_copies} "
                             f"copies of {n_pre} and {n_post}")
        self.synapse, self.neuron = synapse, neuron
        self.n_copies, self.n_pre, self.n_post = n_copies, n_pre, n_post
        self.w = np.zeros((n_pre, n_post))
        # Live views of Brian2's arrays (runtime mode: a group's arrays keep their place for its lifetime).
        self._spikespace = pre_group.variables["_spikespace"].get_value()
        # (copies, n_post) views of the postsynaptic variables, and the increment matrices (Delta: w itself)
        self._targets = [(post_group.variables[var].get_value().reshape(n_copies, n_post), np.ascontiguousarray(inc))
                         for var, inc in increments_for(synapse, neuron, self.w).items()]
        self.operation = NetworkOperation(self._propagate, dt=dt, when="synapses", name=name)

    def set_weights(self, weights: np.ndarray, spike_cost: float) -> None:
        """Write the shared weights: ``weights`` (n_post, n_pre) in units of the spike cost, ``spike_cost`` in volt.

        ``w = weights · spike_cost`` is the product the ``Synapses`` path stores; the increments follow from it.
        """
        w = weights * spike_cost
        self.w[:] = w.T
        for (_, out), inc in zip(self._targets, increments_for(self.synapse, self.neuron, self.w).values()):
            out[:] = inc

    def weights_per_copy(self) -> np.ndarray:
        """The weights every copy uses, shape (n_copies, n_post, n_pre), volt (a copy)."""
        return np.broadcast_to(self.w.T[None], (self.n_copies, self.n_post, self.n_pre)).copy()

    def _propagate(self):
        spikespace, n_pre, n_post = self._spikespace, self.n_pre, self.n_post
        if spikespace[-1]:
            for target, inc in self._targets:
                if threaded.active() > 1:
                    propagate_spikes_threaded(spikespace, inc, target, n_pre, n_post,
                                              min(threaded.active(), self.n_copies))
                else:
                    propagate_spikes(spikespace, inc, target, n_pre, n_post)
