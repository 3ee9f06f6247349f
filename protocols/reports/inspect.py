"""``hlopsim inspect FILE [--json]``: what a run file holds, in one screen (or one JSON object).

Everything is read from the segment table, ``segment_end`` and the small snapshot datasets; the
spike arrays themselves are never loaded, so the time to inspect a run does not grow with its spikes.
"""
from __future__ import annotations

import json
import math

import h5py
import numpy as np

from hlopsim.sim.runfile import RunFile
from hlopsim.sim.row_measures import UNSETTLED_ROW_DEVIATION

__all__ = ["collect", "format_text", "inspect_command", "jsonable", "lateral_spectra", "method_uses_lateral",
           "transfer_metrics"]

# Settings shown in the one-line configuration summary (all are in the JSON's full "config").
SUMMARY_KEYS = (
    ("protocol", "tasks"), ("protocol", "epochs"), ("data", "train_size"), ("data", "test_size"),
    ("data", "encoder"), ("network", "hidden"), ("network", "batch_size"), ("network", "dt"),
    ("network", "presentation"), ("network", "input_max_rate"), ("learning", "lr"),
    ("lateral", "copies"), ("lateral", "first_task"), ("lateral", "per_task"), ("sim", "target"),
)


def _finite_or_none(value):
    """A float for JSON: NaN and infinities become None (null)."""
    value = float(value)
    return value if math.isfinite(value) else None


