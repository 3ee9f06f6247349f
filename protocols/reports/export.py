"""Exporting a run file to the neuroscience formats NWB (with pynwb) and Neo (with neo).

Both packages are optional (``pip install '.[export]'``) and are imported only inside the
functions that need them; without them those functions raise `MissingDependencyError`, whose
one-line message says what to install.

- `to_nwb` writes an NWB file: a Units table with one unit per (population, neuron) (columns
  ``population``, ``neuron``, ``_name``, ``spike_times`` in seconds, ``obs_intervals``), a trials
  table with one row per complete presentation (``start_time``, ``stop_time``, ``task``, ``stage``,
  ``epoch``, ``phase``, ``trial``, ``label``), a subject and session metadata, and the processing
  module ``misc`` with the weights, lateral circuits, accuracy matrix and task stimuli; recorded state
  variables (`StateRecording`) as one acquisition ``TimeSeries`` ``state_<population>_<variable>`` each.
  ``hlopsim export FILE --nwb OUT.nwb [--subject-id ...]`` calls it.
- `to_neo_block` returns a `neo.Block` with one `neo.Segment` per (stage, phase) block of
  presentations, or with ``per="presentation"`` one per presentation (trial, times from its
  start), each holding one `neo.SpikeTrain` per (population, neuron) and one `neo.AnalogSignal` per
  recorded state variable and population in the presentations that recorded it; ``block.groups``
  holds one `neo.Group` per unit across segments.

Unless trial-aligned, times are in seconds on the run file's *presentation clock* (presentations laid end to end,
see `hlopsim.sim.runfile`), not on the wall clock of the simulation. Only complete presentations
are exported, so a file whose run was killed exports what it finished. Everything is read through
`hlopsim.sim.runfile.RunFile`; spike trains are built from the flat spike arrays with one stable
sort per population (and block), never with one scan per neuron; the NWB export streams the
spike times one population (and slice) at a time.
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

__all__ = ["PER", "ExportWriteError", "MissingDependencyError", "export_command", "to_neo_block", "to_nwb",
           "unit_spike_times"]

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


def _neuron_counts(run: RunFile, pop: str, n: int) -> np.ndarray:
    """Spikes of each neuron of ``pop`` in the complete segments, read in bounded slices."""
    used = int(run.spikes_per_segment(pop).sum())
    dataset = run.h5["populations"][pop]["spike_neuron"]
    counts = np.zeros(n, dtype=np.int64)
    for lo in range(0, used, STREAM_SPIKES):
        neurons = dataset[lo:min(used, lo + STREAM_SPIKES)]
        if neurons.size and int(neurons.max()) >= n:
            raise run.error(f"populations/{pop}/spike_neuron holds neuron {int(neurons.max())}; "
                            f"expected < n_neurons = {n} (damaged file?)")
        counts += np.bincount(neurons, minlength=n)
    return counts


STREAM_SPIKES = 1 << 20
"""Spikes per slice read or written at once by the NWB export (8 MiB of float64 times)."""


def _population_time_chunks(run: RunFile, pop: str, chunk: int = STREAM_SPIKES):
    """The spike times of ``pop`` grouped by neuron (ascending within a neuron), in seconds on the
    presentation clock, yielded in slices of at most ``chunk`` spikes.

    Memory: the neuron-sorting permutation (`_neuron_order`, 4 B per spike below 2**31 spikes),
    the steps (`_read_steps`, 4 B per spike while the clock fits in uint32) and slices of
    `STREAM_SPIKES`, so about the population's spike times as float64 at the peak. The steps are checked as
    `RunFile.spikes` checks them (clock order, each spike inside its segment).
    """
    n = run.n_neurons(pop)
    used = int(run.spikes_per_segment(pop).sum())
    if used == 0:
        return
    group = run.h5["populations"][pop]
    order = _neuron_order(run, pop, group["spike_neuron"], used, n, chunk)
    steps = _read_steps(run, group["spike_step"], used, chunk)
    run._check_spike_steps(pop, steps, 0, run.n_segments, 0)
    dt = run.dt
    for lo in range(0, used, chunk):
        yield steps[order[lo:lo + chunk]].astype(np.float64) * dt


def _read_steps(run: RunFile, dataset, used: int, chunk: int) -> np.ndarray:
    """The first ``used`` spike steps, read in slices into uint32 when the clock's last step fits
    (half the memory of the stored uint64), else uint64."""
    seg = run.segments()
    last = int(seg["stop_step"][-1]) if seg["stop_step"].size else 0
    steps = np.empty(used, dtype=np.uint32 if last < 2 ** 32 else np.uint64)
    for lo in range(0, used, chunk):
        part = dataset[lo:min(used, lo + chunk)]
        if part.size and int(part.max()) > last:
            raise run.error(f"{dataset.name.lstrip('/')} holds step {int(part.max())}, after the last complete "
                            f"segment (ends at step {last}) (damaged file?)")
        steps[lo:lo + part.size] = part
    return steps


def _neuron_order(run: RunFile, pop: str, dataset, used: int, n: int, chunk: int) -> np.ndarray:
    """The stable permutation sorting the first ``used`` spikes of ``dataset`` (neuron indices) by
    neuron, built slice by slice as a counting sort: ``order[k]`` is the index of the spike that
    comes ``k``-th. int32 below 2**31 spikes (int64 above); no full-length temporary besides it and
    the neurons in their smallest dtype."""
    small = _sort_dtype(n)
    neurons = np.empty(used, dtype=small)
    for lo in range(0, used, chunk):
        part = dataset[lo:min(used, lo + chunk)]
        if part.size and int(part.max()) >= n:
            raise run.error(f"populations/{pop}/spike_neuron holds neuron {int(part.max())}; "
                            f"expected < n_neurons = {n} (damaged file?)")
        neurons[lo:lo + part.size] = part
    counts = np.bincount(neurons, minlength=n)
    cursor = np.cumsum(counts) - counts          # next free place of each neuron's spikes
    order = np.empty(used, dtype=np.int32 if used < 2 ** 31 else np.int64)
    for lo in range(0, used, chunk):
        part = neurons[lo:lo + chunk]
        sort = np.argsort(part, kind="stable")
        sorted_part = part[sort]
        here = np.bincount(sorted_part, minlength=n)
        first = np.cumsum(here) - here            # first place of each neuron within the sorted slice
        rank = np.arange(part.size) - first[sorted_part]
        order[cursor[sorted_part] + rank] = sort + lo
        cursor += here
    return order


def _spike_time_stream(run: RunFile, pops: list, total: int):
    """The spike times of every unit, population after population, as an hdmf data chunk iterator
    that HDF5 writes slice by slice, so at most one population's spikes are in memory
    (`_population_time_chunks`).

    The slices fill the flat ``spike_times`` column of ``total`` values in order: population by
    population, neuron by neuron, each neuron's times ascending (seconds, presentation clock).
    """
    from hdmf.data_utils import AbstractDataChunkIterator, DataChunk

    class SpikeTimeStream(AbstractDataChunkIterator):
        def __init__(self):
            self._chunks = (times for pop in pops for times in _population_time_chunks(run, pop))
            self._at = 0

        def __iter__(self):
            return self

        def __next__(self):
            for times in self._chunks:
                start, self._at = self._at, self._at + times.size
                return DataChunk(data=times, selection=np.s_[start:self._at])
            if self._at != total:
                raise run.error(f"read {self._at} spikes where segment_end counts {total} (damaged file?)")
            raise StopIteration

        def recommended_chunk_shape(self):
            return None

        def recommended_data_shape(self):
            return (total,)

        @property
        def dtype(self):
            return np.dtype(np.float64)

        @property
        def maxshape(self):
            return (total,)

    return SpikeTimeStream()


def _nwb_file(run: RunFile, metadata: dict | None = None):
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

    # spikes per unit from the neuron column alone; the times are streamed per population at write time
    counts = np.concatenate([_neuron_counts(run, pop, n) for pop, n in zip(pops, n_neurons)]) \
        if pops else np.zeros(0, dtype=np.int64)
    if int(counts.sum()) != total:  # cannot happen for a consistent file
        raise run.error(f"counted {int(counts.sum())} spikes where segment_end counts {total} (damaged file?)")
    spike_times = _spike_time_stream(run, pops, total) if total else np.empty(0, dtype=np.float64)
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
        # each index before its target: hdmf drops a streamed column from its length check when it
        # meets it, and an index met after that would no longer find its target
        columns=[VectorIndex(name="spike_times_index", data=np.cumsum(counts), target=st), st,
                 obs, VectorIndex(name="obs_intervals_index", data=np.arange(1, n_units + 1), target=obs),
                 column("population", "population (layer) of the neuron, e.g. input, hidden_1, output",
                        np.array([p for p, n in zip(pops, n_neurons) for _ in range(n)], dtype=object)),
                 column("neuron", "index of the neuron within its population",
                        np.concatenate([np.arange(n, dtype=np.int64) for n in n_neurons])),
                 column("_name", "unit name '<population> <neuron>' (neo.io.NWBIO names its spike trains from "
                                 "this column)",
                        np.array([f"{p} {i}" for p, n in zip(pops, n_neurons) for i in range(n)], dtype=object))])
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
    meta = _metadata(run, metadata)
    notes = {"source": run.path.name, "format_version": run.format_version, "complete": run.complete,
             "clock": (f"times are on the run file's presentation clock: every presentation "
                       f"({run.n_steps} steps of dt = {dt:g} s) laid end to end, not wall-clock time"),
             "session_start_time": when_note, "command": run.attrs.get("command"),
             "software": run.software, "config": run.config}
    description = (f"hlopsim run: protocol {run.protocol}, method {run.method}, seed {run.seed}; "
                   f"{n_seg} presentations, {total} spikes of {n_units} simulated neurons")
    if meta["session_description"]:
        description = f"{meta['session_description']} ({description})"
    subject = pynwb.file.Subject(
        subject_id=meta["subject_id"], species=meta["species"], sex=meta["sex"], age=meta["age"],
        description=meta["subject_description"])
    nwbfile = pynwb.NWBFile(
        session_description=description,
        identifier=_identifier(run, n_seg), session_start_time=when, session_id=run.path.stem,
        experiment_description=(f"continual learning in a Brian2 spiking network: protocol {run.protocol}, "
                                f"method {run.method}, seed {run.seed}"),
        experimenter=meta["experimenter"], institution=meta["institution"], lab=meta["lab"],
        stimulus_notes=json.dumps(_stimulus_settings(run), default=str),
        notes=json.dumps(notes, default=str), was_generated_by=[("hlopsim", _hlopsim_version())],
        subject=subject, units=units, trials=trials)
    module = nwbfile.create_processing_module(
        name="misc", description="the simulated network's learned state and scores: weights and lateral (HLOP) "
                                 "circuits after each task, the accuracy matrix, the task stimuli")
    for table in _network_tables(run):
        module.add(table)
    for series in _state_series(run, pynwb):
        nwbfile.add_acquisition(series)
    return nwbfile, {"units": n_units, "spikes": total, "trials": n_seg}


def _state_series(run: RunFile, pynwb) -> list:
    """One `pynwb.TimeSeries` per recorded (population, variable) of the run file (`RunFile.states`).

    Data (time × recorded neurons) in the stored SI unit, the recorded presentations one after the
    other; times on the presentation clock, each presentation's ``k · dt`` steps within its trial's
    ``[start_time, stop_time)``. ``timestamps`` unless the samples are evenly spaced (then
    ``starting_time`` and ``rate``).
    """
    seg = run.segments()
    series = []
    for pop, variables in run.state_variables().items():
        for var in variables:
            state = run.states(pop, var)
            values, rows = state["values"], state["segment"]
            if rows.size == 0:
                continue
            data = values.transpose(0, 2, 1).reshape(-1, values.shape[1])     # (presentation · step, neuron)
            times = (seg["start_step"][rows].astype(np.int64)[:, None] + np.arange(values.shape[2])[None, :]) \
                .ravel() * run.dt
            timing = {"timestamps": times}
            steps = np.diff(times)
            if times.size > 1 and np.allclose(steps, run.dt, rtol=1e-9, atol=0):
                timing = {"starting_time": float(times[0]), "rate": 1.0 / run.dt}
            description = (f"state variable {var!r} of population {pop!r}, neurons {state['neuron'].tolist()} "
                           f"(columns), in SI units, at the start of every step (dt = {run.dt:g} s) of "
                           f"{rows.size} recorded presentations (run file segments = trials rows "
                           f"{rows.tolist()}), times on the presentation clock")
            series.append(pynwb.TimeSeries(name=f"state_{pop}_{var}", data=data,
                                           unit=state["unit"] if state["unit"] != "1" else "n.a.",
                                           description=description, comments=_state_comments(rows, state),
                                           **timing))
    return series


def _state_comments(rows: np.ndarray, state: dict) -> str:
    """Plain text, not JSON: neo's NWBIO reads JSON comments as its own block and segment names."""
    return (f"recorded presentations: run file segments (trials rows) {', '.join(map(str, rows.tolist()))}; "
            f"neurons {', '.join(map(str, state['neuron'].tolist()))}")


