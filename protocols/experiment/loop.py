"""The experiment loop: train task t, evaluate every task, fill ``R[t, :]``, record, checkpoint.

One loop serves the CLI and user scripts alike (`run_tasks`): tasks are any sequence of objects with
plain arrays ``x_train, y_train, x_test, y_test`` (x in [0, 1], shape samples × features; y integer
classes), a ``name`` and, for multi-head protocols, an integer ``head`` (None: one shared head). Per
task::

    method.begin_task → supervised epochs (one Brian2 run; credit + projected update per batch)
    → consolidation epochs (lateral plasticity only) → method.end_task
    → evaluate every task → write spikes, weights, lateral H, R and a checkpoint

A run file ``out`` that exists and was interrupted is continued from its last checkpoint when the same
call is made again (same tasks, network, method and settings): the result equals an uninterrupted run.
"""
from __future__ import annotations

import copy
import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from hlopsim.data.encoders import SpikeTrains, poisson_encode, regular_encode
from hlopsim.data.lazy_input import LazyInput
from hlopsim.protocols.metrics import summarize

#: Input encoders by name (`hlopsim.data.encoders`): "regular" (evenly spaced, one phase for all),
#: "poisson", "random-phase" (evenly spaced, a random phase per input and sample), "refractory-poisson"
#: (Poisson with the network's ``input_dead_time``), "latency" (one spike, earlier when brighter).
ENCODERS = ("regular", "poisson", "random-phase", "refractory-poisson", "latency")


@dataclass
class RunResult:
    """What one run measured.

    Attributes
    ----------
    method : str
    accuracy : ndarray, shape (n_tasks, n_tasks)
        ``R[i, j]``: % correct on task j after training task i.
    train_seconds : float
        Wall time in training runs (supervised and consolidation).
    train_samples : int
        Training presentations (supervised and consolidation).
    total_seconds : float
    path : Path or None
        The run file.
    losses : list of float
        Mean cross-entropy of every training batch of this call.
    """

    method: str
    accuracy: np.ndarray
    train_seconds: float
    train_samples: int
    total_seconds: float
    path: Path | None = None
    losses: list[float] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        """ACC, BWT and forgetting of the accuracy matrix (`summarize`)."""
        return summarize(self.accuracy)

    @property
    def samples_per_second(self) -> float:
        """Training presentations per second of training wall time."""
        return self.train_samples / self.train_seconds if self.train_seconds > 0 else float("nan")


def _software_versions() -> dict:
    import brian2, h5py, numba, scipy
    return {"python": platform.python_version(), "numpy": np.__version__, "brian2": brian2.__version__,
            "numba": numba.__version__, "h5py": h5py.__version__, "scipy": scipy.__version__}


def group_test_sets(sizes: list[int], limit: int) -> list[list[int]]:
    """Consecutive test sets packed into groups of at most ``limit`` samples (a set alone may exceed it).

    >>> group_test_sets([450, 450, 450], limit=1000)
    [[0, 1], [2]]
    """
    groups, total = [], 0
    for index, size in enumerate(sizes):
        if groups and total + size <= limit:
            groups[-1].append(index)
            total += size
        else:
            groups.append([index])
            total = size
    return groups


def output_heads(tasks: Sequence) -> tuple[int, list[slice | None]]:
    """The output layer's size and, per task, the slice of it that is the task's head.

    One shared head (every ``head`` None): as many outputs as the largest label + 1, slices None.
    Multi-head (every ``head`` an int): head ``h`` gets as many outputs as the largest label of its
    tasks + 1, heads laid out in increasing ``h``.
    """
    heads = [getattr(task, "head", None) for task in tasks]
    top = [int(max(np.max(task.y_train), np.max(task.y_test))) + 1 for task in tasks]
    if all(h is None for h in heads):
        return max(top), [None] * len(tasks)
    if any(h is None or isinstance(h, bool) or not isinstance(h, (int, np.integer)) for h in heads):
        raise ValueError(f"task heads {heads}: either every task has an integer head or none has one (None)")
    width = {}
    for h, n in zip(heads, top):
        width[h] = max(width.get(h, 0), n)
    start, slices = 0, {}
    for h in sorted(width):
        slices[h] = slice(start, start + width[h])
        start += width[h]
    return start, [slices[h] for h in heads]


