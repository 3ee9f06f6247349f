"""Command line: ``hlopsim run PROTOCOL [--method M[,M…]] [--tasks N] [--epochs E] [--seed S] [--out PATH]
[--set section.key=value …] [--overwrite] [--quiet]``; ``hlopsim inspect FILE [--json]``;
``hlopsim plot FILE WHAT [--task T] [--phase P] [--population POP] [--window START:STOP] [--out PNG]``;
``hlopsim export FILE --nwb OUT.nwb [--overwrite]`` (needs the optional ``export`` extra: pynwb).

Bad input (unknown protocol, method or key; non-positive sizes, rates or durations; a missing output
folder; an existing output file without ``--overwrite``) ends with one line on stderr naming the
value and what is expected, and exit code 2. Nothing already written is touched.
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

from protocols.config import PROTOCOLS, ConfigError, apply_overrides, load_protocol
from protocols.methods import METHODS, make_method


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (like every other error of the CLI) and exit 2."""

    def error(self, message):
        self.exit(2, f"hlopsim: error: {message} (see hlopsim {self.prog.split()[-1]} --help)\n"
                  if " " in self.prog else f"hlopsim: error: {message} (see hlopsim --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hlopsim", description="Continual learning in spiking networks with HLOP.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a continual-learning protocol")
    run.add_argument("protocol", help=f"one of: {', '.join(PROTOCOLS)}")
    run.add_argument("--method", default=None,
                     help=f"method or comma-separated methods among {', '.join(METHODS)} (default hlop)")
    run.add_argument("--tasks", type=int, help="number of tasks (protocol.tasks)")
    run.add_argument("--epochs", type=int, help="epochs per task (protocol.epochs)")
    run.add_argument("--seed", type=int, help="random seed (protocol.seed)")
    run.add_argument("--out", type=Path, help="run file (one method) or existing folder (several methods); "
                                               "default: <protocol>-<method>.h5 in the current folder")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a protocol setting, e.g. --set network.hidden=[256]")
    run.add_argument("--overwrite", action="store_true", help="replace existing run files")
    run.add_argument("--resume", type=Path, metavar="FILE",
                     help="continue an interrupted run file after its last finished task, with the "
                          "settings stored in it")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    inspect = sub.add_parser("inspect", help="summarise a run file: run, populations, segments, accuracies")
    inspect.add_argument("file", metavar="FILE", help="run file (.h5)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    compare = sub.add_parser("compare", help="ACC, BWT, forgetting of run files, with mean ± sd over the runs "
                                             "that differ only in the seed")
    compare.add_argument("files", metavar="FILE", nargs="+", help="run files (.h5)")
    compare.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    plot = sub.add_parser("plot", help="draw a figure of a run file as PNG")
    plot.add_argument("file", metavar="FILE", help="run file (.h5)")
    plot.add_argument("what", metavar="WHAT", help="raster, psth, accuracy, acc-curve, angles or weights")
    plot.add_argument("--task", metavar="T", help="task index (raster, psth: its segments; weights: after it)")
    plot.add_argument("--phase", metavar="P", help="phase, train or test (raster, psth)")
    plot.add_argument("--population", metavar="POP", help="population(s), comma-separated (raster, psth; "
                                                           "default all)")
    plot.add_argument("--window", metavar="START:STOP", help="time window in seconds on the presentation "
                                                             "clock (raster; default the first presentations)")
    plot.add_argument("--out", metavar="PNG", help="image to write (default <file stem>-<WHAT>.png next to FILE)")
    export = sub.add_parser("export", help="write a run file as NWB (units with spike times, trials); "
                                           "needs pip install '.[export]'")
    export.add_argument("file", metavar="FILE", help="run file (.h5)")
    export.add_argument("--nwb", metavar="OUT.nwb", required=True, help="NWB file to write (its folder must exist)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing OUT.nwb")
    return parser


def _output_paths(args, methods: list[str]) -> dict[str, Path]:
    if args.out is None:
        paths = {m: Path(f"{args.protocol}-{m}.h5") for m in methods}
    elif len(methods) > 1 or args.out.is_dir():
        if not args.out.is_dir():
            raise ConfigError(f"--out {str(args.out)!r}: with several methods --out must be an existing folder")
        paths = {m: args.out / f"{m}.h5" for m in methods}
    else:
        paths = {methods[0]: args.out}
    for path in paths.values():
        if not path.parent.resolve().is_dir():
            raise ConfigError(f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist")
        if path.exists() and not args.overwrite:
            raise ConfigError(f"--out {str(path)!r} exists; pass --overwrite to replace it")
    return paths


def _format_matrix(R) -> str:
    n = R.shape[0]
    lines = ["after task | " + " ".join(f"task {j:<3d}" for j in range(n))]
    for i in range(n):
        lines.append(f"{i:10d} | " + " ".join(f"{R[i, j]:8.1f}" for j in range(n)))
    return "\n".join(lines)


def _format_table(results) -> str:
    head = f"{'method':10s} {'ACC':>7s} {'BWT':>7s} {'forget':>7s} {'wall s':>8s} {'train samples/s':>16s}"
    rows = [head, "-" * len(head)]
    for r in results:
        s = r.summary
        rows.append(f"{r.method:10s} {s['ACC']:7.1f} {s['BWT']:7.1f} {s['forgetting']:7.1f} "
                    f"{r.total_seconds:8.1f} {r.samples_per_second:16.0f}")
    return "\n".join(rows)


def _resume(args) -> int:
    """``hlopsim run PROTOCOL --resume FILE``: finish an interrupted run with its own settings."""
    given = [flag for flag, value in (("--method", args.method), ("--tasks", args.tasks), ("--epochs", args.epochs),
                                      ("--seed", args.seed), ("--out", args.out), ("--set", args.set)) if value]
    if given:
        raise ConfigError(f"--resume takes every setting from the run file; drop {', '.join(given)}")
    if not args.resume.is_file():
        raise ConfigError(f"--resume {str(args.resume)!r}: no such file")
    load_protocol(args.protocol)  # the protocol must exist
    from protocols.continual import resume_settings, run_continual
    config, method = resume_settings(args.resume)
    if config["protocol"]["name"] != args.protocol:
        raise ConfigError(f"--resume {str(args.resume)!r} is a {config['protocol']['name']!r} run, not {args.protocol!r}")
    result = run_continual(config, method, args.resume, progress=not args.quiet, resume=True)
    print(f"\n{method}: accuracy matrix R[i, j] (% correct on task j after training task i) -> {args.resume}")
    print(_format_matrix(result.accuracy))
    print()
    print(_format_table([result]))
    return 0


def _run_subspace(args) -> int:
    """``hlopsim run subspace-convergence``: circuits against Oja's rule on synthetic streams."""
    given = [flag for flag, value in (("--method", args.method), ("--tasks", args.tasks), ("--epochs", args.epochs),
                                      ("--resume", args.resume)) if value]
    if given:
        raise ConfigError(f"subspace-convergence does not take {', '.join(given)}")
    overrides = list(args.set) + ([f"protocol.seed={args.seed}"] if args.seed is not None else [])
    config = apply_overrides(load_protocol(args.protocol), overrides)
    out = args.out or Path("subspace-convergence.h5")
    if not out.parent.resolve().is_dir():
        raise ConfigError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"--out {str(out)!r} exists; pass --overwrite to replace it")
    from protocols.subspace import format_table, run_subspace
    traces = run_subspace(config, out, overwrite=args.overwrite)
    print(format_table(traces))
    print(f"\nH over time -> {out}\nfigure -> {out.with_suffix('.png')}")
    return 0


