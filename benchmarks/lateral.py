"""Cost of the spiking lateral circuit per simulated second against spike count.

One spiking circuit (`sim.spiking_lateral.SpikingLateralCircuit`, Hebbian plasticity on, task 0's
neurons plastic) is driven by a `SpikeGeneratorGroup` of ``C`` copies of ``n = active + silent``
presynaptic neurons: the active ones fire Poisson trains at rates from `data.prototype_mixture_rates`
(``K`` prototypes) times ``--rate``, a new sample every 40 ms; the silent ones never fire. The circuit
starts at the input's top-K subspace (zero on silent inputs), where Oja's rule converges, with η a third
of its stability bound (`stable_eta`). Presentation boundaries (reset of traces and membranes) are a
`NetworkOperation`, as in `SimNetwork`; no LIF network is simulated, so the time measured is the
circuit's. Variants, built side by side in one process, each run once untimed (code generation,
compilation) and then ``--repeats`` times in alternation; the best (smallest) CPU time of the process
over the repeats is compared, as in ``benchmarks/throughput.py`` (the benchmark is single-threaded; on 2
shared cores other processes disturb CPU time less than wall time, which is printed too, but still
through the shared L3 cache, more for the variant with larger arrays, so the least disturbed run is the
measure; docs/benchmarks.md gives the spread):

- ``base``: ``active`` inputs at ``--rate``, ``silent`` silent inputs;
- ``2× rate``: the same inputs at twice the rate (input and subspace spikes double). Target: ≤ 2.1× the
  time of ``base``;
- ``2× silent``: twice as many silent inputs. Target: ≤ 1.2× the time of ``base``;
- ``reference``: a plain Brian2 network of the same size as ``base`` — the same input spikes, ``C·n``
  relay neurons, ``C·K`` integrate-and-fire neurons, the same connections (one-to-one drive,
  ``C·K·n`` forward synapses relay → neuron with weights ``gain·|H|``, ``C·K·n`` feedback synapses
  neuron → relay — the circuit's reciprocal synapses carry both directions in one object), plain
  ``on_pre`` additions, no plasticity, no traces.

Synaptic events are the synapse updates executed: for the circuit, ``1`` per input spike (drive),
``K`` per relay spike (forward), ``2n`` per subspace spike (the two halves of the feedback) and ``n``
more per learning spike (a spike of a plastic neuron inside the plasticity window: the plasticity
pathway);
for the reference, ``1`` per input spike, ``K`` per relay spike and ``n`` per neuron spike. From
``base`` and ``2× rate`` the CPU time per simulated second is split into a part that does not depend on
spikes and a cost per synaptic event (a line through the two points).

The default size is the neural projection's regime on the permuted-digits hidden layer (64 copies, 128
inputs, 32 subspace neurons), where synaptic events dominate; with the bundled ``lateral.copies`` (8)
and 64 inputs, Brian2's fixed cost per time step dominates and every ratio is close to 1.

What grows with silent inputs (profiled with ``--profile``): not the spikes, which stay the same, but
(1) the synaptic events — every spike of a subspace neuron updates all ``n`` of its synapses, silent
inputs included, in the feedback and plasticity pathways, as Oja's rule in synapse form asks: the
anti-Hebbian term ``−η y_i x̂_j`` acts on a silent input's weight until it is zero; (2) Brian2's per-step
threshold and state updates of the ``C·n`` relay units; (3) the memory the weights take, which the
synaptic pathways sweep through. Not the merges of the copies' changes into the shared ``H``: they skip
inputs that have not spiked and whose weights are zero (`SpikingLateralCircuit._live_columns`), which
the silent inputs here are, as at Oja's fixed point.

Prints one table with the measured numbers, the targets and PASS/MISS; exit code 0 either way.
``--profile`` adds Brian2's per-object profile of one ``base`` and one ``2× silent`` run. Usage::

    python benchmarks/lateral.py [--active N] [--silent S] [--neurons K] [--copies C] [--rate HZ]
                                 [--rate-scale HZ] [--eta HZ] [--seconds T] [--repeats R]
                                 [--target cython|numpy] [--profile]
"""
from __future__ import annotations

