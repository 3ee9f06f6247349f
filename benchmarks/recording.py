"""Cost of recording every spike: wall-time overhead, bytes per spike on disk, peak memory vs tasks.

Measured in one invocation, ratios against a baseline measured in the same run, Brian2 cython target
with a warm code cache (every variant first runs once untimed, so compilation is not measured):

1. Recording overhead: the same `protocols.experiment.protocol.run_protocol` run (permuted-digits, method
   hlop, seed 0, ``--tasks 2 --epochs 2`` by default) with ``sim.record_spikes=true`` writing a run
   file against ``sim.record_spikes=false`` and no file; ``--repeats`` timed runs of each,
   alternating, medians compared. Target: overhead ≤ 10 %. For reference also the median of the
   ratios of the runs made back to back (robust to slow drifts of the machine's speed), the ratio
   of the best runs, and the CPU time of the process (all threads: the run file is written on a
   background thread, on the second core when it is free).
2. Bytes per spike: size of the recorded run file divided by its spikes (the lengths of every
   population's ``spike_step``), and the spike arrays alone (HDF5 storage of ``spike_step`` +
   ``spike_neuron``) per spike.
3. Peak memory against the number of tasks: a 10-task and a 2-task run (``--epochs 1``,
   ``data.train_size=512``), each recorded to a temporary file in a fresh subprocess that reports
   its peak RSS (``ru_maxrss``). Target: 10-task / 2-task ≤ 1.2. The subprocesses run first (after
   one untimed warm-up subprocess), while this process is still small: on Linux a child's
   ``ru_maxrss`` starts from the peak of the process that spawned it. (Over 10 tasks the default
   lateral sizes exceed the 64-wide input layer; the project caps them with a warning.)

BLAS runs single-threaded (``OMP_NUM_THREADS=1`` unless exported), as `sim.prefs` intends.
Prints one table with the measured numbers, the targets and PASS/MISS; exit code 0 either way.
Usage::

    python benchmarks/recording.py [--tasks N] [--epochs E] [--repeats R] [--set section.key=value …]
                                   [--skip-rss]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `sim.prefs.configure` sets OMP_NUM_THREADS=1 to keep BLAS single-threaded on 2 shared cores, but it
# runs after numpy (imported with Brian2) has started OpenBLAS, so there it has no effect. Set here,
# before numpy is imported (inherited by the subprocesses), it does: the timings are then those the
# project intends, and far less disturbed by other processes than with spinning BLAS threads.
# Export OMP_NUM_THREADS to measure another setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")

OVERHEAD_TARGET = 10.0          # percent
RSS_RATIO_TARGET = 1.2
RSS_TASKS = (2, 10)             # (baseline, many)
RSS_SETTINGS = ["data.train_size=512"]
METHOD = "hlop"


def make_config(tasks: int, epochs: int, overrides: list[str], record: bool) -> dict:
    from hlopsim.protocols.experiment.config import apply_overrides, load_protocol

    config = apply_overrides(load_protocol("permuted-digits"), overrides)
    config["protocol"].update(tasks=tasks, epochs=epochs, seed=0)
    config["sim"].update(target="cython", record_spikes=record)
    return config


def timed_run(config: dict, out: Path | None) -> tuple[float, float]:
    """Wall and CPU time of one `run_protocol` call (garbage of earlier runs collected beforehand).

    The CPU time (this process, all threads) is reported beside the wall time: on shared cores the
    two disagree when other processes compete or when BLAS threads spin.
    """
    from hlopsim.protocols.experiment.protocol import run_protocol

    gc.collect()
    tick, cpu = time.perf_counter(), time.process_time()
    run_protocol(config, METHOD, out, overwrite=True, progress=False)
    return time.perf_counter() - tick, time.process_time() - cpu


def spike_storage(path: Path) -> dict:
    """Spikes in a run file and the bytes they take."""
    import h5py

    spikes = storage = 0
    with h5py.File(path, "r") as f:
        for pop in f["populations"].values():
            spikes += pop["spike_step"].shape[0]
            storage += pop["spike_step"].id.get_storage_size() + pop["spike_neuron"].id.get_storage_size()
    return {"spikes": spikes, "file_bytes": path.stat().st_size, "spike_bytes": storage}


def blas_threads() -> str:
    """Threads of the BLAS libraries loaded in this process (they affect timings on shared cores)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    pools = [f"{pool.get('internal_api')} {pool.get('num_threads')}"
             for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return ", ".join(pools) or "none"


def count_compilations() -> dict:
    """Count the Cython modules this process has to build from now on (none with a warm cache)."""
    counter = {"n": 0}
    try:
        from brian2.codegen.runtime.cython_rt.extension_manager import CythonExtensionManager
    except ImportError:
        return counter
    original = CythonExtensionManager._load_module

    def load(self, module_path, *args, **kwargs):
        if not os.path.isfile(module_path):
            counter["n"] += 1
        return original(self, module_path, *args, **kwargs)

    CythonExtensionManager._load_module = load
    return counter


# ------------------------------------------------------------------------------------------------ child
def child(args) -> None:
    """One recorded run in this fresh process; prints its peak RSS and counts as one JSON line."""
    import warnings

    from hlopsim.sim import prefs

    prefs.configure("cython")
    config = make_config(args.tasks, args.epochs, args.set, record=True)
    compiled = count_compilations()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds, _ = timed_run(config, Path(args.out))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # kB on Linux
    hwm_kb = None
    if os.path.exists("/proc/self/status"):                            # this address space's own peak
        with open("/proc/self/status") as status:
            hwm_kb = next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), None)
    print(json.dumps({"tasks": args.tasks, "maxrss_kb": peak_kb, "hwm_kb": hwm_kb, "seconds": seconds,
                      "compiled": compiled["n"], **spike_storage(Path(args.out)),
                      "warnings": [str(w.message) for w in caught if "lateral circuit" in str(w.message)]}))


