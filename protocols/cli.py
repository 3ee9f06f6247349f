"""Command line: ``hlopsim run PROTOCOL [--method M[,M…]] [--tasks N] [--epochs E] [--seed S] [--out PATH]
[--set section.key=value …] [--overwrite] [--quiet]``; ``hlopsim run --resume FILE``;
``hlopsim inspect FILE [--json]``; ``hlopsim compare FILE…``;
``hlopsim plot FILE WHAT [--task T] [--phase P] [--stage S] [--population POP] [--window START:STOP] [--out PNG]``;
``hlopsim export FILE --nwb OUT.nwb [--overwrite] [--subject-id ID] ...`` (needs the optional ``export`` extra: pynwb).

PROTOCOL is a bundled protocol's name or the path of a protocol file (TOML). Bad input (unknown
protocol, method or key; values out of range; a missing or read-only output folder; an existing output
file without ``--overwrite``; settings whose estimated memory exceeds the machine's; a damaged run
file; arguments that are not UTF-8) ends with one line on stderr, ``hlopsim: error: …``, naming the
file, key or value and what is expected, and exit code 2; so does a failed write (a full disk) or a
file another running process writes. Ctrl-C ends with one line ``hlopsim: interrupted; …`` saying
what the run file keeps and how to resume it, and exit code 130. Nothing already written is lost:
``--overwrite`` writes ``<file>.new`` and renames it over ``<file>`` only when the run is complete.
A closed output pipe (``hlopsim inspect FILE | head -1``) ends quietly with exit code 141.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from hlopsim.protocols.experiment.config import BUNDLED, ConfigError, Experiment, apply_overrides, load_protocol
from hlopsim.protocols.experiment.methods import METHODS

# The run file being written (what --resume takes) and the file actually written (differs with
# --overwrite), for the one-line report of an interrupt or a failed write.
_WRITING: dict[str, Path] = {}


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
    run.add_argument("--overwrite", action="store_true",
                     help="replace existing run files: the new run writes FILE.new and renames it over FILE "
                          "when complete (an interrupted one is continued with --resume FILE)")
    run.add_argument("--resume", type=Path, metavar="FILE",
                     help="continue an interrupted run file after its last finished task, with the "
                          "settings stored in it")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    inspect = sub.add_parser("inspect", help="summarise a run file: run, populations, segments, accuracies")
    inspect.add_argument("file", metavar="FILE", help="run file (.h5)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    compare = sub.add_parser("compare", help="ACC, BWT, forgetting, FWT and learning accuracy of run files, "
                                             "with mean ± sd over the runs that differ only in the seed")
    compare.add_argument("files", metavar="FILE", nargs="+", help="run files (.h5)")
    compare.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    plot = sub.add_parser("plot", help="draw a figure of a run file as PNG")
    plot.add_argument("file", metavar="FILE", help="run file (.h5)")
    plot.add_argument("what", metavar="WHAT", help="raster, psth, accuracy, acc-curve, angles or weights")
    plot.add_argument("--task", metavar="T", help="task index (raster, psth: its segments; weights: after it)")
    plot.add_argument("--phase", metavar="P", help="phase: train, test or consolidate (raster, psth; psth "
                                                   "default test)")
    plot.add_argument("--stage", metavar="S", help="stage, the task last trained (raster, psth; default the last "
                                                   "stage with such segments)")
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
    export.add_argument("--subject-id", help="NWB subject id (default hlopsim-<protocol>-<method>-seed<seed>)")
    export.add_argument("--species", help="NWB subject species, Latin binomial or NCBI taxonomy IRI (default "
                                          "NCBITaxon_32630, 'synthetic construct')")
    export.add_argument("--experimenter", action="append", help="experimenter, 'Last, First' (repeatable)")
    export.add_argument("--institution", help="institution")
    export.add_argument("--lab", help="lab")
    export.add_argument("--session-description", help="what the session is; the run's protocol, method and seed "
                                                      "are appended")
    from hlopsim.protocols.sweep import add_sweep_parser  # imports no Dask until a sweep runs
    add_sweep_parser(sub)
    return parser


def _output_paths(args, methods: list[str]) -> dict[str, Path]:
    """Every method's run file, each checked before the first method runs: an existing, writable
    folder; not a folder or a device; no other process writing it; not existing (or an interrupted
    ``--overwrite`` of it) unless ``--overwrite``."""
    from hlopsim.sim.runfile import being_written, pending_path
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
        folder = path.parent
        if not folder.resolve().is_dir():
            raise ConfigError(f"--out {str(path)!r}: folder {str(folder)!r} does not exist")
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"--out {str(path)!r}: folder {str(folder)!r} is not writable (read-only?); "
                              "choose a writable folder")
        if path.is_dir():
            raise ConfigError(f"--out {str(path)!r} is a folder; expected the path of a run file (.h5), "
                              "or an existing folder for several methods")
        if path.exists() and not path.is_file():
            raise ConfigError(f"--out {str(path)!r} is not a regular file; expected the path of a run file (.h5)")
        pending = pending_path(path)
        for busy in (path, pending):
            if being_written(busy):
                raise ConfigError(f"--out {str(path)!r}: {str(busy)!r} is being written by another running process; "
                                  "wait for it to finish or choose another file")
        if pending.exists() and not args.overwrite:
            raise ConfigError(f"--out {str(path)!r}: {str(pending)!r} holds an interrupted --overwrite run of it; "
                              f"continue it with hlopsim run --resume {path}, or pass --overwrite to start again")
        if path.exists() and not args.overwrite:
            raise ConfigError(f"--out {str(path)!r} exists; pass --overwrite to replace it")
    return paths


def _check_memory(experiment, methods: list[str]) -> None:
    """Refuse settings whose estimated memory exceeds the machine's (`sim.resources`), before the
    task sequence is built. One task stands for a permuted protocol (its tasks are equally large);
    a split protocol's tasks are built (at most one per class)."""
    from dataclasses import replace

    import numpy as np

    from hlopsim.protocols.experiment.loop import output_heads
    from hlopsim.sim.resources import check_run_memory
    probe = experiment if experiment.tasks.builder == "split" else replace(experiment, n_tasks=1)
    tasks = probe.make_tasks(np.random.default_rng(0))
    spec = experiment.network.with_sizes(int(np.asarray(tasks[0].x_train).shape[1]), output_heads(tasks)[0])
    for name in methods:
        method = experiment.method(name)
        lateral = method.lateral if method.uses_lateral else None
        check_run_memory(spec, lateral, n_tasks=experiment.n_tasks, n_train=max(len(t.y_train) for t in tasks),
                         n_test=max(len(t.y_test) for t in tasks), epochs=experiment.epochs,
                         consolidation_epochs=method.consolidation_epochs if method.uses_lateral else 0,
                         encoder=experiment.data.encoder, record_spikes=experiment.record_spikes,
                         propagation=experiment.propagation)


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