import argparse
import gc
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy starts OpenBLAS (see benchmarks/recording.py)

import numpy as np

RATE_TARGET = 2.1     # time(2× input rate) / time(base)
SILENT_TARGET = 1.2   # time(2× silent inputs) / time(base)
PRESENTATION_MS, DT_MS, WINDOW_MS = 40, 1.0, 20


def stable_eta(args) -> float:
    """A third of the circuit's stability bound ``η · window · copies · λ_max(E[x xᵀ]) < 1.5`` (Hz).

    ``x`` in spikes per step at the highest input rate of the benchmark (2 × ``--rate``), so every variant
    runs with the same, stable η.
    """
    rates, _ = input_rates(args)
    x = rates * 2 * args.rate * DT_MS / 1000
    lam = float(np.linalg.eigvalsh(x.T @ x / len(x))[-1])
    return 0.5 / (WINDOW_MS / 1000 * args.copies * lam)


class Variant:
    """One network of the benchmark with its input spikes, built once and run many times.

    ``counts(runs)`` returns the cumulative (relay, subspace[, learning]) spikes after ``runs`` runs;
    ``events_per_spike`` the synapse updates per (input, relay, subspace[, learning]) spike.
    """

    def __init__(self, name: str, net, input_group, indices: np.ndarray, steps: np.ndarray, counts,
                 events_per_spike: tuple[int, ...], seconds: float, n_inputs: int):
        self.name, self.net, self.input_group = name, net, input_group
        self.indices, self.steps = indices, steps
        self.counts, self.events_per_spike = counts, events_per_spike
        self.seconds, self.n_inputs = seconds, n_inputs
        self.runs = 0
        self.times: list[float] = []      # CPU seconds of each timed run (this process)
        self.walls: list[float] = []      # wall seconds of each timed run
        self.spikes = (0,) * len(events_per_spike)   # (input, relay, subspace[, learning]) spikes, last run
        self.timed_spikes: list[tuple[int, ...]] = []

    def best(self) -> tuple[float, float, int]:
        """CPU and wall seconds and synaptic events of the timed run with the least CPU time."""
        i = int(np.argmin(self.times))
        return self.times[i], self.walls[i], int(np.dot(self.events_per_spike, self.timed_spikes[i]))

    def run(self, profile: bool = False) -> tuple[float, float]:
        """Simulate ``seconds`` of input once; returns (CPU, wall) seconds, records the spikes of this run."""
        from brian2 import ms
        start = int(round(float(self.net.t / ms) / DT_MS))
        self.input_group.set_spikes(self.indices, (self.steps + start) * DT_MS * ms)
        before = self.counts(self.runs)
        gc.collect()
        gc.freeze()
        tick, cpu = time.perf_counter(), time.process_time()
        self.net.run(self.seconds * 1000 * ms, profile=profile)
        elapsed = time.process_time() - cpu, time.perf_counter() - tick
        gc.unfreeze()
        self.runs += 1
        after = self.counts(self.runs)
        self.spikes = (len(self.indices), *(a - b for a, b in zip(after, before)))
        return elapsed

    @property
    def events(self) -> int:
        """Synapse updates of the last run."""
        return int(np.dot(self.events_per_spike, self.spikes))


def input_rates(args) -> tuple[np.ndarray, np.ndarray]:
    """Rates of the active inputs (samples × active, in [0, 1]) and their top-K subspace (K × active).

    ``K`` prototypes (`data.prototype_mixture_rates`), so the circuit's ``K`` neurons all carry signal.
    """
    from hlopsim.data import prototype_mixture_rates, top_subspace

    n_samples = args.copies * int(round(args.seconds * 1000 / PRESENTATION_MS))
    rates, _ = prototype_mixture_rates(args.active, args.neurons, n_samples, np.random.default_rng(1))
    return rates, top_subspace(rates, args.neurons).T


