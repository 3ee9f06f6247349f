"""Exporting a run file to the neuroscience formats NWB (with pynwb) and Neo (with neo).

Both packages are optional (``pip install '.[export]'``) and are imported only inside the
functions that need them; without them those functions raise `MissingDependencyError`, whose
one-line message says what to install.

- `to_nwb` writes an NWB file: a Units table with one unit per (population, neuron) (columns
  ``population``, ``neuron``, ``spike_times`` in seconds, ``obs_intervals``) and a trials table
  with one row per complete presentation (``start_time``, ``stop_time``, ``task``, ``stage``,
  ``epoch``, ``phase``, ``trial``, ``label``). ``hlopsim export FILE --nwb OUT.nwb`` calls it.
- `to_neo_block` returns a `neo.Block` with one `neo.Segment` per (stage, phase) block of
  presentations, each holding one `neo.SpikeTrain` per (population, neuron).

All times are in seconds on the run file's *presentation clock* (presentations laid end to end,
see `hlopsim.sim.runfile`), not on the wall clock of the simulation. Only complete presentations
are exported, so a file whose run was killed exports what it finished. Everything is read through
`hlopsim.sim.runfile.RunFile`; spike trains are built from the flat spike arrays with one stable
sort per population (and block), never with one scan per neuron.
"""
from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
import re
import sys
import uuid
from pathlib import Path

import numpy as np

from hlopsim.sim.runfile import RunFile, RunFileError

__all__ = ["ExportWriteError", "MissingDependencyError", "export_command", "to_neo_block", "to_nwb", "unit_spike_times"]

INSTALL_HINT = "pip install '.[export]' in the hlopsim folder (or pip install pynwb neo)"


class ExportWriteError(OSError):
    """Writing an export failed (a full disk, an I/O error); one line naming the file and the
    system's reason. The output file is unchanged.

    HDF5 cannot fully release a file whose writes failed and may crash when the interpreter
    exits afterwards; the CLI therefore ends its process at once after reporting this error.
    """


class MissingDependencyError(ImportError):
    """An optional export package (pynwb, neo) is not installed or cannot be imported.

    The message is one line naming the package and how to install it.
    """


def _require(module: str, purpose: str):
    """Import ``module`` or raise `MissingDependencyError` saying ``purpose`` needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] == top:
            raise MissingDependencyError(f"{purpose} needs {top}: {INSTALL_HINT}") from None
        detail = " ".join(str(err).split())
        raise MissingDependencyError(f"{purpose} needs {top}, which failed to import ({detail}): "
                                     f"{INSTALL_HINT}") from None


@contextlib.contextmanager
def _opened(run_or_path):
    """An open `RunFile` for a RunFile (left open) or a path (closed afterwards)."""
    if isinstance(run_or_path, RunFile):
        yield run_or_path
    else:
        with RunFile(run_or_path) as run:
            yield run


def _sort_dtype(n: int):
    """Smallest unsigned dtype for neuron indices below ``n`` (numpy radix-sorts 8/16-bit keys)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dtype).max + 1:
            return dtype
    return np.uint64


def _group_by_neuron(run: RunFile, pop: str, times: np.ndarray, neurons: np.ndarray, n: int):
    """Spike times ordered by neuron (and by time within a neuron), and the count per neuron.

    One stable argsort over all spikes; spikes come in clock order from the run file, so each
    neuron's times stay ascending (sorted explicitly if the file's are not).
    """
    if neurons.size and (neurons.min() < 0 or neurons.max() >= n):
        raise run.error(f"population {pop!r} has a spike of neuron {int(neurons.max())}; "
                        f"expected < n_neurons = {n} (damaged file?)")
    if times.size > 1 and np.any(times[1:] < times[:-1]):
        order = np.lexsort((times, neurons))
    else:
        order = np.argsort(neurons.astype(_sort_dtype(n)), kind="stable")
    return times[order], np.bincount(neurons, minlength=n)


def unit_spike_times(run: RunFile, pop: str) -> tuple[np.ndarray, np.ndarray]:
    """Every spike of population ``pop`` grouped by neuron, in the complete segments.

    Parameters
    ----------
    run : RunFile
        An open run file.
    pop : str
        Population name.

    Returns
    -------
    times_s : ndarray of float64
        Spike times in seconds on the presentation clock, neuron 0's first (ascending), then
        neuron 1's, and so on.
    counts : ndarray of int64, shape (n_neurons,)
        Spikes per neuron: neuron ``i``'s times are ``times_s[ends[i] - counts[i]:ends[i]]``
        with ``ends = np.cumsum(counts)``.
    """
    times, neurons = run.spikes(pop)
    return _group_by_neuron(run, pop, times, neurons, run.n_neurons(pop))