def _run(args) -> int:
    if args.protocol == "subspace-convergence":
        return _run_subspace(args)
    if args.resume is not None:
        return _resume(args)
    args.method = args.method or "hlop"
    config = load_protocol(args.protocol)
    overrides = list(args.set)
    for flag, key in ((args.tasks, "protocol.tasks"), (args.epochs, "protocol.epochs"), (args.seed, "protocol.seed")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    config = apply_overrides(config, overrides)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"--method {m!r} is unknown; expected one of {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"--method {args.method!r} names a method twice")
    if not methods:
        raise ConfigError(f"--method {args.method!r} names no method; expected one of {', '.join(METHODS)}")
    if config["protocol"]["seed"] < 0:
        raise ConfigError(f"protocol.seed = {config['protocol']['seed']} must be non-negative")
    paths = _output_paths(args, methods)
    _check_specs(config, uses_lateral=any(METHODS[m].uses_lateral for m in methods))
    for m in methods:           # a method's own settings (gpm.threshold, ...) fail before any method runs
        make_method(m, config)

    from protocols.continual import run_continual
    results = []
    for method in methods:
        result = run_continual(config, method, paths[method], overwrite=args.overwrite, progress=not args.quiet)
        results.append(result)
        print(f"\n{method}: accuracy matrix R[i, j] (% correct on task j after training task i) -> {paths[method]}")
        print(_format_matrix(result.accuracy))
    print()
    print(_format_table(results))
    return 0


def _check_specs(config: dict, uses_lateral: bool) -> None:
    """Build the specs once before any simulation, so that bad values fail fast and cleanly."""
    from models.from_config import lateral_spec, network_spec
    for key in ("tasks", "epochs"):
        if config["protocol"][key] < 1:
            raise ConfigError(f"protocol.{key} = {config['protocol'][key]} must be at least 1")
    for key in ("lr", "logit_scale"):
        value = config["learning"][key]
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"learning.{key} = {value} must be a finite positive number")
    if config["sim"]["target"] not in ("numpy", "cython"):
        raise ConfigError(f"sim.target = {config['sim']['target']!r} is unknown; expected 'numpy' or 'cython'")
    spec = network_spec(config["network"], 1, 1)
    lateral = lateral_spec(config["lateral"])
    n_layers = len(spec.weight_names)
    if uses_lateral and len(lateral.first_task) != n_layers:
        raise ConfigError(f"lateral.first_task = {list(lateral.first_task)} (and per_task, hebbian_rate) must have "
                          f"one entry per weight layer: {n_layers} for network.hidden = {list(spec.hidden_sizes)}")
    if uses_lateral and lateral.copies > spec.batch_size:
        raise ConfigError(f"lateral.copies = {lateral.copies} must not exceed network.batch_size = {spec.batch_size}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line, like the errors: ``hlopsim: warning: …``."""
    print(f"hlopsim: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hlopsim`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        import brian2  # noqa: F401  (on import, Brian2's logger takes over warnings.showwarning; ours goes last)
    warnings.showwarning = _show_warning
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "inspect":
            from protocols.inspect_cmd import inspect_command
            return inspect_command(args.file, as_json=args.json)
        if args.command == "compare":
            from protocols.compare_cmd import compare_command
            return compare_command(args.files, as_json=args.json)
        if args.command == "plot":
            from protocols.plots import plot_command
            return plot_command(args.file, args.what, task=args.task, phase=args.phase, population=args.population,
                                window=args.window, out=args.out)
        if args.command == "export":
            from protocols.export import MissingDependencyError, export_command
            try:
                return export_command(args.file, nwb=args.nwb, overwrite=args.overwrite)
            except MissingDependencyError as err:  # pynwb not installed: one line, exit 2
                print(f"hlopsim: error: {err}", file=sys.stderr)
                return 2
    except (ConfigError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"hlopsim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hlopsim: interrupted; the run file keeps what was written so far", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
