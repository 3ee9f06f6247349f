"""How much memory a run will need, estimated from its settings before anything is built.

Sizes such as ``network.batch_size = 100000000``, ``network.hidden = [2000000]``, ``protocol.tasks =
1000000``, ``lateral.consolidation_epochs = 100000000``, ``network.dt = "1e-6 ms"`` or
``network.presentation = "1e9 ms"`` are valid numbers but make a run allocate until the machine runs
out of memory (or swaps for hours). `check_run_memory` estimates the peak from the settings alone and
refuses such a run with one line naming the estimate, the memory available and the setting to lower.

The estimate is the sum of the largest allocations of a run (bytes):

- network synapses: ``n_{l−1} n_l`` weights × `BYTES_PER_SHARED_WEIGHT` for a layer propagated through
  one shared matrix (undelayed `Delta`, `sim.propagation`), else ``B · n_{l−1} n_l`` Brian2 synapses
  (``B`` = ``network.batch_size`` copies) × `BYTES_PER_SYNAPSE` (Brian2's per-synapse arrays plus the
  index arrays of their construction);
- network neurons: ``B · Σ_l n_l`` × `BYTES_PER_NEURON`;
- lateral circuits: with one shared matrix (`sim.shared_lateral`) ``H`` and ``Hᵀ`` (``2 · K_l · n_{l−1}``
  float64) and ``y``, ``x̂`` per copy; with Brian2 synapses the forward and feedback synapses,
  ``2 · C · n_{l−1} · K_l`` per layer × `BYTES_PER_SYNAPSE`; ``C`` the simulated copies (``lateral.copies``,
  the whole batch for ``lateral.projection = "neural"``) and ``K_l`` the subspace neurons grown over all
  tasks (capped at the layer's width; the width with ``lateral.growth = "residual"``);
- the longest Brian2 run (a task's supervised epochs, its consolidation epochs, or a group of test
  sets; longer ones are split into runs of `samples_per_run`, at most ``RUN_BUDGET_BYTES``): input
  spikes (`BYTES_PER_INPUT_SPIKE`) and recorded spikes (`BYTES_PER_RECORDED_SPIKE`), with ``S · n_steps
  · n · p`` spikes for ``S`` presentations of ``n`` neurons, ``p = ½ · min(1, input_max_rate · dt)``
  spikes per neuron and step, plus 8 bytes per count and sample. Nothing of a call is held beyond its
  current run: the input is encoded a run at a time (`data.lazy_input.LazyInput`: each run's samples
  just before it starts; the test sets re-encoded from their generator state at every evaluation),
  and each run's recorded spikes are written to the run file when it ends (`SimNetwork.present`'s
  ``on_run``);
- the encoder's dense temporaries, for one run's samples: the encoders work in chunks of about
  ``_ENCODER_CHUNK_BYTES`` (at least one sample, ``(n_steps + 1) · n_0 · 17`` bytes), a few such arrays
  alive at once, plus the run's intensities and phases (``2 · S · n_0 · 8``);
- the per-sample arrays of a task's longest call (its presentation order, epochs and labels, its
  scores): ``(40 + 16 · n_out)`` bytes per presentation of all its epochs;
- the tasks' data (``n_tasks · (train + test) · n_0 · 8``) and the accuracy matrix (``n_tasks² ·
  8``, three copies);
- `BASELINE_BYTES` for the interpreter and the imported libraries.

It is an estimate (firing rates are not known before the run), meant to catch settings that are
off by orders of magnitude, not to budget memory to the megabyte. It reads the specs it is given
and imports only the standard library; it builds nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["MemoryEstimate", "MemoryEstimateError", "available_memory", "check_run_memory",
           "estimate_run_memory", "samples_per_run"]

BYTES_PER_SYNAPSE = 60
"""Peak bytes per Brian2 synapse while a weight layer is built (measured ≈ 59 on the numpy target:
weight, pre/post indices, in/out counts, and the int64 index arrays handed to ``connect``)."""
BYTES_PER_SHARED_WEIGHT = 16
"""Bytes per weight of a layer propagated through one shared matrix (`sim.propagation`, undelayed
`Delta`): the float64 weights and the float64 increments the propagation adds."""
BYTES_PER_NEURON = 96
"""Bytes per simulated neuron (every copy): its state variables, refractoriness and spike space in
Brian2, the monitors' counters and the per-batch count and rate arrays."""
BYTES_PER_INPUT_SPIKE = 100
"""Bytes per input spike of one run: the encoded trains (3 × int64), their concatenation, the
sorted flat index, step and order arrays handed to Brian2, and Brian2's own copy."""
BYTES_PER_RECORDED_SPIKE = 80
"""Bytes per recorded spike of one run: the monitor's time and index arrays (with their growth
headroom), the drained (sample, step, neuron) arrays and the recorder's sorted copy."""
BASELINE_BYTES = 600 * 2**20
"""Python with Brian2, numba, scipy, h5py and the data set loaded."""
RUN_BUDGET_BYTES = 2**29
"""Estimated bytes of input and recorded spikes one Brian2 run may hold (`samples_per_run`): a long call is
split into runs of this size (bit-identical results), so a run's peak follows it, not the call's length."""
_ENCODER_CHUNK_BYTES = 64 * 2**20
"""The dense arrays of one encoding chunk (`data.encoders`: ``_CHUNK_BYTES``)."""