# ---------------------------------------------------------------------------------- NWB


def _check_output(out: Path, overwrite: bool, run_path: Path, flag: str) -> None:
    """Refuse an output in a missing folder, a folder, the run file itself, or an existing file
    without ``overwrite`` (``flag`` names the switch in the message)."""
    if not out.parent.resolve().is_dir():
        raise FileNotFoundError(f"{out}: folder {str(out.parent)!r} does not exist; expected an existing folder")
    if not os.access(out.parent, os.W_OK):
        raise RunFileError(f"{out}: folder {str(out.parent)!r} is not writable (read-only?); expected a writable "
                           "folder")
    if out.is_dir():
        raise RunFileError(f"{out}: is a folder; expected the path of the NWB file to write")
    if out.exists():
        if run_path.exists() and out.samefile(run_path):
            raise RunFileError(f"{out}: is the run file being exported; choose another output file")
        if not overwrite:
            raise FileExistsError(f"{out}: exists; pass {flag} to replace it")


def _created(run: RunFile) -> tuple[datetime.datetime, str]:
    """Session start from the root attribute ``created`` (ISO 8601; UTC if no zone is given),
    or the run file's modification time; and a note saying which."""
    text = run.attrs.get("created")
    if text is not None:
        try:
            when = datetime.datetime.fromisoformat(str(text))
        except ValueError:
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            return when, f"session_start_time is the run file's 'created' attribute ({text})"
    mtime = datetime.datetime.fromtimestamp(run.path.stat().st_mtime, tz=datetime.timezone.utc)
    shown = "missing" if text is None else f"unreadable ({text!r})"
    return mtime, f"session_start_time is the run file's modification time ('created' is {shown})"


def _identifier(run: RunFile, n_segments: int) -> str:
    """A UUID derived from what identifies the run and the exported content, so exporting the same
    file again (or a copy of it) gives the same identifier."""
    attrs = run.attrs
    key = json.dumps([attrs.get("format"), attrs.get("created"), run.protocol, run.method, run.seed,
                      run.config, attrs.get("command"), n_segments], sort_keys=True, default=str)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "hlopsim-run:" + key))


def _hlopsim_version() -> str:
    try:
        from importlib.metadata import version
        return version("hlopsim")
    except Exception:  # not installed as a package (run from the source tree)
        return "unknown"


