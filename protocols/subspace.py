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

The Brian2 circuits run with ``lateral.projection = "neural"`` (their ``H`` is bit-identical to a
closed-form run), so each also reports the relative error of its own residual, read with only task 0's
frozen neurons feeding back, against the closed form ``a − H_oldᵀ(H_old a)`` during task 1
(``‖r − a_⊥‖_F / ‖a_⊥‖_F`` per batch, averaged; attribute ``projection_error`` of its group).

Output: an HDF5 file (``/<circuit>/H`` of shape (checkpoints, K, n), ``samples``, ``task``,
``angle``, ``orthonormality``, ``seconds``), a PNG with both measures against presented samples for
every circuit, and a printed table.

Sweep (``[sweep]``: ``rate_scale``, ``presentation``, lists of values with units; empty = no sweep).
The spiking circuit is run again at every combination of the listed rate scales (ON/OFF rate per unit
of ``y``) and presentation lengths (the burst length of each sample, in steps of ``network.dt``; the
other key keeps its base value when only one is listed), on the same streams. Fidelity — the final
largest angle and ``‖HHᵀ − I‖_F`` of each task's neurons, and the relative error of the circuit's
neural projection against the closed form during task 1 (``‖r − a_⊥‖_F / ‖a_⊥‖_F``, averaged over the
batches; the sweep runs build the circuit with ``lateral.projection = "neural"``, whose readout adds
two event-driven updates per spike but leaves ``H`` bit-identical) — is set against cost: wall time of
the run, its simulation part (wall time minus the Brian2 runs it took times the wall time of a run of
no samples, measured on the same network afterwards: Brian2 sets up every code object again at each
``run()``, a fixed cost per run that is the same at every point) and subspace spikes (ON + OFF, all
copies) per presented sample. Every point first runs one batch in a throwaway network, untimed, so
that a new presentation length's Brian2 code is compiled (cython) before the timed run. All points are checked before anything runs: a non-positive or
unit-less value, a rate scale of one spike per step or more, a presentation that is not a whole number
of ``dt`` or shorter than ``lateral.window`` is a `ValueError` naming the value. Results: ``/sweep`` in
the HDF5 file (one row per point) and a second printed table.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.linalg import subspace_angles

from hlopsim.data import SpikeTrains, prototype_mixture_rates, regular_encode, poisson_encode, top_subspace
from hlopsim.protocols.experiment.config import to_text

CIRCUITS = ("graded", "spiking", "discrete")
SWEEP_KEYS = ("rate_scale", "presentation")   # [sweep] keys: lateral.rate_scale, network.presentation


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
    spikes: int | None = None                  # spiking: ON + OFF spikes of all subspace units, all copies
    runs: int = 0                              # Brian2 runs (present calls) the run took
    run_overhead: float = float("nan")         # wall s of one run of no samples (Brian2's fixed cost per run)
    projection_error: float = float("nan")     # neural projection vs closed form during task 1 (Brian2 circuits)
    setting: dict | None = None                # sweep point: {"rate_scale": "150 Hz", "presentation": "40 ms"}

    @property
    def simulation_seconds(self) -> float:
        """Wall time minus Brian2's fixed cost per run (code-object set-up), i.e. the time-stepping."""
        return self.seconds - self.runs * self.run_overhead

    @property
    def presented(self) -> int:
        """Samples presented over both tasks."""
        return self.samples[-1] if self.samples else 0


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


def _brian_specs(kind: str, config: dict, projection: str = "closed-form"):
    """The `NetworkSpec` (no hidden layer) and `LateralSpec` of one Brian2 circuit run."""
    from hlopsim.models.from_config import lateral_spec, network_spec

    s, lat = config["stream"], config["lateral"]
    net_section = dict(config["network"], hidden=[], init_gain=1.0, tau_m="100 ms", v_threshold="20 mV")
    spec = network_spec(net_section, s["inputs"], 2)
    section = {"first_task": [s["rank"]], "per_task": [s["rank"]], "hebbian_rate": [lat["hebbian_rate"]],
               "spiking_hebbian_rate": [lat["spiking_hebbian_rate"]], "dt": lat["dt"], "window": lat["window"],
               "copies": lat["copies"], "neuron": kind, "projection": projection}
    if kind == "spiking":
        section.update(rate_scale=lat["rate_scale"], trace_tau=lat["trace_tau"])
    lateral = lateral_spec(section)
    return spec, lateral


