"""Training cost against spike density: hlopsim's event-driven epochs at scaled firing rates, and a dense reference.

Every firing rate of the network is scaled by ``s`` (``--scales``): the input's maximum rate becomes
``s × network.input_max_rate`` and every neuron's threshold is raised (or lowered) by a factor ``f_s``
chosen so that the hidden layers' mean rate is ``s ×`` its rate at ``s = 1``. At each scale the same
training epoch (task 1 of ``--methods`` on the permuted-digits training set, batches of
``network.batch_size``, the supervised update at every batch boundary, HLOP's frozen rows projecting) is
timed twice over the same input spikes (Poisson, as ``benchmarks/throughput.py``):

- ``hlopsim``: `SimNetwork.present` with the update in its batch callback, as `protocols.experiment.loop`
  trains, after one untimed warm-up epoch (learning on; `Variant`);
- ``dense`` (`DenseReference`): the same network and work as a numpy time-step simulation. Per step
  ``v_l ← v_l·exp(−dt/τ_m)``, ``s_l = [v_l > θ]``, ``v_l += s_{l−1} W_lᵀ`` (a dense float64 BLAS product of
  the batch's ``B × n_{l−1}`` spike matrix, whatever it holds), ``v_l −= θ s_l`` (`dense_present`); per
  batch `sim.learning.credit` with the network's rate maps and `sim.learning.apply_update` with the
  method's projections; for HLOP also Oja's step of the circuits ``ΔH = η dt_L Σ_c y_c (x_c − Hᵀy_c)ᵀ`` on
  the plastic rows, ``y_c = H x_c``, in ``lateral.copies`` copies at every lateral step inside the
  plasticity window (``x_c`` the presynaptic count so far over ``n_steps``). Its cost does not depend on
  the spike density. Its spikes are hlopsim's (`tests/test_rate_scaling.py`: equal counts with
  learning off; the ``dense_hid`` column is the hidden density it measured while training).

All networks (one per method and scale) are built first; then ``--repeats`` rounds, in each of which every
one trains one timed epoch with hlopsim and one with the dense reference in turn, so that a change of the
machine's load reaches them all; each keeps its smallest time. Times are the process's CPU time with BLAS
held to one thread (threadpoolctl; hlopsim's credit uses a BLAS product too): the work of one core, less
disturbed by other processes on a shared machine than wall time.

Every epoch, warm-up included, starts from the same weights: those `SimNetwork` draws (seed 0) after one
training epoch at ``s = 1`` by the dense twin (fine-tuning), so that the rates the threshold is calibrated
on are those the timed epochs see (the first epoch from random weights changes them most).

How the threshold is raised. hlopsim counts weights in units of the neuron's spike cost, which for the
built-in ``lif`` *is* ``network.v_threshold``: raising that key alone scales the weights (volt) with the
threshold and changes no spike. So at ``s ≠ 1`` every neuron is the leaky integrate-and-fire neuron with
threshold and subtractive reset ``f_s × v_threshold`` and the spike cost (weight unit) kept at
``v_threshold`` (`raised_lif`); its rate map ``≈ clip(u / f_s, 0, 1)`` is measured by `sim.transfer` for
the credit assignment, at ``s = 1`` (``f = 1``, the built-in ``lif``'s dynamics) too, so that every scale's
credit runs the same kernel.

How ``f_s`` is found (`threshold_factor`): bisection on ``log f`` over [1/8, 64] (24 halvings), each step
simulating the first ``--calibration-samples`` training samples with learning off in the dense simulation
from the starting weights, input Poisson at ``s × input_max_rate`` (one fixed draw per scale); target: the
mean rate of all hidden neurons ``= s ×`` that at ``s = 1``. The factor and the density it gives are printed.
Input rates scale exactly; an integrate-and-fire layer's rate follows its input nearly linearly, so
``f_s`` stays near 1 and only corrects the rectification.

Printed per method and scale: spikes per neuron per step of every population over hlopsim's fastest timed
epoch, the hidden layers' pooled density, hlopsim's training samples/s, seconds per epoch and speed-up
against ``s = 1``, the dense reference's samples/s and hidden density, and hlopsim's speed over the dense
reference's (``hl/dense``). Then per method: the target (``s = 0.5`` at least 1.7× faster than ``s = 1``:
met/missed); the crossover, the hidden density below which hlopsim's epoch is faster than the dense
reference's, by log-log interpolation of ``hl/dense`` between neighbouring measured densities; and a
least-squares line ``seconds = fixed + slope × hidden density``: the part of hlopsim's epoch that does
not depend on the spikes, and where the line would meet the dense reference's time (extrapolated).
``--profile`` adds Brian2's time per object over the timed epochs (``batch_boundary`` holds the update).
A method whose lateral circuit diverges at a scale is reported and skipped there. Exit code 0 (bad
arguments: one line, exit 2). Usage::

    python benchmarks/rate_scaling.py [--net 64-800-800-10] [--methods finetune,hlop] [--scales 1,0.5,0.25,0.125]
                                      [--samples N] [--repeats R] [--calibration-samples N]
                                      [--target cython|numpy] [--profile] [--quick]

``--quick``: a 64-32-10 network, 128 samples, 64 calibration samples, one repeat (the test's run; its times
mean nothing).
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import NETS, profiled  # noqa: E402  (the throughput benchmark's network sizes and profiler)

#: The small network of ``--quick``: one hidden layer of 32, T = 20 steps as the NETS.
QUICK_NET = ["network.hidden=[32]", 'network.presentation="20 ms"', 'lateral.window="10 ms"',
             "lateral.first_task=[10,8]", "lateral.per_task=[4,4]"]
METHODS = ("finetune", "hlop")
TARGET_SCALE, TARGET_SPEEDUP = 0.5, 1.7


def fail(message: str) -> None:
    """One line on stderr, exit code 2 (a bad argument)."""
    print(f"rate_scaling.py: error: {message}", file=sys.stderr)
    sys.exit(2)


# -- the neuron at a raised threshold ------------------------------------------------------------------
def raised_lif(tau_m, v_threshold, factor: float):
    """The built-in ``lif`` with threshold and reset ``factor × v_threshold`` and spike cost ``v_threshold``.

    ``dv/dt = −v/τ_m``; spike when ``v > factor·θ``, then ``v −= factor·θ``; a synaptic spike adds ``w·θ``
    (volt, ``w`` in units of ``θ = v_threshold``, as for ``lif``). Its rate map is measured
    (``transfer = "measured"``) at every factor, 1 included: the credit assignment then runs the same kernel
    at every scale (``lif``'s declared integrate-and-fire map takes a cheaper one).
    """
    from brian2 import mV

    from hlopsim.models.neurons import NeuronModel, lif
    from hlopsim.models.quantities import parse_quantity
    base = lif(tau_m=tau_m, v_threshold=v_threshold)
    theta = parse_quantity(v_threshold, mV, name="neuron.v_threshold", positive=True)
    return NeuronModel(name="lif_raised", equations=base.equations, threshold=base.threshold, reset=base.reset,
                       parameters={**base.parameters, "v_threshold": factor * theta}, spike_cost=theta,
                       initial=dict(base.initial), method=base.method, transfer="measured")


# -- the dense simulation ----------------------------------------------------------------------------
def dense_inputs(spikes, first: int, batch: int) -> np.ndarray:
    """Input spikes of samples ``first … first + batch − 1`` as a dense float64 array (n_steps, batch, n_in);
    samples past the end stay silent (the padded copies of a last, partial batch)."""
    out = np.zeros((spikes.n_steps, batch, spikes.n_neurons))
    lo, hi = np.searchsorted(spikes.sample, [first, first + batch])
    out[spikes.step[lo:hi], spikes.sample[lo:hi] - first, spikes.neuron[lo:hi]] = 1.0
    return out


def dense_present(inputs: np.ndarray, weights_t: list[np.ndarray], theta: float, decay: float,
                  steps_out: list[int] | None = None) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """One presentation of a batch, every layer simulated as a dense time-step LIF network.

    Per step ``k``, in the order of Brian2's schedule (state update, thresholds, synapses, resets), for every
    layer ``l ≥ 1``: ``v_l ← v_l·decay``; ``s_l = [v_l > θ]``; ``v_l += s_{l−1} W_lᵀ`` (dense BLAS product;
    ``s_0`` the input spikes of step ``k``, ``s_{l−1}`` the spikes layer ``l−1`` emitted in this step);
    ``v_l −= θ s_l``. Every presentation starts at ``v = 0``.

    Parameters
    ----------
    inputs : ndarray, shape (n_steps, B, n_0)
        Input spikes (0/1).
    weights_t : list of ndarray, shape (n_{l−1}, n_l)
        ``W_lᵀ`` in volt (``weight · spike_cost``).
    theta : float
        Threshold and reset (volt).
    decay : float
        ``exp(−dt/τ_m)``.
    steps_out : list of int or None
        Steps at which to also return the running presynaptic counts of every layer (the lateral steps).

    Returns
    -------
    counts : list of ndarray, shape (B, n_l)
        Spike counts of every population, input first (float64).
    running : list of list of ndarray
        ``running[j][l]``: counts of population ``l`` before step ``steps_out[j]``.
    """
    n_steps, batch = inputs.shape[:2]
    v = [np.zeros((batch, w.shape[1])) for w in weights_t]
    counts = [np.zeros((batch, inputs.shape[2]))] + [np.zeros((batch, w.shape[1])) for w in weights_t]
    running = []
    wanted = set(steps_out or ())
    for k in range(n_steps):
        if k in wanted:
            running.append([c.copy() for c in counts])
        pre = inputs[k]
        counts[0] += pre
        for layer, w in enumerate(weights_t):
            vl = v[layer]
            vl *= decay
            fired = vl > theta
            vl += pre @ w
            vl -= theta * fired
            pre = fired.astype(np.float64)
            counts[layer + 1] += pre
    return counts, running


class DenseReference:
    """The dense time-step twin of a training epoch (module docstring).

    Parameters
    ----------
    spec : NetworkSpec
        The network (its ``lif``-type neuron: ``tau_m``, ``v_threshold`` and the spike cost are read).
    weights : list of ndarray, shape (n_l, n_{l−1})
        Starting weights in units of the spike cost (copied).
    learn : dict
        The ``[learning]`` section (``lr``, ``logit_scale``).
    transfers : list of TransferCurve or None
        Rate maps of the hidden layers for `credit` (None: integrate-and-fire).
    projections : callable or None
        Returns the per-layer projection rows at every batch (None: no projection, fine-tuning).
    """

    def __init__(self, spec, weights: list[np.ndarray], learn: dict, transfers=None, projections=None):
        from brian2 import second, volt
        self.spec, self.learn = spec, learn
        model = spec.neuron
        self.cost = float(model.spike_cost / volt)
        self.theta = float(model.parameters["v_threshold"] / volt)
        self.decay = math.exp(-float(spec.dt / second) / float(model.parameters["tau_m"] / second))
        self.weights = [w.copy() for w in weights]
        self.transfers = transfers
        none = [np.zeros((0, w.shape[1])) for w in weights]
        self.projections = projections if projections is not None else (lambda: none)
        self.lateral, self.lateral_steps = [], []

    @classmethod
    def of_network(cls, net, method, learn: dict, weights: list[np.ndarray]) -> "DenseReference":
        """The twin of ``net`` training ``method`` from ``weights``: its rate maps, the method's projections,
        and for HLOP the lateral circuits' rows (``H`` copied, the plastic ones learning by Oja's rule)."""
        spec = net.spec
        dense = cls(spec, weights, learn, net.transfers[:-1], lambda: method.projections(net))
        lateral = method.lateral if method.uses_lateral else None
        if lateral is not None and net.lateral:
            every = int(round(float(lateral.dt / spec.dt)))
            open_step = spec.n_steps - int(round(float(lateral.window / spec.dt)))
            dense.lateral_steps = [k for k in range(0, spec.n_steps, every) if k >= open_step]
            for layer, circuit in enumerate(net.lateral):
                dense.lateral.append(dict(H=np.array(circuit.H[: circuit.n_grown]), frozen=circuit.n_frozen,
                                          eta_dt=float(lateral.hebbian_rate[layer] * lateral.dt),
                                          copies=lateral.copies))
        return dense

    def epoch(self, spikes, labels: np.ndarray) -> list[np.ndarray]:
        """Train one epoch over ``spikes`` (labels per sample); returns the summed spike counts per population."""
        from hlopsim.sim.learning import apply_update, credit
        batch, n_steps = self.spec.batch_size, self.spec.n_steps
        totals = [np.zeros(n) for n in self.spec.layer_sizes]
        weights_t = [np.ascontiguousarray((w * self.cost).T) for w in self.weights]
        for first in range(0, spikes.n_samples, batch):
            counts, running = dense_present(dense_inputs(spikes, first, batch), weights_t, self.theta, self.decay,
                                            self.lateral_steps)
            rates = [c / n_steps for c in counts]
            for total, c in zip(totals, counts):
                total += c.sum(axis=0)
            samples = np.arange(first, first + batch)
            valid = samples < spikes.n_samples
            for layer, circuit in enumerate(self.lateral):      # Oja's rule on the plastic rows
                H, frozen, c = circuit["H"], circuit["frozen"], circuit["copies"]
                for at in running:
                    x = at[layer][:c] / n_steps
                    y = x @ H.T
                    residual = x - y @ H
                    H[frozen:] += circuit["eta_dt"] * (y[:, frozen:].T @ residual)
            deltas, _ = credit(self.weights, rates, labels[np.where(valid, samples, 0)], valid,
                               self.learn["logit_scale"], transfer=self.transfers)
            apply_update(self.weights, deltas, rates, self.projections(), self.learn["lr"])
            for wt, w in zip(weights_t, self.weights):
                wt[:] = (w * self.cost).T
        return totals


def initial_weights(spec, seed: int = 0) -> list[np.ndarray]:
    """The initial weights `SimNetwork` draws (seed ``seed``): ``N(0, (init_gain/√n_pre)²)`` per layer, in order."""
    rng = np.random.default_rng(seed)
    sizes = spec.layer_sizes
    return [rng.normal(0.0, spec.init_gain / np.sqrt(sizes[i]), size=(sizes[i + 1], sizes[i]))
            for i in range(len(sizes) - 1)]


def hidden_density(spec, weights, spikes, factor: float) -> float:
    """Mean spikes per hidden neuron per step with threshold ``factor × v_threshold``, learning off (dense)."""
    from brian2 import second, volt
    model = spec.neuron
    cost = float(model.spike_cost / volt)
    decay = math.exp(-float(spec.dt / second) / float(model.parameters["tau_m"] / second))
    weights_t = [np.ascontiguousarray((w * cost).T) for w in weights]
    counts, _ = dense_present(dense_inputs(spikes, 0, spikes.n_samples), weights_t, factor * cost, decay)
    hidden = counts[1:-1]
    return sum(float(c.sum()) for c in hidden) / (spikes.n_samples * spikes.n_steps * sum(c.shape[1] for c in hidden))


def threshold_factor(spec, weights, spikes, target: float) -> float:
    """``f`` with the hidden density at threshold ``f × v_threshold`` equal to ``target`` (bisection on log f)."""
    lo, hi = math.log(1 / 8), math.log(64.0)
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        if hidden_density(spec, weights, spikes, math.exp(mid)) > target:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


# -- hlopsim's epochs --------------------------------------------------------------------------------
class Variant:
    """One method at one rate scale: its `SimNetwork` at task 1 of the method, built and warmed up, its timed
    epochs' input spikes, and the fastest CPU time and spike counts of its hlopsim and dense epochs.

    The warm-up epoch (untimed; as ``benchmarks/throughput.py``: code generation, compilation, learning on,
    HLOP's circuits learning) and every timed epoch start from the weights ``start`` (those the threshold was
    calibrated on; HLOP's circuits keep what they learned). ``profile``: a Counter that receives Brian2's time
    per object over the timed hlopsim epochs.
    """

    def __init__(self, method_name: str, scale: float, factor: float, config: dict, spec, labels: np.ndarray,
                 start: list[np.ndarray], warmup, timed: list, profile=None):
        from hlopsim.protocols.experiment.config import Experiment
        from hlopsim.sim.learning import apply_update, credit
        from hlopsim.sim.network import SimNetwork

        self.method_name, self.scale, self.factor, self.spec = method_name, scale, factor, spec
        self.labels, self.start, self.timed, self.learn = labels, start, timed, config["learning"]
        self.method = method = Experiment.from_config(config).method(method_name)
        lateral = method.lateral if method.uses_lateral else None
        self.net = net = SimNetwork(spec, np.random.default_rng(0), lateral=lateral,
                                    n_tasks=config["protocol"]["tasks"], record_spikes=False)
        method.begin_task(net, 0)
        net.set_lateral_learning(method.uses_lateral)
        method.end_task(net, 0)      # task 1 of HLOP is the typical case: frozen neurons project, new ones learn
        method.begin_task(net, 1)
        net.set_lateral_learning(method.uses_lateral)
        transfers, learn = net.transfers[:-1], self.learn

        def on_batch(batch):
            valid = batch.valid
            deltas, _ = credit(net.weights, batch.rates, labels[np.where(valid, batch.samples, 0)], valid,
                               learn["logit_scale"], transfer=transfers)
            apply_update(net.weights, deltas, batch.rates, method.projections(net), learn["lr"])
            return True

        self.on_batch = on_batch
        self.seconds = self.dense_seconds = math.inf
        self.counts = self.dense_counts = None
        self._epoch(warmup)
        if profile is not None:   # profiling slows the timed epochs a little
            net.net.run = profiled(net.net, profile)

    def _epoch(self, spikes):
        for w, w0 in zip(self.net.weights, self.start):
            w[:] = w0
        self.net.push_weights()
        tick = time.process_time()
        activity = self.net.present(spikes, on_batch=self.on_batch)
        return time.process_time() - tick, activity

    def time_hlopsim(self, repeat: int) -> None:
        """Train timed epoch ``repeat`` with hlopsim; keep it if it is the fastest so far."""
        seconds, activity = self._epoch(self.timed[repeat])
        if seconds < self.seconds:
            self.seconds, self.counts = seconds, [c.sum(axis=0) for c in activity.counts]

    def time_dense(self, repeat: int) -> None:
        """Train timed epoch ``repeat`` with the dense reference; keep it if it is the fastest so far."""
        dense = DenseReference.of_network(self.net, self.method, self.learn, self.start)
        tick = time.process_time()
        counts = dense.epoch(self.timed[repeat], self.labels)
        seconds = time.process_time() - tick
        if seconds < self.dense_seconds:
            self.dense_seconds, self.dense_counts = seconds, counts


def densities(spec, counts: list[np.ndarray], n_samples: int) -> list[float]:
    """Spikes per neuron per step of every population, and the hidden layers' pooled density last."""
    per = [float(c.sum()) / (n_samples * spec.n_steps * len(c)) for c in counts]
    hidden = counts[1:-1]
    pooled = sum(float(c.sum()) for c in hidden) / (n_samples * spec.n_steps * sum(len(c) for c in hidden))
    return per + [pooled]


def crossover(points: list[tuple[float, float]]) -> str:
    """Where hlopsim overtakes the dense reference: ``points`` are (hidden density, hlopsim/dense speed ratio)."""
    points = sorted(points, reverse=True)     # densest first
    if all(r > 1 for _, r in points):
        return f"hlopsim is faster at every measured density ({points[-1][0]:.4f} … {points[0][0]:.4f})"
    if all(r <= 1 for _, r in points):
        return (f"never: the dense reference is faster at every measured density ({points[-1][0]:.4f} … "
                f"{points[0][0]:.4f})")
    for (d1, r1), (d2, r2) in zip(points, points[1:]):
        if r1 <= 1 < r2:
            t = -math.log(r1) / (math.log(r2) - math.log(r1))
            found = math.exp(math.log(d1) + t * (math.log(d2) - math.log(d1)))
            return f"hlopsim is faster below {found:.4f} hidden spikes per neuron per step"
    return "hlopsim is faster at the densest measured point and slower below it: no crossover in the measured range"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", default="64-800-800-10", help=f"network size: {', '.join(NETS)}")
    parser.add_argument("--methods", default="finetune,hlop", help="comma-separated, among finetune, hlop")
    parser.add_argument("--scales", default="1,0.5,0.25,0.125", help="comma-separated rate scales; must include 1")
    parser.add_argument("--samples", default="1347", help="training samples per epoch")
    parser.add_argument("--repeats", default="3", help="timed epochs per scale and method (fastest kept)")
    parser.add_argument("--calibration-samples", default="192", help="samples of the threshold bisection")
    parser.add_argument("--target", default="cython", help="Brian2 code generation: cython or numpy")
    parser.add_argument("--profile", action="store_true",
                        help="print Brian2's time per object over the timed epochs (they run a little slower)")
    parser.add_argument("--quick", action="store_true", help="64-32-10, 128 samples, 64 calibration samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.net, args.samples, args.calibration_samples, args.repeats = "64-32-10", "128", "64", "1"
    if args.net not in NETS and args.net != "64-32-10":
        fail(f"--net {args.net!r} is unknown; expected one of {', '.join([*NETS, '64-32-10'])}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in METHODS for m in methods):
        fail(f"--methods {args.methods!r}: expected a comma-separated list of {', '.join(METHODS)}")
    args.methods = methods
    try:
        scales = [float(s) for s in args.scales.split(",")]
    except ValueError:
        scales = []
    if not scales or any(not (math.isfinite(s) and s > 0) for s in scales) or 1.0 not in scales:
        fail(f"--scales {args.scales!r}: expected positive numbers separated by commas, including 1")
    args.scales = sorted(set(scales), reverse=True)
    for name in ("samples", "repeats", "calibration_samples"):
        value = getattr(args, name)
        if not (value.isdigit() and int(value) > 0):
            fail(f"--{name.replace('_', '-')} {value!r}: expected a positive integer")
        setattr(args, name, int(value))
    if args.target not in ("cython", "numpy"):
        fail(f"--target {args.target!r}: expected cython or numpy")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from brian2 import Hz, second
    from threadpoolctl import threadpool_limits

    from hlopsim.data import load_digits, poisson_encode
    from hlopsim.models.from_config import network_spec
    from hlopsim.protocols.experiment.config import apply_overrides, load_protocol
    from hlopsim.sim import prefs
    from hlopsim.sim.lateral_base import CircuitDiverged

    prefs.configure(args.target)
    config = apply_overrides(load_protocol("permuted-digits"), NETS.get(args.net, QUICK_NET))
    section = config["network"]
    digits = load_digits()
    base = network_spec(section, digits.x_train.shape[1], 10)
    rate_hz, dt_s = float(base.input_max_rate / Hz), float(base.dt / second)
    for scale in args.scales:
        if scale * rate_hz * dt_s > 1:
            fail(f"--scales {scale:g}: input rate {scale * rate_hz:g} Hz exceeds one spike per dt = {dt_s * 1000:g} ms "
                 f"(largest scale {1 / (rate_hz * dt_s):g})")
    x, y = digits.x_train[: args.samples], digits.y_train[: args.samples]
    calibration = digits.x_train[: args.calibration_samples]

    with threadpool_limits(limits=1):   # the dense reference and the calibration on one core, as hlopsim
        # the start of every timed epoch: the initial weights after one epoch of training at scale 1 (the
        # first epoch's transient, in which the rates fall fast, is over), trained by the dense twin
        pretrain = DenseReference(base, initial_weights(base), config["learning"])
        pretrain.epoch(poisson_encode(x, rate_hz, dt_s, base.n_steps, np.random.default_rng(4)), y)
        start_weights = pretrain.weights
        cal = poisson_encode(calibration, rate_hz, dt_s, base.n_steps, np.random.default_rng(5))
        reference = hidden_density(base, start_weights, cal, 1.0)
        factors = {}
        for scale in args.scales:
            cal = poisson_encode(calibration, scale * rate_hz, dt_s, base.n_steps, np.random.default_rng(5))
            factors[scale] = 1.0 if scale == 1.0 else threshold_factor(base, start_weights, cal, scale * reference)
            print(f"scale {scale:g}: threshold × {factors[scale]:.4f} (calibration hidden density "
                  f"{hidden_density(base, start_weights, cal, factors[scale]):.4f}, target {scale * reference:.4f})",
                  flush=True)

    names = list(base.population_names)
    variants, profiles = [], {}
    with threadpool_limits(limits=1):   # hlopsim's credit (a BLAS product) and the dense reference: one thread
        for scale in args.scales:
            neuron = raised_lif(section["tau_m"], section["v_threshold"], factors[scale])
            spec = network_spec({**section, "input_max_rate": f"{scale * rate_hz} Hz"}, x.shape[1], 10, neuron=neuron)
            rng = np.random.default_rng(1)
            warmup = poisson_encode(x, scale * rate_hz, dt_s, spec.n_steps, rng)
            timed = [poisson_encode(x, scale * rate_hz, dt_s, spec.n_steps, rng) for _ in range(args.repeats)]
            for method_name in args.methods:
                profile = profiles[method_name, scale] = Counter() if args.profile else None
                try:
                    variants.append(Variant(method_name, scale, factors[scale], config, spec, y, start_weights,
                                            warmup, timed, profile))
                except CircuitDiverged as err:   # e.g. denser input than the circuits' η allows: no row
                    print(f"{method_name} at scale {scale:g}: skipped, {err}", flush=True)
        # rounds: every variant once per round, so that a change of the machine's load reaches them all
        for repeat in range(args.repeats):
            for variant in list(variants):
                try:
                    variant.time_hlopsim(repeat)
                except CircuitDiverged as err:
                    print(f"{variant.method_name} at scale {variant.scale:g}: skipped, {err}", flush=True)
                    variants.remove(variant)
                    continue
                variant.time_dense(repeat)
    rows = [dict(method=v.method_name, scale=v.scale, factor=v.factor, density=densities(v.spec, v.counts, len(y)),
                 seconds=v.seconds, dense_density=densities(v.spec, v.dense_counts, len(y))[-1],
                 dense_seconds=v.dense_seconds) for v in variants]
    rows.sort(key=lambda r: (-r["scale"], args.methods.index(r["method"])))
    for (method_name, scale), profile in profiles.items():
        if profile:
            total = sum(profile.values())
            print(f"{method_name} at scale {scale:g}: Brian2 time per object over the timed epochs "
                  f"({total:.2f} s in all)")
            for name, spent in profile.most_common(8):
                print(f"  {name:40s} {spent:7.3f} s {100 * spent / total:5.1f} %")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\nnetwork {args.net}, T = {base.n_steps} steps, batch {base.batch_size}, {len(y)} training samples, "
          f"target {args.target}; times: the process's CPU time (one thread), fastest of {args.repeats} round(s) "
          f"in which every variant trains one epoch in turn; peak memory {peak:.1f} GB ({len(variants)} networks)")
    print("density = spikes per neuron per step over the timed epoch; hidden = all hidden neurons pooled")
    head = (f"{'method':9s} {'scale':>6s} {'thresh×':>8s} " + " ".join(f"{n:>8s}" for n in names)
            + f" {'hidden':>8s} {'samples/s':>10s} {'s/epoch':>8s} {'speed-up':>9s} {'dense/s':>8s}"
            + f" {'dense_hid':>9s} {'hl/dense':>9s}")
    print(head)
    n = len(y)
    for row in rows:
        scale1 = next((r for r in rows if r["method"] == row["method"] and r["scale"] == 1.0), None)
        speedup = f"{scale1['seconds'] / row['seconds']:9.2f}" if scale1 else f"{'-':>9s}"
        print(f"{row['method']:9s} {row['scale']:6g} {row['factor']:8.3f} "
              + " ".join(f"{d:8.4f}" for d in row["density"])
              + f" {n / row['seconds']:10.1f} {row['seconds']:8.2f} {speedup}"
              + f" {n / row['dense_seconds']:8.1f} {row['dense_density']:9.4f}"
              + f" {row['dense_seconds'] / row['seconds']:9.3g}")
    print()
    for method_name in args.methods:
        mine = {r["scale"]: r for r in rows if r["method"] == method_name}
        if not mine:
            continue
        if TARGET_SCALE in mine and 1.0 in mine:
            speedup = mine[1.0]["seconds"] / mine[TARGET_SCALE]["seconds"]
            print(f"target {method_name}: scale {TARGET_SCALE:g} ≥ {TARGET_SPEEDUP:g}× faster than scale 1: "
                  f"{speedup:.2f}× {'met' if speedup >= TARGET_SPEEDUP else 'missed'}")
        points = [(r["density"][-1], r["dense_seconds"] / r["seconds"]) for r in mine.values()]
        print(f"crossover {method_name}: {crossover(points)}")
        if len(mine) > 1:   # least-squares line seconds = fixed + per_density · hidden density
            d = np.array([r["density"][-1] for r in mine.values()])
            t = np.array([r["seconds"] for r in mine.values()])
            slope, fixed = np.polyfit(d, t, 1)
            dense = float(np.mean([r["dense_seconds"] for r in mine.values()]))
            meets = (f"; the line meets the dense reference's mean {dense:.3f} s at hidden density "
                     f"{(dense - fixed) / slope:.4f} (extrapolated)") if slope > 0 and dense > fixed else ""
            share = f" ({100 * fixed / mine[1.0]['seconds']:.0f} % of scale 1's epoch)" if 1.0 in mine else ""
            print(f"cost {method_name}: s/epoch ≈ {fixed:.3f} + {slope:.2f} × hidden density: "
                  f"{fixed:.3f} s do not depend on the spikes{share}{meets}")


if __name__ == "__main__":
    main()