def _nwb_file(run: RunFile):
    """The `pynwb.NWBFile` of an open run file, and counts ``units``, ``spikes``, ``trials``."""
    pynwb = _require("pynwb", "NWB export")
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import VectorData, VectorIndex
    from pynwb.epoch import TimeIntervals
    from pynwb.misc import Units

    seg = run.segments()
    n_seg = run.n_segments
    if n_seg == 0:
        raise run.error("holds no complete presentation; nothing to export")
    dt = run.dt
    pops = run.populations
    n_neurons = [run.n_neurons(pop) for pop in pops]
    n_units = int(sum(n_neurons))
    total = int(sum(int(run.spikes_per_segment(pop).sum()) for pop in pops))

    # spike times of every unit, one population at a time into one preallocated array
    spike_times = np.empty(total, dtype=np.float64)
    counts = np.empty(n_units, dtype=np.int64)
    at = unit = 0
    for pop, n in zip(pops, n_neurons):
        times, per_neuron = unit_spike_times(run, pop)
        spike_times[at:at + times.size] = times
        counts[unit:unit + n] = per_neuron
        at += times.size
        unit += n
        del times
    if at != total:  # cannot happen for a consistent file; guards the preallocation
        raise run.error(f"read {at} spikes where segment_end counts {total} (damaged file?)")
    start_s, stop_s = float(seg["start_s"][0]), float(seg["stop_s"][-1])

    def column(name, description, data):
        return VectorData(name=name, description=description, data=data)

    st = column("spike_times", "spike times of each unit, in seconds on the hlopsim presentation clock",
                H5DataIO(spike_times, compression="gzip", compression_opts=1))
    obs = column("obs_intervals", "recorded span of each unit: [start of the first, end of the last complete "
                 "presentation], in seconds", np.tile([[start_s, stop_s]], (n_units, 1)))
    units = Units(
        name="units", resolution=dt,
        description=(f"one unit per (population, neuron) of the simulated network; spike times in seconds "
                     f"on the presentation clock (steps of dt = {dt:g} s)"),
        id=np.arange(n_units),
        columns=[st, VectorIndex(name="spike_times_index", data=np.cumsum(counts), target=st),
                 obs, VectorIndex(name="obs_intervals_index", data=np.arange(1, n_units + 1), target=obs),
                 column("population", "population (layer) of the neuron, e.g. input, hidden_1, output",
                        np.array([p for p, n in zip(pops, n_neurons) for _ in range(n)], dtype=object)),
                 column("neuron", "index of the neuron within its population",
                        np.concatenate([np.arange(n, dtype=np.int64) for n in n_neurons]))])
    trials = TimeIntervals(
        name="trials", description="one row per presentation of a sample (a run file segment), in clock order",
        id=np.arange(n_seg),
        columns=[column("start_time", "start of the presentation, in seconds", seg["start_s"]),
                 column("stop_time", "end of the presentation, in seconds", seg["stop_s"]),
                 column("task", "index of the task the sample belongs to", seg["task"].astype(np.int64)),
                 column("stage", "index of the task last trained when the sample was presented",
                        seg["stage"].astype(np.int64)),
                 column("epoch", "training epoch (-1 for evaluations)", seg["epoch"].astype(np.int64)),
                 column("phase", f"phase: {', '.join(run.phase_names)}", seg["phase"].astype(object)),
                 column("trial", "index of the sample within its task's set", seg["trial"].astype(np.int64)),
                 column("label", "true class of the sample", seg["label"].astype(np.int64))])
    when, when_note = _created(run)
    notes = {"source": run.path.name, "format_version": run.format_version, "complete": run.complete,
             "clock": (f"times are on the run file's presentation clock: every presentation "
                       f"({run.n_steps} steps of dt = {dt:g} s) laid end to end, not wall-clock time"),
             "session_start_time": when_note, "command": run.attrs.get("command"),
             "software": run.software, "config": run.config}
    nwbfile = pynwb.NWBFile(
        session_description=(f"hlopsim run: protocol {run.protocol}, method {run.method}, seed {run.seed}; "
                             f"{n_seg} presentations, {total} spikes of {n_units} simulated neurons"),
        identifier=_identifier(run, n_seg), session_start_time=when, session_id=run.path.stem,
        experiment_description=(f"continual learning in a Brian2 spiking network: protocol {run.protocol}, "
                                f"method {run.method}, seed {run.seed}"),
        notes=json.dumps(notes, default=str), was_generated_by=[("hlopsim", _hlopsim_version())],
        units=units, trials=trials)
    return nwbfile, {"units": n_units, "spikes": total, "trials": n_seg}


def _write_nwb(run: RunFile, out, overwrite: bool, flag: str) -> dict:
    out = Path(out)
    _check_output(out, overwrite, run.path, flag)
    nwbfile, counts = _nwb_file(run)
    from pynwb import NWBHDF5IO

    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.nwb")  # replaces OUT only once fully written
    hooks = sys.unraisablehook, sys.excepthook
    # a failed write also fails every later release of its HDF5 objects, each printing a traceback
    sys.unraisablehook, sys.excepthook = _quiet_hdf5_release, _quiet_hdf5_error
    try:
        io = NWBHDF5IO(str(tmp), "w")
        try:
            io.write(nwbfile)
            io._file.flush()  # HDF5 writes lazily: a full disk shows here, not only at close
        except BaseException:
            _abandon(io)
            raise
        io.close()
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out}: exists; pass {flag} to replace it")
        os.replace(tmp, out)
    except (OSError, RuntimeError) as err:
        if isinstance(err, FileExistsError):
            raise
        text = " ".join(str(err).split())
        found = re.search(r"errno = (\d+), error message = '([^']*)'", text)
        reason = f"{found.group(2)} (errno {found.group(1)})" if found else (
            f"{err.strerror} (errno {err.errno})" if isinstance(err, OSError) and err.strerror else text[:300])
        unchanged = f"; {out} is unchanged" if out.exists() else ""
        raise ExportWriteError(f"{out}: cannot write the NWB file: {reason}{unchanged}") from None
    finally:
        sys.unraisablehook, sys.excepthook = hooks
        tmp.unlink(missing_ok=True)
    return {"path": out, **counts}


def _failed_write(value) -> bool:
    return isinstance(value, (OSError, RuntimeError)) and "file write failed" in str(value)


def _quiet_hdf5_release(unraisable) -> None:
    """Drop the errors of HDF5 objects released after a failed write (each would print a
    traceback; the write itself reports the failure); pass every other one on."""
    if not _failed_write(unraisable.exc_value):
        sys.__unraisablehook__(unraisable)