def run_brian_circuit(kind: str, config: dict, rates: list[np.ndarray], seed: int, *,
                      projection: str = "closed-form", run_overhead: bool = False) -> Trace:
    """Drive a Brian2 lateral circuit of kind ``graded`` or ``spiking`` with the two streams.

    With ``projection = "neural"`` the relative error of the circuit's residual against the closed
    form is measured at every batch boundary of task 1 (`Trace.projection_error`, the mean). With
    ``run_overhead``, three runs of no samples follow the timed run (median: `Trace.run_overhead`).
    """
    from brian2 import Hz, second
    from hlopsim.sim.network import SimNetwork

    s = config["stream"]
    spec, lateral = _brian_specs(kind, config, projection)
    net = SimNetwork(spec, np.random.default_rng(seed), lateral=lateral, n_tasks=2, record_spikes=False)
    circuit = net.lateral[0]
    errors = []

    def on_batch(batch):
        if circuit.n_frozen:
            errors.append(circuit.projection_error(batch.rates[0]))
        return False

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
                net.present(spikes, on_batch=on_batch if projection == "neural" else None)
                trace.runs += 1
                presented += len(chunk)
                H_task = circuit.grown_H[circuit.n_frozen:]
                reference = (references or _references(rates, H_task, s["rank"], rate_hz * dt_s))[task]
                _record(trace, presented, task, H_task, reference, circuit.H)
        net.set_lateral_learning(False)
        circuit.freeze()
    trace.seconds = time.perf_counter() - started
    if run_overhead:
        nothing = SpikeTrains(sample=np.zeros(0, np.int64), step=np.zeros(0, np.int64), neuron=np.zeros(0, np.int64),
                              n_samples=0, n_neurons=s["inputs"], n_steps=n_steps)
        times = []
        for _ in range(3):
            tick = time.perf_counter()
            net.present(nothing)
            times.append(time.perf_counter() - tick)
        trace.run_overhead = float(np.median(times))
    if kind == "spiking":
        trace.spikes = sum(circuit.spike_counts())
    if errors:
        trace.projection_error = float(np.mean(errors))
    return trace


def sweep_points(config: dict) -> list[dict]:
    """The ``[sweep]`` combinations as ``{"rate_scale": text, "presentation": text}``, all checked.

    Empty when no sweep is configured. Raises ValueError (naming the key and value) for a point the
    spiking circuit cannot simulate; nothing has run or been written then.
    """
    from brian2 import Hz, ms
    from hlopsim.models.quantities import parse_quantity
    from hlopsim.sim.spiking_lateral import check_spiking_settings

    sweep = config.get("sweep", {})
    values = {key: list(sweep.get(key) or []) for key in SWEEP_KEYS}
    if not any(values.values()):
        return []
    for key, unit in (("rate_scale", Hz), ("presentation", ms)):
        for text in values[key]:
            parse_quantity(text, unit, name=f"sweep.{key}", positive=True)
    values["rate_scale"] = values["rate_scale"] or [config["lateral"]["rate_scale"]]
    values["presentation"] = values["presentation"] or [config["network"]["presentation"]]
    points = [{"rate_scale": r, "presentation": p} for p in values["presentation"] for r in values["rate_scale"]]
    for point in points:
        try:
            spec, lateral = _brian_specs("spiking", _with_setting(config, point), "neural")
            check_spiking_settings(lateral, spec.presentation, spec.dt)
        except ValueError as err:
            raise ValueError(f"sweep point rate_scale = {point['rate_scale']!r}, presentation = "
                             f"{point['presentation']!r}: {err}") from None
    return points


def _with_setting(config: dict, point: dict) -> dict:
    """``config`` with one sweep point's rate scale and presentation."""
    changed = {section: dict(values) for section, values in config.items()}
    changed["lateral"]["rate_scale"] = point["rate_scale"]
    changed["network"]["presentation"] = point["presentation"]
    return changed


def run_sweep_point(config: dict, point: dict, rates: list[np.ndarray], seed: int) -> Trace:
    """The spiking circuit at one sweep point: an untimed warm-up batch, then the timed run."""
    from brian2 import Hz, second
    from hlopsim.sim.network import SimNetwork

    config = _with_setting(config, point)
    spec, lateral = _brian_specs("spiking", config, "neural")
    warm = SimNetwork(spec, np.random.default_rng(seed), lateral=lateral, n_tasks=2, record_spikes=False)
    warm.lateral[0].grow(0)
    warm.set_lateral_learning(True)
    warm.present(regular_encode(rates[0][: spec.batch_size], float(spec.input_max_rate / Hz),
                                float(spec.dt / second), spec.n_steps))
    del warm
    trace = run_brian_circuit("spiking", config, rates, seed, projection="neural", run_overhead=True)
    trace.setting = dict(point)
    return trace


def run_discrete(config: dict, rates: list[np.ndarray], seed: int) -> Trace:
    """The authors' discrete rule (a Numba kernel) on the same rates, in spikes per step."""
    from hlopsim.sim.kernels import oja_discrete

    s, d = config["stream"], config["discrete"]
    from hlopsim.models.quantities import parse_quantity
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
    from hlopsim.sim import prefs

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
    points = sweep_points(config)
    prefs.configure(config["sim"]["target"])
    seed = config["protocol"]["seed"]
    rates = _streams(config, np.random.default_rng(seed))
    traces = []
    for kind in circuits:
        # The Brian2 circuits run with the neural readout: H is bit-identical to a closed-form run and
        # the table can report how far the circuit's own residual is from a − H_oldᵀ(H_old a).
        traces.append(run_discrete(config, rates, seed) if kind == "discrete"
                      else run_brian_circuit(kind, config, rates, seed, projection="neural"))
    sweep = [run_sweep_point(config, point, rates, seed) for point in points]
    _write(out, config, traces, sweep)
    _plot(out.with_suffix(".png"), traces)
    return traces + sweep