def _pq_unit(pq, text: str):
    """A quantities unit for the run file's SI unit text ("1": dimensionless)."""
    if text in ("", "1"):
        return pq.dimensionless
    try:
        return pq.Quantity(1.0, text).units
    except (LookupError, ValueError, SyntaxError):
        return pq.dimensionless


def _neo_states(neo, pq, run: RunFile, pops, sel: np.ndarray, trial_aligned: bool) -> dict:
    """`neo.AnalogSignal`s of the recorded states of segments ``sel``: segment → list of signals.

    Each signal is one (population, variable, presentation): shape (n_steps, neurons), units from the
    stored SI unit, sampling period dt, ``t_start`` 0 (``trial_aligned``) or the presentation's start
    on the presentation clock; annotated ``population``, ``variable``, ``segment``; array annotation
    ``neuron``.
    """
    out = {}
    seg = run.segments()
    recorded = run.state_variables()
    period = run.dt * pq.s
    for pop in pops:
        for var in recorded.get(pop, []):
            state = run.states(pop, var, sel)
            units = _pq_unit(pq, state["unit"])
            for values, s in zip(state["values"], state["segment"]):
                t_start = 0.0 if trial_aligned else float(int(seg["start_step"][s]) * run.dt)
                signal = neo.AnalogSignal(values.T, units=units, sampling_period=period, t_start=t_start * pq.s,
                                          name=f"{pop} {var}", population=pop, variable=var, segment=int(s),
                                          unit_text=state["unit"],
                                          array_annotations={"neuron": state["neuron"].copy()})
                out.setdefault(int(s), []).append(signal)
    return out


