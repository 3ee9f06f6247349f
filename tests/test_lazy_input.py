"""Input encoded a run at a time (`data.lazy_input.LazyInput`) is the input encoded at once: every encoder's
random draws are invariant to how the samples are chunked, a lazy call presents exactly the spikes of an eager
one, and a repeatable input (the test sets) gives the same spikes at every presentation while its generator
goes on as if they had been drawn once."""
from __future__ import annotations

import numpy as np
import pytest

import hlopsim.data.encoders as encoders
import hlopsim.data.lazy_input as lazy_input
from hlopsim.data.encoders import (SpikeTrains, latency_encode, poisson_encode, random_phase_encode,
                                   refractory_poisson_encode, regular_encode)
from hlopsim.data.lazy_input import LazyInput

N_STEPS = 5    # odd draws per sample (5 steps × 7 neurons): float32 draws straddle the generator's 64-bit words
ENCODERS = {
    "poisson": lambda x, rng: poisson_encode(x, 300.0, 1e-3, N_STEPS, rng),
    "random-phase": lambda x, rng: random_phase_encode(x, 300.0, 1e-3, N_STEPS, rng),
    "refractory-poisson": lambda x, rng: refractory_poisson_encode(x, 300.0, 1e-3, N_STEPS, 2, rng),
    "regular": lambda x, rng: regular_encode(x, 300.0, 1e-3, N_STEPS),
    "latency": lambda x, rng: latency_encode(x, N_STEPS),
}


def _joined(parts: list[SpikeTrains]) -> tuple:
    """(sample, step, neuron) of consecutive sample sets, renumbered as one."""
    offsets = np.cumsum([0] + [p.n_samples for p in parts])
    return (np.concatenate([p.sample + o for p, o in zip(parts, offsets)]),
            np.concatenate([p.step for p in parts]), np.concatenate([p.neuron for p in parts]))


def _same(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def _x(n=13, width=7, seed=3):
    return np.random.default_rng(seed).random((n, width))


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("chunk_bytes", [encoders._CHUNK_BYTES, 1])   # the encoders' own chunks: many, or one
def test_every_encoder_draws_the_same_spikes_whatever_the_chunks(name, chunk_bytes, monkeypatch):
    monkeypatch.setattr(encoders, "_CHUNK_BYTES", chunk_bytes)
    encode, x = ENCODERS[name], _x()
    whole_rng = np.random.default_rng(11)
    whole = encode(x, whole_rng)
    assert whole.n_spikes > 20
    for cuts in ([1], [6], [12], [2, 3, 9]):
        rng = np.random.default_rng(11)
        bounds = [0, *cuts, len(x)]
        parts = [encode(x[a:b], rng) for a, b in zip(bounds, bounds[1:])]
        assert _same(_joined(parts), (whole.sample, whole.step, whole.neuron)), (name, cuts)
        assert rng.bit_generator.state == whole_rng.bit_generator.state, (name, cuts)   # the stream goes on alike


@pytest.mark.parametrize("name", list(ENCODERS))
def test_a_lazy_call_presents_the_eager_calls_spikes(name):
    """The loop's call — every epoch's order of the rows, encoded epoch by epoch — asked for in runs that
    cut across epochs."""
    encode, x = ENCODERS[name], _x()
    orders = [np.random.default_rng(k).permutation(len(x)) for k in range(3)]
    eager_rng = np.random.default_rng(5)
    eager = _joined([encode(x[o], eager_rng) for o in orders])
    rng = np.random.default_rng(5)
    source = LazyInput([(x, o) for o in orders], encode, N_STEPS, rng)
    assert (source.n_samples, source.n_neurons, source.n_steps) == (39, 7, N_STEPS)
    bounds = [0, 4, 17, 26, 39]
    runs = [source.trains(a, b) for a, b in zip(bounds, bounds[1:])]
    assert [r.n_samples for r in runs] == [4, 13, 9, 13]
    assert _same(_joined(runs), eager)
    assert rng.bit_generator.state == eager_rng.bit_generator.state
    with pytest.raises(ValueError, match="in order"):     # spent: its draws cannot be made again
        source.trains(0, 4)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_a_repeatable_input_is_the_same_at_every_presentation(name, monkeypatch):
    monkeypatch.setattr(lazy_input, "_SKIP_ELEMENTS", 3 * N_STEPS * 7)   # moves the generator on 3 rows at a time
    encode, a, b = ENCODERS[name], _x(10), _x(6, seed=4)
    eager_rng = np.random.default_rng(2)
    eager = _joined([encode(a, eager_rng), encode(b, eager_rng)])
    after = eager_rng.random(4)                          # what the generator draws next
    rng = np.random.default_rng(2)
    source = LazyInput([(a, None), (b, None)], encode, N_STEPS, rng, repeat=True)
    assert np.array_equal(rng.random(4), after)          # moved on past the input's draws at construction
    for bounds in ([0, 16], [0, 7, 16], [0, 10, 11, 16]):
        runs = [source.trains(lo, hi) for lo, hi in zip(bounds, bounds[1:])]
        assert _same(_joined(runs), eager), bounds


def test_ranges_out_of_order_are_refused():
    source = LazyInput([(_x(), None)], ENCODERS["poisson"], N_STEPS, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"samples \[3, 5\) asked for after \[0, 0\) of 13"):
        source.trains(3, 5)
    source.trains(0, 5)
    with pytest.raises(ValueError, match="of 13"):
        source.trains(5, 14)
    with pytest.raises(ValueError, match="one width"):
        LazyInput([(_x(), None), (_x(width=8), None)], ENCODERS["poisson"], N_STEPS)