def _write(out: Path, config: dict, traces: list[Trace], sweep: list[Trace]) -> None:
    """Circuits as ``/<circuit>/…``; sweep points as ``/sweep/<i>/…`` (same datasets) and one row each
    in the ``/sweep`` summary datasets."""
    from brian2 import Hz, ms
    from hlopsim.models.quantities import parse_quantity

    with h5py.File(out, "w") as f:
        f.attrs.update({"format": "hlopsim-subspace", "format_version": 1, "config": to_text(config)})
        for t in traces:
            _write_trace(f.create_group(t.circuit), t)
        if not sweep:
            return
        g = f.create_group("sweep")
        for i, t in enumerate(sweep):
            _write_trace(g.create_group(str(i)), t)
        rows = [_final(t) for t in sweep]
        g.create_dataset("rate_scale_hz", data=[float(parse_quantity(t.setting["rate_scale"], Hz) / Hz) for t in sweep])
        g.create_dataset("presentation_ms", data=[float(parse_quantity(t.setting["presentation"], ms) / ms)
                                                  for t in sweep])
        g.create_dataset("angle", data=[[r[task][0] for task in (0, 1)] for r in rows])            # (P, 2) degrees
        g.create_dataset("orthonormality", data=[[r[task][1] for task in (0, 1)] for r in rows])   # (P, 2)
        g.create_dataset("projection_error", data=[t.projection_error for t in sweep])
        g.create_dataset("seconds", data=[t.seconds for t in sweep])
        g.create_dataset("simulation_seconds", data=[t.simulation_seconds for t in sweep])
        g.create_dataset("run_overhead", data=[t.run_overhead for t in sweep])
        g.create_dataset("runs", data=[t.runs for t in sweep])
        g.create_dataset("spikes", data=[t.spikes for t in sweep])
        g.create_dataset("samples", data=[t.presented for t in sweep])
        g.attrs["columns"] = ("one row per point; angle, orthonormality: final value of task 0 and task 1's neurons; "
                              "projection_error: mean relative error of the neural residual during task 1; "
                              "seconds: wall time of the run; run_overhead: wall s of one Brian2 run of no samples; "
                              "simulation_seconds = seconds - runs * run_overhead; spikes: ON + OFF spikes over both "
                              "tasks, all copies")


def _write_trace(g, t: Trace) -> None:
    g.create_dataset("H", data=np.stack(t.H), compression="lzf")
    for name in ("samples", "task", "angle", "orthonormality"):
        g.create_dataset(name, data=np.asarray(getattr(t, name)))
    g.attrs["seconds"] = t.seconds
    if np.isfinite(t.projection_error):
        g.attrs["projection_error"] = t.projection_error
    if t.spikes is not None:
        g.attrs["spikes"] = t.spikes
    if t.setting is not None:
        g.attrs.update(t.setting)


def _final(t: Trace) -> dict[int, tuple[float, float]]:
    """Final (angle, orthonormality) of each task's neurons."""
    last = {task: max(i for i, k in enumerate(t.task) if k == task) for task in (0, 1)}
    return {task: (t.angle[i], t.orthonormality[i]) for task, i in last.items()}


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
    """Final angle and orthonormality per circuit and task; then the sweep's fidelity against cost."""
    rows = [f"{'circuit':9s} {'task':>4s} {'max angle °':>12s} {'‖HHᵀ−I‖_F':>11s} {'a_⊥ error %':>11s} "
            f"{'wall s':>7s}", "-" * 59]
    for t in traces:
        if t.setting is None:
            for task, (angle, ortho) in _final(t).items():
                error = f"{100 * t.projection_error:11.2f}" if task == 1 and np.isfinite(t.projection_error) else f"{'–':>11s}"
                rows.append(f"{t.circuit:9s} {task:4d} {angle:12.2f} {ortho:11.3f} {error} {t.seconds:7.1f}")
    sweep = [t for t in traces if t.setting is not None]
    if sweep:
        head = (f"{'rate_scale':>10s} {'presentation':>12s} {'max angle ° t0/t1':>18s} {'‖HHᵀ−I‖_F t0/t1':>17s} "
                f"{'a_⊥ error %':>11s} {'wall s':>7s} {'sim s':>6s} {'spikes/sample':>13s}")
        rows += ["", "sweep: spiking circuit, fidelity against cost", head, "-" * len(head)]
        for t in sweep:
            final = _final(t)
            rows.append(f"{t.setting['rate_scale']:>10s} {t.setting['presentation']:>12s} "
                        f"{final[0][0]:8.2f} / {final[1][0]:7.2f} {final[0][1]:7.3f} / {final[1][1]:7.3f} "
                        f"{100 * t.projection_error:11.2f} {t.seconds:7.1f} {t.simulation_seconds:6.1f} "
                        f"{t.spikes / t.presented:13.1f}")
    return "\n".join(rows)
