"""Index arithmetic for networks simulated as many side-by-side copies.

A population of ``n`` model neurons simulated for ``C`` samples at once is one Brian2 group of
``C·n`` neurons: copy ``c``'s neuron ``i`` has index ``c·n + i``. A weight layer becomes
block-diagonal synapses. `block_diagonal_indices` creates them in (copy, post, pre) order, so that
the synaptic weight array, reshaped to ``(C, n_post, n_pre)``, is ``C`` stacked copies of the weight
matrix ``W`` (rows = postsynaptic neurons); `block_diagonal_indices_by_pre` in (copy, pre, post)
order, so that the synapses a presynaptic spike reaches lie side by side in memory (the array
reshaped to ``(C, n_pre, n_post)`` holds ``Wᵀ``). Brian2 processes a spike's synapses in index order
either way, so the two orders give bit-identical simulations; the second is faster wherever
presynaptic spikes drive many synapses. Pure numpy: no Brian2 objects here.
"""
from __future__ import annotations

import numpy as np


def block_diagonal_indices(n_copies: int, n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray]:
    """Presynaptic and postsynaptic indices of all-to-all connections within each copy.

    Returns
    -------
    pre, post : ndarray of int64, shape (n_copies·n_post·n_pre,)
        Ordered by copy, then postsynaptic neuron, then presynaptic neuron.
    """
    copy = np.repeat(np.arange(n_copies, dtype=np.int64), n_post * n_pre)
    post = np.tile(np.repeat(np.arange(n_post, dtype=np.int64), n_pre), n_copies)
    pre = np.tile(np.arange(n_pre, dtype=np.int64), n_copies * n_post)
    return copy * n_pre + pre, copy * n_post + post


def block_diagonal_indices_by_pre(n_copies: int, n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray]:
    """As `block_diagonal_indices`, ordered by copy, then presynaptic neuron, then postsynaptic neuron.

    Returns
    -------
    pre, post : ndarray of int64, shape (n_copies·n_pre·n_post,)
    """
    copy = np.repeat(np.arange(n_copies, dtype=np.int64), n_pre * n_post)
    pre = np.tile(np.repeat(np.arange(n_pre, dtype=np.int64), n_post), n_copies)
    post = np.tile(np.arange(n_post, dtype=np.int64), n_copies * n_pre)
    return copy * n_pre + pre, copy * n_post + post


def one_to_one_indices(n_copies: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices connecting neuron ``i`` of copy ``c`` to neuron ``i`` of copy ``c`` (first ``n_copies``)."""
    idx = np.arange(n_copies * n, dtype=np.int64)
    return idx, idx