@dataclass(frozen=True)
class TrainingSet:
    """The samples one task's supervised run presents (each epoch all of them, in a new order).

    Attributes
    ----------
    x : ndarray, shape (S, features)
    y : ndarray of int64, shape (S,)
        Labels, each counted within its own task's head.
    task, row : ndarray of int64, shape (S,)
        Which task and which of its training rows each sample is (recorded as the segment's task and trial).
    head : slice or None
        The output head every sample shares (None: the shared head) — used when ``mask`` is None.
    mask : ndarray of bool, shape (S, n_outputs), or None
        Each sample's own head as an output mask, when the samples come from tasks of different heads.
    """

    x: np.ndarray
    y: np.ndarray
    task: np.ndarray
    row: np.ndarray
    head: slice | None
    mask: np.ndarray | None


def training_set(tasks: Sequence, parts, heads: list[slice | None], n_outputs: int) -> TrainingSet:
    """Assemble a supervised run's samples from ``(task index, rows or None for all)`` pairs
    (`Finetune.training_rows`), in that order. One task with all its rows gives its own arrays
    unchanged (no copy), so a fine-tuning run presents exactly what it always did."""
    if len(parts) == 1 and parts[0][1] is None:
        index = parts[0][0]
        y = np.asarray(tasks[index].y_train, dtype=np.int64)
        return TrainingSet(x=np.asarray(tasks[index].x_train), y=y, task=np.full(len(y), index),
                           row=np.arange(len(y)), head=heads[index], mask=None)
    xs, ys, source, rows = [], [], [], []
    for index, chosen in parts:
        if not (isinstance(index, (int, np.integer)) and 0 <= index < len(tasks)):
            raise ValueError(f"training rows name task {index!r}; expected an index below {len(tasks)}")
        n = len(tasks[index].y_train)
        chosen = np.arange(n) if chosen is None else np.asarray(chosen, dtype=np.int64)
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= n):
            raise ValueError(f"training rows of task {index} must lie in [0, {n}); got {chosen.min()} … {chosen.max()}")
        xs.append(np.asarray(tasks[index].x_train)[chosen])
        ys.append(np.asarray(tasks[index].y_train, dtype=np.int64)[chosen])
        source.append(np.full(len(chosen), index))
        rows.append(chosen)
    source = np.concatenate(source)
    used = sorted({int(j) for j in source})
    distinct = {(heads[j].start, heads[j].stop) if heads[j] is not None else None for j in used}
    mask = None
    if len(distinct) > 1:
        mask = np.zeros((len(source), n_outputs), dtype=bool)
        for j in used:
            mask[source == j, heads[j]] = True
    return TrainingSet(x=np.concatenate(xs), y=np.concatenate(ys), task=source, row=np.concatenate(rows),
                       head=heads[used[0]] if mask is None else None, mask=mask)


def initial_accuracy(net, tasks: Sequence, heads: list[slice | None], test_groups: list[list[int]],
                     test_spikes: list[SpikeTrains], progress=None) -> np.ndarray:
    """Every task's test accuracy (%) with the network as it is, before any training: the reference
    ``b`` of forward transfer (`protocols.metrics.forward_transfer`).

    It presents the test spikes the run has already drawn (no random stream moves) with plasticity off
    (no batch callback; the lateral circuits are switched off), and records nothing: the run file's
    segments, spikes and results are those of a run without it. Cost: one more evaluation of every
    task, i.e. one test pass on top of the ``n_tasks`` a run makes.
    """
    net.set_lateral_learning(False)
    accuracy = np.full(len(tasks), np.nan)
    for group, spikes in zip(test_groups, test_spikes):
        scores = net.present(spikes, progress=progress).scores
        start = 0
        for j in group:
            y_test = np.asarray(tasks[j].y_test)
            part = scores[start:start + len(y_test)]
            if heads[j] is not None:
                part = part[:, heads[j]]
            accuracy[j] = 100.0 * (np.argmax(part, axis=1) == y_test).mean()
            start += len(y_test)
    return accuracy