def input_spikes(rates: np.ndarray, n_inputs: int, copies: int, rate_hz: float):
    """Flat input indices and integer time steps of Poisson trains, one sample per 40 ms and copy.

    Sample ``s`` is shown by copy ``s % C`` during presentation ``s // C``; inputs past ``rates.shape[1]``
    stay silent.
    """
    from hlopsim.data import poisson_encode

    n_steps = int(PRESENTATION_MS / DT_MS)
    spikes = poisson_encode(rates, rate_hz, DT_MS / 1000, n_steps, np.random.default_rng(2))
    copy, presentation = spikes.sample % copies, spikes.sample // copies
    return copy * n_inputs + spikes.neuron, presentation * n_steps + spikes.step


def relay_count(indices: np.ndarray, steps: np.ndarray) -> int:
    """Relay spikes of the circuit: a spike in a presentation's last step is cleared with the reset."""
    return int(np.sum(steps % int(PRESENTATION_MS / DT_MS) != PRESENTATION_MS / DT_MS - 1))


def circuit_variant(name: str, args, n_silent: int, rate_hz: float) -> Variant:
    """The spiking circuit, its neurons grown and plastic, started at the input's top-K subspace."""
    from brian2 import Hz, Network, NetworkOperation, SpikeGeneratorGroup, ms, second
    from hlopsim.models.lateral import LateralSpec
    from hlopsim.sim.spiking_lateral import SpikingLateralCircuit

    n = args.active + n_silent
    rates, subspace = input_rates(args)
    indices, steps = input_spikes(rates, n, args.copies, rate_hz)
    source = SpikeGeneratorGroup(args.copies * n, [], [] * second, dt=DT_MS * ms, name="bench_input")
    spec = LateralSpec(first_task=(args.neurons,), per_task=(0,), hebbian_rate=(args.eta * Hz,), dt=5 * ms,
                       window=WINDOW_MS * ms, copies=args.copies, neuron="spiking", rate_scale=args.rate_scale * Hz)
    circuit = SpikingLateralCircuit("bench_lateral", source, n, [args.neurons], spec, args.eta * Hz,
                                    PRESENTATION_MS * ms, DT_MS * ms, np.random.default_rng(0))
    circuit.grow(0)
    # Start where Oja's rule converges: the input's top-K subspace, zero on the never-active inputs
    # (from random rows the units would hardly fire, which is not the regime the circuit works in).
    circuit.H[:, : args.active] = subspace
    circuit.H[:, args.active:] = 0.0
    circuit._write_copies()
    net = Network(source, *circuit.objects, name="bench_network")
    boundary = NetworkOperation(lambda: circuit.start_presentation(net.t), dt=PRESENTATION_MS * ms, when="start",
                                name="bench_boundary")
    net.add(boundary)
    relayed = relay_count(indices, steps)
    variant = Variant(name, net, source, indices, steps,
                      lambda runs: (runs * relayed, sum(circuit.spike_counts()), circuit.learning_spike_count()),
                      (1, args.neurons, 2 * n, n), args.seconds, n)
    variant.circuit = circuit
    return variant


