"""Where a permuted-digits run's forgetting comes from (a diagnostic on a run file; not a test).

Three tables, printed for one run file of ``hlop`` (or ``gpm``):

0. **Capacity.** Per weight layer and task: how many directions (top right singular vectors of the
   task's presynaptic activity alone, last supervised epoch) hold 90 / 95 / 97 / 99 % of its energy,
   their sum over the tasks, and the same for all tasks' activity stacked (each task scaled to equal
   energy), against the layer's input width. When the tasks together need more directions than the
   layer has, no projection can protect every task at that fraction and leave room to learn.

1. **Leftover energy.** Per weight layer, after each task ``t``: the fraction of task ``j``'s
   presynaptic activity energy (rates of the recorded spikes, the task's last supervised epoch) that
   lies outside the span of the rows frozen after task ``t``, ``‖A − A H⁺H‖²_F / ‖A‖²_F`` with the
   rows orthonormalised first (so a circuit is judged by its span, not its scale). Next to it the same
   for exact rows: each task adds as many top right singular vectors of its residual activity as the
   circuit added neurons (GPM's update with the circuit's counts). Old-task energy outside the
   frozen span is what later updates act on.
2. **Which layer forgets.** Per old task ``j``: test accuracy with both layers' weights from after
   task ``j``; with one layer's weights from after the last task (the other from after ``j``); with
   both from after the last task (= ``R[last, j]``). The network is simulated again with the run's
   settings on the input spikes the run recorded for those test presentations (any encoder; needs
   ``sim.record_spikes``), so the replay is deterministic.

Usage::

    python benchmarks/forgetting_sources.py RUN.h5 [--target cython|numpy]
"""
from __future__ import annotations

import argparse

import numpy as np

from hlopsim.protocols.experiment.methods import grow_basis
from hlopsim.sim.kernels import project_out


def orthonormal_rows(rows: np.ndarray) -> np.ndarray:
    """An orthonormal basis (as rows) of the span of ``rows``."""
    if len(rows) == 0:
        return rows
    q, _ = np.linalg.qr(rows.T)
    return q.T


def outside_fraction(A: np.ndarray, basis: np.ndarray) -> float:
    """``‖A − (A Bᵀ) B‖²_F / ‖A‖²_F`` for orthonormal rows ``B``."""
    residual = project_out(np.ascontiguousarray(A, dtype=np.float64), np.ascontiguousarray(basis))
    return float(np.sum(residual ** 2) / np.sum(A ** 2))


FRACTIONS = (0.90, 0.95, 0.97, 0.99)


def directions_needed(A: np.ndarray, fractions=FRACTIONS) -> list[int]:
    """Fewest top right singular vectors of ``A`` whose span holds each fraction of ``‖A‖²_F``."""
    energy = np.linalg.svd(A, compute_uv=False) ** 2
    held = np.cumsum(energy) / energy.sum()
    return [int(np.searchsorted(held, f * (1 - 1e-12)) + 1) for f in fractions]


def task_activity(run, layer: str) -> list[np.ndarray]:
    """Presynaptic rates of ``layer`` in each task's last supervised epoch (samples × inputs)."""
    pop = run.presynaptic_population(layer)
    last_epoch = run.config["protocol"]["epochs"] - 1
    return [run.rates(pop, run.select(task=j, phase="train", stage=j, epoch=last_epoch)) for j in range(run.n_tasks)]


def capacity(run) -> None:
    """Print table 0 for every weight layer of ``run``."""
    head = " ".join(f"{100 * f:4.0f}%" for f in FRACTIONS)
    for layer in run.lateral_layers:
        activity = task_activity(run, layer)
        width = activity[0].shape[1]
        print(f"\n{layer} ({width} inputs): directions holding a fraction of each task's activity energy")
        print(f"  {'task':>12s} {head}")
        counts = np.array([directions_needed(A) for A in activity])
        for j, row in enumerate(counts):
            print(f"  {j:12d} " + " ".join(f"{c:5d}" for c in row))
        print(f"  {'sum':>12s} " + " ".join(f"{c:5d}" for c in counts.sum(axis=0)))
        stacked = np.vstack([A / np.linalg.norm(A) for A in activity])
        print(f"  {'all stacked':>12s} " + " ".join(f"{c:5d}" for c in directions_needed(stacked)))


