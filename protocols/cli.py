"""Command line: ``hlopsim run PROTOCOL [--method M[,M…]] [--tasks N] [--epochs E] [--seed S] [--out PATH]
[--set section.key=value …] [--overwrite] [--quiet]``; ``hlopsim run --resume FILE``;
``hlopsim inspect FILE [--json]``; ``hlopsim compare FILE…``;
``hlopsim plot FILE WHAT [--task T] [--phase P] [--population POP] [--window START:STOP] [--out PNG]``;
``hlopsim export FILE --nwb OUT.nwb [--overwrite]`` (needs the optional ``export`` extra: pynwb).

PROTOCOL is a bundled protocol's name or the path of a protocol file (TOML). Bad input (unknown
protocol, method or key; values out of range; a missing output folder; an existing output file
without ``--overwrite``) ends with one line on stderr naming the value and what is expected, and exit
code 2. Nothing already written is touched.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from hlopsim.protocols.experiment.config import BUNDLED, ConfigError, Experiment, apply_overrides, load_protocol
from hlopsim.protocols.experiment.methods import METHODS


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (like every other error of the CLI) and exit 2."""

    def error(self, message):
        self.exit(2, f"hlopsim: error: {message} (see hlopsim {self.prog.split()[-1]} --help)\n"
                  if " " in self.prog else f"hlopsim: error: {message} (see hlopsim --help)\n")


def _parser() -> argparse.ArgumentParser:
    from hlopsim import __version__
    parser = _Parser(prog="hlopsim", description="Continual learning in spiking networks with HLOP.")
    parser.add_argument("--version", action="version", version=f"hlopsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a continual-learning protocol")
    run.add_argument("protocol", nargs="?", help=f"a bundled protocol ({', '.join(BUNDLED)}) or the path of a "
                                                  "protocol file (.toml); not with --resume")
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
        stem = Path(args.protocol).stem if args.protocol.endswith(".toml") else args.protocol
        paths = {m: Path(f"{stem}-{m}.h5") for m in methods}
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
    """``hlopsim run --resume FILE``: finish an interrupted run with the settings stored in it."""
    given = [flag for flag, value in (("--method", args.method), ("--tasks", args.tasks),
                                      ("--epochs", args.epochs), ("--seed", args.seed), ("--out", args.out),
                                      ("--set", args.set), ("--overwrite", args.overwrite)) if value]
    if given:
        raise ConfigError(f"--resume takes every setting from the run file; drop {', '.join(given)}")
    if not args.resume.is_file():
        raise ConfigError(f"--resume {str(args.resume)!r}: no such file")
    from hlopsim.protocols.experiment.protocol import resume_settings, run_protocol
    config, method = resume_settings(args.resume)
    stored = config.get("protocol", {}).get("name")
    if args.protocol is not None and args.protocol not in (stored, f"{stored}.toml") \
            and Path(args.protocol).stem != stored:
        raise ConfigError(f"--resume {str(args.resume)!r} is a {stored!r} run, not {args.protocol!r} "
                          "(the protocol argument may be left out)")
    result = run_protocol(config, method, args.resume, progress=not args.quiet)
    print(f"\n{method}: accuracy matrix R[i, j] (% correct on task j after training task i) -> {args.resume}")
    print(_format_matrix(result.accuracy))
    print()
    print(_format_table([result]))
    return 0


def _run_subspace(args, config: dict) -> int:
    """``hlopsim run subspace-convergence``: circuits against Oja's rule on synthetic streams."""
    given = [flag for flag, value in (("--method", args.method), ("--tasks", args.tasks), ("--epochs", args.epochs))
             if value]
    if given:
        raise ConfigError(f"subspace-convergence does not take {', '.join(given)}")
    overrides = list(args.set) + ([f"protocol.seed={args.seed}"] if args.seed is not None else [])
    config = apply_overrides(config, overrides)
    out = args.out or Path("subspace-convergence.h5")
    if not out.parent.resolve().is_dir():
        raise ConfigError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"--out {str(out)!r} exists; pass --overwrite to replace it")
    from hlopsim.protocols.subspace import format_table, run_subspace
    traces = run_subspace(config, out, overwrite=args.overwrite)
    print(format_table(traces))
    print(f"\nH over time -> {out}\nfigure -> {out.with_suffix('.png')}")
    return 0


def _run(args) -> int:
    if args.resume is not None:
        return _resume(args)
    if args.protocol is None:
        raise ConfigError("run needs a PROTOCOL (a bundled name or a protocol file) or --resume FILE")
    config = load_protocol(args.protocol)
    if config["protocol"].get("kind") == "subspace-convergence":
        return _run_subspace(args, config)
    args.method = args.method or "hlop"
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
    experiment = Experiment.from_config(config)     # every key checked here, before anything is written
    for m in methods:                              # a method's own settings fail before any method runs
        experiment.method(m)
    paths = _output_paths(args, methods)

    from hlopsim.protocols.experiment.protocol import run_protocol
    results = []
    for method in methods:
        result = run_protocol(experiment.config, method, paths[method], overwrite=args.overwrite,
                              progress=not args.quiet)
        results.append(result)
        print(f"\n{method}: accuracy matrix R[i, j] (% correct on task j after training task i) -> {paths[method]}")
        print(_format_matrix(result.accuracy))
    print()
    print(_format_table(results))
    return 0


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
            from hlopsim.protocols.reports.inspect import inspect_command
            return inspect_command(args.file, as_json=args.json)
        if args.command == "compare":
            from hlopsim.protocols.reports.compare import compare_command
            return compare_command(args.files, as_json=args.json)
        if args.command == "plot":
            from hlopsim.protocols.reports.plots import plot_command
            return plot_command(args.file, args.what, task=args.task, phase=args.phase, population=args.population,
                                window=args.window, out=args.out)
        if args.command == "export":
            from hlopsim.protocols.reports.export import MissingDependencyError, export_command
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
