"""``hlopsim sweep PROTOCOL --seeds 0-4 [--grid section.key=v1,v2 …] [--method m1,m2] --out FOLDER
[--set section.key=value …] [--scheduler ADDRESS] [--workers N] [--cache-dir DIR] [--quiet]``.

Every combination of grid values, method and seed is one run, and every run one task on Dask
distributed: by default a `distributed.LocalCluster` on this machine with one single-threaded worker
process per core (``--workers`` to change); with ``--scheduler tcp://host:8786`` the workers of any
running Dask cluster. Each run writes its own run file into ``--out``, named by its method, grid values
and seed (``hlop_learning.lr=0.05_seed3.h5``). Running the same sweep again skips complete files, resumes
interrupted ones from their last finished task (methods whose state is not stored, gpm and ewc, start
again), and refuses a complete file that holds other settings. A run that fails is reported with its
error and the others go on; a progress bar counts runs; at the end the ``hlopsim compare`` table of the
folder (mean ± sd over seeds per group) is printed.

Workers: each run pins BLAS and Numba to one thread (a LocalCluster's worker processes also start with
``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1``) and uses Brian2's cython cache. By default all workers share
Brian2's cache folder, which is safe: Brian2 holds a lock file per code object while it compiles or
loads it (`hlopsim.sim.prefs.set_cache_dir`), so one worker compiles and the others load. ``--cache-dir
DIR`` puts the cache elsewhere; ``{worker}`` in it becomes the worker's name, for a folder per worker
(e.g. on node-local disk where a network file system's locks are unreliable; each folder then compiles
every code object once).

A SLURM cluster (not tested here). Install ``dask-jobqueue`` (≥ 0.8) beside hlopsim, start the
workers from a small Python script on the login node and leave it running::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="08:00:00",
                           job_script_prologue=["source /path/to/hlopsim/.venv/bin/activate",
                                                "export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1"])
    cluster.scale(jobs=20)               # 20 one-core jobs, one worker each
    print(cluster.scheduler_address)     # e.g. tcp://10.1.0.5:40321
    input("workers are up; press Enter to stop them")

then, from any node that reaches that address, with ``--out`` on a file system every worker can write
to (the workers write the run files; the client only reads them)::

    hlopsim sweep permuted-digits --seeds 0-4 --method finetune,hlop --out /shared/runs/pd \\
        --scheduler tcp://10.1.0.5:40321 --cache-dir '/tmp/brian-{worker}'

A sweep stopped with Ctrl-C leaves the finished files complete and the running ones resumable.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hlopsim.protocols.experiment.config import ConfigError, Experiment, apply_overrides, load_protocol, resolve

#: Thread counts a worker process starts with (read by OpenMP, OpenBLAS, MKL and Numba at import).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}

__all__ = ["SweepRun", "SweepResult", "parse_seeds", "parse_grid", "run_file_name", "plan_sweep", "run_one", "sweep",
           "add_sweep_parser", "sweep_command"]


@dataclass
class SweepRun:
    """One (grid point, method, seed) of a sweep.

    Attributes
    ----------
    method : str
    seed : int
    point : tuple of (str, str)
        ``(section.key, value text)`` of the run's grid values, in grid order.
    config : dict
        The run's resolved protocol configuration.
    path : Path
        Its run file.
    action : str
        ``"new"``, ``"resume"`` (an interrupted file), ``"restart"`` (an interrupted file that cannot
        be resumed, or an unreadable one) or ``"skip"`` (complete with the same settings).
    status : str
        After the sweep: ``"done"``, ``"skipped"`` or ``"failed"``.
    error : str
        Why it failed (one line); the traceback is in ``details``.
    """

    method: str
    seed: int
    point: tuple
    config: dict
    path: Path
    action: str = "new"
    status: str = ""
    error: str = ""
    details: str = ""
    seconds: float = float("nan")
    summary: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class SweepResult:
    """What a sweep did: every run (`SweepRun`) and the compare table of the folder."""

    runs: list[SweepRun]
    table: str
    seconds: float

    @property
    def failed(self) -> list[SweepRun]:
        return [run for run in self.runs if run.status == "failed"]


# -- parsing ---------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,3,7"`` or a mix (``"0-2,9"``), in order, each once.

    >>> parse_seeds("0-2,9")
    [0, 1, 2, 9]
    """
    seeds = []
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise ConfigError(f"--seeds {text!r}: expected seeds like 0-4 or 0,3,7 (non-negative integers, "
                              "ranges low-high)")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        seeds.extend(s for s in range(low, high + 1) if s not in seeds)
    return seeds


def _split_values(text: str) -> list[str]:
    """Comma-separated TOML values, commas inside brackets, braces or quotes kept: ``[1,2],[3]`` → 2."""
    values, current, depth, quote = [], "", 0, None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return values