SIMULATION_SPECIES = "http://purl.obolibrary.org/obo/NCBITaxon_32630"
"""Default NWB subject species: the NCBI taxonomy term "synthetic construct" (a simulated network)."""

METADATA_DEFAULTS = {"subject_id": None, "species": SIMULATION_SPECIES, "sex": "U", "age": "P0D",
                     "experimenter": None, "institution": None, "lab": None, "session_description": None}
"""NWB metadata of `to_nwb` when not given: ``subject_id`` defaults to ``hlopsim-<protocol>-<method>-seed<seed>``;
``sex`` "U" (unknown: not applicable to a simulation); ``age`` "P0D" (the network is built when the run
starts, ISO 8601 duration)."""


def _metadata(run: RunFile, given: dict | None) -> dict:
    """`METADATA_DEFAULTS` updated with ``given`` (None values keep the default); checks the keys."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(METADATA_DEFAULTS))
    if unknown:
        raise run.error(f"NWB metadata {unknown} is unknown; expected keys among {', '.join(METADATA_DEFAULTS)}")
    meta = dict(METADATA_DEFAULTS)
    meta.update({k: v for k, v in given.items() if v is not None})
    if meta["subject_id"] is None:
        meta["subject_id"] = f"hlopsim-{run.protocol}-{run.method}-seed{run.seed}"
    for key in ("subject_id",):
        if "/" in str(meta[key]):
            raise run.error(f"NWB {key} {meta[key]!r} contains '/'; expected a name without slashes")
    if meta["sex"] not in ("M", "F", "U", "O"):
        raise run.error(f"NWB subject sex {meta['sex']!r} is invalid; expected one of M, F, U, O")
    if isinstance(meta["experimenter"], str):
        meta["experimenter"] = [meta["experimenter"]]
    meta["subject_description"] = (f"a simulated spiking network (hlopsim, method {run.method}, seed {run.seed}), "
                                   "not an animal" if meta["species"] == SIMULATION_SPECIES
                                   else f"simulated with hlopsim (method {run.method}, seed {run.seed})")
    return meta


def _stimulus_settings(run: RunFile) -> dict:
    """How samples became input spikes: the stored configuration's ``data`` section and the input
    settings of its ``network`` section (rates, dead time, presentation, dt), and the tasks' names."""
    config = run.config
    network = config.get("network", {}) if isinstance(config.get("network"), dict) else {}
    inputs = {k: v for k, v in network.items() if k.startswith("input") or k in ("presentation", "dt", "isi",
                                                                                  "reset")}
    return {"data": config.get("data"), "network_input": inputs, "tasks": config.get("tasks"),
            "per_task_arrays": "see processing/misc/tasks (e.g. the pixel permutation of each task)"}


