"""The continual-learning protocol: train task t, evaluate every task, fill ``R[t, :]``, record.

One screen of logic a scientist can read: build the tasks and the network from the configuration,
then ``for task: for epoch: train; evaluate all tasks; write to the run file``.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from data import load_digits, permuted_tasks, poisson_encode, regular_encode
from data.encoders import SpikeTrains
from protocols.config import to_text
from protocols.methods import make_method
from protocols.metrics import summarize


ENCODERS = ("poisson", "regular")


@dataclass
class RunResult:
    """What a protocol run measured."""

    method: str
    accuracy: np.ndarray                 # R[i, j], percent
    train_seconds: float                 # wall time spent in training runs (supervised and consolidation)
    train_samples: int                   # training presentations (supervised and consolidation)
    total_seconds: float
    path: Path | None = None
    losses: list[float] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        return summarize(self.accuracy)

    @property
    def samples_per_second(self) -> float:
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


def concat_spikes(trains: list[SpikeTrains]) -> SpikeTrains:
    """Spike trains of several sample sets, one after the other."""
    offsets = np.cumsum([0] + [t.n_samples for t in trains])
    return SpikeTrains(sample=np.concatenate([t.sample + o for t, o in zip(trains, offsets)]),
                       step=np.concatenate([t.step for t in trains]),
                       neuron=np.concatenate([t.neuron for t in trains]),
                       n_samples=int(offsets[-1]), n_neurons=trains[0].n_neurons, n_steps=trains[0].n_steps)


def resume_settings(path: Path) -> tuple[dict, str]:
    """Configuration and method stored in a run file, to resume it with `run_continual`."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != "hlopsim-run":
            raise ValueError(f"{str(path)!r} is not an hlopsim run file")
        if f.attrs.get("complete"):
            raise ValueError(f"{str(path)!r} is a complete run; nothing to resume")
        if "checkpoint" not in f:
            raise ValueError(f"{str(path)!r} has no finished task to resume from; start the run again")
        if f.attrs["method"] == "gpm":
            raise ValueError(f"{str(path)!r} is a gpm run, which cannot be resumed (its bases are not "
                             "checkpointed); start it again")
        return json.loads(f.attrs["config"]), str(f.attrs["method"])