def rss_child(tasks: int, overrides: list[str], folder: Path) -> dict:
    out = folder / f"rss-{tasks}-tasks.h5"
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--tasks", str(tasks), "--epochs", "1",
           "--out", str(out)]
    for item in overrides:
        cmd += ["--set", item]
    done = subprocess.run(cmd, capture_output=True, text=True)
    out.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"RSS child ({tasks} tasks) failed with exit code {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2, help="tasks of the overhead run (default 2)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per task of the overhead run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (default 3)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a permuted-digits setting, as in `hlopsim run` (applies to every run)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from hlopsim.protocols.experiment.config import ConfigError

    try:
        record_cfg = make_config(args.tasks, args.epochs, args.set, record=True)
        plain_cfg = make_config(args.tasks, args.epochs, args.set, record=False)
    except ConfigError as error:
        parser.error(str(error))
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hlopsim-bench-") as tmp:
        folder = Path(tmp)
        rss = None
        if not args.skip_rss:
            # The children run first, while this process is still small: Linux carries the peak RSS
            # of the process that spawns a child (Python uses vfork) into the child's ru_maxrss, so
            # a child started after the timed runs below would report this process's peak instead.
            overrides = RSS_SETTINGS + args.set        # a --set of the caller wins
            rss_child(RSS_TASKS[0], overrides, folder)  # untimed warm-up: fills the code cache if cold
            rss = {n: rss_child(n, overrides, folder) for n in RSS_TASKS}

        from hlopsim.sim import prefs

        prefs.configure("cython")
        out = folder / "recorded.h5"
        variants = {"record": (record_cfg, out), "plain": (plain_cfg, None)}
        # Untimed warm-up of both variants: compiles (or loads) every code object, JITs the kernels.
        for cfg, path in variants.values():
            timed_run(cfg, path)
        compiled = count_compilations()
        times = {name: [] for name in variants}
        for r in range(args.repeats):
            order = ("record", "plain") if r % 2 == 0 else ("plain", "record")
            for name in order:
                times[name].append(timed_run(*variants[name]))
        storage = spike_storage(out)
        blas = blas_threads()
    total = time.perf_counter() - started

    rec, plain = (statistics.median(t[0] for t in times[n]) for n in ("record", "plain"))
    rec_cpu, plain_cpu = (statistics.median(t[1] for t in times[n]) for n in ("record", "plain"))
    overhead = 100.0 * (rec / plain - 1.0)
    rows = [
        (f"wall, no recording, no file (median of {args.repeats})", f"{plain:.2f} s", "", ""),
        (f"wall, recording to file (median of {args.repeats})", f"{rec:.2f} s", "", ""),
        ("recording overhead (wall)", f"{overhead:+.1f} %", f"≤ {OVERHEAD_TARGET:.0f} %",
         "PASS" if overhead <= OVERHEAD_TARGET else "MISS"),
        ("recording overhead (median of the paired runs' ratios, for reference)",
         f"{100.0 * (statistics.median(r[0] / p[0] for r, p in zip(times['record'], times['plain'])) - 1.0):+.1f} %",
         "", ""),
        ("recording overhead (best of each, for reference)",
         f"{100.0 * (min(t[0] for t in times['record']) / min(t[0] for t in times['plain']) - 1.0):+.1f} %", "", ""),
        ("CPU s, no recording / recording (medians)", f"{plain_cpu:.2f}/{rec_cpu:.2f}", "", ""),
        ("recording overhead (CPU, for reference)", f"{100.0 * (rec_cpu / plain_cpu - 1.0):+.1f} %", "", ""),
        ("spikes recorded", f"{storage['spikes']:,}", "", ""),
        ("file size", f"{storage['file_bytes'] / 1e6:.1f} MB", "", ""),
        ("file bytes / spike", f"{storage['file_bytes'] / storage['spikes']:.2f}", "", ""),
        ("spike arrays bytes / spike (stored; raw 12)", f"{storage['spike_bytes'] / storage['spikes']:.2f}", "", ""),
    ]
    if rss is not None:
        base, many = (rss[n] for n in RSS_TASKS)
        ratio = many["maxrss_kb"] / base["maxrss_kb"]
        for r in (base, many):
            rows.append((f"peak RSS, {r['tasks']} tasks ({r['spikes']:,} spikes, {r['seconds']:.0f} s)",
                         f"{r['maxrss_kb'] / 1024:.0f} MB", "", ""))
        rows.append((f"peak RSS ratio {RSS_TASKS[1]} / {RSS_TASKS[0]} tasks", f"{ratio:.2f}",
                     f"≤ {RSS_RATIO_TARGET}", "PASS" if ratio <= RSS_RATIO_TARGET else "MISS"))

    print(f"permuted-digits, method {METHOD}, seed 0, {args.tasks} tasks × {args.epochs} epochs, "
          f"target cython (warm cache), BLAS threads {blas}, files in {tempfile.gettempdir()}"
          + (f", --set {' '.join(args.set)}" if args.set else ""))
    print("timed runs, wall s (alternating): "
          + "; ".join(f"{n} " + ", ".join(f"{t[0]:.2f}" for t in times[n]) for n in times))
    print("load average (1 min) at start / end: "
          + " / ".join(f"{x:.2f}" for x in (load_start, os.getloadavg()[0])))
    if rss is not None:
        print(f"RSS runs: {RSS_TASKS[0]} and {RSS_TASKS[1]} tasks × 1 epoch, "
              f"{' '.join(RSS_SETTINGS + args.set)}, one fresh process each")
        for r in rss.values():
            for message in r["warnings"]:
                print(f"  {r['tasks']}-task child warned: {message}")
            if r["hwm_kb"] and r["maxrss_kb"] > 1.05 * r["hwm_kb"]:
                print(f"  note: the {r['tasks']}-task child's ru_maxrss ({r['maxrss_kb'] / 1024:.0f} MB) exceeds its "
                      f"VmHWM ({r['hwm_kb'] / 1024:.0f} MB): inherited from the parent")
            if r["compiled"]:
                print(f"  note: the {r['tasks']}-task child compiled {r['compiled']} Cython modules "
                      "(its peak RSS includes compilation)")
    if compiled["n"]:
        print(f"  note: {compiled['n']} Cython modules were compiled during the timed runs")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':{width}s}  {'value':>12s}  {'target':>8s}  result")
    for name, value, target, result in rows:
        print(f"{name:{width}s}  {value:>12s}  {target:>8s}  {result}")
    print(f"benchmark wall time {total:.0f} s")


if __name__ == "__main__":
    main()
