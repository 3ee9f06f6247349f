"""Training throughput: hlopsim's batched runs against a naive one-``run()``-per-sample Brian2 loop.

Measured in one process, on the same network (the permuted-digits defaults), the same input coding
and the same learning rule, with a warm code cache (every variant first runs once untimed):

- ``hlop`` and ``finetune``: training epochs as in `protocols.experiment.loop` through `SimNetwork.present`
  (``batch_size`` samples side by side, one Brian2 run per epoch, updates at batch boundaries);
- ``naive``: a plain Brian2 network of one copy, ``net.run(presentation)`` once per sample, spike
  counts read from monitors and the same DSR update applied after every sample.

Prints samples/s of each and the ratios; exit code 0. Usage::

    python benchmarks/throughput.py [--samples N] [--naive-samples N] [--target cython|numpy] [--set K=V]
                                    [--net 64-128-128-10|64-128-10|64-256-256-10|64-800-800-10|784-800-800-10]
                                    [--methods hlop,finetune]
                                    [--propagation auto|shared|brian2 | --compare-propagation] [--profile]
                                    [--threads 1,2]

``--net`` picks a network size (`NETS`: the authors' subspace sizes, T = 20 steps for the larger ones;
784-800-800-10 on the bundled MNIST subset); ``--compare-propagation`` times every method with
shared-matrix and with Brian2-synapse propagation of the weight layers and lateral circuits
(`sim.propagation`, `sim.shared_lateral`) back to back in this one process and prints their ratio
(``--naive-samples 0`` skips the naive loop). ``--threads 1,2`` times every method with the hot kernels on
1 and on 2 threads (`sim.threads`, `sim.threaded`) back to back and prints their ratio. The header line gives the process's peak resident memory
(all variants timed; time one method for its own figure).
"""
from __future__ import annotations

import argparse
import gc
import resource
import time
from collections import Counter

import numpy as np

#: Network sizes by name: ``--set`` overrides of the permuted-digits protocol (hidden sizes, T = 20 steps
#: with the plasticity window halved, the authors' lateral subspace sizes per weight layer).
NETS = {
    "64-128-128-10": [],   # the demo as bundled
    # the demo's network until two hidden layers became the default (one hidden layer of 128)
    "64-128-10": ["network.hidden=[128]"],
    "64-256-256-10": ["network.hidden=[256,256]", 'network.presentation="20 ms"', 'lateral.window="10 ms"',
                      "lateral.first_task=[10,64,32]", "lateral.per_task=[10,22,22]",
                      'lateral.hebbian_rate=["16 Hz","6 Hz","6 Hz"]'],
    "64-800-800-10": ["network.hidden=[800,800]", 'network.presentation="20 ms"', 'lateral.window="10 ms"',
                      "lateral.first_task=[10,200,100]", "lateral.per_task=[10,70,70]",
                      'lateral.hebbian_rate=["16 Hz","6 Hz","6 Hz"]'],
    # the paper's permuted-MNIST network, on the bundled 5,000-image MNIST subset (η of permuted-mnist-5k)
    "784-800-800-10": ['data.dataset="mnist-5k"', "data.test_size=1000", "network.hidden=[800,800]",
                       'network.presentation="20 ms"', 'lateral.window="10 ms"',
                       "lateral.first_task=[10,200,100]", "lateral.per_task=[10,70,70]",
                       'lateral.hebbian_rate=["2 Hz","4 Hz","4 Hz"]'],
}


def profiled(network, totals: Counter):
    """``network.run`` with Brian2's per-object profiling on, adding each run's times (s) to ``totals``."""
    run = network.run

    def run_profiled(*args, **kwargs):
        run(*args, profile=True, **kwargs)
        for name, seconds in network.profiling_info:
            totals[name] += float(seconds)
    return run_profiled


