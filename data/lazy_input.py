"""Input spike trains encoded a run at a time.

A presentation call of a task (all its epochs, or all its consolidation epochs) shows tens of
thousands of samples; its encoded input would hold every one of their spikes at once.
`LazyInput` describes the call instead — which rows of which arrays, in what order, and the
encoder — and encodes only the samples of the Brian2 run about to start (`SimNetwork.present`
asks for them with `LazyInput.trains`), so the input held at any moment is one run's.

The result is the same spikes as encoding the whole call at once: every encoder of
`hlopsim.data.encoders` draws its random numbers sample by sample, in order (``poisson_encode``
and ``refractory_poisson_encode`` per chunk of samples, ``random_phase_encode`` one row of phases
per sample), so encoding samples ``[0, a)`` and then ``[a, n)`` from one generator draws exactly
what encoding ``[0, n)`` draws; ``regular_encode`` and ``latency_encode`` draw nothing. The runs
must therefore ask for their samples in order, each range starting where the last one stopped.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from hlopsim.data.encoders import SpikeTrains

__all__ = ["LazyInput"]

Encode = Callable[[np.ndarray, "np.random.Generator | None"], SpikeTrains]

# Rows encoded at a time when a repeatable input moves its generator past its draws (bounds the
# encoded spikes held then to about 2**24 · (firing probability) spikes).
_SKIP_ELEMENTS = 2 ** 24


class LazyInput:
    """The spike trains of a sequence of samples, encoded on demand, in order.

    Sample ``s`` (numbered over all pieces, first piece first) is row ``rows[s − offset]`` of the
    piece's ``x`` (every row in order when ``rows`` is None); `trains` encodes samples ``[first,
    stop)`` with ``encode(x_rows, rng)`` and numbers them from 0.

    Parameters
    ----------
    pieces : sequence of (ndarray, ndarray or None)
        ``(x, rows)``: ``x`` of shape ``(N, n_neurons)`` with intensities in [0, 1], ``rows`` the
        int indices of the rows presented (None: all, in order). All pieces have the same width.
    encode : callable
        ``encode(x, rng) -> SpikeTrains``: the encoder, drawing from ``rng`` (which it may ignore).
    n_steps : int
        Steps per presentation (the encoder's ``n_steps``).
    rng : numpy.random.Generator or None
        The generator the encoder draws from (None for an encoder that draws nothing).
    repeat : bool
        The input is presented more than once (the test sets, at every evaluation), each time with
        the same spikes. The input then keeps its own generator, set to ``rng``'s state at
        construction at the start of every presentation, and moves ``rng`` on past its draws right
        away (encoding the input once, in bounded chunks, and dropping it), so ``rng`` goes on
        exactly as if the input had been encoded here at once.

    Attributes
    ----------
    n_samples, n_neurons, n_steps : int
        Extent of the input, as `SpikeTrains`.
    """

    def __init__(self, pieces: Sequence, encode: Encode, n_steps: int, rng: np.random.Generator | None = None,
                 repeat: bool = False):
        self._pieces = [(x, None if rows is None else np.asarray(rows, dtype=np.int64)) for x, rows in pieces]
        if not self._pieces:
            raise ValueError("a LazyInput needs at least one (x, rows) piece")
        widths = {int(np.shape(x)[1]) for x, _ in self._pieces}
        if len(widths) != 1:
            raise ValueError(f"the pieces of a LazyInput have widths {sorted(widths)}; expected one width")
        lengths = [len(x) if rows is None else len(rows) for x, rows in self._pieces]
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.n_samples, self.n_neurons, self.n_steps = int(self._offsets[-1]), widths.pop(), int(n_steps)
        self._encode, self._rng, self._next, self._start, self._repeat = encode, rng, 0, None, False
        if repeat and rng is not None:
            self._start = rng.bit_generator.state
            chunk = max(1, _SKIP_ELEMENTS // max(1, self.n_steps * self.n_neurons))
            for first in range(0, self.n_samples, chunk):   # move ``rng`` past this input's draws
                self.trains(first, min(self.n_samples, first + chunk))
            self._rng = np.random.Generator(type(rng.bit_generator)())
        self._repeat = bool(repeat)

    def rows(self, first: int, stop: int) -> np.ndarray:
        """The intensities of samples ``[first, stop)``, shape ``(stop − first, n_neurons)``."""
        out = []
        for (x, rows), lo, hi in zip(self._pieces, self._offsets[:-1], self._offsets[1:]):
            a, b = max(first, lo) - lo, min(stop, hi) - lo
            if a < b:
                out.append(np.asarray(x[a:b] if rows is None else x[rows[a:b]], dtype=np.float64))
        return np.concatenate(out) if len(out) != 1 else out[0]

    def trains(self, first: int, stop: int) -> SpikeTrains:
        """The spike trains of samples ``[first, stop)``, numbered from 0.

        Ranges are asked for in order, each starting where the last one stopped (the encoder draws
        its random numbers in sample order); a repeatable input starts over at ``first = 0``.

        Raises
        ------
        ValueError
            For a range out of order, or beyond ``n_samples``.
        """
        if self._repeat and first == 0:   # a new presentation of a repeatable input
            if self._start is not None:
                self._rng.bit_generator.state = self._start
            self._next = 0
        if first != self._next or not first < stop <= self.n_samples:
            raise ValueError(f"samples [{first}, {stop}) asked for after [0, {self._next}) of {self.n_samples}; a "
                             f"LazyInput is encoded in order, each range starting where the last one stopped")
        spikes = self._encode(self.rows(first, stop), self._rng)
        self._next = stop
        return spikes