def _quiet_hdf5_error(kind, value, traceback) -> None:
    """As `_quiet_hdf5_release`, for the tracebacks h5py prints while releasing objects."""
    if not _failed_write(value):
        sys.__excepthook__(kind, value, traceback)


def _abandon(io) -> None:
    """Close an NWB writer whose write failed without writing again (`sim.runfile.writer.release_failed`:
    a full disk would otherwise crash the process at exit); the caller removes the half-written file."""
    from hlopsim.sim.runfile.writer import release_failed
    file = getattr(io, "_file", None)
    if file is not None:
        release_failed(file)
    try:
        io.close()
    except Exception:  # noqa: BLE001 (nothing more can be done for this file)
        pass


def to_nwb(run_or_path, out_path, overwrite: bool = False) -> Path:
    """Write a run file as an NWB file.

    Parameters
    ----------
    run_or_path : RunFile or str or os.PathLike
        An open run file (left open) or the path of one.
    out_path : str or os.PathLike
        NWB file to write; its folder must exist. Written to a temporary file beside it first,
        so an existing file is only replaced by a complete export.
    overwrite : bool
        Replace an existing ``out_path``.

    Returns
    -------
    Path
        ``out_path``. The file holds a Units table (one unit per (population, neuron): columns
        ``population`` (str), ``neuron`` (int), ``spike_times`` (s, presentation clock) and
        ``obs_intervals`` ``[[start of the first, end of the last complete presentation]]``),
        a trials table (one row per complete presentation: ``start_time``, ``stop_time``,
        ``task``, ``stage``, ``epoch``, ``phase``, ``trial``, ``label``), a session description
        naming protocol, method and seed, an identifier derived from the run (the same for
        every export of the same file) and ``session_start_time`` from the run's ``created``
        attribute. ``notes`` holds the source file, the clock, the command, software versions
        and the resolved configuration as JSON.

    Raises
    ------
    MissingDependencyError
        If pynwb is not installed.
    FileExistsError
        If ``out_path`` exists and ``overwrite`` is false.
    FileNotFoundError
        If the folder of ``out_path`` does not exist.
    RunFileError
        If the run file cannot be read, holds no complete presentation, or ``out_path`` is a
        folder or the run file itself.
    """
    _require("pynwb", "NWB export")
    with _opened(run_or_path) as run:
        return _write_nwb(run, out_path, overwrite, "overwrite=True")["path"]


def export_command(path, nwb, overwrite: bool = False) -> int:
    """``hlopsim export FILE --nwb OUT.nwb [--overwrite]``: write the NWB file, print one line.

    Returns
    -------
    int
        0. Errors raise (`MissingDependencyError`, `RunFileError`, `FileExistsError`,
        `FileNotFoundError`) with one-line messages; the CLI prints them and exits 2.
    """
    _require("pynwb", "NWB export")
    out = Path(nwb)
    _check_output(out, overwrite, Path(path), "--overwrite")  # before opening the run file
    with RunFile(path) as run:
        done = _write_nwb(run, out, overwrite, "--overwrite")
    print(f"{done['path']}: {done['units']} units, {done['spikes']} spikes, {done['trials']} trials (presentations)")
    return 0


# ---------------------------------------------------------------------------------- Neo