def jsonable(value):
    """``value`` with numpy scalars and arrays made plain and non-finite floats made None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def method_uses_lateral(method: str | None) -> bool | None:
    """Whether continual-learning method ``method`` (e.g. a run's `RunFile.method`) has a lateral
    (HLOP) circuit; None if the method is unknown to this hlopsim.

    A run file cannot tell by itself: a run of such a method killed before its first task ended
    has no lateral snapshot yet.
    """
    from hlopsim.protocols.experiment.methods import METHODS

    found = METHODS.get(method)
    return None if found is None else bool(found.uses_lateral)


def transfer_metrics(run: RunFile) -> dict:
    """Forward transfer and learning accuracy of a run, from its accuracy matrix and initial accuracy.

    With ``k`` the tasks evaluated so far (`protocols.metrics.filled_tasks`), on the filled block
    ``R[:k, :k]`` (as ACC and BWT: as if the run had ended after task ``k - 1``):

    - learning accuracy ``R[j, j]`` per task ``j < k`` and its mean (`protocols.metrics.learning_accuracy`);
    - FWT ``= mean_{1 <= j < k} (R[j-1, j] - b[j])`` with ``b`` the stored ``/metrics/initial_accuracy``
      (every task's accuracy with the initial weights; `protocols.metrics.forward_transfer`).

    Reads ``/metrics/accuracy_matrix`` and ``/metrics/initial_accuracy`` (percent).

    Returns
    -------
    dict
        ``initial_accuracy`` (list of %, None for a file written before it was stored),
        ``learning_accuracy`` (list of % per evaluated task), ``learning_accuracy_mean`` and ``FWT``
        (percentage points; NaN when undefined: no task evaluated, fewer than two for FWT, or no
        initial accuracy).

    Raises
    ------
    RunFileError
        If ``/metrics/initial_accuracy`` is not one number per task (damaged file).
    """
    from hlopsim.protocols.metrics import filled_tasks, forward_transfer, learning_accuracy

    R = run.accuracy_matrix()
    n = len(R)
    b = None
    stored = run.h5.get("metrics/initial_accuracy")
    if stored is not None:
        if not isinstance(stored, h5py.Dataset) or stored.dtype.kind not in "iuf" or stored.shape != (n,):
            raise run.error(f"metrics/initial_accuracy has shape {getattr(stored, 'shape', None)}; expected one "
                            f"accuracy per task ({n},) (damaged file?)")
        b = np.asarray(stored[()], dtype=np.float64)
    k = filled_tasks(R)
    learned = learning_accuracy(R[:k, :k]) if k else np.zeros(0)
    fwt = math.nan
    if b is not None and k >= 2 and np.isfinite(b[1:k]).all():
        fwt = forward_transfer(R[:k, :k], b[:k])
    return {"initial_accuracy": None if b is None else b.tolist(), "learning_accuracy": learned.tolist(),
            "learning_accuracy_mean": float(learned.mean()) if k else math.nan, "FWT": fwt}


def lateral_spectra(run: RunFile) -> dict[str, list[dict]]:
    """Fill and spectrum of every lateral circuit (or gpm basis) after every task.

    For layer ``l`` after task ``t``, with ``H_f`` the frozen (protecting) rows of the stored
    ``/lateral/<l>/H_after_task_<t>`` (``k`` rows of ``n`` inputs, mask ``frozen_after_task_<t>``):

    - fill ``= k / n``: the fraction of the layer's input space the protected neurons span at most
      (what is left for later tasks to learn in shrinks with it);
    - spectrum: the eigenvalues of ``H_f H_fᵀ`` (``k × k``), ascending; all 1 for orthonormal rows
      (Oja's fixed point), an eigenvalue far from 1 a direction the projection over- or under-removes.

    Returns
    -------
    dict of str to list of dict
        ``{layer: [{"task", "inputs" (n), "protected" (k), "fill", "spectrum" (list)}, ...]}``.
    """
    found = {}
    for layer in run.lateral_layers:
        rows = []
        for task in run.lateral_tasks(layer):
            H, frozen = run.lateral(layer, task)
            kept = H[frozen]
            spectrum = np.linalg.eigvalsh(kept @ kept.T) if len(kept) else np.zeros(0)
            rows.append({"task": task, "inputs": int(H.shape[1]), "protected": int(len(kept)),
                         "fill": len(kept) / H.shape[1] if H.shape[1] else math.nan, "spectrum": spectrum.tolist()})
        found[layer] = rows
    return found


def collect(run: RunFile) -> dict:
    """Everything `inspect` reports, as a JSON-serialisable dict.

    Parameters
    ----------
    run : RunFile
        An open run file.

    Returns
    -------
    dict
        Keys ``file``, ``format_version``, ``protocol``, ``method``, ``seed``, ``dt_s``,
        ``n_steps_per_presentation``, ``presentation_s``, ``created``, ``command``,
        ``codegen_target``, ``config`` (full), ``config_summary``, ``software``, ``complete``
        (finished and all datasets agree), ``complete_flag`` (the file's attribute),
        ``partial_rows``, ``n_segments`` (complete ones), ``last_complete_segment`` (dict or
        None), ``timing`` (s), ``populations`` (list: name, role, n_neurons, n_spikes,
        mean_rate_hz, rates_hz per task and phase), ``segments`` (count per task and phase),
        ``accuracy`` (matrix in %, None where not measured; ACC, BWT, forgetting in
        percentage points; tasks_evaluated; FWT, learning_accuracy per evaluated task,
        learning_accuracy_mean and initial_accuracy, see `transfer_metrics`; None where
        undefined or, for a file written before the initial accuracy was stored, not measured),
        ``states`` (recorded state variables: population, variable, unit, neurons, number of
        presentations, their stages and phases; empty if none) and
        ``lateral`` (per layer, per task: allocated, grown, frozen lateral neurons, the row
        deviation of each task's frozen rows, `sim.row_measures.row_deviation`, and the layer's
        inputs, protected rows, fill and spectrum of `lateral_spectra`; ``method_uses_lateral`` says
        whether the method has such a circuit at all).
    """
    attrs = run.attrs
    config = run.config
    seg = run.segments()
    n = run.n_segments
    last = run.last_complete_segment
    last_info = None
    if last is not None:
        last_info = {"index": int(last), "task": int(seg["task"][last]), "stage": int(seg["stage"][last]),
                     "phase": str(seg["phase"][last]), "epoch": int(seg["epoch"][last]),
                     "trial": int(seg["trial"][last]), "stop_s": float(seg["stop_s"][last])}

    # (task, phase) groups, by task then phase code (train before test)
    groups = []
    group_of = np.zeros(n, dtype=np.int64)
    if n:
        keys = seg["task"].astype(np.int64) * 256 + seg["phase_code"].astype(np.int64)
        unique, first, group_of = np.unique(keys, return_index=True, return_inverse=True)
        group_of = group_of.ravel()
        groups = [{"task": int(seg["task"][s]), "phase": str(seg["phase"][s])} for s in first]
    seg_per_group = np.bincount(group_of, minlength=len(groups)) if n else np.zeros(0, dtype=np.int64)
    duration_s = (seg["stop_step"] - seg["start_step"]).astype(np.float64) * run.dt
    seconds_per_group = np.bincount(group_of, weights=duration_s, minlength=len(groups)) if n else np.zeros(0)

    populations = []
    for pop in run.populations:
        info = run.population_info(pop)
        per_segment = run.spikes_per_segment(pop)
        spikes_per_group = np.bincount(group_of, weights=per_segment, minlength=len(groups)) if n else np.zeros(0)
        total_s = float(duration_s.sum())
        rates = []
        for g, group in enumerate(groups):
            rate = spikes_per_group[g] / (seconds_per_group[g] * info["n_neurons"])
            rates.append({**group, "segments": int(seg_per_group[g]), "mean_rate_hz": _finite_or_none(rate)})
        populations.append({
            "name": pop, "role": info["role"], "model": info["model"], "n_neurons": info["n_neurons"],
            "n_spikes": int(per_segment.sum()),
            "mean_rate_hz": _finite_or_none(per_segment.sum() / (total_s * info["n_neurons"])) if total_s else None,
            "rates_hz": rates,
        })

    R = run.accuracy_matrix()
    summary = run.summary()
    accuracy = {
        "matrix": [[_finite_or_none(v) for v in row] for row in R],
        "ACC": _finite_or_none(summary["ACC"]), "BWT": _finite_or_none(summary["BWT"]),
        "forgetting": _finite_or_none(summary["forgetting"]), "tasks_evaluated": int(summary["tasks_evaluated"]),
    }
    transfer = transfer_metrics(run)
    accuracy.update({"FWT": _finite_or_none(transfer["FWT"]),
                     "learning_accuracy": [_finite_or_none(v) for v in transfer["learning_accuracy"]],
                     "learning_accuracy_mean": _finite_or_none(transfer["learning_accuracy_mean"]),
                     "initial_accuracy": None if transfer["initial_accuracy"] is None
                     else [_finite_or_none(v) for v in transfer["initial_accuracy"]]})
    spectra = lateral_spectra(run)
    lateral = []
    for layer, sizes in run.lateral_sizes().items():
        by_task = {row["task"]: row for row in spectra[layer]}
        lateral.append({"layer": layer, "tasks": [{**row, **{key: by_task[row["task"]][key] for key in
                                                             ("inputs", "protected", "fill", "spectrum")}}
                                                  for row in sizes]})
    states = []   # recorded state variables: only the small index datasets are read
    for pop, variables in run.state_variables().items():
        for variable in variables:
            found = run.states(pop, variable, values=False)
            stages = sorted({int(s) for s in seg["stage"][found["segment"]]}) if n and len(found["segment"]) else []
            phases = sorted({str(p) for p in seg["phase"][found["segment"]]}) if n and len(found["segment"]) else []
            states.append({"population": pop, "variable": variable, "unit": found["unit"],
                           "neurons": [int(i) for i in found["neuron"]], "presentations": int(len(found["segment"])),
                           "stages": stages, "phases": phases})
    timing = {key: _finite_or_none(attrs[key]) for key in ("train_seconds", "total_seconds") if key in attrs}
    if "train_samples" in attrs:
        timing["train_samples"] = int(attrs["train_samples"])

    summary_config = {}
    for section, key in SUMMARY_KEYS:
        if isinstance(config.get(section), dict) and key in config[section]:
            summary_config[f"{section}.{key}"] = config[section][key]

    return {
        "file": run.name, "format_version": run.format_version,
        "protocol": run.protocol, "method": run.method, "seed": run.seed,
        "dt_s": run.dt, "n_steps_per_presentation": run.n_steps, "presentation_s": run.presentation_s,
        "created": attrs.get("created"), "command": attrs.get("command"),
        "codegen_target": attrs.get("codegen_target"),
        "config": config, "config_summary": summary_config, "software": run.software,
        "complete": run.complete, "complete_flag": run.complete_flag, "partial_rows": run.partial_rows,
        "n_segments": int(n), "last_complete_segment": last_info, "timing": timing,
        "populations": populations,
        "segments": [{**group, "count": int(seg_per_group[g])} for g, group in enumerate(groups)],
        "accuracy": accuracy, "method_uses_lateral": method_uses_lateral(run.method), "lateral": lateral,
        "states": states,
    }


def _num(value, fmt="{:.1f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _table(rows: list[list[str]], indent="  ", n_left=1) -> list[str]:
    """The first ``n_left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[c]) if c < n_left else cell.rjust(widths[c]) for c, cell in enumerate(row)]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def format_text(info: dict) -> str:
    """The human-readable report of `collect`'s dict."""
    lines = [f"{info['file']}"]
    lines.append(f"  run        {info['protocol']}, method {info['method']}, seed {info['seed']}")
    if info.get("created") or info.get("codegen_target"):
        lines.append(f"  created    {info.get('created') or '?'}, Brian2 target {info.get('codegen_target') or '?'}")
    lines.append(f"  clock      dt = {info['dt_s'] * 1e3:g} ms, {info['n_steps_per_presentation']} steps "
                 f"= {info['presentation_s'] * 1e3:g} ms per presentation")
    if info["config_summary"]:
        items = [f"{k}={json.dumps(v)}" for k, v in info["config_summary"].items()]
        chunks, current = [], ""
        for item in items:
            if current and len(current) + len(item) > 80:
                chunks.append(current)
                current = ""
            current = f"{current} {item}".strip()
        chunks.append(current)
        lines.append(f"  config     {chunks[0]}")
        lines.extend(f"             {chunk}" for chunk in chunks[1:])
    if info["software"]:
        lines.append("  software   " + ", ".join(f"{k} {v}" for k, v in info["software"].items()))
    last = info["last_complete_segment"]
    last_text = ("none" if last is None else
                 f"#{last['index']} (stage {last['stage']}, task {last['task']}, {last['phase']}, "
                 f"ends at {last['stop_s']:.3f} s)")
    if info["complete"]:
        lines.append(f"  status     complete: {info['n_segments']} segments; last {last_text}")
    else:
        why = "the run did not finish" if not info["complete_flag"] else "the run says it finished"
        lines.append(f"  status     INCOMPLETE ({why}): {info['n_segments']} complete segments; "
                     f"last complete segment {last_text}")
        if info["partial_rows"]:
            lines.append("             rows past it: " + ", ".join(
                f"{name} +{extra}" for name, extra in info["partial_rows"].items()))
    timing = info["timing"]
    if timing:
        parts = []
        if timing.get("train_seconds") is not None:
            samples = f" for {timing['train_samples']} samples" if "train_samples" in timing else ""
            parts.append(f"training {timing['train_seconds']:.1f} s{samples}")
        if timing.get("total_seconds") is not None:
            parts.append(f"total {timing['total_seconds']:.1f} s")
        if parts:
            lines.append("  wall time  " + ", ".join(parts))
    for state in info.get("states", []):
        neurons = state["neurons"]
        span = f"{neurons[0]}–{neurons[-1]}" if neurons == list(range(neurons[0], neurons[-1] + 1)) and len(neurons) > 1 \
            else ", ".join(map(str, neurons))
        lines.append(f"  states     {state['population']}.{state['variable']} ({state['unit']}): neurons {span}, "
                     f"{state['presentations']} presentations ({', '.join(state['phases']) or 'none'}; "
                     f"stages {', '.join(map(str, state['stages'])) or 'none'})")

    lines.append("")
    lines.append("populations")
    rows = [["name", "role", "neurons", "spikes", "mean rate (Hz)"]]
    for pop in info["populations"]:
        rows.append([pop["name"], pop["role"], str(pop["n_neurons"]), str(pop["n_spikes"]),
                     _num(pop["mean_rate_hz"])])
    lines.extend(_table(rows, n_left=2))

    lines.append("")
    lines.append("segments (presentations) and mean rate per neuron (Hz) by task and phase")
    names = [pop["name"] for pop in info["populations"]]
    rates = {(pop["name"], r["task"], r["phase"]): r["mean_rate_hz"]
             for pop in info["populations"] for r in pop["rates_hz"]}
    rows = [["task", "phase", "segments"] + names]
    for group in info["segments"]:
        t, p = group["task"], group["phase"]
        rows.append([str(t), p, str(group["count"])] + [_num(rates.get((name, t, p))) for name in names])
    lines.extend(_table(rows, n_left=2) if len(rows) > 1 else ["  none"])

    acc = info["accuracy"]
    matrix = acc["matrix"]
    lines.append("")
    lines.append("accuracy R[i, j] (% correct on task j after training task i)")
    if matrix:
        rows = [["after task"] + [f"task {j}" for j in range(len(matrix))]]
        rows += [[str(i)] + [_num(v) for v in row] for i, row in enumerate(matrix)]
        lines.extend(_table(rows))
    evaluated = acc["tasks_evaluated"]
    if evaluated:
        partial = "" if evaluated == len(matrix) else f" (over the {evaluated} tasks evaluated so far)"
        lines.append(f"  ACC {_num(acc['ACC'])}  BWT {_num(acc['BWT'])}  forgetting {_num(acc['forgetting'])}"
                     f"  FWT {_num(acc.get('FWT'))}  learning accuracy {_num(acc.get('learning_accuracy_mean'))}"
                     f"{partial}")
        if acc.get("learning_accuracy"):
            lines.append("  learning accuracy R[j, j] per task: "
                         + "  ".join(_num(v) for v in acc["learning_accuracy"]))
        initial = acc.get("initial_accuracy")
        lines.append("  initial accuracy (before training, FWT's reference): "
                     + ("n/a (not stored in this file)" if initial is None else "  ".join(_num(v) for v in initial)))
    else:
        lines.append("  no task evaluated yet")

    lines.append("")
    if info["lateral"]:
        if info.get("method") == "gpm":
            lines.append("protected bases (gpm): directions kept / frozen (of the layer's inputs) after each task")
        else:
            lines.append("lateral circuit (HLOP): subspace neurons grown / frozen (of allocated) after each task")
        all_tasks = sorted({row["task"] for layer in info["lateral"] for row in layer["tasks"]})
        rows = [["layer"] + [f"task {t}" for t in all_tasks]]
        for layer in info["lateral"]:
            by_task = {row["task"]: row for row in layer["tasks"]}
            rows.append([layer["layer"]] + [
                f"{by_task[t]['grown']}/{by_task[t]['frozen']} ({by_task[t]['allocated']})" if t in by_task else "-"
                for t in all_tasks])
        lines.extend(_table(rows))
        # how far each task's frozen rows are from orthonormal (Oja's fixed point), per row
        rows = [["layer"] + [f"task {t}" for t in all_tasks]]
        unsettled = []
        for layer in info["lateral"]:
            by_task = {row["task"]: row.get("row_deviation") for row in layer["tasks"]}
            cells = []
            for t in all_tasks:
                value = by_task.get(t)
                cells.append("-" if value is None else f"{value:.3f}" + (" !" if value > UNSETTLED_ROW_DEVIATION else ""))
                if value is not None and value > UNSETTLED_ROW_DEVIATION:
                    unsettled.append(f"{layer['layer']} task {t}")
            rows.append([layer["layer"]] + cells)
        lines.append("  each task's frozen rows: ‖HHᵀ − I‖_F / √k (settled circuits < 0.1)")
        lines.extend(_table(rows))
        if unsettled:
            lines.append(f"  ! not settled (> {UNSETTLED_ROW_DEVIATION}): {', '.join(unsettled)} — those tasks are "
                         "poorly protected; lower the layer's Hebbian rate")
        # how much of each layer's input space is protected, and how orthonormal the protecting rows are
        lines.append("  fill (protected rows / layer inputs) and eigenvalues of H Hᵀ over the protected rows "
                     "(min / median / max; 1 if orthonormal)")
        rows = [["layer"] + [f"task {t}" for t in all_tasks]]
        for layer in info["lateral"]:
            by_task = {row["task"]: row for row in layer["tasks"]}
            cells = []
            for t in all_tasks:
                row = by_task.get(t)
                if row is None or row.get("fill") is None:
                    cells.append("-")
                    continue
                spectrum = row["spectrum"]
                values = ("/".join(f"{v:.2f}" for v in (min(spectrum), float(np.median(spectrum)), max(spectrum)))
                          if spectrum else "none")
                cells.append(f"{100 * row['fill']:.0f}% {values}")
            rows.append([layer["layer"]] + cells)
        lines.extend(_table(rows))
    elif info.get("method_uses_lateral"):
        lines.append("lateral circuit: no snapshot yet (written at the end of each task)")
    else:
        lines.append(f"lateral circuit: none (method {info['method']} has no HLOP circuit)")
    return "\n".join(lines)


def inspect_command(path, as_json: bool = False) -> int:
    """Print the report of run file ``path``; return the exit code (0).

    Parameters
    ----------
    path : str or os.PathLike
        The run file.
    as_json : bool
        Print one JSON object (NaN as null) instead of text.

    Raises
    ------
    RunFileError
        If the file is not a readable run file.
    """
    with RunFile(path) as run:
        try:
            info = collect(run)
        except OSError as err:  # a damaged chunk met while reading
            raise run.error(f"cannot be read (truncated or damaged?): {' '.join(str(err).split())}") from None
    if as_json:
        print(json.dumps(jsonable(info), indent=1, allow_nan=False))
    else:
        print(format_text(info))
    return 0