def batched_rate(method_name: str, config: dict, x: np.ndarray, y: np.ndarray, repeats: int,
                 profile: Counter | None = None, propagation: str = "auto") -> float:
    from brian2 import Hz, second
    from hlopsim.data import poisson_encode
    from hlopsim.models.from_config import network_spec
    from hlopsim.protocols.experiment.config import Experiment
    from hlopsim.sim.learning import apply_update, credit
    from hlopsim.sim.network import SimNetwork

    method = Experiment.from_config(config).method(method_name)
    spec = network_spec(config["network"], x.shape[1], 10)
    lateral = method.lateral if method.uses_lateral else None
    net = SimNetwork(spec, np.random.default_rng(0), lateral=lateral, n_tasks=config["protocol"]["tasks"],
                     record_spikes=False, propagation=propagation)
    rng = np.random.default_rng(1)
    learn = config["learning"]
    method.begin_task(net, 0)
    net.set_lateral_learning(method.uses_lateral)
    # Task 1 of HLOP is the typical case: frozen neurons project, new neurons learn.
    method.end_task(net, 0)
    method.begin_task(net, 1)
    net.set_lateral_learning(method.uses_lateral)

    def on_batch(batch):
        valid = batch.valid
        deltas, _ = credit(net.weights, batch.rates, y[np.where(valid, batch.samples, 0)], valid,
                           learn["logit_scale"])
        apply_update(net.weights, deltas, batch.rates, method.projections(net), learn["lr"])
        return True

    rate_hz, dt_s = float(spec.input_max_rate / Hz), float(spec.dt / second)
    net.present(poisson_encode(x, rate_hz, dt_s, spec.n_steps, rng), on_batch=on_batch)  # warm-up
    if profile is not None:  # the timed epochs' time per Brian2 object (profiling slows them a little)
        net.net.run = profiled(net.net, profile)
    best = 0.0
    for _ in range(repeats):
        spikes = poisson_encode(x, rate_hz, dt_s, spec.n_steps, rng)
        tick = time.perf_counter()
        net.present(spikes, on_batch=on_batch)
        best = max(best, len(y) / (time.perf_counter() - tick))
    return best