def _names(value, what: str) -> list:
    """A list from None (None), one value, or an iterable of values."""
    if value is None:
        return None
    if isinstance(value, (str, int, np.integer)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise RunFileError(f"{what} {value!r} is neither a value nor a list of values") from None


def to_neo_block(run_or_path, populations=None, phases=None, tasks=None):
    """The spikes of a run file as a `neo.Block`.

    Parameters
    ----------
    run_or_path : RunFile or str or os.PathLike
        An open run file (left open) or the path of one.
    populations : str or list of str, optional
        Populations to include (default all, in `RunFile.populations` order).
    phases : str or list of str, optional
        Only presentations of these phases, e.g. ``"test"`` (default all).
    tasks : int or list of int, optional
        Only presentations of samples of these tasks (default all). In an evaluation block this
        keeps some of its presentations; the segment then spans the first to the last kept one
        and holds the spikes of the kept ones only.

    Returns
    -------
    neo.Block
        Annotated with ``protocol``, ``method``, ``seed``, ``dt`` (s), ``n_steps_per_presentation``,
        ``source`` (file name) and ``complete``; ``rec_datetime`` from the ``created`` attribute.
        One `neo.Segment` per (stage, phase) block of the selected complete presentations, in
        clock order, named like ``"stage 2 test"`` and annotated with ``stage``, ``phase``,
        ``tasks`` (sorted task indices presented) and ``n_presentations``. Each segment holds:

        - ``spiketrains``: one `neo.SpikeTrain` per (population, neuron), times in seconds
          (``quantities.s``) on the presentation clock, ``t_start``/``t_stop`` the start of the
          block's first and the end of its last presentation, ``sampling_rate`` 1/dt,
          annotations ``population`` and ``neuron``;
        - ``epochs``: one `neo.Epoch` named ``"presentations"``, one entry per presentation
          (times, durations, labels like ``"task 1 trial 7"``) with array annotations
          ``segment`` (index in the run file), ``task``, ``epoch``, ``trial`` and ``label``.

    Raises
    ------
    MissingDependencyError
        If neo (or quantities) is not installed.
    RunFileError
        If the file cannot be read, or a population, phase or task is unknown.
    """
    neo = _require("neo", "Neo export")
    pq = _require("quantities", "Neo export")
    with _opened(run_or_path) as run:
        pops = _names(populations, "populations")
        pops = run.populations if pops is None else [str(p) for p in pops]
        for pop in pops:
            run.n_neurons(pop)  # raises for an unknown population
        seg = run.segments()
        keep = np.ones(run.n_segments, dtype=bool)
        wanted_phases = _names(phases, "phases")
        if wanted_phases is not None:
            for phase in wanted_phases:
                if phase not in run.phase_names:
                    raise run.error(f"phase {phase!r} is unknown; expected one of {', '.join(run.phase_names)}")
            keep &= np.isin(seg["phase"], wanted_phases)
        wanted_tasks = _names(tasks, "tasks")
        if wanted_tasks is not None:
            for task in wanted_tasks:
                run.check_task(task)
            keep &= np.isin(seg["task"], [int(t) for t in wanted_tasks])

        dt = run.dt
        when, _ = _created(run)
        block = neo.Block(name=run.path.stem, file_origin=str(run.path), rec_datetime=when,
                          description=f"hlopsim run: protocol {run.protocol}, method {run.method}, "
                                      f"seed {run.seed}; times on the presentation clock")
        block.annotate(protocol=run.protocol, method=run.method, seed=run.seed, dt=dt,
                       n_steps_per_presentation=run.n_steps, source=run.path.name, complete=run.complete)

        kept = np.flatnonzero(keep)
        stage = seg["stage"].astype(np.int64)[kept]
        code = seg["phase_code"].astype(np.int64)[kept]
        key = stage * (len(run.phase_names) + 1) + code
        _, first = np.unique(key, return_index=True)
        start_step = seg["start_step"].astype(np.int64)
        rate = (1.0 / dt) * pq.Hz
        for index, at in enumerate(np.sort(first)):
            sel = kept[key == key[at]]
            phase = str(seg["phase"][sel[0]])
            t_start = float(seg["start_s"][sel[0]]) * pq.s
            t_stop = float(seg["stop_s"][sel[-1]]) * pq.s
            segment = neo.Segment(name=f"stage {int(stage[at])} {phase}", index=index, rec_datetime=when)
            segment.annotate(stage=int(stage[at]), phase=phase,
                             tasks=sorted(int(t) for t in np.unique(seg["task"][sel])), n_presentations=int(sel.size))
            trains = []
            for pop in pops:
                n = run.n_neurons(pop)
                owner, local, neurons = run.local_spikes(pop, sel)
                local += start_step[owner]
                del owner
                times, counts = _group_by_neuron(run, pop, local * dt, neurons, n)
                ends = np.cumsum(counts)
                for neuron in range(n):
                    trains.append(neo.SpikeTrain(
                        times[ends[neuron] - counts[neuron]:ends[neuron]], units=pq.s, t_start=t_start,
                        t_stop=t_stop, sampling_rate=rate, name=f"{pop} {neuron}", population=pop, neuron=neuron))
            segment.spiketrains.extend(trains)
            segment.epochs.append(neo.Epoch(
                times=seg["start_s"][sel] * pq.s, durations=(seg["stop_s"][sel] - seg["start_s"][sel]) * pq.s,
                labels=np.array([f"task {t} trial {r}" for t, r in zip(seg["task"][sel], seg["trial"][sel])]),
                name="presentations",
                array_annotations={"segment": sel.astype(np.int64), "task": seg["task"][sel].astype(np.int64),
                                   "epoch": seg["epoch"][sel].astype(np.int64),
                                   "trial": seg["trial"][sel].astype(np.int64),
                                   "label": seg["label"][sel].astype(np.int64)}))
            block.segments.append(segment)
        block.check_relationships()
        return block