class MemoryEstimateError(ValueError):
    """A run would need more memory than the machine has available; the message is one line with
    the estimate, the memory available and the settings to lower."""


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimated peak memory of a run, by part.

    Attributes
    ----------
    parts : tuple of (str, int, str)
        ``(what, bytes, key)``: each part, its estimated size in bytes and the setting(s) that
        make it large.
    """

    parts: tuple

    @property
    def total(self) -> int:
        """int: The estimate in bytes (the parts plus `BASELINE_BYTES`)."""
        return BASELINE_BYTES + sum(size for _, size, _ in self.parts)

    def largest(self, n: int = 2) -> list[tuple[str, int, str]]:
        """The ``n`` largest parts, largest first."""
        return sorted(self.parts, key=lambda part: -part[1])[:n]


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.0f} MB"


def estimate_run_memory(spec, lateral, *, n_tasks: int, n_train: int, n_test: int, epochs: int,
                        consolidation_epochs: int = 0, encoder: str = "random-phase", record_spikes: bool = True,
                        test_run_samples: int | None = None, propagation: str = "auto") -> MemoryEstimate:
    """Estimate the peak memory of a run from its settings (formulas in the module docstring).

    Parameters
    ----------
    spec : NetworkSpec
        With input and output sizes (`NetworkSpec.with_sizes`).
    lateral : LateralSpec or None
        The lateral circuits, or None (finetune, gpm).
    n_tasks : int
        Tasks of the run.
    n_train, n_test : int
        Training and test samples of the largest task.
    epochs, consolidation_epochs : int
        Supervised and lateral-only epochs per task.
    encoder : str
        Input encoder (each encodes a run's samples at a time, in bounded chunks).
    record_spikes : bool
        Whether every spike is kept for the run file.
    test_run_samples : int, optional
        Most test presentations per Brian2 run (default ``epochs · n_train``, as the loop does).
    propagation : {"auto", "shared", "brian2"}
        `SimNetwork`'s ``propagation``: which layers and lateral circuits hold one shared weight matrix.

    Returns
    -------
    MemoryEstimate
    """
    sizes = [int(n) for n in spec.layer_sizes]
    batch, n_in, n_steps = int(spec.batch_size), sizes[0], int(spec.n_steps)
    parts = []

    from hlopsim.sim.propagation import choose_propagation
    from hlopsim.sim.shared_lateral import choose_lateral

    synapse_bytes = 0
    for layer, (a, b) in enumerate(zip(sizes, sizes[1:])):
        kinetics = spec.synapse_for(layer)
        if choose_propagation(propagation, kinetics, spec.weight_names[layer]) == "shared":   # one matrix
            synapse_bytes += BYTES_PER_SHARED_WEIGHT * a * b
        else:                                                                # Brian2 Synapses in every copy
            synapse_bytes += BYTES_PER_SYNAPSE * batch * a * b
    parts.append(("network synapses", synapse_bytes, "network.batch_size or network.hidden"))
    parts.append(("network neurons", BYTES_PER_NEURON * batch * sum(sizes), "network.batch_size or network.hidden"))

    if lateral is not None:
        copies = batch if lateral.projection == "neural" else int(lateral.copies)
        shared = choose_lateral(propagation, lateral) == "shared"
        lateral_bytes = 0
        for layer, width in enumerate(sizes[:-1]):
            grown = min(width, lateral.first_task[layer] + lateral.per_task[layer] * max(0, n_tasks - 1))
            if shared:   # H and Hᵀ, and y, x̂ per copy (`sim.shared_lateral`)
                lateral_bytes += 8 * (2 * (width if lateral.growth == "residual" else grown) * width
                                      + copies * (grown + width))
            else:        # forward and feedback synapses in every simulated copy
                lateral_bytes += 2 * copies * width * grown * BYTES_PER_SYNAPSE
        parts.append(("lateral circuit weights" if shared else "lateral circuit synapses", lateral_bytes,
                      "lateral.copies, lateral.first_task or lateral.per_task"))

    def run_bytes(samples: int) -> tuple[float, bool]:
        """Bytes of one run of ``samples`` presentations; whether recorded spikes dominate them."""
        given, recorded, counts = _presentation_bytes(spec, record_spikes)
        return samples * (given + recorded + counts), recorded > 4 * given

    limit = epochs * n_train if test_run_samples is None else test_run_samples
    cap = samples_per_run(spec, record_spikes)    # `SimNetwork.present` splits longer runs
    runs = [(run_bytes(min(cap, epochs * n_train)), "the largest training run",
             "protocol.epochs or data.train_size"),
            (run_bytes(min(cap, consolidation_epochs * n_train)), "the consolidation run of a task",
             "lateral.consolidation_epochs"),
            (run_bytes(min(cap, max(n_test, min(limit, n_tasks * n_test)))), "the largest evaluation run",
             "data.test_size")]
    (size, recorded_dominate), what, key = max(runs, key=lambda run: run[0][0])
    if n_steps > 10 ** 5:   # the number of steps per presentation is what is off
        key = "network.presentation or network.dt"
    elif recorded_dominate:
        key += ", network.hidden, or set sim.record_spikes = false"
    parts.append((what, int(size), key))

    # The input is encoded a run at a time (`LazyInput`): a few chunk-sized dense arrays (at least one
    # sample each), and the run's intensities and phases.
    dense = 3 * max(_ENCODER_CHUNK_BYTES, (n_steps + 1.0) * n_in * 17) + 2 * 8.0 * min(cap, max(
        epochs * n_train, consolidation_epochs * n_train, n_test)) * n_in
    parts.append(("the input encoder's temporary arrays", int(dense), "network.presentation or network.dt"))

    longest = max(epochs, consolidation_epochs) * float(n_train)   # presentations of a task's longest call
    key = "lateral.consolidation_epochs" if consolidation_epochs > epochs else "protocol.epochs or data.train_size"
    parts.append(("the per-sample arrays of a task's longest call", int(longest * (40 + 16 * sizes[-1])), key))

    parts.append(("the tasks' data", int(float(n_tasks) * (n_train + n_test) * n_in * 8), "protocol.tasks"))
    parts.append(("the accuracy matrix", int(3 * 8 * float(n_tasks) ** 2), "protocol.tasks"))
    return MemoryEstimate(tuple(parts))


def _presentation_bytes(spec, record_spikes: bool) -> tuple[float, float, float]:
    """Bytes one presentation adds to a Brian2 run: its input spikes, its recorded spikes, its counts."""
    sizes = [int(n) for n in spec.layer_sizes]
    p = 0.5 * min(1.0, float(spec.input_max_rate * spec.dt))   # spikes per neuron and step
    steps = float(spec.n_steps)
    given = steps * sizes[0] * p * BYTES_PER_INPUT_SPIKE
    recorded = steps * sum(sizes[1:]) * p * BYTES_PER_RECORDED_SPIKE if record_spikes else 0.0
    return given, recorded, 8.0 * (sum(sizes) + 1)


def samples_per_run(spec, record_spikes: bool, budget: int = RUN_BUDGET_BYTES) -> int:
    """Most presentations one Brian2 run holds: a whole number of batches whose input and recorded
    spikes are estimated at ``budget`` bytes or less (at least one batch).

    `SimNetwork.present` splits a longer run (a task's epochs, its consolidation epochs) into runs of
    this size, so a run's memory stays bounded whatever the number of epochs and samples; the split
    changes nothing in what is simulated.
    """
    per_sample = sum(_presentation_bytes(spec, record_spikes))
    batch = int(spec.batch_size)
    return batch * max(1, int(budget // (per_sample * batch)))


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes of memory this process can still use, or None if unknown.

    The smallest of ``MemAvailable`` in ``/proc/meminfo`` and the room left under the process's
    cgroup limit (v2 ``memory.max − memory.current``, v1 ``memory.limit_in_bytes −
    memory.usage_in_bytes``); on other systems the physical pages available (``sysconf``).
    """
    found = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2 ** 60:
            found.append(max(0, limit - usage))
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def check_run_memory(spec, lateral, *, available: int | None = None, **settings) -> MemoryEstimate:
    """Refuse a run whose estimated memory exceeds what is available; return the estimate.

    Parameters
    ----------
    spec, lateral, **settings
        As `estimate_run_memory`.
    available : int, optional
        Bytes available (default `available_memory`; unknown: nothing is refused).

    Raises
    ------
    MemoryEstimateError
        ``"this run needs an estimated 38.2 GB of memory, more than the 21.9 GB available: <the
        largest parts, each with the setting to lower>"``.
    """
    estimate = estimate_run_memory(spec, lateral, **settings)
    available = available_memory() if available is None else available
    if available is not None and estimate.total > available:
        largest = "; ".join(f"{what} {_gb(size)} (lower {key})" for what, size, key in estimate.largest(2)
                            if size > 0.1 * estimate.total)
        raise MemoryEstimateError(f"this run needs an estimated {_gb(estimate.total)} of memory, more than the "
                                  f"{_gb(available)} available: {largest}")
    return estimate