def _resume_target(path: Path) -> tuple[Path, Path, bool]:
    """``(target, working, replacing)`` for ``--resume path``: the file the finished run ends up in,
    the file to continue, and whether that is an unfinished ``--overwrite`` replacement
    (``<target>.new``, which is renamed over ``<target>`` when complete). ``--resume F`` continues
    ``F.new`` when an interrupted ``--overwrite`` left a resumable one (the newest attempt at ``F``),
    else ``F``; ``--resume F.new`` continues ``F.new``."""
    from hlopsim.sim.runfile import RunFileError, being_written, open_run, pending_path, read_checkpoint
    from hlopsim.sim.runfile.schema import REPLACES_ATTR
    working = path
    if pending_path(path).is_file():
        if being_written(pending_path(path)):     # refused by the caller; a file being written is not read
            return path, pending_path(path), False
        try:
            read_checkpoint(pending_path(path))
            working = pending_path(path)
        except RunFileError:
            pass
    if being_written(working):                    # as above: its blocks may land between our reads
        return path, working, False
    try:
        with open_run(working) as run:
            replaces = run.attrs.get(REPLACES_ATTR)
    except RunFileError:
        return path, working, False        # read_checkpoint reports what is wrong with it
    if isinstance(replaces, str) and pending_path(working.with_name(replaces)) == working:
        return working.with_name(replaces), working, True
    return path, working, False