def _network_tables(run: RunFile) -> list:
    """DynamicTables of the learned state: ``weights_<layer>`` and ``lateral_<layer>`` (one row per
    task the snapshot was taken after), ``accuracy`` (one row per stage) and ``tasks`` (one row per
    task, with its stored arrays such as the input permutation)."""
    from hdmf.common import DynamicTable, VectorData

    def table(name, description, ids, columns):
        return DynamicTable(name=name, description=description, id=np.asarray(ids, dtype=np.int64),
                            columns=[VectorData(name=n, description=d, data=v) for n, d, v in columns])

    tables = []
    cost = _spike_cost(run)
    cost_text = (f"the spike cost of this run's neuron model is {cost:g} V, so w volts = w x {cost:g}"
                 if cost is not None else "the spike cost could not be found in the stored configuration")
    for layer in run.weight_names:
        tasks = run.weight_tasks(layer)
        W = np.stack([run.weights(layer, t) for t in tasks])
        tables.append(table(f"weights_{layer}", f"weights of layer {layer} (post x pre, read from population "
                            f"{_pre(run, layer)}) after training each task, in units of the spike cost (each "
                            f"presynaptic spike adds w x spike cost to the postsynaptic v); {cost_text}", tasks,
                            [("after_task", "task after whose training the snapshot was taken",
                              np.asarray(tasks, dtype=np.int64)),
                             ("weights", "weight matrix (n_post, n_pre), units of the spike cost", W)]))
    for layer in run.lateral_layers:
        tasks = run.lateral_tasks(layer)
        pairs = [run.lateral(layer, t) for t in tasks]
        tables.append(table(f"lateral_{layer}", f"lateral (HLOP) circuit of layer {layer} after training each "
                            "task: H (lateral neurons x presynaptic neurons, dimensionless) and which lateral "
                            "neurons are frozen", tasks,
                            [("after_task", "task after whose training the snapshot was taken",
                              np.asarray(tasks, dtype=np.int64)),
                             ("H", "subspace-neuron weights (K, n_pre), dimensionless; rows not grown are 0",
                              np.stack([H for H, _ in pairs])),
                             ("frozen", "whether each lateral neuron is frozen (K,)",
                              np.stack([m for _, m in pairs]))]))
    R = run.accuracy_matrix()
    if R.size:
        tables.append(table("accuracy", "accuracy matrix: row i holds the % correct on every task j after "
                            "training task i; NaN where not measured", np.arange(R.shape[0]),
                            [("after_task", "task last trained", np.arange(R.shape[0], dtype=np.int64)),
                             ("percent_correct", "% correct on task j (one value per task)", R)]))
    tasks = run.tasks()
    if tasks:
        names = [str(t["name"]) for t in tasks]
        columns = [("task_name", "task name", np.array(names, dtype=object))]
        arrays = sorted({k for t in tasks for k in t} - {"index", "name"})
        for key in arrays:
            values = [np.asarray(t.get(key)) for t in tasks]
            if all(v.shape == values[0].shape and v.dtype.kind in "biuf" for v in values) and values[0].ndim:
                columns.append((key, f"the task's stored {key!r} array (e.g. permutation: input neuron i "
                                     "shows pixel permutation[i])", np.stack(values)))
        tables.append(table("tasks", "the tasks (stimulus sets) of the run, in index order",
                            [int(t["index"]) if isinstance(t["index"], int) else k for k, t in enumerate(tasks)],
                            columns))
    return tables