def leftover_energy(run) -> None:
    """Print table 1 for every weight layer of ``run`` (a `hlopsim.sim.runfile.RunFile`)."""
    for layer in run.lateral_layers:
        pop = run.presynaptic_population(layer)
        activity = task_activity(run, layer)
        exact = np.zeros((0, activity[0].shape[1]))
        print(f"\n{layer} (reads {pop}): energy of task j's activity outside the frozen span after task t, "
              "circuit | exact rows of the same number")
        for t in run.lateral_tasks(layer):
            H, frozen = run.lateral(layer, t)
            circuit = orthonormal_rows(H[frozen])
            exact, _ = grow_basis(exact, activity[t], 1.0, count=len(circuit) - len(exact))  # GPM, same count
            mine = " ".join(f"{outside_fraction(activity[j], circuit):.4f}" for j in range(t + 1))
            best = " ".join(f"{outside_fraction(activity[j], exact):.4f}" for j in range(t + 1))
            print(f"  after task {t} ({len(circuit):3d} rows): {mine} | {best}")


def layer_swaps(run, target: str) -> None:
    """Print table 2: old tasks' test accuracy with each layer's weights from after the last task."""
    from hlopsim.data.encoders import SpikeTrains
    from hlopsim.models.from_config import network_spec
    from hlopsim.sim import prefs
    from hlopsim.sim.network import SimNetwork

    config = run.config
    seg = run.segments()
    if not run.spikes_per_segment("input").any():
        raise SystemExit("the run recorded no input spikes (sim.record_spikes = false): nothing to replay")
    prefs.configure(target)
    spec = network_spec(config["network"], run.n_neurons("input"), run.n_neurons("output"))
    net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False)
    names, last = run.weight_names, run.n_tasks - 1
    weights = {t: [run.weights(name, t) for name in names] for t in range(run.n_tasks)}

    def accuracy(layer_weights, task) -> float:
        for mine, theirs in zip(net.weights, layer_weights):
            mine[:] = theirs
        net.push_weights()
        # The recorded input of the task's test presentations (the same spikes every stage was tested
        # with, whatever the encoder), in trial order.
        tested = np.flatnonzero((seg["phase"] == "test") & (seg["task"] == task["index"]) & (seg["stage"] == last))
        tested = tested[np.argsort(seg["trial"][tested], kind="stable")]
        owner, step, neuron = run.local_spikes("input", tested)
        position = np.zeros(len(seg["task"]), dtype=np.int64)
        position[tested] = np.arange(len(tested))
        sample = position[owner]
        order = np.lexsort((neuron, step, sample))
        spikes = SpikeTrains(sample=sample[order], step=step[order], neuron=neuron[order], n_samples=len(tested),
                             n_neurons=spec.input_size, n_steps=spec.n_steps)
        labels = seg["label"][tested]
        return 100.0 * float(np.mean(np.argmax(net.present(spikes).scores, axis=1) == labels))

    print(f"\ntest accuracy of old task j with each layer's weights from after task j or after task {last}")
    print("  task j | own    " + " ".join(f"{name}@{last:<4d}" for name in names) + f" all@{last}")
    for task in run.tasks()[:last]:
        j = task["index"]
        row = [accuracy(weights[j], task)]
        for swapped in range(len(names)):
            mixed = [weights[last][l] if l == swapped else weights[j][l] for l in range(len(names))]
            row.append(accuracy(mixed, task))
        row.append(accuracy(weights[last], task))
        print(f"  {j:6d} | " + " ".join(f"{value:7.1f}" for value in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_file")
    parser.add_argument("--target", default="cython", choices=("cython", "numpy"))
    args = parser.parse_args()
    from hlopsim.sim.runfile import RunFile
    with RunFile(args.run_file) as run:
        capacity(run)
        leftover_energy(run)
        layer_swaps(run, args.target)


if __name__ == "__main__":
    main()