def parse_grid(items) -> list[tuple[str, list[str]]]:
    """``["section.key=v1,v2", …]`` → ``[("section.key", ["v1", "v2"]), …]`` (values as TOML text).

    Raises
    ------
    ConfigError
        An item without ``=``, an empty value, a key named twice, or ``protocol.seed`` (use ``--seeds``).
    """
    grid = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        values = _split_values(text) if sep else []
        if not sep or "." not in key or not values or any(not v for v in values):
            raise ConfigError(f"--grid {item!r} is not of the form section.key=value1,value2")
        if key == "protocol.seed":
            raise ConfigError("--grid protocol.seed: give the seeds with --seeds")
        if key in (k for k, _ in grid):
            raise ConfigError(f"--grid names {key} twice")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {item!r} names a value twice")
        grid.append((key, values))
    return grid


def _slug(text: str) -> str:
    """A value's text as a file-name part: ``[128, 128]`` → ``128-128``, ``"1 ms"`` → ``1ms``."""
    text = re.sub(r"[\[\]{}\"'\s]", "", text)
    return re.sub(r"[^A-Za-z0-9.+=-]", "-", text) or "empty"


def run_file_name(method: str, point, seed: int) -> str:
    """``<method>[_<key>=<value>…]_seed<seed>.h5``."""
    return "_".join([method, *(f"{key}={_slug(value)}" for key, value in point), f"seed{seed}"]) + ".h5"


# -- planning --------------------------------------------------------------------------------------
def _same_settings(stored: dict, wanted: dict) -> bool:
    try:
        stored = resolve(stored)     # settings added since the file was written take their defaults
    except (ConfigError, ValueError):
        return False
    return json.dumps(stored, sort_keys=True, default=str) == json.dumps(wanted, sort_keys=True, default=str)


def _action(path: Path, method: str, config: dict) -> tuple[str, str]:
    """What to do with an existing run file: ``(action, error)``; an error means do not run it."""
    from hlopsim.protocols.experiment.methods import METHODS
    from hlopsim.sim.runfile import RunFile, RunFileError, read_checkpoint
    if not path.exists():
        return "new", ""
    try:
        with RunFile(path) as run:
            complete, stored_method, stored = run.complete, run.method, run.config
    except (RunFileError, OSError):
        return "restart", ""          # a file this sweep names but cannot read: started before it could be
    if stored_method != method or not _same_settings(stored, config):
        return "skip", (f"{str(path)!r} holds a run with other settings (method {stored_method!r}); move it away "
                        "or choose another --out folder")
    if complete:
        return "skip", ""
    if not METHODS[method].resumable:
        return "restart", ""
    try:
        read_checkpoint(path)
    except RunFileError:              # interrupted before its first task ended
        return "restart", ""
    return "resume", ""


