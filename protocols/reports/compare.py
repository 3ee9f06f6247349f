"""``hlopsim compare FILE... [--json]``: ACC, BWT, forgetting, forward transfer and learning accuracy of
several run files, and their mean ± standard deviation over the runs that differ only in the seed.

One seed is not a result here: on permuted-digits, BWT moves between seeds of the same settings about
as much as most settings change it (docs/results.md). So `compare` groups run files
by protocol, method and every setting except ``protocol.seed``, and summarises each group over its
complete runs:

- per file: method, seed, tasks evaluated, ACC, BWT, forgetting, FWT (forward transfer against the
  stored initial accuracy) and LA (mean learning accuracy, the mean of the diagonal ``R[j, j]``), all in
  percentage points (metrics of `protocols.metrics` on the filled part of the accuracy matrix,
  `protocols.reports.inspect.transfer_metrics`), and training presentations per second;
- per group: the number of complete runs and their seeds, and mean ± sample standard deviation
  (``ddof = 1``; none for a single run) of every metric. Incomplete runs (interrupted,
  see `RunFile.complete`) are listed but left out of the group statistics. A metric a file cannot
  give (FWT of a file written before the initial accuracy was stored) is "n/a" (JSON null), and so
  is its group's mean.

Settings a file does not store (it was written before they existed) count as the bundled protocol's
default. A group is named by its method and the settings in which it differs from the other groups of the
same protocol and method (e.g. ``hlop learning.lr=0.05``), so the table says what was compared. Only the small datasets are read.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hlopsim.protocols.reports.inspect import jsonable, transfer_metrics
from hlopsim.sim.runfile import RunFile

__all__ = ["compare", "compare_command", "format_text"]

METRICS = ("ACC", "BWT", "forgetting", "FWT", "learning_accuracy")


def _flat_settings(config: dict) -> dict[str, str]:
    """``{"section.key": value as JSON text}`` of a resolved configuration, without ``protocol.seed``."""
    flat = {}
    for section, values in config.items():
        if isinstance(values, dict):
            for key, value in values.items():
                flat[f"{section}.{key}"] = json.dumps(value, sort_keys=True)
        else:
            flat[section] = json.dumps(values, sort_keys=True)
    flat.pop("protocol.seed", None)
    return flat


def _with_defaults(flat: dict[str, str], protocol: str | None) -> dict[str, str]:
    """``flat`` completed by the bundled protocol's values for settings it lacks.

    A run file written before a setting existed does not store it; settings are added with
    defaults that keep the earlier behaviour, so such a file groups with new files at the default.
    """
    from hlopsim.protocols.experiment.config import BUNDLED, load_protocol

    if protocol not in BUNDLED:
        return flat
    return {**_flat_settings(load_protocol(protocol)), **flat}


def _run_row(run: RunFile) -> dict:
    """What `compare` reports of one run file."""
    summary = run.summary()
    attrs = run.attrs
    seconds, samples = attrs.get("train_seconds"), attrs.get("train_samples")
    rate = float(samples) / float(seconds) if seconds and samples else math.nan
    transfer = transfer_metrics(run)
    values = {**summary, "FWT": transfer["FWT"], "learning_accuracy": transfer["learning_accuracy_mean"]}
    return {"file": str(run.path), "protocol": run.protocol, "method": run.method, "seed": run.seed,
            "complete": run.complete, "tasks_evaluated": int(summary["tasks_evaluated"]),
            **{m: float(values[m]) for m in METRICS}, "train_samples_per_s": rate}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan


def compare(paths) -> dict:
    """Rows of every run file and statistics of every group of runs that differ only in the seed.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Run files; each at most once.

    Returns
    -------
    dict
        ``runs``: one dict per file (``file``, ``protocol``, ``method``, ``seed``, ``complete``,
        ``tasks_evaluated``, ``ACC``, ``BWT``, ``forgetting``, ``FWT``, ``learning_accuracy`` (the mean
        of ``R[j, j]``) in percentage points, NaN where undefined, ``train_samples_per_s``, ``group``
        index); ``groups``: one dict per group (``name``, ``method``, ``settings`` where the group
        differs from the others of its method, ``n`` complete runs, ``seeds``, ``incomplete`` count,
        ``repeated_seeds``, and every metric of `METRICS` as ``{"mean", "sd"}``), in order of first
        appearance.

    Raises
    ------
    ValueError
        If no file is given or a file is named twice; `RunFileError` (a ValueError) if a file is
        not a readable run file.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("compare needs at least one run file")
    seen = set()
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise ValueError(f"{str(path)!r} is named twice; each run file must be given once")
        seen.add(key)

    rows, settings = [], []
    for path in paths:
        with RunFile(path) as run:
            try:
                rows.append(_run_row(run))
                settings.append(_with_defaults(_flat_settings(run.config), run.protocol))
            except OSError as err:  # a damaged chunk met while reading
                raise run.error(f"cannot be read (truncated or damaged?): {' '.join(str(err).split())}") from None

    # group by protocol, method and all settings but the seed
    keys, members = [], []
    for i, (row, flat) in enumerate(zip(rows, settings)):
        key = (row["protocol"], row["method"], tuple(sorted(flat.items())))
        if key not in keys:
            keys.append(key)
            members.append([])
        row["group"] = keys.index(key)
        members[row["group"]].append(i)

    first = [settings[m[0]] for m in members]
    groups = []
    for g, indices in enumerate(members):
        method = rows[indices[0]]["method"]
        # named by the settings in which it differs from the other groups of its protocol and method
        peers = [first[h] for h, key in enumerate(keys) if key[:2] == keys[g][:2]]
        differing = sorted({name for flat in peers for name in flat if len({f.get(name) for f in peers}) > 1})
        shown = {name: first[g].get(name) for name in differing}
        label = " ".join([str(method)] + [f"{name}={value}" for name, value in shown.items() if value is not None])
        done = [rows[i] for i in indices if rows[i]["complete"]]
        seeds = [r["seed"] for r in done]
        group = {"name": label, "method": method, "settings": shown, "n": len(done), "seeds": seeds,
                 "incomplete": len(indices) - len(done),
                 "repeated_seeds": sorted({s for s in seeds if seeds.count(s) > 1})}
        for metric in METRICS:
            mean, sd = _mean_sd([r[metric] for r in done])
            group[metric] = {"mean": mean, "sd": sd}
        groups.append(group)
    return {"runs": rows, "groups": groups}