def _resume(args) -> int:
    """``hlopsim run --resume FILE``: finish an interrupted run with the settings stored in it."""
    from hlopsim.sim.runfile import RunFileError, being_written, read_checkpoint
    given = [flag for flag, value in (("--method", args.method), ("--tasks", args.tasks),
                                      ("--epochs", args.epochs), ("--seed", args.seed), ("--out", args.out),
                                      ("--set", args.set), ("--overwrite", args.overwrite)) if value]
    if given:
        raise ConfigError(f"--resume takes every setting from the run file; drop {', '.join(given)}")
    if args.resume.is_dir():
        raise ConfigError(f"--resume {str(args.resume)!r} is a folder; expected a run file (.h5)")
    target, working, replacing = _resume_target(args.resume)
    if not working.is_file():
        raise ConfigError(f"--resume {str(args.resume)!r}: no such file")
    if being_written(working):
        raise ConfigError(f"--resume {str(working)!r}: the file is being written by another running process; "
                          "wait for it to finish")
    stored = read_checkpoint(working)
    if not os.access(working, os.W_OK) or (replacing and not os.access(working.parent, os.W_OK)):
        raise ConfigError(f"--resume {str(working)!r}: the file or its folder is read-only; copy it to a writable "
                          "folder and resume the copy")
    config, method = stored["config"], stored["method"]
    name = repr(str(working))
    protocol = config.get("protocol")
    if not isinstance(protocol, dict) or not isinstance(protocol.get("name"), str):
        raise RunFileError(f"{name}: its stored configuration (root attribute 'config') has no [protocol] "
                           "section with a name; it cannot be resumed (damaged file?)")
    if protocol.get("kind") == "script":
        raise ConfigError(f"{name} was written by a Python script (run_tasks); run the same script again "
                          "with the same file to resume it")
    try:
        experiment = Experiment.from_config(config)
        experiment.method(method)
    except ConfigError as err:
        raise RunFileError(f"{name}: its stored configuration or method cannot be run ({err}); "
                           "it cannot be resumed") from None
    stored_name = protocol["name"]
    if args.protocol is not None and args.protocol not in (stored_name, f"{stored_name}.toml") \
            and Path(args.protocol).stem != stored_name:
        raise ConfigError(f"--resume {str(args.resume)!r} is a {stored_name!r} run, not {args.protocol!r} "
                          "(the protocol argument may be left out)")
    _check_memory(experiment, [method])
    from hlopsim.protocols.experiment.protocol import run_protocol
    _WRITING.update(target=target, working=working)
    # the file itself is continued (a different run in it is refused, never replaced); an unfinished
    # --overwrite replacement renames itself over its target when it completes (`RunRecorder.resume`)
    result = run_protocol(config, method, working, progress=not args.quiet)
    _WRITING.clear()
    print(f"\n{method}: accuracy matrix R[i, j] (% correct on task j after training task i) -> {target}")
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
    _check_memory(experiment, methods)

    from hlopsim.protocols.experiment.protocol import run_protocol
    from hlopsim.sim.runfile import pending_path
    results = []
    for method in methods:
        _WRITING.update(target=paths[method], working=pending_path(paths[method]) if args.overwrite else paths[method])
        result = run_protocol(experiment.config, method, paths[method], overwrite=args.overwrite,
                              progress=not args.quiet)
        _WRITING.clear()
        results.append(result)
        print(f"\n{method}: accuracy matrix R[i, j] (% correct on task j after training task i) -> {paths[method]}")
        print(_format_matrix(result.accuracy))
    print()
    print(_format_table(results))
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line, like the errors: ``hlopsim: warning: …``. Deprecation notices of the libraries
    underneath (e.g. pyparsing's, raised while Brian2 parses equations) are not the user's business."""
    if issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
        return
    print(f"hlopsim: warning: {message}", file=sys.stderr)


def _kept() -> str:
    """What the run file being written keeps after an interrupt or a failed write, and how to go on."""
    target, working = _WRITING.get("target"), _WRITING.get("working")
    if target is None:
        return ""
    from hlopsim.sim.runfile import RunFileError, read_checkpoint
    unchanged = f"{target} is unchanged and " if working != target and target.exists() else ""
    try:
        stored = read_checkpoint(working)
    except RunFileError:
        stored = None
    except Exception:  # noqa: BLE001 (a report of a failure must not fail itself)
        return f"; see {working}"
    if stored is None:
        again = "--overwrite " if working == target else ""
        return (f"; {unchanged}{working} holds no finished task (nothing to resume: run again {again}to start "
                "over)" if working.exists() else "; nothing was written")
    done = stored["checkpoint"]["task"] + 1
    protocol = stored["config"].get("protocol")
    of = f" of {protocol['tasks']}" if isinstance(protocol, dict) and isinstance(protocol.get("tasks"), int) else ""
    return (f"; {unchanged}{working} keeps {done} finished task{'s' if done > 1 else ''}{of}: "
            f"hlopsim run --resume {target} continues it")


def _check_arguments(argv) -> None:
    """Refuse arguments that are not valid UTF-8 (undecodable bytes arrive as surrogates): Brian2
    writes the command line to its log on import and fails on them, and run files store it."""
    for index, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(arg)
            raise ConfigError(f"argument {index} ({shown!r}) is not valid UTF-8; file, folder and protocol "
                              "names must be UTF-8") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hlopsim`` console script; returns the exit code."""
    try:
        _check_arguments(sys.argv[1:] if argv is None else list(argv))
        _check_arguments(sys.argv)  # Brian2 logs sys.argv itself
    except ConfigError as err:
        print(f"hlopsim: error: {err}", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    _WRITING.clear()
    try:
        if args.command == "run":
            import brian2  # noqa: F401  (on import, Brian2's logger takes over warnings.showwarning; ours goes last)
        warnings.showwarning = _show_warning
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (``hlopsim inspect FILE | head -1``): end quietly, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"hlopsim: interrupted{_kept()}", file=sys.stderr)
        return 130
    except (ConfigError, ValueError, OSError) as err:  # OSError: failed writes, unreadable files
        from hlopsim.sim.runfile import RunFileBusyError
        kept = _kept() if _WRITING and not isinstance(err, RunFileBusyError) else ""
        print(f"hlopsim: error: {_one_line(err)}{kept}", file=sys.stderr)
        if argv is None and type(err).__name__ in ("ExportWriteError", "RunFileWriteError"):
            # HDF5 may not release a file whose writes failed and crash at interpreter exit: the command
            # ends now (every file of the run was closed on the way here).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except MemoryError:
        print("hlopsim: error: out of memory; lower network.batch_size, network.hidden, protocol.tasks or "
              f"data.train_size{_kept()}", file=sys.stderr)
        return 2


def _one_line(err) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and not text.startswith(("cannot", "'", '"')) and getattr(err, "filename", None):
        return f"{err.filename}: {err.strerror or text}"
    return text


def _dispatch(args) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "inspect":
        from hlopsim.protocols.reports.inspect import inspect_command
        return inspect_command(args.file, as_json=args.json)
    if args.command == "compare":
        from hlopsim.protocols.reports.compare import compare_command
        return compare_command(args.files, as_json=args.json)
    if args.command == "sweep":
        from hlopsim.protocols.sweep import sweep_command
        return sweep_command(args)
    if args.command == "plot":
        from hlopsim.protocols.reports.plots import plot_command
        return plot_command(args.file, args.what, task=args.task, phase=args.phase, population=args.population,
                            window=args.window, out=args.out, stage=args.stage)
    from hlopsim.protocols.reports.export import MissingDependencyError, export_command
    try:
        return export_command(args.file, nwb=args.nwb, overwrite=args.overwrite, subject_id=args.subject_id,
                              species=args.species, experimenter=args.experimenter, institution=args.institution,
                              lab=args.lab, session_description=args.session_description)
    except MissingDependencyError as err:  # pynwb not installed: one line, exit 2
        print(f"hlopsim: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