def reference_variant(args) -> Variant:
    """A plain Brian2 network with the neurons and synapse counts of the ``base`` circuit."""
    from brian2 import Network, NeuronGroup, SpikeGeneratorGroup, SpikeMonitor, Synapses, ms, second
    from hlopsim.sim.blocks import block_diagonal_indices, one_to_one_indices

    n, k, c = args.active + args.silent, args.neurons, args.copies
    rates, subspace = input_rates(args)
    indices, steps = input_spikes(rates, n, c, args.rate)
    source = SpikeGeneratorGroup(c * n, [], [] * second, dt=DT_MS * ms, name="ref_input")
    relay = NeuronGroup(c * n, "v : 1\nxhat : 1", threshold="v > 0.5", reset="v = 0", method="exact",
                        dt=DT_MS * ms, name="ref_relay")
    neurons = NeuronGroup(c * k, "v : 1", threshold="v > 1", reset="v -= 1", method="exact", dt=DT_MS * ms,
                          name="ref_neurons")
    drive = Synapses(source, relay, on_pre="v_post += 1", dt=DT_MS * ms, name="ref_drive")
    drive.connect(i=one_to_one_indices(c, n)[0], j=one_to_one_indices(c, n)[1])
    forward = Synapses(relay, neurons, "w : 1", on_pre="v_post += w", dt=DT_MS * ms, name="ref_forward")
    pre, post = block_diagonal_indices(c, n, k)
    forward.connect(i=pre, j=post)
    feedback = Synapses(neurons, relay, "w : 1", on_pre="xhat_post += w", dt=DT_MS * ms, name="ref_feedback")
    feedback.connect(i=post, j=pre)
    # Weights: |H| of the circuit's starting rows, scaled as its drive (rate_scale · dt per unit of y).
    H = np.zeros((k, n))
    H[:, : args.active] = subspace
    forward.w = np.tile(np.abs(H).ravel(), c) * args.rate_scale * DT_MS / 1000
    feedback.w = np.tile(np.abs(H).ravel(), c)
    monitors = [SpikeMonitor(relay, record=False, name="ref_relay_count"),
                SpikeMonitor(neurons, record=False, name="ref_neuron_count")]
    net = Network(source, relay, neurons, drive, forward, feedback, *monitors, name="ref_network")
    return Variant("reference", net, source, indices, steps,
                   lambda runs: (int(monitors[0].num_spikes), int(monitors[1].num_spikes)), (1, k, n), args.seconds, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--active", type=int, default=128, help="active presynaptic neurons per copy")
    parser.add_argument("--silent", type=int, default=128, help="silent presynaptic neurons per copy (base)")
    parser.add_argument("--neurons", type=int, default=32, help="subspace neurons K (ON/OFF pairs)")
    parser.add_argument("--copies", type=int, default=64, help="copies of the circuit (lateral.copies)")
    parser.add_argument("--rate", type=float, default=200.0, help="input rate of a full-intensity input, Hz (base)")
    parser.add_argument("--rate-scale", type=float, default=200.0, help="lateral.rate_scale, Hz")
    parser.add_argument("--eta", type=float, default=None,
                        help="Hebbian rate, Hz (default: a third of the stability bound, see stable_eta)")
    parser.add_argument("--seconds", type=float, default=1.0, help="simulated seconds per timed run")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per variant (best compared)")
    parser.add_argument("--target", default="cython", choices=["cython", "numpy"])
    parser.add_argument("--profile", action="store_true", help="print Brian2's per-object profile (base, 2× silent)")
    args = parser.parse_args()

    from hlopsim.sim import prefs
    prefs.configure(args.target)
    if args.eta is None:
        args.eta = stable_eta(args)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    variants = [circuit_variant("base", args, args.silent, args.rate),
                circuit_variant("2× rate", args, args.silent, 2 * args.rate),
                circuit_variant("2× silent", args, 2 * args.silent, args.rate),
                reference_variant(args)]
    for variant in variants:      # untimed: code generation, compilation, first-run set-up
        variant.run()
    for _ in range(args.repeats):
        for variant in variants:
            cpu, wall = variant.run()
            variant.times.append(cpu)
            variant.walls.append(wall)
            variant.timed_spikes.append(variant.spikes)
    if args.profile:
        from brian2 import profiling_summary
        for variant in variants[0], variants[2]:
            variant.run(profile=True)
            print(f"\nprofile of one {variant.seconds:g} s run, {variant.name}:")
            print(profiling_summary(variant.net, show=12))

    best = {v.name: v.best() for v in variants}     # (CPU s, wall s, events) of each variant's best run
    cpu = {name: b[0] for name, b in best.items()}
    events = {name: b[2] for name, b in best.items()}
    base, rate2, silent2, ref = (v.name for v in variants)
    rate_ratio, silent_ratio = cpu[rate2] / cpu[base], cpu[silent2] / cpu[base]
    print(f"spiking lateral circuit, {args.copies} copies × ({args.active} active + {args.silent} silent inputs, "
          f"{args.neurons} subspace neurons), rate_scale {args.rate_scale:g} Hz, η {args.eta:.3g} Hz, plasticity on; "
          f"input up to {args.rate:g} Hz, {PRESENTATION_MS} ms per sample; target {args.target}")
    print(f"timed: {args.repeats} × {args.seconds:g} s simulated per variant, alternating, after one untimed run; the "
          f"run with the least CPU time of each is shown; load average (1 min) at start / end: {load_start:.2f} / "
          f"{os.getloadavg()[0]:.2f}")
    head = f"{'variant':10s} {'inputs':>6s} {'CPU s / sim s':>13s} {'wall s / sim s':>14s} {'input spikes':>12s} " \
           f"{'subspace spikes':>15s} {'syn. events':>11s} {'events/s':>10s}"
    print(head + "\n" + "-" * len(head))
    for v in variants:
        spikes = v.timed_spikes[int(np.argmin(v.times))]
        print(f"{v.name:10s} {v.n_inputs:6d} {cpu[v.name] / v.seconds:13.3f} {best[v.name][1] / v.seconds:14.3f} "
              f"{spikes[0]:12d} {spikes[2]:15d} {events[v.name]:11.3g} {events[v.name] / cpu[v.name]:10.3g}")
    print("(CPU s of each timed run: " + "; ".join(f"{v.name} " + ", ".join(f"{t:.2f}" for t in v.times)
                                                   for v in variants) + ")")
    # CPU s per simulated second = fixed + per_event · events per simulated second (through base, 2× rate).
    per_event = (cpu[rate2] - cpu[base]) / (events[rate2] - events[base])
    fixed = (cpu[base] - per_event * events[base]) / args.seconds
    spikes = {v.name: v.timed_spikes[int(np.argmin(v.times))] for v in variants}
    rows = [
        ("CPU time(2× input rate) / time(base)", f"{rate_ratio:.2f}", f"≤ {RATE_TARGET}", rate_ratio <= RATE_TARGET),
        ("  spikes(2× input rate) / spikes(base), input / subspace",
         f"{spikes[rate2][0] / spikes[base][0]:.2f} / {spikes[rate2][2] / spikes[base][2]:.2f}", "", None),
        ("CPU time(2× silent inputs) / time(base)", f"{silent_ratio:.2f}", f"≤ {SILENT_TARGET}",
         silent_ratio <= SILENT_TARGET),
        ("  events(2× silent inputs) / events(base)", f"{events[silent2] / events[base]:.2f}", "", None),
        ("CPU s per simulated s without spikes (line through base, 2× rate)", f"{fixed:.3f}", "", None),
        ("CPU ns per synaptic event (slope of that line)", f"{per_event * 1e9:.1f}", "", None),
        ("synaptic events per CPU second, circuit (base)", f"{events[base] / cpu[base]:.3g}", "", None),
        ("synaptic events per CPU second, plain Brian2 reference", f"{events[ref] / cpu[ref]:.3g}", "", None),
        ("  circuit / reference", f"{(events[base] / cpu[base]) / (events[ref] / cpu[ref]):.2f}", "", None),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':{width}s}  {'value':>11s}  {'target':>7s}  result")
    for name, value, target, ok in rows:
        print(f"{name:{width}s}  {value:>11s}  {target:>7s}  {'' if ok is None else 'PASS' if ok else 'MISS'}")
    print(f"benchmark wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
