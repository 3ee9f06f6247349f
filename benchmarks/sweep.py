"""Runs per hour of a sweep on a two-worker Dask LocalCluster against the same runs one after another.

One invocation measures both, on the Brian2 cython target with a warm code cache:

1. Warm-up: one run of the protocol in this process, untimed (compiles or loads every code object).
2. Sequential: the ``--runs`` runs (seeds 0 … runs−1, method ``--method``) one after another in this
   process with `protocols.experiment.protocol.run_protocol`, each writing its run file.
3. Sweep: the same runs with `protocols.sweep.sweep` on a LocalCluster of ``--workers`` single-threaded
   worker processes, as ``hlopsim sweep`` starts it. Reported twice: from before the cluster is started
   (what a user waits for) and from the moment its workers are up (the runs alone; each worker process
   still pays its first imports and Brian2 set-up inside its first run).

With ``--repeats R`` steps 2 and 3 alternate R times and the medians are compared (the machine's
load drifts). Also printed: the mean wall time of one run inside the sequential loop and inside a worker
(from `SweepRun.seconds`): equal means the workers ran as fast as one process alone, so the sweep's
shortfall from ``workers``× is start-up and scheduling; longer means the cores were shared.

Runs per hour = runs / wall seconds × 3600; the speed-up is the sweep's runs per hour over the
sequential ones. Target: ≥ 1.7× with 2 workers on 2 free cores. Other processes on the machine take
cores from both, the sweep more (it needs both cores at once): say so with the numbers. Prints one
table; exit code 0 either way. Usage::

    python benchmarks/sweep.py [--runs 4] [--workers 2] [--method hlop] [--repeats 1] [--set section.key=value …]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")   # before numpy starts OpenBLAS (as benchmarks/recording.py)

TARGET = 1.7
TINY = ["protocol.tasks=2", "protocol.epochs=1", "data.train_size=256", "data.test_size=200"]


def warm_up(overrides: list[str], method: str) -> float:
    """One untimed run of the protocol in this process (imports, Brian2 code objects, Numba kernels);
    returns its seconds. Run in the benchmark's process and, through ``client.run``, in every worker."""
    import tempfile
    import warnings

    from hlopsim.protocols.experiment.config import apply_overrides, load_protocol
    from hlopsim.protocols.experiment.protocol import run_protocol
    warnings.simplefilter("ignore")
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        run_protocol(apply_overrides(load_protocol("permuted-digits"), overrides + ["protocol.seed=99"]),
                     method, Path(folder) / "warm-up.h5", progress=False)
    return time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--method", default="hlop")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()

    from hlopsim.protocols.experiment.config import apply_overrides, load_protocol
    from hlopsim.protocols.experiment.protocol import run_protocol
    from hlopsim.protocols.sweep import _start_client, plan_sweep, sweep

    overrides = TINY + list(args.set)
    load = os.getloadavg()
    seeds = list(range(args.runs))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        warnings.simplefilter("ignore")
        warm = warm_up(overrides, args.method)

        sequentials, starts, ups, warmed, per_run, in_worker, failed = [], [], [], [], [], [], []
        for repeat in range(args.repeats):
            runs = plan_sweep("permuted-digits", seeds, folder / f"sequential{repeat}", methods=[args.method],
                              overrides=overrides)
            (folder / f"sequential{repeat}").mkdir()
            tick = time.perf_counter()
            for run in runs:
                one = time.perf_counter()
                run_protocol(run.config, run.method, run.path, progress=False)
                per_run.append(time.perf_counter() - one)
            sequentials.append(time.perf_counter() - tick)

            tick = time.perf_counter()
            client, cluster = _start_client(None, args.workers)
            client.wait_for_workers(args.workers)
            up = time.perf_counter()
            try:
                result = sweep("permuted-digits", seeds, folder / f"sweep{repeat}", methods=[args.method],
                               overrides=overrides, client=client, progress=False, echo=lambda line: None)
            finally:
                done = time.perf_counter()
                client.close()
                cluster.close()
            starts.append(done - tick)
            ups.append(done - up)
            in_worker.extend(run.seconds for run in result.runs)
            failed.extend(run.name for run in result.failed)

            # The same sweep on workers that have each made the untimed warm-up run first, as the
            # sequential loop has: what a long sweep's runs cost once every worker is warm.
            client, cluster = _start_client(None, args.workers)
            client.wait_for_workers(args.workers)
            client.run(warm_up, overrides, args.method)
            tick = time.perf_counter()
            try:
                result = sweep("permuted-digits", seeds, folder / f"warm{repeat}", methods=[args.method],
                               overrides=overrides, client=client, progress=False, echo=lambda line: None)
            finally:
                warmed.append(time.perf_counter() - tick)
                client.close()
                cluster.close()
            failed.extend(run.name for run in result.failed)

    per_hour = lambda seconds: args.runs / seconds * 3600
    sequential, with_start, runs_only, warm_runs = (statistics.median(v) for v in (sequentials, starts, ups, warmed))
    rows = [("warm-up run (untimed in the ratios)", f"{warm:.1f} s", ""),
            (f"sequential, {args.runs} runs in one process", f"{sequential:.1f} s", f"{per_hour(sequential):.0f} runs/h"),
            (f"sweep, {args.workers} workers, with cluster start", f"{with_start:.1f} s", f"{per_hour(with_start):.0f} runs/h"),
            (f"sweep, {args.workers} workers, workers up", f"{runs_only:.1f} s", f"{per_hour(runs_only):.0f} runs/h"),
            (f"sweep, {args.workers} workers, each warmed up", f"{warm_runs:.1f} s", f"{per_hour(warm_runs):.0f} runs/h"),
            ("one run, sequential loop (mean)", f"{statistics.mean(per_run):.1f} s", ""),
            ("one run, in a worker (mean)", f"{statistics.mean(in_worker):.1f} s", "")]
    print(f"permuted-digits, method {args.method}, {' '.join(overrides)}, cython target, os.cpu_count() = "
          f"{os.cpu_count()}, load average at start: {' '.join(f'{x:.2f}' for x in load)}, end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {args.repeats} repeat(s)")
    for name, seconds, rate in rows:
        print(f"  {name:48s} {seconds:>9s} {rate:>14s}")
    for label, seconds in (("with cluster start", with_start), ("workers up", runs_only), ("workers warmed", warm_runs)):
        ratio = sequential / seconds
        print(f"  speed-up {label:22s} {ratio:5.2f}x  (target >= {TARGET}x: {'PASS' if ratio >= TARGET else 'MISS'})")
    if failed:
        print(f"  failed sweep runs: {', '.join(failed)}")


if __name__ == "__main__":
    main()
