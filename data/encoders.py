"""Coding of intensities into input spike trains (rate codes and a latency code).

Rate codes, each firing at ``x · max_rate`` on average:

- `regular_encode`: evenly spaced spikes, every train starting at the same phase (all inputs of the
  same intensity fire at the same steps: a phase-locked input whose PSTH has peaks and empty bins);
- `random_phase_encode`: evenly spaced spikes with a random phase per input neuron and sample (the
  same spacing, a flat PSTH, nearly exact counts);
- `poisson_encode`: independent Bernoulli steps (a discretised Poisson process; any interval ≥ 1 step);
- `refractory_poisson_encode`: a Poisson process with a dead time (no interval shorter than the dead
  time), started in its stationary state so that its PSTH is flat.

`latency_encode` is a time code: one spike per input, earlier for higher intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlopsim.data._validate import check_int, check_matrix, check_positive, check_rng

# Upper bound on the temporary dense arrays of one encoding chunk
# (4-byte float32 uniforms + 1-byte comparison result per sample, step and neuron).
_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SpikeTrains:
    """Spikes of a batch of samples, stored flat (one entry per spike).

    Attributes
    ----------
    sample : np.ndarray
        int64, shape (n_spikes,), index of the sample within the batch,
        in [0, n_samples).
    step : np.ndarray
        int64, shape (n_spikes,), time step within the sample's presentation,
        in [0, n_steps).
    neuron : np.ndarray
        int64, shape (n_spikes,), index of the input neuron, in [0, n_neurons).
    n_samples, n_neurons, n_steps : int
        Extent of the batch.

    Notes
    -----
    Spikes are sorted lexicographically by (sample, step, neuron); the
    constructor checks this and the index ranges.
    """

    sample: np.ndarray
    step: np.ndarray
    neuron: np.ndarray
    n_samples: int
    n_neurons: int
    n_steps: int

    def __post_init__(self) -> None:
        sizes = {}
        for name in ("n_samples", "n_neurons", "n_steps"):
            sizes[name] = check_int(name, getattr(self, name), minimum=0)
            object.__setattr__(self, name, sizes[name])
        n_spikes = np.shape(self.sample)
        for name, size_name in (("sample", "n_samples"), ("step", "n_steps"), ("neuron", "n_neurons")):
            arr = np.asarray(getattr(self, name))
            if arr.ndim != 1 or arr.shape != n_spikes or not (
                arr.size == 0 or np.issubdtype(arr.dtype, np.integer)
            ):
                raise ValueError(
                    f"{name} has shape {arr.shape} and dtype {arr.dtype}, expected 1-D "
                    f"integers of the same length as sample {n_spikes}"
                )
            arr = arr.astype(np.int64, copy=False)
            bound = sizes[size_name]
            if arr.size and (arr.min() < 0 or arr.max() >= bound):
                raise ValueError(
                    f"{name} has values in [{arr.min()}, {arr.max()}], expected [0, {size_name} = {bound})"
                )
            object.__setattr__(self, name, arr)
        key = self._flat_key()
        if np.any(np.diff(key) < 0):
            raise ValueError("spikes must be sorted by (sample, step, neuron)")

    def _flat_key(self) -> np.ndarray:
        return (self.sample * self.n_steps + self.step) * self.n_neurons + self.neuron

    @property
    def n_spikes(self) -> int:
        """Total number of spikes."""
        return int(self.sample.shape[0])

    def counts(self) -> np.ndarray:
        """Spike count of every neuron in every sample.

        Returns
        -------
        np.ndarray
            int64, shape (n_samples, n_neurons).
        """
        flat = np.bincount(
            self.sample * self.n_neurons + self.neuron,
            minlength=self.n_samples * self.n_neurons,
        )
        return flat.astype(np.int64, copy=False).reshape(self.n_samples, self.n_neurons)

    def select(self, samples: np.ndarray) -> SpikeTrains:
        """Spikes of some samples, renumbered 0..len(samples)-1 in the given order.

        Parameters
        ----------
        samples : np.ndarray
            Integer array of shape (n_selected,) with values in [0, n_samples);
            repeats are allowed (each copy becomes a separate sample).

        Returns
        -------
        SpikeTrains
            ``n_samples == n_selected``; new sample ``i`` carries the spikes
            of old sample ``samples[i]``.
        """
        samples = np.asarray(samples)
        if samples.ndim != 1 or not (samples.size == 0 or np.issubdtype(samples.dtype, np.integer)):
            raise ValueError(
                f"samples has shape {samples.shape} and dtype {samples.dtype}, expected 1-D integers"
            )
        if samples.size and (samples.min() < 0 or samples.max() >= self.n_samples):
            raise ValueError(
                f"samples has values in [{samples.min()}, {samples.max()}], "
                f"expected [0, {self.n_samples})"
            )
        samples = samples.astype(np.int64, copy=False)
        # Spikes of old sample s occupy [start[s], start[s + 1]) since they are sorted.
        start = np.searchsorted(self.sample, np.arange(self.n_samples + 1))
        lengths = start[samples + 1] - start[samples]
        new_sample = np.repeat(np.arange(samples.size, dtype=np.int64), lengths)
        block_offset = np.cumsum(lengths) - lengths  # position of each block in the output
        index = np.arange(new_sample.size) + np.repeat(start[samples] - block_offset, lengths)
        return SpikeTrains(
            sample=new_sample,
            step=self.step[index],
            neuron=self.neuron[index],
            n_samples=int(samples.size),
            n_neurons=self.n_neurons,
            n_steps=self.n_steps,
        )


def poisson_encode(
    x: np.ndarray,
    max_rate_hz: float,
    dt_s: float,
    n_steps: int,
    rng: np.random.Generator,
) -> SpikeTrains:
    """Encode intensities as Bernoulli-approximated Poisson spike trains.

    In each of ``n_steps`` time steps of length ``dt_s``, input neuron ``j`` of
    sample ``i`` fires independently with probability
    ``p = x[i, j] * max_rate_hz * dt_s``, i.e. at rate ``x[i, j] * max_rate_hz``.

    Parameters
    ----------
    x : np.ndarray
        Shape (n_samples, n_neurons), finite real values in [0, 1]
        (dimensionless intensity).
    max_rate_hz : float
        Firing rate of an input of intensity 1, in Hz; > 0.
    dt_s : float
        Time step, in seconds; > 0, with ``max_rate_hz * dt_s <= 1``.
    n_steps : int
        Number of time steps per sample presentation, >= 1.
    rng : np.random.Generator
        Source of randomness. Samples are drawn in order, so the result for a
        given generator state does not depend on the internal chunking.

    Returns
    -------
    SpikeTrains
        Spikes sorted by (sample, step, neuron).

    Notes
    -----
    Samples are processed in chunks so that the temporary dense arrays stay
    below about 64 MB.
    """
    x = check_matrix("x", x, low=0.0, high=1.0)
    max_rate_hz = check_positive("max_rate_hz", max_rate_hz)
    dt_s = check_positive("dt_s", dt_s)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    rng = check_rng(rng)
    p_max = max_rate_hz * dt_s
    if p_max > 1.0:
        raise ValueError(f"max_rate_hz * dt_s = {p_max:g} must be <= 1 (spike probability per step)")

    n_samples, n_neurons = x.shape
    # float32 uniforms halve the cost; p is then resolved to ~6e-8, far below
    # the sampling noise of any realistic spike count.
    p = (x * p_max).astype(np.float32)[:, None, :]  # (n_samples, 1, n_neurons)
    chunk = max(1, _CHUNK_BYTES // max(1, 5 * n_steps * n_neurons))
    parts = [(np.empty(0, np.int64),) * 3]
    for first in range(0, n_samples, chunk):
        p_chunk = p[first : first + chunk]
        fired = rng.random((p_chunk.shape[0], n_steps, n_neurons), dtype=np.float32) < p_chunk
        # Flat indices in C order are sorted by (sample, step, neuron).
        s, t, j = np.unravel_index(np.flatnonzero(fired), fired.shape)
        parts.append((s + first, t, j))
    sample, step, neuron = (np.concatenate(arrays) for arrays in zip(*parts))
    return SpikeTrains(
        sample=sample,
        step=step,
        neuron=neuron,
        n_samples=n_samples,
        n_neurons=n_neurons,
        n_steps=n_steps,
    )


def regular_encode(x: np.ndarray, max_rate_hz: float, dt_s: float, n_steps: int) -> SpikeTrains:
    """Encode intensities as regular (deterministic) spike trains with the same rates.

    Neuron ``j`` of sample ``i`` fires at step ``k`` when ``floor((k + 1) p) > floor(k p)`` with
    ``p = x[i, j] * max_rate_hz * dt_s``: evenly spaced spikes, ``floor(n_steps · p)`` in total.
    A noise-free counterpart of `poisson_encode`, for tests that need exactly known rates.

    Parameters
    ----------
    x : np.ndarray
        Shape (n_samples, n_neurons), intensities in [0, 1].
    max_rate_hz, dt_s, n_steps
        As in `poisson_encode`.

    Returns
    -------
    SpikeTrains
        Spikes sorted by (sample, step, neuron).
    """
    x = check_matrix("x", x, low=0.0, high=1.0)
    p_max = check_positive("max_rate_hz", max_rate_hz) * check_positive("dt_s", dt_s)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    if p_max > 1.0:
        raise ValueError(f"max_rate_hz * dt_s = {p_max:g} must be <= 1 (spike probability per step)")
    # the 1e-9 keeps an exact integer k·p from being floored one spike short by rounding
    return _phased_trains(x * p_max, n_steps, 1e-9)


def random_phase_encode(
    x: np.ndarray,
    max_rate_hz: float,
    dt_s: float,
    n_steps: int,
    rng: np.random.Generator,
) -> SpikeTrains:
    """Encode intensities as regular spike trains, each with its own random phase.

    Neuron ``j`` of sample ``i`` fires at step ``k`` when ``floor((k + 1) p + φ) > floor(k p + φ)``, with
    ``p = x[i, j] * max_rate_hz * dt_s`` and a phase ``φ ~ U[0, 1)`` drawn per neuron and sample: spikes
    evenly spaced ``1/p`` steps apart, the first within the first ``1/p`` steps. It fires with
    probability exactly ``p`` at every step (``frac(k p + φ)`` is uniform), so the input PSTH is flat,
    and ``floor(n_steps p + φ)`` spikes in all (mean ``n_steps p``, off by less than one).
    `regular_encode` is the same train with ``φ = 0`` for everyone.

    Parameters
    ----------
    x : np.ndarray
        Shape (n_samples, n_neurons), intensities in [0, 1].
    max_rate_hz, dt_s, n_steps
        As in `poisson_encode`.
    rng : np.random.Generator
        Draws the phases, one per sample and neuron in C order (``rng.random((n_samples, n_neurons))``).

    Returns
    -------
    SpikeTrains
        Spikes sorted by (sample, step, neuron).
    """
    x = check_matrix("x", x, low=0.0, high=1.0)
    p_max = check_positive("max_rate_hz", max_rate_hz) * check_positive("dt_s", dt_s)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    rng = check_rng(rng)
    if p_max > 1.0:
        raise ValueError(f"max_rate_hz * dt_s = {p_max:g} must be <= 1 (spike probability per step)")
    return _phased_trains(x * p_max, n_steps, rng.random(x.shape))


def refractory_poisson_encode(
    x: np.ndarray,
    max_rate_hz: float,
    dt_s: float,
    n_steps: int,
    dead_steps: int,
    rng: np.random.Generator,
) -> SpikeTrains:
    """Encode intensities as Poisson spike trains with a dead time, in their stationary state.

    A discrete-time renewal process per neuron and sample: after a spike the neuron cannot fire for
    ``dead_steps − 1`` steps (so no two spikes are closer than ``dead_steps`` steps); when it can, it
    fires with probability ``q = p / (1 − (dead_steps − 1) p)`` per step, ``p = x[i, j] * max_rate_hz *
    dt_s``. The mean interval is then ``dead_steps − 1 + 1/q = 1/p``: the rate is the one asked for.
    Every train starts in the process's stationary state (blocked with ``j`` steps to go with probability
    ``p`` for each ``j = 1 … dead_steps − 1``, free otherwise), so it fires with probability exactly ``p``
    at every step: a flat PSTH. ``dead_steps = 1`` is `poisson_encode`'s process; at ``p = 1/dead_steps``
    the train is regular with a random phase.

    Parameters
    ----------
    x : np.ndarray
        Shape (n_samples, n_neurons), intensities in [0, 1].
    max_rate_hz, dt_s, n_steps
        As in `poisson_encode`.
    dead_steps : int
        Shortest interval between two spikes, in steps (≥ 1); ``max_rate_hz * dt_s * dead_steps <= 1``.
    rng : np.random.Generator
        Uniforms are drawn as ``rng.random((n_chunk, n_steps + 1, n_neurons))`` per chunk of samples in
        order (the first slice sets the initial state), so the result does not depend on the chunking.

    Returns
    -------
    SpikeTrains
        Spikes sorted by (sample, step, neuron).
    """
    x = check_matrix("x", x, low=0.0, high=1.0)
    p_max = check_positive("max_rate_hz", max_rate_hz) * check_positive("dt_s", dt_s)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    dead_steps = check_int("dead_steps", dead_steps, minimum=1)
    rng = check_rng(rng)
    if p_max * dead_steps > 1.0 + 1e-12:
        raise ValueError(f"max_rate_hz * dt_s * dead_steps = {p_max * dead_steps:g} must be <= 1: a dead time of "
                         f"{dead_steps} steps allows at most {1 / dead_steps:g} spikes per step")
    n_samples, n_neurons = x.shape
    blocked = dead_steps - 1
    p = x * p_max
    q = np.minimum(p / (1.0 - blocked * p), 1.0)
    chunk = max(1, _CHUNK_BYTES // max(1, 17 * (n_steps + 1) * n_neurons))
    parts = [(np.empty(0, np.int64),) * 3]
    for first in range(0, n_samples, chunk):
        p_c, q_c = p[first: first + chunk], q[first: first + chunk]
        u = rng.random((p_c.shape[0], n_steps + 1, n_neurons))
        # stationary start: blocked with j = 1 … blocked steps to go, each with probability p
        remaining = np.where(u[:, 0] < blocked * p_c, 1 + np.floor(u[:, 0] / np.where(p_c > 0, p_c, 1.0)), 0)
        remaining = np.minimum(remaining, blocked).astype(np.int64)
        fired = np.zeros((p_c.shape[0], n_steps, n_neurons), dtype=bool)
        for k in range(n_steps):
            free = remaining == 0
            fire = free & (u[:, k + 1] < q_c)
            fired[:, k] = fire
            remaining = np.where(fire, blocked, np.maximum(remaining - 1, 0))
        s, t, j = np.unravel_index(np.flatnonzero(fired), fired.shape)
        parts.append((s + first, t, j))
    sample, step, neuron = (np.concatenate(arrays) for arrays in zip(*parts))
    return SpikeTrains(sample=sample, step=step, neuron=neuron, n_samples=n_samples, n_neurons=n_neurons,
                       n_steps=n_steps)


def latency_encode(x: np.ndarray, n_steps: int, min_intensity: float = 0.0) -> SpikeTrains:
    """Encode intensities as the time of one spike: the brighter, the earlier.

    Neuron ``j`` of sample ``i`` fires once, at step ``round((1 − x[i, j]) · (n_steps − 1))``, if
    ``x[i, j] > min_intensity``, and never otherwise: intensity 1 fires at step 0, intensities just
    above ``min_intensity`` near the end. The information is in the timing, not in the count (every
    active input fires one spike per presentation), so rate-based learning sees only which inputs are
    active.

    Parameters
    ----------
    x : np.ndarray
        Shape (n_samples, n_neurons), intensities in [0, 1].
    n_steps : int
        Number of time steps per presentation, >= 1.
    min_intensity : float
        Inputs at or below it stay silent; in [0, 1).

    Returns
    -------
    SpikeTrains
        Spikes sorted by (sample, step, neuron).
    """
    x = check_matrix("x", x, low=0.0, high=1.0)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    if not (isinstance(min_intensity, (int, float)) and 0.0 <= min_intensity < 1.0):
        raise ValueError(f"min_intensity = {min_intensity!r} must be a number in [0, 1)")
    sample, neuron = np.nonzero(x > min_intensity)
    step = np.rint((1.0 - x[sample, neuron]) * (n_steps - 1)).astype(np.int64)
    order = np.lexsort((neuron, step, sample))
    return SpikeTrains(sample=sample[order], step=step[order], neuron=neuron[order], n_samples=x.shape[0],
                       n_neurons=x.shape[1], n_steps=n_steps)


def _phased_trains(p: np.ndarray, n_steps: int, phase) -> SpikeTrains:
    """Regular trains: neuron ``j`` of sample ``i`` fires at step ``k`` when
    ``floor((k + 1) p + φ) > floor(k p + φ)``; ``phase`` φ is a scalar or one value per (sample, neuron).
    Computed in chunks of samples to bound memory; spikes sorted by (sample, step, neuron)."""
    n_samples, n_neurons = p.shape
    phase = np.broadcast_to(np.asarray(phase, dtype=np.float64), p.shape)
    k = np.arange(n_steps + 1, dtype=np.float64)[None, :, None]
    chunk = max(1, _CHUNK_BYTES // max(1, 9 * (n_steps + 1) * n_neurons))
    parts = [(np.empty(0, np.int64),) * 3]
    for first in range(0, n_samples, chunk):
        rows = slice(first, first + chunk)
        spikes_so_far = np.floor(k * p[rows, None, :] + phase[rows, None, :])
        fired = np.diff(spikes_so_far, axis=1) > 0
        s, t, j = np.unravel_index(np.flatnonzero(fired), fired.shape)
        parts.append((s + first, t, j))
    sample, step, neuron = (np.concatenate(arrays) for arrays in zip(*parts))
    return SpikeTrains(sample=sample, step=step, neuron=neuron, n_samples=n_samples, n_neurons=n_neurons,
                       n_steps=n_steps)
