"""``hlopsim plot FILE WHAT``: figures of a run file, written as PNG.

Each ``*_figure`` function takes an open `hlopsim.sim.runfile.RunFile` and returns a
``matplotlib.figure.Figure`` built without pyplot, so they can also be used from scripts and
notebooks; `plot_command` (the CLI) selects the Agg backend first and saves the figure.

Kinds (``WHAT``):

- ``raster``: spikes of several populations stacked vertically, for a time window of the
  presentation clock or the first few segments of a task/phase.
- ``psth``: population rate (Hz per neuron) over the presentation, averaged over segments
  (default: the test presentations of the last stage).
- ``accuracy``: heatmap of the accuracy matrix with the values in the cells.
- ``acc-curve``: accuracy on each task after each training stage, and their mean.
- ``angles``: principal angles between the activity subspaces (PCA of a layer's presynaptic
  rates) of successive tasks, and between the rows of ``H`` each task grew and that task's
  residual activity subspace, per lateral layer.
- ``weights``: histograms of each layer's weights after each task, in mV (weight × spike cost).

Raster and PSTH select segments by ``task``, ``phase`` and ``stage`` (the task last trained);
their titles name the stage(s), task(s) and phase(s) shown.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hlopsim.protocols.reports.inspect import method_uses_lateral
from hlopsim.sim.runfile import RunFile, RunFileError

__all__ = ["KINDS", "parse_window", "raster_figure", "psth_figure", "accuracy_figure", "acc_curve_figure",
           "angles_figure", "spike_cost_volts", "weights_figure", "SubspaceAngles", "subspace_angles_by_layer",
           "plot_command"]

KINDS = ("raster", "psth", "accuracy", "acc-curve", "angles", "weights")
"""Plot kinds accepted by ``hlopsim plot``."""

RASTER_SEGMENTS = 5
"""Presentations shown by a raster without --window (the first ones of the selection)."""

# which options each kind uses; others are refused
_USES = {
    "raster": {"task", "phase", "stage", "population", "window"},
    "psth": {"task", "phase", "stage", "population"},
    "accuracy": set(),
    "acc-curve": set(),
    "angles": set(),
    "weights": {"task"},
}
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _figure(width_in, height_in):
    from matplotlib.figure import Figure
    return Figure(figsize=(width_in, height_in), layout="constrained")


def _title(run: RunFile) -> str:
    return f"{run.path.name}: {run.method} on {run.protocol}, seed {run.seed}"


def parse_window(text: str, name: str = "") -> tuple[float, float]:
    """Parse ``"START:STOP"`` (seconds on the presentation clock).

    Parameters
    ----------
    text : str
        E.g. ``"0:0.2"`` or ``"1.5:1.7"``.
    name : str
        File name for the error message.

    Returns
    -------
    tuple of float
        ``(start_s, stop_s)`` with ``0 <= start_s < stop_s``, in seconds.

    Raises
    ------
    RunFileError
        If the text is not two finite numbers with ``0 <= START < STOP``.
    """
    expected = "expected START:STOP in seconds with 0 <= START < STOP, e.g. 0:0.2"
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start_s, stop_s = float(parts[0]), float(parts[1])
    except ValueError:
        raise RunFileError(f"{name}: --window {text!r} is malformed; {expected}") from None
    if not (math.isfinite(start_s) and math.isfinite(stop_s) and 0 <= start_s < stop_s):
        raise RunFileError(f"{name}: --window {text!r} is not a valid interval; {expected}")
    return start_s, stop_s


def _selection(run: RunFile, task, phase, stage=None) -> np.ndarray:
    """Segments with the given task, phase and stage; without a stage, those of the last stage
    that has segments of that task and phase (a test of task 3 then shows it after the last
    training, not before task 3 was trained)."""
    sel = run.select(task=task, phase=phase, stage=stage)
    if not len(sel):
        given = ", ".join(f"{k}={v!r}" for k, v in (("task", task), ("phase", phase), ("stage", stage))
                          if v is not None)
        if not given:
            raise run.error("has no complete segment to plot")
        raise run.error(f"no complete segment has {given}; the file holds {run.n_segments} complete segments")
    if stage is None and (task is not None or phase is not None):
        stages = run.segments()["stage"][sel]
        sel = sel[stages == stages.max()]
    return sel


def _shown(seg, sel) -> str:
    """What a selection of segments shows, e.g. ``"stage 4, task 3, test"`` (ranges when mixed)."""
    parts = []
    for key, word in (("stage", "stage"), ("task", "task")):
        values = np.unique(seg[key][sel])
        if values.size == 1:
            parts.append(f"{word} {int(values[0])}")
        elif values.size:
            parts.append(f"{word}s {int(values.min())}–{int(values.max())}")
    phases = list(dict.fromkeys(str(p) for p in seg["phase"][sel]))
    if phases:
        parts.append("/".join(phases))
    return ", ".join(parts)


def _segment_label(seg, s) -> str:
    return f"#{s} t{seg['task'][s]} {seg['phase'][s]} y={seg['label'][s]}"


# ---------------------------------------------------------------------------------- raster


def raster_figure(run: RunFile, populations=None, window=None, task=None, phase=None, stage=None):
    """Spike raster of several populations stacked vertically, one colour each.

    Parameters
    ----------
    run : RunFile
    populations : list of str, optional
        Populations from top to bottom; default all (input, hidden, output).
    window : tuple of float, optional
        ``(start_s, stop_s)`` on the presentation clock, in seconds.
    task : int, optional
        Without ``window``: show the first `RASTER_SEGMENTS` segments of this task.
    phase : str, optional
        Without ``window``: ... of this phase (e.g. ``"train"``, ``"test"``, ``"consolidate"``).
    stage : int, optional
        Without ``window``: ... presented after training task ``stage``. Default: with a task or
        phase given, the last stage that has such segments.

    Returns
    -------
    matplotlib.figure.Figure
        With neither ``window`` nor task/phase/stage: the first `RASTER_SEGMENTS` presentations
        of the run. Segment boundaries are dotted lines labelled with segment index, task and
        phase; the title names the stage(s), task(s) and phase(s) shown.
    """
    populations = list(run.populations if populations is None else populations)
    for pop in populations:
        run.n_neurons(pop)
    if window is not None and (task is not None or phase is not None or stage is not None):
        raise run.error("give --window or --task/--phase/--stage for a raster, not both")
    seg = run.segments()
    presentation_s = run.presentation_s
    if window is None and task is None and phase is None and stage is None:
        if not run.n_segments:
            raise run.error("has no complete segment to plot")
        stop = min(RASTER_SEGMENTS, run.n_segments)
        window = (float(seg["start_s"][0]), float(seg["stop_s"][stop - 1]))
    if window is not None:
        end_s = float(seg["stop_s"][-1]) if run.n_segments else 0.0
        if window[0] >= end_s:
            raise run.error(f"window {window[0]:g}:{window[1]:g} s starts after the recorded data, "
                            f"which ends at {end_s:g} s")
        shown = np.flatnonzero((seg["stop_s"] > window[0]) & (seg["start_s"] < window[1]))
        xlabel = "time on the presentation clock (s)"
        boundaries = [(float(seg["start_s"][s]), s) for s in shown]
        xlim = window
    else:
        shown = _selection(run, task, phase, stage)[:RASTER_SEGMENTS]
        xlabel = "time (s), the selected presentations side by side"
        boundaries = [(k * presentation_s, s) for k, s in enumerate(shown)]
        xlim = (0.0, len(shown) * presentation_s)

    sizes = [run.n_neurons(pop) for pop in populations]
    ratios = [max(1.0, math.sqrt(n)) for n in sizes]
    fig = _figure(9, 1.2 + 0.35 * sum(ratios))
    axes = fig.subplots(len(populations), 1, sharex=True, height_ratios=ratios, squeeze=False)[:, 0]
    total = 0
    for k, (ax, pop, n) in enumerate(zip(axes, populations, sizes)):
        if window is not None:
            times, neurons = run.spikes(pop, window=window)
        else:
            owner, local, neurons = run.local_spikes(pop, shown)
            position = np.searchsorted(shown, owner)
            times = position * presentation_s + local * run.dt
        total += len(times)
        color = _COLORS[k % len(_COLORS)]
        marker_size = max(1.0, min(6.0, 200.0 / n))
        ax.scatter(times, neurons, s=marker_size, marker="|", color=color, linewidths=0.8, rasterized=True)
        ax.set_ylim(-0.5, n - 0.5)
        ax.set_ylabel(f"{pop}\n({n})", color=color)
        for x, _ in boundaries:
            ax.axvline(x, color="0.6", lw=0.6, ls=":")
    if len(boundaries) <= 12:
        for x, s in boundaries:
            axes[0].text(max(x, xlim[0]), 1.01, _segment_label(seg, s), transform=axes[0].get_xaxis_transform(),
                         fontsize=7, va="bottom", clip_on=False)
    axes[-1].set_xlim(*xlim)
    axes[-1].set_xlabel(xlabel)
    fig.suptitle(f"{_title(run)}\nspike raster of {_shown(seg, shown) or 'no segment'}, {total} spikes", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------- psth


def psth_figure(run: RunFile, populations=None, task=None, phase=None, stage=None, max_bins: int = 100):
    """Population rate over the presentation, averaged over the selected segments.

    ``rate = spikes in the bin / (presentations · neurons · bin width)``, in Hz per neuron.

    Parameters
    ----------
    run : RunFile
    populations : list of str, optional
        One panel each; default all populations.
    task : int, optional
        Average only over segments presenting this task.
    phase : str, optional
        ... and of this phase. Default ``"test"`` when neither task, phase nor stage is given.
    stage : int, optional
        ... presented after training task ``stage``. Default: the last stage that has segments
        of the task and phase (so, alone, the test presentations of the last stage).
    max_bins : int
        At most this many bins; a bin is a whole number of steps of ``dt``.

    Returns
    -------
    matplotlib.figure.Figure
        Rate in Hz per neuron against time from the presentation start, in ms.
    """
    populations = list(run.populations if populations is None else populations)
    for pop in populations:
        run.n_neurons(pop)
    if task is None and phase is None and stage is None and "test" in run.phase_names \
            and run.select(phase="test").size:
        phase = "test"
    sel = _selection(run, task, phase, stage)
    n_steps = run.n_steps
    steps_per_bin = max(1, math.ceil(n_steps / max_bins))
    n_bins = math.ceil(n_steps / steps_per_bin)
    edges_steps = np.minimum(np.arange(n_bins + 1) * steps_per_bin, n_steps)
    width_s = np.diff(edges_steps) * run.dt
    fig = _figure(8, 1.0 + 1.8 * len(populations))
    axes = fig.subplots(len(populations), 1, sharex=True, squeeze=False)[:, 0]
    for k, (ax, pop) in enumerate(zip(axes, populations)):
        _, local, _, _ = run._local_steps(pop, sel, want_owner=False)  # steps only: the neurons are not needed
        counts = np.bincount(np.minimum(local // steps_per_bin, n_bins - 1), minlength=n_bins)
        rate_hz = counts / (len(sel) * run.n_neurons(pop) * width_s)
        color = _COLORS[k % len(_COLORS)]
        ax.stairs(rate_hz, edges_steps * run.dt * 1e3, fill=True, color=color, alpha=0.75)
        ax.set_ylabel(f"{pop}\nrate (Hz)")
        ax.set_ylim(bottom=0)
    axes[-1].set_xlim(0, n_steps * run.dt * 1e3)
    axes[-1].set_xlabel(f"time from presentation start (ms), bins of {steps_per_bin * run.dt * 1e3:g} ms")
    what = _shown(run.segments(), sel)
    fig.suptitle(f"{_title(run)}\nPSTH, mean over {len(sel)} presentations ({what})", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------- accuracy


def _metrics_text(run: RunFile) -> str:
    s = run.summary()
    if not s["tasks_evaluated"]:
        return "no task evaluated yet"
    return f"ACC {s['ACC']:.1f}  BWT {s['BWT']:.1f}  forgetting {s['forgetting']:.1f}"


def accuracy_figure(run: RunFile):
    """Heatmap of the accuracy matrix ``R[i, j]`` (%), values written in the cells.

    Returns
    -------
    matplotlib.figure.Figure
        Rows: after training task i; columns: task j tested; unmeasured cells left blank.
    """
    R = run.accuracy_matrix()
    n = R.shape[0]
    if n == 0:
        raise run.error("has no accuracy matrix and no task description")
    side = 2.5 + 0.7 * n
    fig = _figure(side + 1.2, side)
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(R), cmap="viridis", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, label="% correct", shrink=0.8)
    for i in range(n):
        for j in range(n):
            if np.isfinite(R[i, j]):
                ax.text(j, i, f"{R[i, j]:.1f}", ha="center", va="center", fontsize=9,
                        color="black" if R[i, j] > 60 else "white")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("task tested (j)")
    ax.set_ylabel("after training task (i)")
    ax.set_title(f"{_title(run)}\naccuracy R[i, j]; {_metrics_text(run)}", fontsize=9)
    return fig


def acc_curve_figure(run: RunFile):
    """Accuracy on each task against the training stage, and the mean over the tasks trained.

    Returns
    -------
    matplotlib.figure.Figure
        x: after training task i; y: % correct. Solid from the stage a task was trained on,
        dotted before (untrained tasks); black: mean over tasks 0..i.
    """
    R = run.accuracy_matrix()
    n = R.shape[0]
    if n == 0 or not np.isfinite(R).any():
        raise run.error("has no measured accuracy to plot (no task evaluated yet)")
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    stages = np.arange(n)
    cmap = _colormap("viridis")
    for j in range(n):
        color = cmap(0.85 * j / max(1, n - 1))
        ax.plot(stages[: j + 1], R[: j + 1, j], ls=":", color=color, lw=1, alpha=0.6)
        ax.plot(stages[j:], R[j:, j], marker="o", ms=4, color=color, label=f"task {j}")
    mean = np.array([np.mean(R[i, : i + 1]) if np.isfinite(R[i, : i + 1]).all() else np.nan for i in stages])
    ax.plot(stages, mean, color="black", lw=2.5, marker="s", label="mean of trained tasks")
    ax.set_xticks(stages)
    ax.set_xlabel("after training task")
    ax.set_ylabel("% correct")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left", ncol=2)
    ax.set_title(f"{_title(run)}\n{_metrics_text(run)}", fontsize=9)
    return fig


def _colormap(name):
    from matplotlib import colormaps
    return colormaps[name]


# ---------------------------------------------------------------------------------- lateral, weights


@dataclass
class SubspaceAngles:
    """Principal angles (degrees, ascending; 90 = orthogonal) of one lateral layer.

    Attributes
    ----------
    layer, population : str
        The lateral layer and the presynaptic population whose activity it projects.
    between_tasks : list of (int, int, ndarray)
        ``(t_prev, t, angles)``: between the activity subspaces of successive tasks that grew
        neurons. The activity subspace of task ``t`` is spanned by the top-``k_t`` right singular
        vectors of the population's rate matrix (segments × neurons) in the last training epoch
        of task ``t``, ``k_t`` = lateral neurons grown at task ``t``.
    learned_vs_activity : list of (int, ndarray)
        ``(t, angles)``: between the rows of ``H`` grown at task ``t`` and the top-``k_t``
        subspace of task ``t``'s activity *after* projecting out the rows frozen before task
        ``t`` (what those neurons should learn). Small angles = the circuit
        learned its task's principal subspace.
    """

    layer: str
    population: str
    between_tasks: list
    learned_vs_activity: list


def subspace_angles_by_layer(run: RunFile) -> list[SubspaceAngles]:
    """Principal angles between task activity subspaces and the subspaces the lateral circuit learned.

    Rows of ``H`` grown at task ``t`` are those nonzero after task ``t`` and zero before. Tasks
    that grew no neuron, or have no recorded training spikes, are skipped.

    Returns
    -------
    list of SubspaceAngles
        One per lateral layer, in layer order.
    """
    from scipy.linalg import subspace_angles

    def top_rows(X, k):
        return np.linalg.svd(X, full_matrices=False)[2][:k]

    found = []
    for layer in run.lateral_layers:
        pop = run.presynaptic_population(layer)
        grown_before, prior = None, None
        activity, learned = [], []
        for t in run.lateral_tasks(layer):
            H, _ = run.lateral(layer, t)
            grown = np.any(H != 0, axis=1)
            new = grown if grown_before is None else grown & ~grown_before
            old_rows = H[grown_before] if grown_before is not None else H[:0]
            grown_before = grown
            train = run.select(task=t, phase="train")
            if not new.any() or train.size == 0:
                continue
            last_epoch = run.segments()["epoch"][train].max()
            X = run.rates(pop, run.select(task=t, phase="train", epoch=int(last_epoch)))
            k = int(new.sum())
            activity.append((t, top_rows(X, k)))
            residual = X - (X @ old_rows.T) @ old_rows
            learned.append((t, np.sort(np.degrees(subspace_angles(H[new].T, top_rows(residual, k).T)))))
        between = [(t0, t1, np.sort(np.degrees(subspace_angles(A.T, B.T))))
                   for (t0, A), (t1, B) in zip(activity, activity[1:])]
        found.append(SubspaceAngles(layer, pop, between, learned))
    return found


def angles_figure(run: RunFile):
    """Principal angles of task activity subspaces and of the subspaces the lateral circuit learned.

    Returns
    -------
    matplotlib.figure.Figure
        One column per lateral layer. Top: angles between the activity subspaces of successive
        tasks (how much the tasks overlap in that layer's input). Bottom: angles between the rows
        each task grew and that task's residual activity subspace (how well the circuit learned).

    Raises
    ------
    RunFileError
        If the file has no lateral circuit (e.g. a finetune run) or no task that grew lateral
        neurons with recorded training spikes.
    """
    if not run.lateral_layers:
        if method_uses_lateral(run.method):
            raise run.error("plot angles needs lateral (HLOP) snapshots in /lateral, and this run stopped "
                            "before the first was written (at the end of task 0)")
        raise run.error(f"plot angles needs the lateral (HLOP) circuit in /lateral, which this "
                        f"{run.method} run does not have; use the run file of a method with HLOP")
    from matplotlib.ticker import MaxNLocator

    layers = subspace_angles_by_layer(run)
    if not any(found.learned_vs_activity for found in layers):
        raise run.error("plot angles needs the training spikes of at least one task that grew lateral "
                        "neurons; this file has none (recorded with sim.record_spikes = false?)")
    fig = _figure(4.2 * len(layers) + 0.5, 7.6)
    axes = fig.subplots(2, len(layers), sharey=True, squeeze=False)
    cmap = _colormap("plasma")
    for column, found in enumerate(layers):
        top, bottom = axes[0, column], axes[1, column]
        for k, (t0, t1, angles) in enumerate(found.between_tasks):
            top.plot(np.arange(1, len(angles) + 1), angles, marker="o",
                     color=cmap(k / max(1, len(found.between_tasks))), label=f"task {t0} vs {t1}")
        for k, (t, angles) in enumerate(found.learned_vs_activity):
            bottom.plot(np.arange(1, len(angles) + 1), angles, marker="o",
                        color=cmap(k / max(1, len(found.learned_vs_activity))), label=f"task {t}")
        top.set_title(f"{found.layer} (input: {found.population})\nactivity subspaces of successive tasks",
                      fontsize=9)
        bottom.set_title("rows grown at a task vs its residual activity subspace", fontsize=9)
        for ax, lines in ((top, found.between_tasks), (bottom, found.learned_vs_activity)):
            ax.axhline(90, color="0.5", ls="--", lw=0.8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(0, 95)
            ax.grid(alpha=0.3)
            if lines:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "fewer than 2 tasks grew neurons", ha="center", transform=ax.transAxes)
        bottom.set_xlabel("principal angle index")
    for ax in axes[:, 0]:
        ax.set_ylabel("angle (degrees; 90 = orthogonal)")
    fig.suptitle(f"{_title(run)}\nprincipal angles (PCA of the presynaptic rates, last training epoch)",
                 fontsize=10)
    return fig


def spike_cost_volts(run: RunFile) -> float | None:
    """The spike cost of the run's neuron model, in volts, or None if it cannot be found.

    A stored weight ``w`` (dimensionless, in units of the spike cost) is the jump
    ``w · spike_cost`` of the postsynaptic ``v`` per presynaptic spike. The spike cost is that of
    the `NeuronModel` the stored configuration's ``[neuron]`` section builds
    (`hlopsim.protocols.experiment.config.neuron_model`, which imports Brian2), so defaults and
    ``lif``'s ``network.v_threshold`` are resolved as in the run itself.

    Returns
    -------
    float or None
        Volts; None when the file stores no configuration or it does not build a neuron model
        (a file written by other code, or of an older configuration layout).
    """
    config = run.config
    if not isinstance(config.get("neuron"), dict):
        return None
    try:
        from hlopsim.protocols.experiment.config import neuron_model
        model = neuron_model(config)
        from brian2 import volt
        value = float(model.spike_cost / volt)
    except Exception:  # noqa: BLE001 (any failure means: not known; the plot says so)
        return None
    return value if math.isfinite(value) and value > 0 else None


def weights_figure(run: RunFile, task=None):
    """Histograms of each layer's weights after each task (or after ``task`` only).

    Weights are shown in millivolts, ``w · spike_cost`` (`spike_cost_volts`): the Brian2 synaptic
    weight, i.e. the jump of the postsynaptic ``v`` per presynaptic spike for delta synapses and
    the scale the other synapse models normalise their current or conductance to. If the spike
    cost cannot be found, in units of the spike cost, and the axis label says so.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per weight layer, one step histogram per task.
    """
    names = run.weight_names
    if not names:
        raise run.error("has no weight snapshots (/weights is empty)")
    if task is not None:
        run.check_task(task)
    cost = spike_cost_volts(run)
    scale = 1.0 if cost is None else cost * 1e3
    network = run.config.get("network")
    synapse = network.get("synapse", "delta") if isinstance(network, dict) else "delta"
    meaning = "jump of v per spike" if synapse == "delta" else f"weight × spike cost, {synapse} synapses"
    unit = ("units of the spike cost; spike cost unknown: no neuron model in the stored configuration"
            if cost is None else f"mV, {meaning}; spike cost {cost * 1e3:g} mV")
    fig = _figure(4.2 * len(names) + 0.5, 4.0)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    cmap = _colormap("viridis")
    n_tasks = max(1, run.n_tasks)
    for ax, name in zip(axes, names):
        tasks = run.weight_tasks(name) if task is None else [task]
        arrays = [run.weights(name, t).ravel() * scale for t in tasks]
        values = np.concatenate(arrays)
        n_bins = int(np.clip(1.5 * math.sqrt(arrays[0].size), 10, 80))
        bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=n_bins)
        for t, w in zip(tasks, arrays):
            ax.hist(w, bins=bins, histtype="step", lw=1.4, color=cmap(0.85 * t / max(1, n_tasks - 1)),
                    label=f"after task {t}")
        shape = run.weights(name, tasks[0]).shape
        ax.set_title(f"{name} ({shape[0]} × {shape[1]})" if len(shape) == 2 else name)
        ax.set_xlabel(f"weight ({unit})", fontsize=8 if cost is None else None)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("synapses")
    after = "after each task" if task is None else f"after task {task}"
    fig.suptitle(f"{_title(run)}\nweight distributions {after}", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------- command


def _parse_task(text, name, flag="--task"):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise RunFileError(f"{name}: {flag} {text!r} is not an integer; expected a task index 0, 1, ...") from None


def plot_command(path, what: str, *, task=None, phase=None, population=None, window=None, out=None,
                 dpi: int = 120, stage=None) -> int:
    """Write the figure ``what`` of run file ``path`` as a PNG; print its path; return 0.

    Parameters
    ----------
    path : str or os.PathLike
        The run file.
    what : str
        One of `KINDS`.
    task : str or int, optional
        Task index (raster, psth: segments of this task; weights: after this task).
    phase : str, optional
        Phase name (raster, psth), e.g. ``"train"``, ``"test"``, ``"consolidate"``.
    stage : str or int, optional
        Stage (index of the task last trained) of the segments shown (raster, psth); default the
        last stage with segments of the task and phase.
    population : str, optional
        Population, or several comma-separated (raster, psth); default all.
    window : str, optional
        ``"START:STOP"`` in seconds on the presentation clock (raster).
    out : str or os.PathLike, optional
        Image to write; default ``<file stem>-<what>.png`` next to the run file. A name without
        a suffix gets ``.png`` (the format matplotlib writes), a suffix such as ``.pdf`` or
        ``.svg`` chooses that format.
    dpi : int
        Resolution, dots per inch.

    Raises
    ------
    RunFileError
        For an unknown kind, an option the kind does not use, an out-of-range task, an
        unknown population or phase, a malformed window, ``angles`` without a lateral
        circuit, a missing output folder, or a file that cannot be read.
    """
    name = str(path)
    if what not in KINDS:
        raise RunFileError(f"{name}: plot kind {what!r} is unknown; expected one of {', '.join(KINDS)}")
    given = {"task": task, "phase": phase, "stage": stage, "population": population, "window": window}
    unused = [f"--{k}" for k, v in given.items() if v is not None and k not in _USES[what]]
    if unused:
        uses = ", ".join(f"--{k}" for k in sorted(_USES[what])) or \
            "none of --task/--phase/--stage/--population/--window"
        raise RunFileError(f"{name}: plot {what} does not use {', '.join(unused)}; it uses {uses}")
    if task is not None:
        task = _parse_task(task, name)
    if stage is not None:
        stage = _parse_task(stage, name, "--stage")
    if window is not None:
        window = parse_window(window, name)
    populations = None
    if population is not None:
        populations = [p.strip() for p in str(population).split(",") if p.strip()]
        if not populations:
            raise RunFileError(f"{name}: --population {population!r} names no population")
    out = Path(out) if out is not None else Path(path).with_name(f"{Path(path).stem}-{what}.png")
    if not out.suffix:
        out = out.with_name(out.name + ".png")  # what matplotlib would write: print the real name
    if not out.parent.resolve().is_dir():
        raise RunFileError(f"{out}: folder {str(out.parent)!r} does not exist; expected an existing folder")
    if out.is_dir():
        raise RunFileError(f"{out}: is a folder; expected the path of the image to write")
    if not os.access(out.parent, os.W_OK):
        raise RunFileError(f"{out}: folder {str(out.parent)!r} is not writable (read-only?)")

    with RunFile(path) as run:
        if task is not None:
            run.check_task(task)
        if stage is not None:
            run.check_task(stage, what="stage")
        import matplotlib
        matplotlib.use("Agg")  # files only, no display; must precede any pyplot import
        try:
            if what == "raster":
                fig = raster_figure(run, populations, window=window, task=task, phase=phase, stage=stage)
            elif what == "psth":
                fig = psth_figure(run, populations, task=task, phase=phase, stage=stage)
            elif what == "accuracy":
                fig = accuracy_figure(run)
            elif what == "acc-curve":
                fig = acc_curve_figure(run)
            elif what == "angles":
                fig = angles_figure(run)
            else:
                fig = weights_figure(run, task=task)
        except OSError as err:
            raise run.error(f"cannot be read (truncated or damaged?): {' '.join(str(err).split())}") from None
    try:
        fig.savefig(out, dpi=dpi)
    except OSError as err:
        raise RunFileError(f"{out}: cannot write the figure: {' '.join(str(err).split())}") from None
    except ValueError as err:  # a suffix matplotlib has no writer for
        raise RunFileError(f"{out}: {' '.join(str(err).split())}") from None
    print(out)
    return 0