def naive_rate(config: dict, x: np.ndarray, y: np.ndarray) -> float:
    """One Brian2 ``run()`` per sample: the loop a first Brian2 script would write."""
    from brian2 import (Hz, Network, NeuronGroup, SpikeGeneratorGroup, SpikeMonitor, Synapses, second,
                        volt)
    from hlopsim.data import poisson_encode
    from hlopsim.models.from_config import network_spec
    from hlopsim.sim.learning import apply_update, credit

    spec = network_spec(config["network"], x.shape[1], 10)
    model = spec.neuron
    sizes = spec.layer_sizes
    rng = np.random.default_rng(0)
    groups = [SpikeGeneratorGroup(sizes[0], [], [] * second, dt=spec.dt, name="naive_input")]
    for i, size in enumerate(sizes[1:]):
        groups.append(NeuronGroup(size, model.equations, threshold=model.threshold, reset=model.reset,
                                  method=model.method, dt=spec.dt, name=f"naive_layer_{i + 1}",
                                  namespace=dict(model.parameters)))
    synapses, weights = [], []
    for i in range(len(sizes) - 1):
        syn = Synapses(groups[i], groups[i + 1], "w : volt", on_pre="v_post += w", dt=spec.dt, name=f"naive_w_{i + 1}")
        # (pre, post) order, as Brian2's all-to-all connect() makes them; weights are written as Wᵀ
        syn.connect(i=np.repeat(np.arange(sizes[i]), sizes[i + 1]), j=np.tile(np.arange(sizes[i + 1]), sizes[i]))
        synapses.append(syn)
        weights.append(rng.normal(0, spec.init_gain / np.sqrt(sizes[i]), (sizes[i + 1], sizes[i])))
    monitors = [SpikeMonitor(g, record=False, name=f"naive_count_{g.name}") for g in groups]
    net = Network(*groups, *synapses, *monitors, name="naive_network")
    cost = float(model.spike_cost / volt)
    for syn, w in zip(synapses, weights):
        syn.w_[:] = (w * cost).T.ravel()
    spikes = poisson_encode(x, float(spec.input_max_rate / Hz), float(spec.dt / second), spec.n_steps, rng)
    learn = config["learning"]
    valid = np.ones(1, dtype=bool)
    no_projection = [np.zeros((0, w.shape[1])) for w in weights]

    def one_sample(s: int, last: list[np.ndarray]):
        sel = spikes.sample == s
        groups[0].set_spikes(spikes.neuron[sel], (spikes.step[sel] + int(round(float(net.t / spec.dt)))) * spec.dt)
        for g in groups[1:]:
            g.v = 0 * volt
        net.run(spec.presentation)
        rates = []
        for k, mon in enumerate(monitors):
            total = np.asarray(mon.count[:])
            rates.append(((total - last[k]) / spec.n_steps)[None, :])
            last[k] = total
        deltas, _ = credit(weights, rates, y[s:s + 1], valid, learn["logit_scale"])
        apply_update(weights, deltas, rates, no_projection, learn["lr"])
        for syn, w in zip(synapses, weights):
            syn.w_[:] = (w * cost).T.ravel()

    last = [np.zeros(g.N, dtype=np.int64) for g in groups]
    one_sample(0, last)  # warm-up and compilation
    # Give the naive loop the same help hlopsim's runs get: Brian2's run() starts with a full
    # gc.collect(), which costs ~0.2 s in this process unless the live objects are frozen.
    gc.freeze()
    tick = time.perf_counter()
    for s in range(1, len(y)):
        one_sample(s, last)
    rate = (len(y) - 1) / (time.perf_counter() - tick)
    gc.unfreeze()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1347, help="training samples per batched measurement "
                        "(at most the data set's training samples)")
    parser.add_argument("--naive-samples", type=int, default=200, help="samples for the naive loop")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per batched method (best kept)")
    parser.add_argument("--target", default="cython", choices=["cython", "numpy"])
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a permuted-digits setting, as in `hlopsim run`")
    parser.add_argument("--profile", action="store_true",
                        help="also print Brian2's time per object over hlop's timed epochs")
    parser.add_argument("--net", choices=list(NETS), help="network size (overrides before any --set)")
    parser.add_argument("--methods", default="hlop,finetune", help="batched methods to time, comma-separated")
    parser.add_argument("--propagation", default="auto", choices=["auto", "shared", "brian2"],
                        help="weight layers and lateral circuits on one shared matrix or Brian2 synapses (sim.propagation)")
    parser.add_argument("--compare-propagation", action="store_true",
                        help="time every method with shared and with brian2 propagation, back to back")
    parser.add_argument("--threads", default="1", help="thread counts of the hot kernels (sim.threads) to time "
                        "back to back, comma-separated (e.g. 1,2)")
    args = parser.parse_args()

    from hlopsim.data import load_dataset, load_digits
    from hlopsim.protocols.experiment.config import apply_overrides, load_protocol
    from hlopsim.sim import prefs

    prefs.configure(args.target)
    config = apply_overrides(load_protocol("permuted-digits"), (NETS[args.net] if args.net else []) + args.set)
    data = config["data"]
    digits = load_digits() if data["dataset"] == "digits" else \
        load_dataset(data["dataset"], test_size=data["test_size"], split_seed=data["split_seed"])
    x, y = digits.x_train[: args.samples], digits.y_train[: args.samples]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    paths = ["shared", "brian2"] if args.compare_propagation else [args.propagation]
    try:
        requested = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        requested = []
    if not requested or min(requested) < 1:
        parser.error(f"--threads {args.threads!r}: expected thread counts ≥ 1, comma-separated")
    from hlopsim.sim.threaded import set_threads
    thread_counts = list(dict.fromkeys(set_threads(t) for t in requested))   # as capped for this process
    set_threads(1)
    profiles = {path: Counter() for path in paths} if args.profile else {}
    rates = {}
    for method in methods:
        for path in paths:   # the paths of one method back to back: the machine's load changes slowly
            for threads in thread_counts:
                set_threads(threads)
                suffix = f"/{threads}t" if len(thread_counts) > 1 else ""
                profile = profiles.get(path) if method == "hlop" and threads == thread_counts[0] else None
                rates[f"{method}/{path}{suffix}"] = batched_rate(method, config, x, y, args.repeats, profile, path)
    set_threads(1)
    if args.naive_samples > 0:
        rates["naive"] = naive_rate(config, x[: args.naive_samples], y[: args.naive_samples])
    net = config["network"]
    print(f"network {args.net or ''} hidden {net['hidden']}, presentation {net['presentation']}, batch "
          f"{net['batch_size']}, target {args.target}, {len(y)} samples of {data['dataset']}, best of {args.repeats} "
          f"epochs; peak resident memory of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    print(f"{'variant':22s} {'train samples/s':>16s}" + (f" {'× naive':>8s}" if "naive" in rates else ""))
    for name, rate in rates.items():
        print(f"{name:22s} {rate:16.0f}" + (f" {rate / rates['naive']:8.1f}" if "naive" in rates else ""))
    if len(thread_counts) > 1:
        for method in methods:
            for path in paths:
                base = rates[f"{method}/{path}/{thread_counts[0]}t"]
                for threads in thread_counts[1:]:
                    key = f"{method}/{path}/{threads}t"
                    print(f"{key}: {rates[key] / base:.2f} × {thread_counts[0]} thread(s)")
    if args.compare_propagation and len(thread_counts) == 1:
        for method in methods:
            print(f"{method}: shared / brian2 = {rates[f'{method}/shared'] / rates[f'{method}/brian2']:.2f}")
    for path, profile in profiles.items():
        if not profile:
            continue
        total = sum(profile.values())
        print(f"\nhlop/{path}, Brian2 time per object over {args.repeats} timed epochs ({total:.2f} s in all; "
              "profiling on, so the epochs above ran slower)")
        for name, seconds in profile.most_common(12):
            print(f"  {name:45s} {seconds:7.3f} s {100 * seconds / total:5.1f} %")

if __name__ == "__main__":
    main()