def _pre(run: RunFile, layer: str) -> str:
    try:
        return run.presynaptic_population(layer)
    except RunFileError:
        return "unknown"


def _spike_cost(run: RunFile):
    """The spike cost in volts (`hlopsim.protocols.reports.plots.spike_cost_volts`), or None."""
    from hlopsim.protocols.reports.plots import spike_cost_volts
    return spike_cost_volts(run)


def _write_nwb(run: RunFile, out, overwrite: bool, flag: str, metadata: dict | None = None) -> dict:
    out = Path(out)
    _check_output(out, overwrite, run.path, flag)
    nwbfile, counts = _nwb_file(run, metadata)
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


def to_nwb(run_or_path, out_path, overwrite: bool = False, **metadata) -> Path:
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
    **metadata
        NWB metadata (`METADATA_DEFAULTS` when not given): ``subject_id``, ``species`` (Latin
        binomial or NCBI taxonomy IRI), ``sex`` (M, F, U, O), ``age`` (ISO 8601 duration),
        ``experimenter`` (str or list, "Last, First"), ``institution``, ``lab``,
        ``session_description`` (prefixed to the generated one).

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
        and the resolved configuration as JSON; ``stimulus_notes`` the input encoding settings
        (JSON). A subject (a simulated network: species NCBI "synthetic construct" by default)
        and keywords make the file pass nwbinspector without CRITICAL or BEST_PRACTICE_VIOLATION.
        The processing module ``misc`` holds DynamicTables ``weights_<layer>`` and
        ``lateral_<layer>`` (one row per task after which a snapshot was taken: ``after_task``,
        ``weights`` (n_post, n_pre) in spike-cost units / ``H`` (K, n_pre) and ``frozen``),
        ``accuracy`` (row i: ``percent_correct`` on every task after training task i) and
        ``tasks`` (``task_name`` and each stored per-task array, e.g. ``permutation``). Spike
        times are written one population at a time (at most one population's spikes in memory).

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
        _metadata(run, metadata)  # unknown keys and bad values fail before anything is written
        return _write_nwb(run, out_path, overwrite, "overwrite=True", metadata)["path"]


def export_command(path, nwb, overwrite: bool = False, **metadata) -> int:
    """``hlopsim export FILE --nwb OUT.nwb [--overwrite] [--subject-id ...]``: write the NWB file, print one line.

    ``metadata`` are the NWB metadata of `to_nwb` (None: the default).

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
        _metadata(run, metadata)
        done = _write_nwb(run, out, overwrite, "--overwrite", metadata)
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


PER = ("block", "presentation")
"""Values of ``to_neo_block(per=...)``: one neo Segment per (stage, phase) block, or per presentation."""


def to_neo_block(run_or_path, populations=None, phases=None, tasks=None, per: str = "block"):
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
    per : {"block", "presentation"}
        ``"block"`` (default; one segment per (stage, phase) block, times on the presentation
        clock) or ``"presentation"``: one segment per presentation (trial), times from the
        trial's start, for trial-aligned analysis (ISI, CV and PSTH with elephant never see an
        interval spanning two trials).

    Returns
    -------
    neo.Block
        Annotated with ``protocol``, ``method``, ``seed``, ``dt`` (s), ``n_steps_per_presentation``,
        ``source`` (file name) and ``complete``; ``rec_datetime`` from the ``created`` attribute.
        ``block.groups`` holds one `neo.Group` per unit (population, neuron), named like
        ``"hidden_1 7"`` and annotated with ``population`` and ``neuron``, gathering that unit's
        spike train of every segment (its identity across segments).

        With ``per="block"``: one `neo.Segment` per (stage, phase) block of the selected complete presentations, in
        clock order, named like ``"stage 2 test"`` and annotated with ``stage``, ``phase``,
        ``tasks`` (sorted task indices presented) and ``n_presentations``. Each segment holds:

        - ``spiketrains``: one `neo.SpikeTrain` per (population, neuron), times in seconds
          (``quantities.s``) on the presentation clock, ``t_start``/``t_stop`` the start of the
          block's first and the end of its last presentation, ``sampling_rate`` 1/dt,
          annotations ``population`` and ``neuron``;
        - ``epochs``: one `neo.Epoch` named ``"presentations"``, one entry per presentation
          (times, durations, labels like ``"task 1 trial 7"``) with array annotations
          ``segment`` (index in the run file), ``task``, ``epoch``, ``trial`` and ``label``.

        Recorded state variables (`RunFile.states`): each presentation that recorded them adds to its
        segment one `neo.AnalogSignal` per (population, variable), shape (n_steps, recorded neurons),
        in the stored SI unit, ``sampling_period`` dt, ``t_start`` the presentation's start (``per="block"``,
        presentation clock) or 0 (``per="presentation"``, aligned with the trial's spike times); named
        like ``"hidden_1 v"``, annotated ``population``, ``variable``, ``segment``, array annotation ``neuron``.

    Raises
    ------
    MissingDependencyError
        If neo (or quantities) is not installed.
    RunFileError
        If the file cannot be read, or a population, phase or task is unknown.
    """
    if per not in PER:
        raise RunFileError(f"per={per!r} is unknown; expected one of {', '.join(PER)}")
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
        if per == "presentation":
            block.annotate(per="presentation")
            _neo_trials(neo, pq, run, block, pops, kept, when)
            block.check_relationships()
            return block
        block.annotate(per="block")
        groups = _unit_groups(neo, run, pops)
        block.groups.extend(groups)
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
            for signals in _neo_states(neo, pq, run, pops, sel, trial_aligned=False).values():
                segment.analogsignals.extend(signals)
            block.segments.append(segment)
            for group, train in zip(groups, trains):
                group.add(train)
        block.check_relationships()
        return block


def _unit_groups(neo, run: RunFile, pops) -> list:
    """One `neo.Group` per (population, neuron), in the order of the spike trains of a segment."""
    return [neo.Group(name=f"{pop} {neuron}", population=pop, neuron=neuron, allowed_types=[neo.SpikeTrain])
            for pop in pops for neuron in range(run.n_neurons(pop))]


def _neo_trials(neo, pq, run: RunFile, block, pops, kept: np.ndarray, when) -> None:
    """Append one `neo.Segment` per presentation in ``kept`` to ``block``, times from its start.

    Times are integer steps from the trial start multiplied by dt once (`RunFile.trial_spikes`),
    so each is the float nearest to a multiple of dt; ``t_stop`` is the trial's step count × dt.
    """
    seg = run.segments()
    dt = run.dt
    rate = (1.0 / dt) * pq.Hz
    groups = _unit_groups(neo, run, pops)
    block.groups.extend(groups)
    per_pop = {pop: run.trial_spikes(pop, kept) for pop in pops}
    states = _neo_states(neo, pq, run, pops, kept, trial_aligned=True)
    n_steps = (seg["stop_step"].astype(np.int64) - seg["start_step"].astype(np.int64))
    for index, s in enumerate(kept):
        info = {"segment": int(s), "task": int(seg["task"][s]), "stage": int(seg["stage"][s]),
                "phase": str(seg["phase"][s]), "epoch": int(seg["epoch"][s]), "trial": int(seg["trial"][s]),
                "label": int(seg["label"][s])}
        t_stop = float(n_steps[s] * dt) * pq.s
        segment = neo.Segment(name=f"presentation {int(s)}: task {info['task']} stage {info['stage']} "
                                   f"{info['phase']} trial {info['trial']}", index=index, rec_datetime=when)
        segment.annotate(**info, start_s=float(int(seg["start_step"][s]) * dt))
        trains = []
        for pop in pops:
            times, neurons = per_pop[pop][index]
            n = run.n_neurons(pop)
            times, counts = _group_by_neuron(run, pop, times, neurons, n)
            ends = np.cumsum(counts)
            for neuron in range(n):
                trains.append(neo.SpikeTrain(
                    times[ends[neuron] - counts[neuron]:ends[neuron]], units=pq.s, t_start=0.0 * pq.s,
                    t_stop=t_stop, sampling_rate=rate, name=f"{pop} {neuron}", population=pop, neuron=neuron,
                    **info))
        segment.spiketrains.extend(trains)
        segment.analogsignals.extend(states.get(int(s), []))
        block.segments.append(segment)
        for group, train in zip(groups, trains):
            group.add(train)
