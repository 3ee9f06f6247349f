"""The ``subspace-convergence`` protocol: a lateral circuit against Oja's rule in closed form.

Two synthetic streams ("tasks") with known low-dimensional subspaces drive one lateral circuit in
turn. Task 0 grows ``rank`` neurons that should learn the top-``rank`` PCA subspace of stream A;
they freeze, and task 1's new neurons should learn the top subspace of stream B's residual after
the frozen ones. Each Brian2 circuit named in the configuration (``graded``, ``spiking``) and the
authors' discrete rule (``discrete``) see the same rates; H is recorded at regular checkpoints.

Measured at every checkpoint, for the neurons of the current task:

- ``angle``: largest principal angle (degrees) between their rows and the reference subspace
  (top-``rank`` right singular vectors of the stream's rate vectors, or of their residual after the
  frozen neurons);
- ``orthonormality``: ``‖H Hᵀ − I‖_F`` over those rows.

Output: an HDF5 file (``/<circuit>/H`` of shape (checkpoints, K, n), ``samples``, ``task``,
``angle``, ``orthonormality``, ``seconds``), a PNG with both measures against presented samples for
every circuit, and a printed table.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.linalg import subspace_angles

from data import prototype_mixture_rates, regular_encode, poisson_encode, top_subspace
from protocols.config import to_text

CIRCUITS = ("graded", "spiking", "discrete")


@dataclass
class Trace:
    """What one circuit did over the two tasks, one entry per checkpoint."""

    circuit: str
    samples: list[int]
    task: list[int]
    angle: list[float]
    orthonormality: list[float]
    H: list[np.ndarray]
    seconds: float = 0.0


def _measure(H_task: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    angle = float(np.degrees(subspace_angles(H_task.T, reference)).max())
    ortho = float(np.linalg.norm(H_task @ H_task.T - np.eye(len(H_task))))
    return angle, ortho


def _streams(config: dict, rng: np.random.Generator) -> list[np.ndarray]:
    s = config["stream"]
    return [prototype_mixture_rates(s["inputs"], s["rank"], s["samples"], rng, concentration=s["concentration"],
                                    noise=s["noise"])[0] for _ in range(2)]


def _references(rates: list[np.ndarray], frozen_after_first: np.ndarray, rank: int, scale: float) -> list[np.ndarray]:
    """Reference subspaces of the two tasks (of x in spikes per step; scale does not change them)."""
    first = top_subspace(rates[0] * scale, rank)
    second_x = rates[1] * scale
    residual = second_x - (second_x @ frozen_after_first.T) @ frozen_after_first
    return [first, top_subspace(residual, rank)]


def run_brian_circuit(kind: str, config: dict, rates: list[np.ndarray], seed: int) -> Trace:
    """Drive a Brian2 lateral circuit of kind ``graded`` or ``spiking`` with the two streams."""
    from brian2 import Hz, second
    from models.from_config import network_spec
    from models.lateral import LateralSpec
    from models.quantities import parse_quantity
    from sim.network import SimNetwork

    s, lat = config["stream"], config["lateral"]
    net_section = dict(config["network"], hidden=[], init_gain=1.0, tau_m="100 ms", v_threshold="20 mV")
    spec = network_spec(net_section, s["inputs"], 2)
    rate_key = "spiking_hebbian_rate" if kind == "spiking" else "hebbian_rate"
    spiking = {} if kind != "spiking" else {
        "rate_scale": parse_quantity(lat["rate_scale"], Hz, name="lateral.rate_scale", positive=True),
        "trace_tau": parse_quantity(lat["trace_tau"], second, name="lateral.trace_tau", positive=True)}
    lateral = LateralSpec(first_task=(s["rank"],), per_task=(s["rank"],),
                          hebbian_rate=(parse_quantity(lat[rate_key], Hz, name=f"lateral.{rate_key}",
                                                       positive=True),), **spiking,
                          dt=parse_quantity(lat["dt"], second, name="lateral.dt", positive=True),
                          window=parse_quantity(lat["window"], second, name="lateral.window", positive=True),
                          copies=lat["copies"], neuron=kind)
    net = SimNetwork(spec, np.random.default_rng(seed), lateral=lateral, n_tasks=2, record_spikes=False)
    circuit = net.lateral[0]
    rate_hz, dt_s, n_steps = float(spec.input_max_rate / Hz), float(spec.dt / second), spec.n_steps
    spike_rng = np.random.default_rng(seed + 1)
    trace = Trace(kind, [], [], [], [], [])
    presented, started = 0, time.perf_counter()
    references = None
    for task, x in enumerate(rates):
        circuit.grow(task)
        net.set_lateral_learning(True)
        if task == 1:
            references = _references(rates, circuit.frozen_H.copy(), s["rank"], rate_hz * dt_s)
        for _ in range(s["passes"]):
            for chunk in np.array_split(np.arange(len(x)), s["checkpoints"]):
                if s["encoder"] == "poisson":
                    spikes = poisson_encode(x[chunk], rate_hz, dt_s, n_steps, spike_rng)
                else:
                    spikes = regular_encode(x[chunk], rate_hz, dt_s, n_steps)
                net.present(spikes)
                presented += len(chunk)
                H_task = circuit.grown_H[circuit.n_frozen:]
                reference = (references or _references(rates, H_task, s["rank"], rate_hz * dt_s))[task]
                _record(trace, presented, task, H_task, reference, circuit.H)
        net.set_lateral_learning(False)
        circuit.freeze()
    trace.seconds = time.perf_counter() - started
    return trace


def run_discrete(config: dict, rates: list[np.ndarray], seed: int) -> Trace:
    """The authors' discrete rule (a Numba kernel) on the same rates, in spikes per step."""
    from sim.kernels import oja_discrete

    s, d = config["stream"], config["discrete"]
    from models.quantities import parse_quantity
    from brian2 import Hz, second
    scale = float(parse_quantity(config["network"]["input_max_rate"], Hz, name="network.input_max_rate",
                                 positive=True) / Hz) * float(parse_quantity(config["network"]["dt"], second,
                                                                              name="network.dt", positive=True) / second)
    rng = np.random.default_rng(seed)
    k, n = s["rank"], s["inputs"]
    H = np.zeros((2 * k, n))
    velocity = np.zeros_like(H)
    trace = Trace("discrete", [], [], [], [], [])
    presented, started = 0, time.perf_counter()
    references = None
    for task, x in enumerate(rates):
        rows = rng.normal(size=(k, n))
        frozen = H[: task * k]
        rows -= (rows @ frozen.T) @ frozen
        H[task * k:(task + 1) * k] = np.linalg.qr(rows.T)[0].T
        if task == 1:
            references = _references(rates, H[:k].copy(), k, scale)
        for _ in range(s["passes"]):
            for chunk in np.array_split(np.arange(len(x)), s["checkpoints"]):
                for batch in np.array_split(chunk, max(1, len(chunk) // d["batch"])):
                    oja_discrete(H[: (task + 1) * k], np.ascontiguousarray(x[batch] * scale), d["lr"],
                                 velocity[: (task + 1) * k], task * k)
                presented += len(chunk)
                H_task = H[task * k:(task + 1) * k]
                reference = (references or _references(rates, H_task, k, scale))[task]
                _record(trace, presented, task, H_task, reference, H)
    trace.seconds = time.perf_counter() - started
    return trace


def _record(trace: Trace, presented: int, task: int, H_task: np.ndarray, reference: np.ndarray, H: np.ndarray):
    angle, ortho = _measure(H_task, reference)
    trace.samples.append(presented)
    trace.task.append(task)
    trace.angle.append(angle)
    trace.orthonormality.append(ortho)
    trace.H.append(H.copy())


def run_subspace(config: dict, out: Path, *, overwrite: bool = False) -> list[Trace]:
    """Run every configured circuit on the same two streams; write ``out`` (HDF5) and its PNG."""
    from sim import prefs

    circuits = config["protocol"]["circuits"]
    for kind in circuits:
        if kind not in CIRCUITS:
            raise ValueError(f"protocol.circuits: {kind!r} is unknown; expected any of {', '.join(CIRCUITS)}")
    s = config["stream"]
    for key in ("inputs", "rank", "samples", "passes", "checkpoints"):
        if not s[key] >= 1:
            raise ValueError(f"stream.{key} = {s[key]} must be at least 1")
    if not 2 * s["rank"] <= s["inputs"]:
        raise ValueError(f"stream.rank = {s['rank']}: two tasks need 2·rank ≤ stream.inputs = {s['inputs']}")
    if s["encoder"] not in ("regular", "poisson"):
        raise ValueError(f"stream.encoder = {s['encoder']!r} is unknown; expected 'regular' or 'poisson'")
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out {str(out)!r} exists; pass --overwrite to replace it")
    prefs.configure(config["sim"]["target"])
    seed = config["protocol"]["seed"]
    rates = _streams(config, np.random.default_rng(seed))
    traces = []
    for kind in circuits:
        traces.append(run_discrete(config, rates, seed) if kind == "discrete"
                      else run_brian_circuit(kind, config, rates, seed))
    _write(out, config, traces)
    _plot(out.with_suffix(".png"), traces)
    return traces


def _write(out: Path, config: dict, traces: list[Trace]) -> None:
    with h5py.File(out, "w") as f:
        f.attrs.update({"format": "hlopsim-subspace", "format_version": 1, "config": to_text(config)})
        for t in traces:
            g = f.create_group(t.circuit)
            g.create_dataset("H", data=np.stack(t.H), compression="lzf")
            for name in ("samples", "task", "angle", "orthonormality"):
                g.create_dataset(name, data=np.asarray(getattr(t, name)))
            g.attrs["seconds"] = t.seconds


def _plot(path: Path, traces: list[Trace]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_angle, ax_ortho) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for t in traces:
        ax_angle.plot(t.samples, t.angle, marker=".", label=t.circuit)
        ax_ortho.plot(t.samples, t.orthonormality, marker=".", label=t.circuit)
    boundary = traces[0].samples[traces[0].task.index(1)] if 1 in traces[0].task else None
    for ax in (ax_angle, ax_ortho):
        if boundary is not None:
            ax.axvline(boundary - 0.5 * (traces[0].samples[1] - traces[0].samples[0]), color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    ax_angle.set_ylabel("largest principal angle (°)")
    ax_ortho.set_ylabel("‖HHᵀ − I‖_F (current task's neurons)")
    ax_ortho.set_xlabel("samples presented (task 0, then task 1 after the dotted line)")
    ax_angle.legend()
    ax_angle.set_title("Lateral circuit vs. the top PCA subspace of its input")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(traces: list[Trace]) -> str:
    """Final angle and orthonormality per circuit and task."""
    rows = [f"{'circuit':9s} {'task':>4s} {'max angle °':>12s} {'‖HHᵀ−I‖_F':>11s} {'wall s':>7s}", "-" * 47]
    for t in traces:
        for task in (0, 1):
            last = max(i for i, k in enumerate(t.task) if k == task)
            rows.append(f"{t.circuit:9s} {task:4d} {t.angle[last]:12.2f} {t.orthonormality[last]:11.3f} {t.seconds:7.1f}")
    return "\n".join(rows)
