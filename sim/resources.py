"""How much memory a run will need, estimated from its settings before anything is built.

Sizes such as ``network.batch_size = 1000000``, ``network.hidden = [100000]``, ``protocol.tasks =
1000000``, ``lateral.consolidation_epochs = 100000000``, ``network.dt = "1e-6 ms"`` or
``network.presentation = "1e9 ms"`` are valid numbers but make a run allocate until the machine runs
out of memory (or swaps for hours). `check_run_memory` estimates the peak from the settings alone and
refuses such a run with one line naming the estimate, the memory available and the setting to lower.

The estimate is the sum of the largest allocations of a run (bytes):

- network synapses: ``B · Σ_l n_{l−1} n_l`` synapses (``B`` = ``network.batch_size`` copies of every
  weight layer) × `BYTES_PER_SYNAPSE` (Brian2's per-synapse arrays plus the index arrays of their
  construction);
- lateral circuits: forward and feedback synapses, ``2 · C · n_{l−1} · K_l`` per layer, ``C`` the
  simulated copies (``lateral.copies``, the whole batch for ``lateral.projection = "neural"``) and
  ``K_l`` the subspace neurons grown over all tasks (capped at the layer's width);
- the longest Brian2 run (a task's supervised epochs, its consolidation epochs, or a group of test
  sets): input spikes (`BYTES_PER_INPUT_SPIKE`) and recorded spikes (`BYTES_PER_RECORDED_SPIKE`),
  with ``S · n_steps · n · p`` spikes for ``S`` presentations of ``n`` neurons, ``p = ½ ·
  min(1, input_max_rate · dt)`` spikes per neuron and step, plus 8 bytes per count and sample;
- the test input spikes of every task, drawn once and kept for the whole run;
- the encoder's dense temporaries: ``(n_steps + 1) · n_0 · 17`` bytes per sample of one encoding
  call (the regular encoder; the Poisson encoders work in chunks of at least one sample of
  ``n_steps · n_0 · 5`` bytes);
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
           "estimate_run_memory"]

BYTES_PER_SYNAPSE = 60
"""Peak bytes per Brian2 synapse while a weight layer is built (measured ≈ 59 on the numpy target:
weight, pre/post indices, in/out counts, and the int64 index arrays handed to ``connect``)."""
BYTES_PER_INPUT_SPIKE = 100
"""Bytes per input spike of one run: the encoded trains (3 × int64), their concatenation, the
sorted flat index, step and order arrays handed to Brian2, and Brian2's own copy."""
BYTES_PER_RECORDED_SPIKE = 80
"""Bytes per recorded spike of one run: the monitor's time and index arrays (with their growth
headroom), the drained (sample, step, neuron) arrays and the recorder's sorted copy."""
BASELINE_BYTES = 600 * 2**20
"""Python with Brian2, numba, scipy, h5py and the data set loaded."""


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
                        consolidation_epochs: int = 0, encoder: str = "regular", record_spikes: bool = True,
                        test_run_samples: int | None = None) -> MemoryEstimate:
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
        Input encoder (``"poisson"`` and ``"refractory-poisson"`` encode in bounded chunks, the
        others all samples of a call at once).
    record_spikes : bool
        Whether every spike is kept for the run file.
    test_run_samples : int, optional
        Most test presentations per Brian2 run (default ``epochs · n_train``, as the loop does).

    Returns
    -------
    MemoryEstimate
    """
    sizes = [int(n) for n in spec.layer_sizes]
    batch, n_in, n_steps = int(spec.batch_size), sizes[0], int(spec.n_steps)
    p = 0.5 * min(1.0, float(spec.input_max_rate * spec.dt))   # spikes per neuron and step
    neurons = sum(sizes)
    parts = []

    synapses = batch * sum(a * b for a, b in zip(sizes, sizes[1:]))
    parts.append(("network synapses", synapses * BYTES_PER_SYNAPSE, "network.batch_size or network.hidden"))

    if lateral is not None:
        copies = batch if lateral.projection == "neural" else int(lateral.copies)
        lateral_synapses = 0
        for layer, width in enumerate(sizes[:-1]):
            grown = min(width, lateral.first_task[layer] + lateral.per_task[layer] * max(0, n_tasks - 1))
            lateral_synapses += 2 * copies * width * grown
        parts.append(("lateral circuit synapses", lateral_synapses * BYTES_PER_SYNAPSE,
                      "lateral.copies, lateral.first_task or lateral.per_task"))

    def run_bytes(samples: int) -> tuple[float, bool]:
        """Bytes of one run of ``samples`` presentations; whether recorded spikes dominate them."""
        steps = float(samples) * n_steps
        given = steps * n_in * p * BYTES_PER_INPUT_SPIKE
        recorded = steps * (neurons - n_in) * p * BYTES_PER_RECORDED_SPIKE if record_spikes else 0.0
        return given + recorded + 8.0 * samples * (neurons + 1), recorded > 4 * given

    limit = epochs * n_train if test_run_samples is None else test_run_samples
    runs = [(run_bytes(epochs * n_train), "the largest training run (all epochs of a task)",
             "protocol.epochs or data.train_size"),
            (run_bytes(consolidation_epochs * n_train), "the consolidation run of a task",
             "lateral.consolidation_epochs"),
            (run_bytes(max(n_test, min(limit, n_tasks * n_test))), "the largest evaluation run", "data.test_size")]
    (size, recorded_dominate), what, key = max(runs, key=lambda run: run[0][0])
    if n_steps > 10 ** 5:   # the number of steps per presentation is what is off
        key = "network.presentation or network.dt"
    elif recorded_dominate:
        key += ", network.hidden, or set sim.record_spikes = false"
    parts.append((what, int(size), key))

    test_spikes = float(n_tasks) * n_test * n_steps * n_in * p * 24
    parts.append(("the test input spikes of every task", int(test_spikes), "protocol.tasks or data.test_size"))

    if encoder in ("poisson", "refractory-poisson"):   # chunked, at least one sample at a time
        dense = max(64 * 2**20, float(n_steps) * n_in * 5)
    else:                                              # one dense array for all samples of a call
        dense = float(max(n_train, n_test)) * (n_steps + 1) * n_in * 17
    parts.append(("the input encoder's temporary arrays", int(dense), "network.presentation or network.dt"))

    parts.append(("the tasks' data", int(float(n_tasks) * (n_train + n_test) * n_in * 8), "protocol.tasks"))
    parts.append(("the accuracy matrix", int(3 * 8 * float(n_tasks) ** 2), "protocol.tasks"))
    return MemoryEstimate(tuple(parts))


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
