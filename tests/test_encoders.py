"""Input encoders without phase artefacts (`data.encoders`): flat PSTHs, exact rates, dead times,
latency code; the old `regular_encode` unchanged; the encoders registered in the loop and protocol files."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy.stats import chisquare

from hlopsim.data import load_digits
from hlopsim.data import encoders
from hlopsim.data.encoders import (latency_encode, poisson_encode, random_phase_encode, refractory_poisson_encode,
                                   regular_encode)
from hlopsim.protocols.experiment import config as protocol_config
from hlopsim.protocols.experiment import loop

RATE, DT, STEPS = 500.0, 1e-3, 40      # the demo's input: 500 Hz for a white pixel, 40 steps of 1 ms
# sha256 of regular_encode(load_digits().x_train, 500 Hz, 1 ms, 40 steps) as (sample, step, neuron) int64
# arrays, computed with the encoder as it was before the random-phase and refractory encoders were added
REGULAR_DIGITS_DIGEST = "e7a7d62fe04439feccd196462af19d9a9eb1f10619ebf07ee6071ca4fb113353"


@pytest.fixture(scope="module")
def digits():
    return load_digits().x_train


def psth_p_value(trains) -> float:
    """Chi-square p-value of the spike counts per step (all samples and neurons) against a flat PSTH.

    Under a flat PSTH of independent Poisson counts the statistic is χ² with ``n_steps − 1`` degrees
    of freedom; trains with less than Poisson variance only make it smaller.
    """
    per_step = np.bincount(trains.step, minlength=trains.n_steps)
    return float(chisquare(per_step).pvalue)


def test_the_phase_locked_regular_code_fails_the_flatness_test(digits):
    trains = regular_encode(digits, RATE, DT, STEPS)
    per_step = np.bincount(trains.step, minlength=STEPS)
    assert per_step.min() == 0 and psth_p_value(trains) < 1e-100   # empty bins and peaks: the artefact


@pytest.mark.parametrize("encode", [
    lambda x, rng: random_phase_encode(x, RATE, DT, STEPS, rng),
    lambda x, rng: refractory_poisson_encode(x, RATE, DT, STEPS, 2, rng),
    lambda x, rng: refractory_poisson_encode(x, 250.0, DT, STEPS, 4, rng),
], ids=["random-phase", "refractory-poisson", "refractory-poisson-4-steps"])
def test_the_input_psth_is_flat_within_poisson_noise(encode, digits):
    p_values = [psth_p_value(encode(digits, np.random.default_rng(seed))) for seed in range(3)]
    assert min(p_values) > 1e-3, p_values


def test_random_phase_keeps_the_rate_and_the_spacing_of_the_regular_code(digits):
    trains = random_phase_encode(digits, RATE, DT, STEPS, np.random.default_rng(0))
    p = digits * RATE * DT
    counts = trains.counts()
    # floor(n p + φ): the mean count is n p, every count within one spike of it
    assert np.all((counts == np.floor(STEPS * p)) | (counts == np.floor(STEPS * p) + 1))
    assert counts.mean() == pytest.approx((STEPS * p).mean(), rel=1e-2)
    # evenly spaced: consecutive spikes of a neuron are floor(1/p) or ceil(1/p) steps apart
    key = trains.sample * trains.n_neurons + trains.neuron
    order = np.lexsort((trains.step, key))
    same = np.diff(key[order]) == 0
    gaps = np.diff(trains.step[order])[same]
    spacing = 1.0 / p.ravel()[key[order][1:][same]]
    assert np.all((gaps == np.floor(spacing + 1e-9)) | (gaps == np.ceil(spacing - 1e-9)))


def test_random_phase_differs_by_phase_only_and_is_reproducible(digits):
    a = random_phase_encode(digits[:50], RATE, DT, STEPS, np.random.default_rng(3))
    b = random_phase_encode(digits[:50], RATE, DT, STEPS, np.random.default_rng(3))
    c = random_phase_encode(digits[:50], RATE, DT, STEPS, np.random.default_rng(4))
    assert np.array_equal(a.step, b.step) and np.array_equal(a.neuron, b.neuron)
    assert not np.array_equal(a.step, c.step)


def test_refractory_poisson_has_its_dead_time_rate_and_interval_statistics():
    p, dead, steps = 0.1, 3, 4000                   # 100 Hz at 1 ms with a 3 ms dead time
    trains = refractory_poisson_encode(np.ones((20, 5)), p / DT, DT, steps, dead, np.random.default_rng(1))
    key = trains.sample * trains.n_neurons + trains.neuron
    order = np.lexsort((trains.step, key))
    same = np.diff(key[order]) == 0
    intervals = np.diff(trains.step[order])[same]
    assert intervals.min() == dead                  # never closer than the dead time, and it is reached
    assert trains.counts().mean() / steps == pytest.approx(p, rel=0.02)
    q = p / (1 - (dead - 1) * p)                    # interval = (dead − 1) + Geometric(q)
    assert intervals.mean() == pytest.approx(1 / p, rel=0.02)
    assert intervals.std() / intervals.mean() == pytest.approx(np.sqrt(1 - q) / q * p, rel=0.05)


def test_refractory_poisson_with_one_step_is_bernoulli_and_chunking_does_not_matter(digits, monkeypatch):
    x = digits[:64]
    whole = refractory_poisson_encode(x, RATE, DT, STEPS, 1, np.random.default_rng(5))
    monkeypatch.setattr(encoders, "_CHUNK_BYTES", 1)            # one sample per chunk
    chunked = refractory_poisson_encode(x, RATE, DT, STEPS, 1, np.random.default_rng(5))
    assert np.array_equal(whole.sample, chunked.sample) and np.array_equal(whole.step, chunked.step)
    assert np.array_equal(whole.neuron, chunked.neuron)
    bernoulli = poisson_encode(np.full((400, 64), 0.5), RATE, DT, STEPS, np.random.default_rng(0)).counts()
    dead_one = refractory_poisson_encode(np.full((400, 64), 0.5), RATE, DT, STEPS, 1, np.random.default_rng(0)).counts()
    assert dead_one.mean() == pytest.approx(bernoulli.mean(), rel=0.01)
    assert dead_one.var() == pytest.approx(bernoulli.var(), rel=0.1)


def test_refractory_poisson_refuses_a_rate_its_dead_time_cannot_reach():
    with pytest.raises(ValueError, match="dead_steps = 1.5 must be <= 1"):
        refractory_poisson_encode(np.ones((1, 1)), RATE, DT, STEPS, 3, np.random.default_rng(0))


def test_latency_code_fires_once_earlier_for_brighter_inputs():
    x = np.array([[1.0, 0.5, 0.0, 0.25], [0.0, 0.0, 1.0, 0.1]])
    trains = latency_encode(x, 41)
    assert list(zip(trains.sample, trains.step, trains.neuron)) == [(0, 0, 0), (0, 20, 1), (0, 30, 3), (1, 0, 2),
                                                                    (1, 36, 3)]
    assert latency_encode(x, 41, min_intensity=0.3).n_spikes == 3


def test_the_regular_encoder_is_unchanged(digits):
    trains = regular_encode(np.array([[1.0, 0.5, 0.3, 0.0]]), RATE, DT, 10)
    # p = 0.5, 0.25, 0.15, 0 spikes per step: a spike where floor((k + 1) p) > floor(k p)
    assert [(int(t), int(j)) for t, j in zip(trains.step, trains.neuron)] == [
        (1, 0), (3, 0), (3, 1), (5, 0), (6, 2), (7, 0), (7, 1), (9, 0)]
    # the whole digits training set, as the demo encodes it (digest of the spike arrays)
    trains = regular_encode(digits, RATE, DT, STEPS)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a, dtype=np.int64).tobytes()
                                     for a in (trains.sample, trains.step, trains.neuron))).hexdigest()
    assert digest == REGULAR_DIGITS_DIGEST


def test_every_encoder_is_registered_in_the_loop_and_in_protocol_files():
    assert set(loop.ENCODERS) == set(protocol_config.ENCODERS) == {
        "regular", "poisson", "random-phase", "refractory-poisson", "latency"}
    assert protocol_config.SCHEMA["data"]["encoder"] == "random-phase"   # flat input PSTH, five-seed results §16