def plan_sweep(protocol: str, seeds, out, grid=(), methods=("hlop",), overrides=()) -> list[SweepRun]:
    """Every run of a sweep, checked (each configuration and method is built) before anything runs.

    Parameters
    ----------
    protocol : str
        A bundled protocol's name or the path of a protocol file.
    seeds : sequence of int
    out : Path
        The sweep folder.
    grid : list of (str, list of str)
        `parse_grid` output: keys and their values as TOML text.
    methods : sequence of str
    overrides : sequence of str
        ``section.key=value`` settings shared by every run (``--set``).

    Raises
    ------
    ConfigError
        An unknown protocol, key, value or method, or two runs with the same file name.
    """
    from hlopsim.protocols.experiment.methods import METHODS
    base = load_protocol(protocol)
    if base["protocol"].get("kind", "continual") != "continual":
        raise ConfigError(f"{protocol!r} is a {base['protocol']['kind']!r} protocol; sweep runs continual-learning "
                          "protocols")
    if any(item.partition("=")[0].strip() == "protocol.seed" for item in overrides):
        raise ConfigError("--set protocol.seed: give the seeds with --seeds")
    if not seeds:
        raise ConfigError("--seeds names no seed")
    if not methods:
        raise ConfigError(f"--method names no method; expected some of {', '.join(METHODS)}")
    for method in methods:
        if method not in METHODS:
            raise ConfigError(f"--method {method!r} is unknown; expected one of {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"--method {','.join(methods)!r} names a method twice")
    out = Path(out)
    runs, names = [], {}
    for values in itertools.product(*(v for _, v in grid)):
        point = tuple(zip((k for k, _ in grid), values))
        shared = apply_overrides(base, list(overrides) + [f"{k}={v}" for k, v in point])
        for method in methods:
            for seed in seeds:
                config = apply_overrides(shared, [f"protocol.seed={seed}"])
                experiment = Experiment.from_config(config)
                experiment.method(method)
                path = out / run_file_name(method, point, seed)
                if path.name in names:
                    raise ConfigError(f"grid points {dict(names[path.name])} and {dict(point)} give the same file "
                                      f"name {path.name!r}; write the values the same way")
                names[path.name] = point
                runs.append(SweepRun(method=method, seed=int(seed), point=point, config=experiment.config, path=path))
    return runs


# -- one run, on a worker --------------------------------------------------------------------------
def _pin_threads() -> None:
    """One thread for BLAS/OpenMP (threadpoolctl) and Numba in this process."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1)
    try:
        import numba
        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


def run_one(config: dict, method: str, path: str, restart: bool = False, cache_dir: str | None = None) -> dict:
    """Run one configuration and method to ``path`` in this process (a Dask task; never raises).

    Returns
    -------
    dict
        ``ok`` (bool), ``seconds``; if ok, ``summary`` (ACC, BWT, forgetting) and ``warnings`` (text);
        else ``error`` (one line) and ``details`` (traceback).
    """
    import warnings

    started = time.perf_counter()
    try:
        _pin_threads()
        from hlopsim.protocols.experiment.protocol import run_protocol
        from hlopsim.sim import prefs
        if cache_dir is not None and "{worker}" in cache_dir:
            try:
                from distributed import get_worker
                worker = str(get_worker().name)
            except (ImportError, ValueError):
                worker = str(os.getpid())
            cache_dir = cache_dir.replace("{worker}", re.sub(r"[^A-Za-z0-9._-]", "-", worker))
        prefs.set_cache_dir(cache_dir)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run_protocol(config, method, Path(path), overwrite=restart, progress=False)
        return {"ok": True, "seconds": time.perf_counter() - started, "summary": dict(result.summary),
                "warnings": sorted({str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)})}
    except BaseException as err:      # reported, never raised: the other runs go on
        if isinstance(err, KeyboardInterrupt):
            raise
        return {"ok": False, "seconds": time.perf_counter() - started, "error": f"{type(err).__name__}: {err}",
                "details": traceback.format_exc()}


# -- the sweep -------------------------------------------------------------------------------------
def _register_worker_setup(client) -> None:
    """Prepare every worker of ``client``'s cluster, now and any that joins later: one thread for BLAS
    and Numba, and Brian2 imported in the worker's main thread (its import installs a SIGINT handler,
    which Python allows only there; runs execute in a worker's task thread)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class HlopsimWorkerSetup(WorkerPlugin):      # sent by value (cloudpickle): nothing to import on workers
        name = "hlopsim-worker-setup"

        def setup(self, worker):
            import brian2  # noqa: F401
            import hlopsim.protocols.experiment.protocol  # noqa: F401
            _pin_threads()

    client.register_plugin(HlopsimWorkerSetup())


def _start_client(scheduler: str | None, workers: int | None):
    """A Dask client of the cluster at ``scheduler``, or of a new LocalCluster; and that cluster (or None)."""
    from distributed import Client, LocalCluster
    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           dashboard_address=None, env=dict(THREAD_ENV), silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _folder_table(out: Path) -> str:
    """The ``hlopsim compare`` table of every readable run file in ``out``."""
    from hlopsim.protocols.reports.compare import compare, format_text
    from hlopsim.sim.runfile import RunFile, RunFileError
    readable = []
    for path in sorted(out.glob("*.h5")):
        try:
            with RunFile(path):
                readable.append(path)
        except (RunFileError, OSError):
            pass
    return format_text(compare(readable)) if readable else "(no readable run file in the folder)"


def sweep(protocol: str, seeds, out, *, grid=(), methods=("hlop",), overrides=(), scheduler: str | None = None,
          workers: int | None = None, cache_dir: str | None = None, client=None, progress: bool = True,
          echo=print) -> SweepResult:
    """Run every (grid point, method, seed) of ``protocol`` on Dask distributed; one run file each.

    Parameters
    ----------
    protocol : str
        A bundled protocol or a protocol file.
    seeds : sequence of int
    out : str or Path
        The sweep folder (created if missing; its parent must exist).
    grid : list of (str, list of str)
        Settings to cross (`parse_grid`).
    methods : sequence of str
    overrides : sequence of str
        ``section.key=value`` settings for every run.
    scheduler : str, optional
        Address of a running Dask scheduler; default a new LocalCluster.
    workers : int, optional
        LocalCluster worker processes (default: one per core).
    cache_dir : str, optional
        Brian2's cython cache folder for every run (``{worker}``: the worker's name).
    client : distributed.Client, optional
        Use this client (its cluster) instead of starting one; it is left open.
    progress : bool
        Show a progress bar of finished runs.
    echo : callable
        Prints one line (each finished run, failures, the compare table).

    Returns
    -------
    SweepResult
        Failed runs have ``status == "failed"`` and their ``error``; nothing is raised for them.

    Raises
    ------
    ConfigError
        Bad settings, methods or seeds, or a missing parent folder, before anything runs.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    out = Path(out)
    if not out.parent.resolve().is_dir():
        raise ConfigError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    runs = plan_sweep(protocol, seeds, out, grid=grid, methods=methods, overrides=overrides)
    out.mkdir(exist_ok=True)
    for run in runs:
        run.action, run.error = _action(run.path, run.method, run.config)
        if run.action == "skip":
            run.status = "failed" if run.error else "skipped"
    todo = [run for run in runs if run.action != "skip"]
    skipped = sum(run.status == "skipped" for run in runs)
    echo(f"sweep: {len(runs)} runs ({len(todo)} to run, {skipped} complete, "
         f"{sum(run.status == 'failed' for run in runs)} refused) -> {out}")
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc="sweep", disable=not progress)
    write = bar.write if progress else echo

    cluster = None
    own_client = client is None and bool(todo)
    try:
        if own_client:
            client, cluster = _start_client(scheduler, workers)
        if todo:
            from distributed import as_completed
            _register_worker_setup(client)
            futures = {client.submit(run_one, run.config, run.method, str(run.path), run.action == "restart",
                                     cache_dir, key=f"hlopsim-{run.name}-{time.time_ns()}", pure=False): run
                       for run in todo}
            for future in as_completed(futures):
                run = futures[future]
                try:
                    outcome = future.result()
                except Exception as err:    # the worker died (or the task could not be sent): reported
                    outcome = {"ok": False, "error": f"{type(err).__name__}: {err}", "details": ""}
                run.seconds = outcome.get("seconds", float("nan"))
                if outcome["ok"]:
                    run.status, run.summary = "done", outcome["summary"]
                    s = run.summary
                    write(f"done    {run.name}  ACC {s['ACC']:.1f}  BWT {s['BWT']:.1f}  ({run.seconds:.0f} s"
                          f"{', resumed' if run.action == 'resume' else ''})")
                    for message in outcome.get("warnings", []):
                        write(f"        warning: {message}")
                else:
                    run.status, run.error, run.details = "failed", outcome["error"], outcome.get("details", "")
                    write(f"FAILED  {run.name}: {run.error}")
                bar.update(1)
    finally:
        bar.close()
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()
    table = _folder_table(out)
    echo("")
    echo(table)
    failed = [run for run in runs if run.status == "failed"]
    if failed:
        echo("")
        echo(f"{len(failed)} of {len(runs)} runs failed:")
        for run in failed:
            echo(f"  {run.name}: {run.error}")
    return SweepResult(runs=runs, table=table, seconds=time.perf_counter() - started)


# -- command line ----------------------------------------------------------------------------------
def add_sweep_parser(subparsers):
    """Add ``sweep`` to the ``hlopsim`` sub-commands; returns its parser."""
    from hlopsim.protocols.experiment.config import BUNDLED
    from hlopsim.protocols.experiment.methods import METHODS
    parser = subparsers.add_parser("sweep", help="run every (setting, method, seed) of a protocol on Dask, one run "
                                                 "file each, and compare them")
    parser.add_argument("protocol", metavar="PROTOCOL_OR_FILE",
                        help=f"a bundled protocol ({', '.join(BUNDLED[:-1])}) or a protocol file (.toml)")
    parser.add_argument("--seeds", required=True, help="seeds, e.g. 0-4 or 0,3,7")
    parser.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                        help="a setting to cross with the others, values in TOML syntax (repeatable), "
                             "e.g. --grid learning.lr=0.1,0.05 --grid 'network.hidden=[128],[256]'")
    parser.add_argument("--method", default="hlop", help=f"comma-separated methods among {', '.join(METHODS)} "
                                                         "(default hlop)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting for every run (as hlopsim run --set)")
    parser.add_argument("--out", type=Path, required=True, help="the sweep folder (created if missing); one run "
                                                                "file per run")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786 "
                                                               "(default: a local cluster)")
    parser.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    parser.add_argument("--cache-dir", metavar="DIR", help="Brian2 cython cache folder for the workers; "
                                                           "{worker} becomes the worker's name")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def sweep_command(args) -> int:
    """``hlopsim sweep``: exit code 0 when every run is complete, 1 when some failed.

    Raises
    ------
    ConfigError
        Bad arguments, before anything runs (the CLI prints one line and exits 2).
    """
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers} must be at least 1")
    if args.workers is not None and args.scheduler is not None:
        raise ConfigError("--workers sizes a local cluster; with --scheduler the cluster has its own workers")
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    result = sweep(args.protocol, parse_seeds(args.seeds), args.out, grid=parse_grid(args.grid), methods=methods,
                   overrides=list(args.set), scheduler=args.scheduler, workers=args.workers,
                   cache_dir=args.cache_dir, progress=not args.quiet)
    return 1 if result.failed else 0