def run_continual(config: dict, method_name: str, out: Path | None, *, overwrite: bool = False,
                  progress: bool = True, resume: bool = False, test_run_samples: int | None = None) -> RunResult:
    """Run the permuted-digits protocol with one method; write a run file if ``out`` is given.

    Parameters
    ----------
    config : dict
        Resolved protocol configuration (see `protocols.config`).
    method_name : str
        ``"finetune"``, ``"hlop"`` or ``"gpm"`` (`protocols.methods`).
    out : Path or None
        Run file to write (HDF5), or None for none.
    overwrite : bool
        Replace an existing run file.
    progress : bool
        Show tqdm progress bars.
    resume : bool
        Continue the run file ``out`` after its last finished task (its configuration and method
        must be the ones given; see `resume_settings`). Every random stream, weight and lateral
        circuit is restored, so the result equals that of an uninterrupted run.
    test_run_samples : int or None
        Most test presentations in one Brian2 run: consecutive test sets are evaluated together up to
        this many samples (a larger set alone). None: the size of a task's supervised run
        (``protocol.epochs`` × training samples), so a test run holds no more spikes than training
        does. Results and run files do not depend on it; it trades Brian2's per-run set-up (~0.1 s)
        against the memory of one run's recorded spikes.
    """
    # Imports that pull in Brian2 stay here so that `hlopsim --help` and config errors are instant.
    from brian2 import Hz, second
    from models.from_config import lateral_spec, network_spec
    from sim import prefs
    from sim.learning import apply_update, credit
    from sim.network import SimNetwork
    from sim.recorder import RunRecorder

    started = time.perf_counter()
    method = make_method(method_name, config)
    proto, learn = config["protocol"], config["learning"]
    n_tasks, n_epochs, seed = proto["tasks"], proto["epochs"], proto["seed"]
    for key, value in (("protocol.tasks", n_tasks), ("protocol.epochs", n_epochs)):
        if value < 1:
            raise ValueError(f"{key} = {value} must be at least 1")
    if not learn["lr"] > 0 or not learn["logit_scale"] > 0:
        raise ValueError(f"learning.lr = {learn['lr']} and learning.logit_scale = {learn['logit_scale']} "
                         "must be positive")
    n_consolidation = config["lateral"].get("consolidation_epochs", 0) if method.uses_lateral else 0
    if not (isinstance(n_consolidation, int) and n_consolidation >= 0):
        raise ValueError(f"lateral.consolidation_epochs = {n_consolidation!r} must be a non-negative integer")
    prefs.configure(config["sim"]["target"])
    dataset = load_digits(test_size=config["data"]["test_size"], split_seed=config["data"]["split_seed"])
    seeds = np.random.SeedSequence(seed).spawn(4)
    task_rng, init_rng, order_rng, spike_rng = (np.random.default_rng(s) for s in seeds)
    train_size = config["data"]["train_size"]
    if not 0 <= train_size <= len(dataset.y_train):
        raise ValueError(f"data.train_size = {train_size} must be between 0 (all) and {len(dataset.y_train)}")
    if train_size:
        dataset = replace(dataset, x_train=dataset.x_train[:train_size], y_train=dataset.y_train[:train_size])
    tasks = permuted_tasks(dataset, n_tasks, task_rng)
    spec = network_spec(config["network"], dataset.n_features, dataset.n_classes)
    lateral = lateral_spec(config["lateral"]) if method.uses_lateral else None
    net = SimNetwork(spec, init_rng, lateral=lateral, n_tasks=n_tasks,
                     record_spikes=config["sim"]["record_spikes"] and out is not None)
    rate_hz, dt_s, n_steps = float(spec.input_max_rate / Hz), float(spec.dt / second), spec.n_steps
    coding = config["data"]["encoder"]
    if coding not in ENCODERS:
        raise ValueError(f"data.encoder = {coding!r} is unknown; expected one of {', '.join(ENCODERS)}")

    def encode(x):
        if coding == "regular":
            return regular_encode(x, rate_hz, dt_s, n_steps)
        return poisson_encode(x, rate_hz, dt_s, n_steps, spike_rng)

    # The test spikes are drawn once, so every evaluation sees exactly the same input. Consecutive test
    # sets share one Brian2 run (each run() costs ~0.1 s of set-up), as many as fit in `test_run_samples`
    # (by default the size of a task's supervised run: test memory does not grow with the task count).
    limit = n_epochs * len(dataset.y_train) if test_run_samples is None else test_run_samples
    test_groups = group_test_sets([len(t.y_test) for t in tasks], limit=limit)
    test_spikes = [concat_spikes([encode(tasks[j].x_test) for j in group]) for group in test_groups]

    recorder, first_task = None, 0
    R = np.full((n_tasks, n_tasks), np.nan)
    train_seconds, train_samples = 0.0, 0
    rngs = {"init": init_rng, "order": order_rng, "spike": spike_rng}
    if resume:
        recorder, state = RunRecorder.resume(out)
        first_task = state["task"] + 1
        for name, rng in rngs.items():
            rng.bit_generator.state = state["rng"][name]
        train_seconds, train_samples = state["train_seconds"], state["train_samples"]
        with h5py.File(out, "r") as f:
            R[:first_task] = f["metrics/accuracy_matrix"][:first_task]
            for weights, name in zip(net.weights, spec.weight_names):
                weights[:] = f[f"weights/{name}/after_task_{state['task']}"][:]
            for circuit, name, n_frozen in zip(net.lateral, spec.weight_names, state["lateral_frozen"]):
                circuit.restore(f[f"lateral/{name}/H_after_task_{state['task']}"][:], n_frozen, state["task"])
        net.push_weights()
    elif out is not None:
        recorder = RunRecorder.create(out, overwrite=overwrite, attrs={
            "protocol": proto["name"], "method": method.name, "seed": seed, "dt": dt_s,
            "n_steps_per_presentation": n_steps, "config": to_text(config),
            "software": json.dumps(_software_versions()), "command": " ".join(sys.argv),
            "codegen_target": prefs.current_target()})
        for group, name in zip(net.groups, spec.population_names):
            role = "input" if name == "input" else "output" if name == "output" else "hidden"
            model = "Poisson input (SpikeGeneratorGroup)" if role == "input" else spec.neuron.equations
            recorder.add_population(name, group.N // spec.batch_size, model, role)
        for task in tasks:
            recorder.write_task(task.index, task.name, permutation=task.permutation)

    losses = []
    bar = tqdm(total=(n_tasks - first_task) * (-(-n_epochs * len(dataset.y_train) // spec.batch_size)
                                + -(-n_consolidation * len(dataset.y_train) // spec.batch_size)
                                + sum(-(-spikes.n_samples // spec.batch_size) for spikes in test_spikes)),
               desc=method.name, unit="batch", disable=not progress, leave=False, miniters=1)
    try:
        for task in tasks[first_task:]:
            method.begin_task(net, task.index)
            net.set_lateral_learning(method.uses_lateral)
            # All epochs of a task form one Brian2 run (each run() has a fixed cost of ~0.1-0.3 s).
            orders = [order_rng.permutation(len(task.y_train)) for _ in range(n_epochs)]
            order = np.concatenate(orders)
            labels = task.y_train[order]
            epoch = np.repeat(np.arange(n_epochs), len(task.y_train))
            spikes = concat_spikes([encode(task.x_train[o]) for o in orders])

            def on_batch(batch):
                valid = batch.valid
                deltas, loss = credit(net.weights, batch.rates, labels[np.where(valid, batch.samples, 0)],
                                      valid, learn["logit_scale"])
                apply_update(net.weights, deltas, batch.rates, method.projections(net), learn["lr"])
                method.observe(batch.rates, valid & (epoch[np.where(valid, batch.samples, 0)] == n_epochs - 1))
                losses.append(loss)
                return True

            tick = time.perf_counter()
            activity = net.present(spikes, on_batch=on_batch, progress=bar)
            train_seconds += time.perf_counter() - tick
            train_samples += len(order)
            if recorder is not None:
                recorder.append_block({"task": task.index, "stage": task.index, "epoch": epoch,
                                       "phase": "train", "trial": order, "label": labels},
                                      activity.spikes, n_steps)
            if method.uses_lateral and n_consolidation:
                # Lateral plasticity only, on the task's final representation (weights fixed).
                orders = [order_rng.permutation(len(task.y_train)) for _ in range(n_consolidation)]
                order = np.concatenate(orders)
                tick = time.perf_counter()
                activity = net.present(concat_spikes([encode(task.x_train[o]) for o in orders]), progress=bar)
                train_seconds += time.perf_counter() - tick          # training time: learning the task
                train_samples += len(order)
                if recorder is not None:
                    recorder.append_block({"task": task.index, "stage": task.index,
                                           "epoch": n_epochs + np.repeat(np.arange(n_consolidation), len(task.y_train)),
                                           "phase": "consolidate", "trial": order, "label": task.y_train[order]},
                                          activity.spikes, n_steps)
            method.end_task(net, task.index)
            net.set_lateral_learning(False)

            for group, spikes_group in zip(test_groups, test_spikes):
                activity = net.present(spikes_group, progress=bar)
                start = 0
                for other in (tasks[j] for j in group):
                    stop = start + len(other.y_test)
                    correct = np.argmax(activity.scores[start:stop], axis=1) == other.y_test
                    R[task.index, other.index] = 100.0 * correct.mean()
                    start = stop
                if recorder is not None:
                    members = [tasks[j] for j in group]
                    recorder.append_block({"task": np.concatenate([np.full(len(t.y_test), t.index) for t in members]),
                                           "stage": task.index, "epoch": -1, "phase": "test",
                                           "trial": np.concatenate([np.arange(len(t.y_test)) for t in members]),
                                           "label": np.concatenate([t.y_test for t in members])},
                                          activity.spikes, n_steps)
            if recorder is not None:
                for name, weights in zip(spec.weight_names, net.weights):
                    recorder.write_weights(name, task.index, weights)
                for name, (rows, frozen) in zip(spec.weight_names, method.snapshots(net)):
                    recorder.write_lateral(name, task.index, rows, frozen)
                recorder.write_metrics(R)
                recorder.write_checkpoint(
                    task=task.index, train_seconds=train_seconds, train_samples=train_samples,
                    rng={name: rng.bit_generator.state for name, rng in rngs.items()},
                    lateral_frozen=[circuit.n_frozen for circuit in net.lateral])
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