def check_tasks(tasks: Sequence) -> None:
    """One-line ValueError unless every task holds usable arrays of one input width."""
    if len(tasks) == 0:
        raise ValueError("tasks is empty; expected at least one task")
    width = None
    for index, task in enumerate(tasks):
        label = f"task {index} ({getattr(task, 'name', '?')!r})"
        for part in ("train", "test"):
            x, y = getattr(task, f"x_{part}", None), getattr(task, f"y_{part}", None)
            if x is None or y is None:
                raise ValueError(f"{label} has no x_{part}/y_{part}; a task holds x_train, y_train, x_test, y_test")
            x, y = np.asarray(x), np.asarray(y)
            if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
                raise ValueError(f"{label}: x_{part} {x.shape} and y_{part} {y.shape} must be (samples, features) "
                                 "and (samples,) with at least one sample")
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
                raise ValueError(f"{label}: y_{part} must hold non-negative integer classes")
            if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
                raise ValueError(f"{label}: x_{part} must hold finite values in [0, 1] (firing rate fractions)")
            if width is None:
                width = x.shape[1]
            elif x.shape[1] != width:
                raise ValueError(f"{label}: {x.shape[1]} input features; task 0 has {width}")


def _fingerprint(tasks, network, method, settings: dict) -> str:
    """A digest of everything that determines a run, so that a resumed run can be checked against it."""
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(str(getattr(task, "name", "")).encode())
        digest.update(str(getattr(task, "head", None)).encode())
        for part in ("x_train", "y_train", "x_test", "y_test"):
            array = np.ascontiguousarray(getattr(task, part))
            digest.update(str((array.dtype.str, array.shape)).encode())
            digest.update(array.tobytes())
    digest.update(repr(network).encode())
    digest.update(json.dumps([method.name, method.settings(), settings], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def run_tasks(tasks: Sequence, network=None, method="hlop", *, epochs: int = 3, seed: int = 0,
              out=None, overwrite: bool = False, lr: float = 0.1, logit_scale: float = 10.0,
              encoder: str = "random-phase", record_spikes: bool = True, target: str | None = None,
              progress: bool = False, config: dict | None = None, name: str = "script",
              test_run_samples: int | None = None, record_states=None, propagation: str = "auto",
              threads: int | None = None) -> RunResult:
    """Train ``tasks`` one after the other on a spiking network, evaluating every task after each.

    Parameters
    ----------
    tasks : sequence of task objects
        Each with ``x_train, y_train, x_test, y_test`` (numpy arrays, x in [0, 1]), ``name`` and an
        optional integer ``head`` (`hlopsim.split_tasks`, `hlopsim.permuted_tasks`, or your own).
    network : NetworkSpec, optional
        The network; its input and output sizes are filled in from the tasks (default `NetworkSpec()`).
    method : str or method object
        ``"finetune"``, ``"hlop"``, ``"gpm"``, or an object such as ``HLOP(first_task=..., per_task=...)``
        (copied: the object you pass is not changed).
    epochs : int
        Supervised epochs per task.
    seed : int
        Seeds the initial weights, the sample order and Poisson input spikes.
    out : str or Path, optional
        Run file (HDF5) to write. If it exists: an interrupted run of the same call is resumed, a
        complete one is refused unless ``overwrite``. With ``overwrite`` the new run is written to
        ``<out>.new`` and renamed over ``out`` when complete; calling again with the same settings
        continues it.
    overwrite : bool
        Replace an existing run file once the new run is complete.
    lr : float
        Learning rate of the supervised update (weights in units of the spike cost).
    logit_scale : float
        Softmax logits = ``logit_scale`` × output spikes per step.
    encoder : {"random-phase", "regular", "poisson", "refractory-poisson", "latency"}
        How an input value becomes a spike train (``value × input_max_rate``; `hlopsim.data.encoders`).
        Default ``"random-phase"``: evenly spaced spikes, each input neuron with its own random phase
        (exact counts, no phase-locked population PSTH).
    record_spikes : bool
        Write every spike to the run file (otherwise counts, weights and accuracies only).
    target : {"cython", "numpy"}, optional
        Brian2 code generation (default: the current target, cython if none was chosen).
    threads : int, optional
        Threads for the run's hot kernels (`sim.threaded`; default: as set, 1 at start). The run file
        does not depend on it.
    progress : bool
        Show a progress bar.
    config : dict, optional
        A resolved protocol configuration to store (runs started from protocol files).
    name : str
        The protocol name stored in the run file.
    test_run_samples : int, optional
        Most test presentations per Brian2 run (default: a task's supervised run size); results do
        not depend on it.
    record_states : StateRecording, optional
        State variables (membrane potential, synaptic currents, conductances, adaptation) of chosen
        neurons in the first presentations of the chosen phases' runs, written to ``/states`` of ``out``
        (`hlopsim.StateRecording`; read back with `RunFile.states`). Needs ``out``. Spikes, weights and
        accuracies are the same with and without it.
    propagation : {"auto", "shared", "brian2"}
        Weight layers and lateral circuits on one shared weight matrix or as Brian2 synapses in every copy
        (`SimNetwork`; ``sim.propagation`` in protocol files).

    Returns
    -------
    RunResult
    """
    from brian2 import Hz, second

    from hlopsim.protocols.experiment.methods import METHODS
    from hlopsim.sim import prefs
    from hlopsim.sim.learning import apply_update, credit
    from hlopsim.sim.network import SimNetwork
    from hlopsim.sim.resources import check_run_memory
    from hlopsim.sim.runfile import (RunFileBusyError, RunFileError, RunRecorder, being_written, open_run,
                                     pending_path, read_checkpoint)
    from hlopsim.models.network import NetworkSpec
    from hlopsim.models.recording import StateRecording

    started = time.perf_counter()
    check_tasks(tasks)
    if record_states is not None:
        if not isinstance(record_states, StateRecording):
            raise ValueError(f"record_states = {record_states!r}; expected a StateRecording or None")
        if out is None:
            raise ValueError("record_states needs out (a run file): recorded states are written to it")
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        method = METHODS[method]()
    else:
        method = copy.deepcopy(method)
    for key, value in (("epochs", epochs), ("seed", seed)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (1 if key == "epochs" else 0) \
                or value >= 2 ** 64:
            raise ValueError(f"{key} = {value!r} must be an integer from {1 if key == 'epochs' else 0} to 2**64 - 1")
    for key, value in (("lr", lr), ("logit_scale", logit_scale)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{key} = {value!r} must be a finite positive number")
    if encoder not in ENCODERS:
        raise ValueError(f"encoder = {encoder!r} is unknown; expected one of {', '.join(ENCODERS)}")
    n_outputs, heads = output_heads(tasks)
    spec = (network or NetworkSpec()).with_sizes(int(np.asarray(tasks[0].x_train).shape[1]), n_outputs)
    n_tasks = len(tasks)
    lateral = method.lateral if method.uses_lateral else None
    if lateral is not None and len(lateral.first_task) != len(spec.weight_names):
        raise ValueError(f"the method's lateral circuits name {len(lateral.first_task)} layers (first_task "
                         f"{list(lateral.first_task)}); the network has {len(spec.weight_names)} weight layers")
    n_consolidation = method.consolidation_epochs if method.uses_lateral else 0
    # Samples of each task's supervised run: the task's own, plus earlier tasks' rows for multitask and replay.
    # (per epoch: `epoch_samples` of them, drawn anew every epoch)
    train_sizes = [method.epoch_samples(sum(len(tasks[j].y_train) if rows is None else len(rows)
                                            for j, rows in method.training_rows(tasks, t)), len(tasks[t].y_train))
                   for t in range(n_tasks)]
    # Test sets share a Brian2 run up to this many samples (a supervised run's size: test memory does
    # not grow with the task count).
    limit = epochs * len(tasks[0].y_train) if test_run_samples is None else test_run_samples
    # Settings that would exhaust the machine's memory are refused before anything is built.
    check_run_memory(spec, lateral, n_tasks=n_tasks, n_train=max(train_sizes),
                     n_test=max(len(t.y_test) for t in tasks), epochs=int(epochs), consolidation_epochs=n_consolidation,
                     encoder=encoder, record_spikes=record_spikes and out is not None, test_run_samples=limit,
                     propagation=propagation)
    settings = {"epochs": int(epochs), "seed": int(seed), "lr": float(lr), "logit_scale": float(logit_scale),
                "encoder": encoder}
    if propagation != "auto":       # as record_states: absent by default, so default fingerprints are unchanged
        settings["propagation"] = propagation
    if record_states is not None:   # absent otherwise: fingerprints (and resumes) of runs without it are unchanged
        settings["record_states"] = repr(record_states)
        record_states.plan(spec)    # an unknown variable, population or neuron: one line, before anything is built
    fingerprint = _fingerprint(tasks, spec, method, settings)

    out = Path(out) if out is not None else None
    # The run file to continue: an interrupted `out`, or the unfinished replacement of `out`
    # (`pending_path`, written with overwrite) that this same call started; with overwrite any other
    # replacement is started afresh, without it one is refused (`RunRecorder.create`).
    resume = None
    if out is not None and not overwrite and out.exists():
        resume = out
    elif out is not None and pending_path(out).is_file():
        try:
            read_checkpoint(pending_path(out))
            with open_run(pending_path(out)) as run:
                if run.attrs.get("experiment") == fingerprint:
                    resume = pending_path(out)
        except RunFileError:
            pass
    if resume is not None:
        if being_written(resume):
            raise RunFileBusyError(f"{str(resume)!r} is being written by another running process; wait for it "
                                   "to finish or choose another file")
        state = read_checkpoint(resume)["checkpoint"]   # RunFileError (one line) if not resumable
        last = state["task"]
        where = f"{str(resume)!r}: /checkpoint attribute 'state'"
        try:
            for key in ("init", "order", "spike"):
                np.random.default_rng().bit_generator.state = state["rng"][key]
            float(state["train_seconds"]), int(state["train_samples"])
            frozen = [int(n) for n in state["lateral_frozen"]]
        except (KeyError, TypeError, ValueError) as err:
            raise RunFileError(f"{where} cannot be used to resume ({type(err).__name__}: {err}; damaged file?)") \
                from None
        if last >= n_tasks or len(frozen) != (len(spec.weight_names) if method.uses_lateral else 0):
            raise RunFileError(f"{where} names task {last} and {len(frozen)} lateral circuits; this run has "
                               f"{n_tasks} tasks and {len(spec.weight_names) if method.uses_lateral else 0} "
                               "circuits (damaged file?)")
        with open_run(resume) as run:
            if run.attrs.get("experiment") != fingerprint:
                raise RunFileError(f"{str(resume)!r} holds a different run than the one asked for (other tasks, network, "
                                   "method or settings; or its stored settings were edited); replace it (overwrite) "
                                   "or choose another file")
            saved = {"R": run.accuracy_matrix(), "weights": [run.weights(layer, last) for layer in spec.weight_names],
                     "H": [run.lateral(layer, last)[0] for layer in spec.weight_names] if method.uses_lateral else []}
        sizes = spec.layer_sizes
        if saved["R"].shape != (n_tasks, n_tasks) or not np.isfinite(saved["R"][:last + 1]).all():
            raise RunFileError(f"{str(resume)!r}: metrics/accuracy_matrix (shape {saved['R'].shape}) lacks the "
                               f"accuracies of the finished tasks 0..{last}; it cannot be resumed (damaged file?)")
        for layer, (name, weights) in enumerate(zip(spec.weight_names, saved["weights"])):
            if weights.shape != (sizes[layer + 1], sizes[layer]) or not np.isfinite(weights).all():
                raise RunFileError(f"{str(resume)!r}: weights/{name}/after_task_{last} has shape {weights.shape}"
                                   f"{'' if np.isfinite(weights).all() else ' and non-finite values'}; expected "
                                   f"finite ({sizes[layer + 1]}, {sizes[layer]}) (damaged file?)")
        for name, H in zip(spec.weight_names, saved["H"]):
            if H.ndim != 2 or H.shape[1] != sizes[spec.weight_names.index(name)] or not np.isfinite(H).all():
                raise RunFileError(f"{str(resume)!r}: lateral/{name}/H_after_task_{last} has shape {H.shape} or "
                                   "non-finite values; expected finite rows of the layer's inputs (damaged file?)")

    prefs.configure(target or (prefs.current_target() if prefs.current_target() in prefs.TARGETS else "cython"),
                    threads=threads)
    seeds = np.random.SeedSequence(int(seed)).spawn(4)
    init_rng, order_rng, spike_rng = (np.random.default_rng(s) for s in seeds[1:])
    net = SimNetwork(spec, init_rng, lateral=lateral, n_tasks=n_tasks,
                     record_spikes=record_spikes and out is not None, record_states=record_states,
                     propagation=propagation)
    rate_hz, dt_s, n_steps = float(spec.input_max_rate / Hz), float(spec.dt / second), spec.n_steps

    def encode(x, rng):
        # the random encoders draw from spike_rng (seeded, checkpointed); "regular" and "latency" draw nothing
        from hlopsim.data.encoders import latency_encode, random_phase_encode, refractory_poisson_encode
        x = np.asarray(x, dtype=np.float64)
        if encoder == "regular":
            return regular_encode(x, rate_hz, dt_s, n_steps)
        if encoder == "random-phase":
            return random_phase_encode(x, rate_hz, dt_s, n_steps, rng)
        if encoder == "refractory-poisson":
            return refractory_poisson_encode(x, rate_hz, dt_s, n_steps, spec.dead_steps, rng)
        if encoder == "latency":
            return latency_encode(x, n_steps)
        return poisson_encode(x, rate_hz, dt_s, n_steps, rng)

    def encoded(pieces, repeat=False):
        # The samples of a call, encoded a Brian2 run at a time as `SimNetwork.present` starts each run
        # (`LazyInput`): the same spikes, in the same order from spike_rng, as encoding them all here.
        return LazyInput(pieces, encode, n_steps, spike_rng, repeat=repeat)

    # The test spikes are drawn once, so every evaluation sees exactly the same input (each test group
    # re-encoded from the generator state it was drawn with). Consecutive test sets share one Brian2
    # run, as many as fit in `limit`.
    test_groups = group_test_sets([len(t.y_test) for t in tasks], limit=limit)
    test_spikes = [encoded([(tasks[j].x_test, None) for j in group], repeat=True) for group in test_groups]

    recorder, first_task = None, 0
    R = np.full((n_tasks, n_tasks), np.nan)
    train_seconds, train_samples = 0.0, 0
    rngs = {"init": init_rng, "order": order_rng, "spike": spike_rng}
    if resume is not None:
        recorder, checkpoint = RunRecorder.resume(resume)
        first_task = checkpoint["task"] + 1
        for key, rng in rngs.items():
            rng.bit_generator.state = checkpoint["rng"][key]
        train_seconds, train_samples = checkpoint["train_seconds"], checkpoint["train_samples"]
        R[:first_task] = saved["R"][:first_task]
        for weights, stored in zip(net.weights, saved["weights"]):
            weights[:] = stored
        for circuit, H, n_frozen in zip(net.lateral, saved["H"], checkpoint["lateral_frozen"]):
            circuit.restore(H, n_frozen, checkpoint["task"])
        method.load_state(checkpoint.get("method_state"))   # e.g. HLOP's graded row importances
        net.push_weights()
    elif out is not None:
        stored = config if config is not None else {
            "protocol": {"name": name, "kind": "script", "tasks": n_tasks, **settings},
            "network": {"spec": repr(spec)}, "method": {"name": method.name, **method.settings()}}
        recorder = RunRecorder.create(out, overwrite=overwrite, attrs={
            "protocol": name, "method": method.name, "seed": int(seed), "dt": dt_s,
            "n_steps_per_presentation": n_steps, "config": json.dumps(stored, indent=1, sort_keys=True),
            "experiment": fingerprint, "resumable": bool(method.resumable),
            "software": json.dumps(_software_versions()), "command": " ".join(sys.argv),
            "codegen_target": prefs.current_target()})
        for index, (group, population) in enumerate(zip(net.groups, spec.population_names)):
            role = "input" if population == "input" else "output" if population == "output" else "hidden"
            # the neuron's equations with its synapses' terms (`models.synapses.compose`)
            model = "Poisson input (SpikeGeneratorGroup)" if role == "input" else net.models[index - 1].equations
            recorder.add_population(population, group.N // spec.batch_size, model, role)
        for population, monitor in net.state_monitors.items():
            for variable in monitor.record_variables:
                recorder.add_state(population, variable, net.state_neurons[population],
                                   net.state_units[population][variable], n_steps)
        for index, task in enumerate(tasks):
            arrays = {}
            if getattr(task, "permutation", None) is not None:
                arrays["permutation"] = task.permutation
            if heads[index] is not None:
                arrays["head_outputs"] = np.arange(heads[index].start, heads[index].stop)
            recorder.write_task(index, str(task.name), **arrays)

    losses = []
    test_batches = sum(-(-spikes.n_samples // spec.batch_size) for spikes in test_spikes)
    total_batches = sum(-(-epochs * train_sizes[t] // spec.batch_size)
                        + -(-n_consolidation * len(tasks[t].y_train) // spec.batch_size) + test_batches
                        for t in range(first_task, n_tasks)) + (test_batches if first_task == 0 else 0)
    bar = tqdm(total=total_batches, desc=method.name, unit="batch", disable=not progress, leave=False, miniters=1)

    def records(phase, stage):
        return record_states is not None and record_states.records(phase, stage)

    def states_of(activity):
        """``append_block``'s states: the run's first samples are the block's first segments."""
        return {pop: {var: (np.arange(len(values)), values) for var, values in variables.items()}
                for pop, variables in activity.states.items()}
    transfer = net.transfers[:-1]   # the hidden layers' rate maps, each for the synapses feeding it
    try:
        if first_task == 0:
            # Forward transfer's reference b: every task with the initial weights (not recorded as segments).
            initial = initial_accuracy(net, tasks, heads, test_groups, test_spikes, progress=bar)
            if recorder is not None:
                recorder.write_metrics(R, {"ACC": np.nan, "BWT": np.nan, "forgetting": np.nan},
                                       timings={"initial_accuracy": initial})
        for index in range(first_task, n_tasks):
            task = tasks[index]
            x_train, y_train = np.asarray(task.x_train), np.asarray(task.y_train, dtype=np.int64)
            method.begin_task(net, index)
            net.set_lateral_learning(method.uses_lateral)
            # What the supervised run presents: the task's samples, or (multitask, replay) earlier
            # tasks' rows too, each with its own label and head (a per-row output mask if heads differ).
            train = training_set(tasks, method.training_rows(tasks, index), heads, n_outputs)
            head = train.head
            own_head = heads[index] is not None and sum(h is not None and h == heads[index] for h in heads) == 1
            # All epochs of a task form one Brian2 run (each run() has a fixed set-up cost).
            per_epoch = train_sizes[index]
            orders = [order_rng.permutation(len(train.y))[:per_epoch] for _ in range(epochs)]
            order = np.concatenate(orders)
            labels = train.y[order]
            masks = None if train.mask is None else train.mask[order]
            epoch = np.repeat(np.arange(epochs), per_epoch)
            spikes = encoded([(train.x, o) for o in orders])

            def on_batch(batch):
                valid = batch.valid
                rows = np.where(valid, batch.samples, 0)
                deltas, loss = credit(net.weights, batch.rates, labels[rows], valid, logit_scale,
                                      transfer=transfer, head=head if masks is None else masks[rows])
                projections = method.projections(net)
                if own_head:
                    # A task's own head: its output rows compute no other task's outputs, so their
                    # update is not projected (the shared hidden layers' updates are).
                    projections[-1] = np.zeros((0, net.weights[-1].shape[1]))
                apply_update(net.weights, deltas, batch.rates, projections, lr)
                keep = valid & (epoch[rows] == epochs - 1)
                method.observe(batch.rates, keep)
                method.after_update(net, deltas, batch.rates, keep, lr)
                losses.append(loss)
                return True

            def record_train(first, activity):
                # each Brian2 run's presentations are a block of the run file as soon as the run ends
                if recorder is not None:
                    rows = order[first:first + len(activity.scores)]
                    recorder.append_block({"task": train.task[rows], "stage": index,
                                           "epoch": epoch[first:first + len(rows)], "phase": "train",
                                           "trial": train.row[rows], "label": train.y[rows]}, activity.spikes,
                                          n_steps, states=states_of(activity))

            tick = time.perf_counter()
            net.present(spikes, on_batch=on_batch, progress=bar, record_states=records("train", index),
                        on_run=record_train)
            train_seconds += time.perf_counter() - tick
            train_samples += len(order)
            if n_consolidation:
                # Lateral plasticity only, on the task's final representation (weights fixed).
                orders = [order_rng.permutation(len(y_train)) for _ in range(n_consolidation)]
                order = np.concatenate(orders)
                consolidation_epoch = epochs + np.repeat(np.arange(n_consolidation), len(y_train))

                def record_consolidation(first, activity):
                    if recorder is not None:
                        rows = slice(first, first + len(activity.scores))
                        recorder.append_block({"task": index, "stage": index, "epoch": consolidation_epoch[rows],
                                               "phase": "consolidate", "trial": order[rows],
                                               "label": y_train[order[rows]]},
                                              activity.spikes, n_steps, states=states_of(activity))

                tick = time.perf_counter()
                net.present(encoded([(x_train, o) for o in orders]), progress=bar,
                            record_states=records("consolidate", index), on_run=record_consolidation)
                train_seconds += time.perf_counter() - tick
                train_samples += len(order)
            method.end_task(net, index)
            net.set_lateral_learning(False)

            for group, spikes_group in zip(test_groups, test_spikes):
                group_task = np.concatenate([np.full(len(tasks[j].y_test), j) for j in group])
                group_trial = np.concatenate([np.arange(len(tasks[j].y_test)) for j in group])
                group_label = np.concatenate([np.asarray(tasks[j].y_test) for j in group])

                def record_test(first, activity):
                    if recorder is not None:
                        rows = slice(first, first + len(activity.scores))
                        recorder.append_block({"task": group_task[rows], "stage": index, "epoch": -1,
                                               "phase": "test", "trial": group_trial[rows],
                                               "label": group_label[rows]},
                                              activity.spikes, n_steps, states=states_of(activity))

                activity = net.present(spikes_group, progress=bar, record_states=records("test", index),
                                       on_run=record_test)
                start = 0
                for j in group:
                    y_test = np.asarray(tasks[j].y_test)
                    stop = start + len(y_test)
                    scores = activity.scores[start:stop]
                    if heads[j] is not None:
                        scores = scores[:, heads[j]]
                    R[index, j] = 100.0 * (np.argmax(scores, axis=1) == y_test).mean()
                    start = stop
            if recorder is not None:
                for layer, weights in zip(spec.weight_names, net.weights):
                    recorder.write_weights(layer, index, weights)
                for layer, (rows, frozen) in zip(spec.weight_names, method.snapshots(net)):
                    recorder.write_lateral(layer, index, rows, frozen)
                recorder.write_metrics(R, summarize(R[:index + 1, :index + 1]))
                recorder.write_checkpoint(
                    task=index, train_seconds=train_seconds, train_samples=train_samples,
                    rng={key: rng.bit_generator.state for key, rng in rngs.items()},
                    lateral_frozen=[circuit.n_frozen for circuit in net.lateral], method_state=method.state())
    except BaseException:
        if recorder is not None:
            recorder.close(complete=False)
        raise
    finally:
        bar.close()
    total = time.perf_counter() - started
    if recorder is not None:
        recorder.set_attrs(train_seconds=train_seconds, train_samples=train_samples, total_seconds=total)
        recorder.close(complete=True)
    return RunResult(method=method.name, accuracy=R, train_seconds=train_seconds, train_samples=train_samples,
                     total_seconds=total, path=out, losses=losses)