def _pm(stat: dict) -> str:
    if not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.1f}" + (f" ± {stat['sd']:.1f}" if math.isfinite(stat["sd"]) else "")


def _num(value: float, fmt: str = "{:.1f}") -> str:
    return fmt.format(value) if math.isfinite(value) else "n/a"


def format_text(result: dict) -> str:
    """The per-file table, then the per-group table (mean ± sd over complete runs).

    FWT: forward transfer against the initial accuracy; LA: mean learning accuracy (mean of R[j, j]).
    """
    lines = ["runs", f"  {'group':>5s} {'method':10s} {'seed':>5s} {'tasks':>5s} {'ACC':>6s} {'BWT':>6s} "
                     f"{'forget':>6s} {'FWT':>6s} {'LA':>6s} {'samples/s':>9s}  file"]
    for row in result["runs"]:
        state = "" if row["complete"] else "  (incomplete: not in the group statistics)"
        lines.append(f"  {row['group']:5d} {str(row['method']):10s} {str(row['seed']):>5s} {row['tasks_evaluated']:5d} "
                     f"{_num(row['ACC']):>6s} {_num(row['BWT']):>6s} {_num(row['forgetting']):>6s} "
                     f"{_num(row['FWT']):>6s} {_num(row['learning_accuracy']):>6s} "
                     f"{_num(row['train_samples_per_s'], '{:.0f}'):>9s}  {row['file']}{state}")
    lines += ["", "groups (mean ± sd over complete runs; percentage points; FWT forward transfer, "
                  "LA mean learning accuracy)",
              f"  {'group':>5s} {'n':>3s} {'ACC':>11s} {'BWT':>11s} {'forgetting':>11s} {'FWT':>11s} {'LA':>11s}"
              "  seeds / name"]
    for g, group in enumerate(result["groups"]):
        extra = f"; {group['incomplete']} incomplete" if group["incomplete"] else ""
        if group["repeated_seeds"]:
            extra += f"; seeds {group['repeated_seeds']} appear more than once"
        lines.append(f"  {g:5d} {group['n']:3d} {_pm(group['ACC']):>11s} {_pm(group['BWT']):>11s} "
                     f"{_pm(group['forgetting']):>11s} {_pm(group['FWT']):>11s} {_pm(group['learning_accuracy']):>11s}"
                     f"  {group['seeds']} {group['name']}{extra}")
    return "\n".join(lines)


def compare_command(paths, as_json: bool = False) -> int:
    """Print the comparison of run files ``paths``; return the exit code (0).

    Raises
    ------
    ValueError, RunFileError
        No file, a file named twice, or a file that is not a readable run file.
    """
    result = compare(paths)
    if as_json:
        print(json.dumps(jsonable(result), indent=1, allow_nan=False))
    else:
        print(format_text(result))
    return 0

