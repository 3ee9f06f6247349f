"""Reader of the run file (layout and names in `schema`): spikes, segments, accuracies and
snapshots as numpy arrays, and the checkpoint a resumed run starts from.

A run file lays every presentation of a sample (a *segment*) end to end on one *presentation
clock* of ``dt`` seconds per step. `RunFile` opens such a file, checks that it is one, and returns
plain numpy arrays::

    from hlopsim.sim.runfile import open_run

    with open_run("runs/demo/hlop.h5") as run:
        seg = run.segments()                                 # one row per presentation
        times, neurons = run.spikes("hidden_1", segment=100)  # s from the segment start
        rates = run.rates("output")                          # Hz, (n_segments, n_neurons)
        R = run.accuracy_matrix()                            # %, NaN where not measured

Units: times in seconds (``*_s``, ``dt``), rates in hertz, steps as integers of ``dt``,
accuracies in percent, weights in units of the spike cost (as stored).

A file whose run was killed is still readable: only *complete* segments are shown, i.e. the
segments for which the segment table and every population's ``segment_end`` (and the spikes
they point to) were all written. Every problem with the file or with an argument raises
`RunFileError` (a ``ValueError``) whose message starts with the file name; a damaged file (a
dataset of the wrong dtype or shape, segments out of order, ``segment_end`` decreasing, spikes
outside their segment or out of order, a non-finite lateral circuit, a population without
neurons) raises it naming the dataset, when that dataset is first read.

This module reads HDF5 with h5py only; it imports neither Brian2 nor the protocol layer.
"""
from __future__ import annotations

import json
import math
import re
import tomllib
from numbers import Integral
from pathlib import Path

import h5py
import numpy as np

from hlopsim.sim.row_measures import row_deviation
from hlopsim.sim.runfile import schema
from hlopsim.sim.runfile._metrics import filled_tasks, summarize

__all__ = ["RunFile", "RunFileError", "open_run", "read_checkpoint"]

_ROLE_ORDER = {"input": 0, "hidden": 1, "output": 2}


class RunFileError(ValueError):
    """A run file cannot be read, or an argument does not fit the file.

    The message is one line, ``"<file>: <problem>"``, naming the value and what was expected.
    """


def open_run(path) -> "RunFile":
    """Open a run file for reading; same as ``RunFile(path)``.

    Parameters
    ----------
    path : str or os.PathLike
        The run file (``.h5``).

    Returns
    -------
    RunFile
        Use it as a context manager, or call `RunFile.close`.

    Raises
    ------
    RunFileError
        If the file is missing, not HDF5, not a run file, of a newer format, or damaged.
    """
    return RunFile(path)


def read_checkpoint(path) -> dict:
    """What resuming an unfinished run needs: its configuration, method and last checkpoint.

    Reads the root attributes ``format``, ``complete``, ``method`` and ``config`` and the
    ``state`` attribute of ``/checkpoint`` (JSON text, written by `RunRecorder.write_checkpoint`
    after every finished task). A gpm run is refused because its protected bases are not
    stored in the checkpoint, and an ewc run with a penalty (``strength`` > 0 in the stored
    configuration's ``[ewc]``, or its ``method`` settings for a script run) because its Fisher
    information and anchor weights are not: neither could continue where it stopped. Refusing
    here, before the file is opened for writing, leaves it untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The run file.

    Returns
    -------
    dict
        ``config`` (dict, the resolved configuration stored with the run), ``method`` (str) and
        ``checkpoint`` (dict: the state given to the last ``write_checkpoint``, with
        ``n_segments`` and ``n_spikes``).

    Raises
    ------
    RunFileError
        One line naming the file: ``"... is not an hlopsim run file"``, ``"... is a complete run;
        nothing to resume"``, ``"... has no finished task to resume from; start the run again"``,
        ``"... is a gpm run, which cannot be resumed ..."`` (or an ewc run), or the file is missing or
        damaged.
    """
    name = repr(str(path))
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{name}: no such file")
    try:
        file = _open_read_only(path) if h5py.is_hdf5(path) else None
    except OSError as err:
        raise RunFileError(f"{name} cannot be read (truncated or damaged?): {_one_line(err)}") from None
    if file is None:
        raise RunFileError(f"{name} is not an hlopsim run file")
    with file:
        attrs = file.attrs
        if _plain(attrs.get("format")) != schema.FORMAT:
            raise RunFileError(f"{name} is not an hlopsim run file")
        if attrs.get("complete"):
            raise RunFileError(f"{name} is a complete run; nothing to resume")
        if schema.CHECKPOINT_GROUP not in file:
            raise RunFileError(f"{name} has no finished task to resume from; start the run again")
        method, config = attrs.get("method"), attrs.get("config")
        if method is None or config is None:
            missing = [key for key, value in (("method", method), ("config", config)) if value is None]
            raise RunFileError(f"{name} lacks the root attribute(s) {missing}; it cannot be resumed")
        method = _as_str(method)
        if method == "gpm":
            raise RunFileError(f"{name} is a gpm run, which cannot be resumed (its bases are not "
                               "checkpointed); start it again")
        try:
            config = _parse_config(config)
        except ValueError as err:
            raise RunFileError(f"{name}: {err}") from None
        if method == "ewc":
            settings = config.get("ewc") if isinstance(config.get("ewc"), dict) else config.get("method")
            strength = settings.get("strength") if isinstance(settings, dict) else None
            if strength != 0:  # unknown counts as a penalty
                raise RunFileError(f"{name} is an ewc run (strength {strength}), which cannot be resumed (its Fisher "
                                   "information and anchor weights are not checkpointed); start it again")
        if "resumable" in attrs and not bool(attrs["resumable"]):   # the method said so when the run began
            raise RunFileError(f"{name} is a {method} run, which cannot be resumed (the method keeps state the "
                               "checkpoint does not hold); start it again")
        text = file[schema.CHECKPOINT_GROUP].attrs.get(schema.CHECKPOINT_STATE_ATTR)
        try:
            checkpoint = json.loads(_as_str(text)) if text is not None else None
        except json.JSONDecodeError:
            checkpoint = None
        where = f"{name}: /{schema.CHECKPOINT_GROUP} attribute {schema.CHECKPOINT_STATE_ATTR!r}"
        if not isinstance(checkpoint, dict):
            raise RunFileError(f"{where} is not a JSON object (damaged file?)")
        for key in ("task", "n_segments"):
            value = checkpoint.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RunFileError(f"{where}: {key} = {value!r}; expected an integer >= 0 (damaged file?)")
        counts = checkpoint.get("n_spikes")
        if not isinstance(counts, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                   for v in counts.values()):
            raise RunFileError(f"{where}: n_spikes = {counts!r}; expected a spike count >= 0 per population "
                               "(damaged file?)")
        missing = sorted(set(file["populations"]) - set(counts)) if isinstance(file.get("populations"), h5py.Group) \
            else ["/populations"]
        if missing:
            raise RunFileError(f"{where}: n_spikes has no count for {', '.join(missing)} (damaged file?)")
    return {"config": config, "method": method, "checkpoint": checkpoint}


def _parse_config(text) -> dict:
    """The configuration stored as JSON (or TOML) text in the root attribute ``config``.

    Raises
    ------
    ValueError
        If the text is neither JSON nor TOML, or does not hold a mapping.
    """
    text = _as_str(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            raise ValueError("root attribute 'config' is neither JSON nor TOML text") from None
    if not isinstance(value, dict):
        raise ValueError(f"root attribute 'config' holds {type(value).__name__}; expected a mapping")
    return value


def _natural_key(text: str):
    """Sort key putting ``w_2`` before ``w_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _as_str(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _as_str(value[()])
    return str(value)


def _plain(value):
    """An HDF5 attribute value as a plain Python value (str, int, float, bool or list)."""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class RunFile:
    """One run file opened for reading.

    Parameters
    ----------
    path : str or os.PathLike
        The run file.

    Raises
    ------
    RunFileError
        ``"<file>: no such file"``; ``"not an HDF5 file"``; ``"not an hlopsim run file
        (format=...)"``; ``"format_version N is newer than this hlopsim reads (≤ M)"``;
        ``"cannot be read (truncated or damaged?): ..."``; or a required group or attribute
        is missing.

    Notes
    -----
    Use it as a context manager (``with RunFile(path) as run: ...``); the file is closed on
    leaving the block. The file is opened read-only; if HDF5's file lock refuses that (the run
    is still writing the file), it is opened without locking, so a running run can be inspected
    (only complete segments are shown).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.name = str(path)
        self._file = None
        if not self.path.exists():
            raise self.error("no such file")
        if self.path.is_dir():
            raise self.error("is a folder; expected an hlopsim run file (.h5)")
        try:
            is_hdf5 = h5py.is_hdf5(self.path)
        except OSError as err:
            raise self.error(f"cannot be read: {err}") from None
        if not is_hdf5:
            raise self.error("not an HDF5 file; expected an hlopsim run file (.h5)")
        try:
            self._file = _open_read_only(self.path)
        except OSError as err:
            raise self.error(f"cannot be read (truncated or damaged?): {_one_line(err)}") from None
        try:
            self._validate()
        except (OSError, RuntimeError, KeyError) as err:
            # h5py's errors for metadata it cannot follow: a damaged file, or one another process is
            # writing right now (its blocks land between our reads)
            self.close()
            raise self.error(f"cannot be read (damaged, or being written by another process?): "
                             f"{_one_line(err)}") from None
        except BaseException:
            self.close()
            raise
        self._segments = None
        self._ends = {}

    # ------------------------------------------------------------------ opening, closing

    def error(self, problem: str) -> RunFileError:
        """A `RunFileError` ``"<file>: <problem>"`` for this file (returned, not raised)."""
        return RunFileError(f"{self.name}: {problem}")

    def _validate(self):
        attrs = self._file.attrs
        fmt = _plain(attrs.get("format"))
        if fmt != schema.FORMAT:
            shown = "missing" if fmt is None else repr(fmt)
            raise self.error(f"not an hlopsim run file (format={shown}; expected {schema.FORMAT!r})")
        version = _plain(attrs.get("format_version"))
        newest = schema.FORMAT_VERSION
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.error(f"format_version {version!r} is not an integer; expected 1..{newest}")
        if version > newest:
            raise self.error(f"format_version {version} is newer than this hlopsim reads "
                             f"(≤ {newest}); update hlopsim to read it")
        if version < 1:
            raise self.error(f"format_version {version} is invalid; expected 1..{newest}")
        for group in ("populations", "segments"):
            if not isinstance(self._file.get(group), h5py.Group):
                raise self.error(f"group /{group} is missing; the file is not a complete hlopsim run file")
        for key, what in schema.REQUIRED_READ_ATTRS.items():
            if key not in attrs:
                raise self.error(f"root attribute {key!r} ({what}) is missing")
        dt = _plain(attrs["dt"])
        if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise self.error(f"root attribute dt = {dt!r}; expected a positive time step in seconds")
        n_steps = _plain(attrs["n_steps_per_presentation"])
        if not isinstance(n_steps, int) or n_steps < 1:
            raise self.error(f"root attribute n_steps_per_presentation = {n_steps!r}; expected an int >= 1")
        missing = [c for c in schema.SEGMENT_COLUMNS if not isinstance(self._file["segments"].get(c), h5py.Dataset)]
        if missing:
            raise self.error(f"segment columns {missing} are missing from /segments")
        for column in schema.SEGMENT_COLUMNS:
            self._check_integer_vector(self._file["segments"][column])
        for pop, group in self._file["populations"].items():
            if not isinstance(group, h5py.Group):
                raise self.error(f"populations/{pop} is a dataset; expected a population group (damaged file?)")
            absent = [d for d in schema.POPULATION_DTYPES if not isinstance(group.get(d), h5py.Dataset)]
            if absent or "n_neurons" not in group.attrs:
                what = absent if absent else "attribute n_neurons"
                raise self.error(f"population {pop!r} lacks {what}")
            n_neurons = _plain(group.attrs["n_neurons"])
            if isinstance(n_neurons, bool) or not isinstance(n_neurons, int) or n_neurons < 1:
                raise self.error(f"populations/{pop} attribute n_neurons = {n_neurons!r}; expected an integer >= 1 "
                                 "(damaged file?)")
            for name in schema.POPULATION_DTYPES:
                self._check_integer_vector(group[name])
        for name in ("tasks", "weights", "lateral", "metrics"):
            if name in self._file and not isinstance(self._file[name], h5py.Group):
                raise self.error(f"/{name} is a dataset; expected a group (damaged file?)")
        for kind in ("weights", "lateral"):
            for layer, member in self._file.get(kind, {}).items():
                if not isinstance(member, h5py.Group):
                    raise self.error(f"{kind}/{layer} is a dataset; expected a group of snapshots (damaged file?)")

    def _check_integer_vector(self, dataset) -> None:
        """Refuse a dataset that is not 1-D integers (read: its dtype and shape only)."""
        if dataset.ndim != 1 or dataset.dtype.kind not in "iu":
            raise self.error(f"{dataset.name.lstrip('/')} has dtype {dataset.dtype} and shape {dataset.shape}; "
                             "expected 1-D integers (damaged file?)")

    def close(self) -> None:
        """Close the file; closing twice does nothing."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self._file is None else f"{self.method} on {self.protocol}"
        return f"<RunFile {self.name!r} ({state})>"

    @property
    def h5(self) -> h5py.File:
        """h5py.File: The open file, for reading what this class does not cover."""
        if self._file is None:
            raise self.error("the run file was closed")
        return self._file

    # ------------------------------------------------------------------ description

    @property
    def attrs(self) -> dict:
        """dict: All root attributes as plain Python values (``config``, ``software`` as text)."""
        return {key: _plain(value) for key, value in self.h5.attrs.items()}

    def _attr(self, key, default=None):
        value = self.h5.attrs.get(key)
        return default if value is None else _plain(value)

    @property
    def format_version(self) -> int:
        """int: Layout version of the file."""
        return int(self._attr("format_version"))

    @property
    def protocol(self) -> str | None:
        """str or None: Protocol name, e.g. ``"permuted-digits"``."""
        value = self._attr("protocol")
        return None if value is None else str(value)

    @property
    def method(self) -> str | None:
        """str or None: Continual-learning method, e.g. ``"hlop"`` or ``"finetune"``."""
        value = self._attr("method")
        return None if value is None else str(value)

    @property
    def seed(self) -> int | None:
        """int or None: Random seed of the run."""
        value = self._attr("seed")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"root attribute seed = {value!r}; expected an integer (damaged file?)")
        return value

    @property
    def dt(self) -> float:
        """float: Time step of the presentation clock, in seconds."""
        return float(self._attr("dt"))

    @property
    def n_steps(self) -> int:
        """int: Steps (of `dt`) per presentation."""
        return int(self._attr("n_steps_per_presentation"))

    @property
    def presentation_s(self) -> float:
        """float: Duration of one presentation, ``n_steps * dt``, in seconds."""
        return self.n_steps * self.dt

    @property
    def config(self) -> dict:
        """dict: The resolved protocol configuration stored with the run (empty if absent)."""
        text = self._attr("config")
        if text is None:
            return {}
        try:
            return _parse_config(text)
        except ValueError as err:
            raise self.error(str(err)) from None

    @property
    def software(self) -> dict:
        """dict: Software versions of the run, e.g. ``{"brian2": "2.9.0", ...}`` (empty if absent)."""
        text = self._attr("software")
        if text is None:
            return {}
        try:
            value = json.loads(_as_str(text))
        except json.JSONDecodeError:
            return {"text": _as_str(text)}
        return value if isinstance(value, dict) else {"value": value}

    @property
    def complete_flag(self) -> bool:
        """bool: The file's ``complete`` attribute: whether the run said it finished."""
        return bool(self._attr("complete", False))

    @property
    def complete(self) -> bool:
        """bool: The run finished (`complete_flag`) and no dataset holds rows past the last
        complete segment (`partial_rows` is empty)."""
        return self.complete_flag and not self.partial_rows

    @property
    def populations(self) -> list[str]:
        """list of str: Population names, inputs first, then hidden layers, then outputs."""
        groups = self.h5["populations"]

        def key(name):
            role = _as_str(groups[name].attrs.get("role", ""))
            return _ROLE_ORDER.get(role, 1), _natural_key(name)

        return sorted(groups, key=key)

    def _population(self, pop) -> h5py.Group:
        groups = self.h5["populations"]
        if not isinstance(pop, str) or pop not in groups:
            raise self.error(f"population {pop!r} is unknown; expected one of {', '.join(self.populations)}")
        return groups[pop]

    def n_neurons(self, pop: str) -> int:
        """Number of neurons of population ``pop``.

        Raises
        ------
        RunFileError
            If ``pop`` is not a population of the file.
        """
        return int(self._population(pop).attrs["n_neurons"])

    def population_info(self, pop: str) -> dict:
        """Attributes of population ``pop``: ``n_neurons``, ``role`` and ``model`` (equations)."""
        attrs = self._population(pop).attrs
        return {"n_neurons": int(attrs["n_neurons"]), "role": _as_str(attrs.get("role", "")),
                "model": _as_str(attrs.get("model", ""))}

    # ------------------------------------------------------------------ segments

    def _load(self):
        """Read the segment table and every segment_end once; cut all to the complete segments."""
        if self._segments is not None:
            return
        group = self.h5["segments"]
        columns = {name: group[name][()] for name in group if isinstance(group[name], h5py.Dataset)}
        lengths = {f"segments/{name}": len(values) for name, values in columns.items()}
        ends, spikes = {}, {}
        for pop in self.populations:
            g = self.h5["populations"][pop]
            ends[pop] = g["segment_end"][()].astype(np.int64)
            lengths[f"populations/{pop}/segment_end"] = len(ends[pop])
            spikes[pop] = min(len(g["spike_step"]), len(g["spike_neuron"]))
        n = min(lengths.values()) if lengths else 0
        for pop, pop_ends in ends.items():
            # segments whose spikes were all written; ends never decrease
            n = min(n, int(np.searchsorted(pop_ends[:n], spikes[pop], side="right")))
        self._partial = {}
        for key, length in lengths.items():
            if length > n:
                self._partial[key] = length - n
        for pop, pop_ends in ends.items():
            written = spikes[pop]
            used = int(pop_ends[n - 1]) if n else 0
            if written > used:
                self._partial[f"populations/{pop}/spikes"] = written - used
        self._segments = {name: values[:n] for name, values in columns.items()}
        self._ends = {pop: pop_ends[:n] for pop, pop_ends in ends.items()}
        self._n = n
        self._check_segments()
        self._phase_names = self._read_phase_names()
        codes = self._segments["phase"]
        if codes.size and int(codes.max()) >= len(self._phase_names):
            row = int(np.argmax(codes))
            raise self.error(f"segments/phase[{row}] = {codes[row]} has no name in its attribute phase_names "
                             f"({len(self._phase_names)} names) (damaged file?)")

    def _check_segments(self) -> None:
        """Refuse a segment table or ``segment_end`` that the writer cannot have written: a column
        below its smallest value, an empty or reversed segment, segments out of clock order, or
        ``segment_end`` decreasing."""
        seg = self._segments
        for name, (dtype, minimum) in schema.GIVEN_COLUMNS.items():
            values = seg[name]
            if minimum is not None and values.size and values.min() < minimum:
                row = int(np.argmin(values))
                raise self.error(f"segments/{name}[{row}] = {values[row]}; expected >= {minimum} (damaged file?)")
        start, stop = seg["start_step"].astype(np.int64), seg["stop_step"].astype(np.int64)
        bad = np.flatnonzero(stop <= start)
        if bad.size:
            raise self.error(f"segments/start_step[{bad[0]}] = {start[bad[0]]} is not before segments/stop_step"
                             f"[{bad[0]}] = {stop[bad[0]]} (damaged file?)")
        bad = np.flatnonzero(start[1:] < stop[:-1])
        if bad.size:
            raise self.error(f"segments/start_step[{bad[0] + 1}] = {start[bad[0] + 1]} starts before segment "
                             f"{bad[0]} ends ({stop[bad[0]]}); segments lie end to end in clock order (damaged file?)")
        for pop, pop_ends in self._ends.items():
            bad = np.flatnonzero(np.diff(pop_ends) < 0)
            if bad.size or (pop_ends.size and pop_ends[0] < 0):
                row = int(bad[0]) + 1 if bad.size else 0
                raise self.error(f"populations/{pop}/segment_end decreases at row {row} ({pop_ends[row]}); expected "
                                 "non-decreasing spike counts (damaged file?)")

    def _read_phase_names(self) -> list[str]:
        text = self.h5["segments/phase"].attrs.get(schema.PHASE_NAMES_ATTR)
        if text is None:
            return list(schema.PHASE_NAMES)
        try:
            names = json.loads(_as_str(text))
        except json.JSONDecodeError:
            names = None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise self.error("segments/phase attribute phase_names is not a JSON list of names (damaged file?)")
        return names

    @property
    def n_segments(self) -> int:
        """int: Number of complete segments (presentations)."""
        self._load()
        return self._n

    @property
    def last_complete_segment(self) -> int | None:
        """int or None: Index of the last complete segment, None if there is none."""
        return self.n_segments - 1 if self.n_segments else None

    @property
    def partial_rows(self) -> dict[str, int]:
        """dict of str to int: Datasets holding rows past the last complete segment, with the
        number of extra rows (spikes of unfinished segments are counted as
        ``populations/<pop>/spikes``). Empty for a file whose datasets agree."""
        self._load()
        return dict(self._partial)

    @property
    def phase_names(self) -> list[str]:
        """list of str: Phase names, indexed by the stored phase codes."""
        self._load()
        return list(self._phase_names)

    def segments(self) -> dict[str, np.ndarray]:
        """The segment table, one row per complete presentation.

        Returns
        -------
        dict of str to ndarray
            Columns ``task`` (task presented), ``stage`` (index of the task last trained),
            ``epoch`` (-1 for evaluations), ``phase`` (names, str array, e.g. ``"train"``,
            ``"test"``), ``phase_code`` (the stored uint8 codes), ``trial`` (sample index within
            the task's set), ``label`` (true class), ``start_step`` and ``stop_step`` (integer
            steps of `dt` on the presentation clock), plus ``start_s`` and ``stop_s`` (the same
            in seconds).
        """
        self._load()
        table = {name: values.copy() for name, values in self._segments.items()}
        codes = table["phase"].astype(np.intp)
        names = np.array(self._phase_names + ["?"], dtype=str)
        table["phase_code"] = table["phase"]
        table["phase"] = names[np.where(codes < len(self._phase_names), codes, len(self._phase_names))]
        table["start_s"] = table["start_step"].astype(np.float64) * self.dt
        table["stop_s"] = table["stop_step"].astype(np.float64) * self.dt
        return table

    def select(self, task=None, phase=None, stage=None, epoch=None) -> np.ndarray:
        """Indices of the complete segments matching every given criterion.

        Parameters
        ----------
        task, stage, epoch : int, optional
            Task presented, task last trained, training epoch (-1 for evaluations).
        phase : str, optional
            Phase name, one of `phase_names`.

        Returns
        -------
        ndarray of int64
            Segment indices in clock order (possibly empty).

        Raises
        ------
        RunFileError
            If ``phase`` is not a phase of the file, or ``task`` is out of range.
        """
        self._load()
        keep = np.ones(self._n, dtype=bool)
        if task is not None:
            self.check_task(task)
            keep &= self._segments["task"] == task
        if stage is not None:
            self.check_task(stage, what="stage")
            keep &= self._segments["stage"] == stage
        if epoch is not None:
            keep &= self._segments["epoch"] == epoch
        if phase is not None:
            if phase not in self._phase_names:
                raise self.error(f"phase {phase!r} is unknown; expected one of {', '.join(self._phase_names)}")
            keep &= self._segments["phase"] == self._phase_names.index(phase)
        return np.flatnonzero(keep).astype(np.int64)

    def _segment_selection(self, segments) -> np.ndarray:
        """Segment indices from None (all), a bool mask or integer indices."""
        self._load()
        if segments is None:
            return np.arange(self._n, dtype=np.int64)
        sel = np.asarray(segments)
        if sel.dtype == np.bool_:
            if sel.shape != (self._n,):
                raise self.error(f"a segment mask must have shape ({self._n},), got {sel.shape}")
            return np.flatnonzero(sel).astype(np.int64)
        if sel.ndim > 1 or (sel.size and sel.dtype.kind not in "iu"):
            raise self.error(f"segments must be 1-D integer indices or a bool mask, got dtype {sel.dtype} "
                             f"and shape {sel.shape}")
        sel = np.atleast_1d(sel).astype(np.int64)
        if sel.size and (sel.min() < 0 or sel.max() >= self._n):
            bad = int(sel.min()) if sel.min() < 0 else int(sel.max())
            raise self.error(f"segment {bad} is out of range; expected 0 <= segment < {self._n} "
                             "(complete segments)")
        return sel

    def _span(self, pop, first, stop) -> tuple[int, int]:
        """Spike index range [lo, hi) of segments first .. stop-1 of population ``pop``."""
        ends = self._ends[pop]
        lo = int(ends[first - 1]) if first > 0 else 0
        hi = int(ends[stop - 1]) if stop > 0 else 0
        return lo, max(lo, hi)

    def spikes_per_segment(self, pop: str) -> np.ndarray:
        """Spikes of population ``pop`` in each complete segment, from ``segment_end`` alone.

        Returns
        -------
        ndarray of int64, shape (n_segments,)
        """
        self._population(pop)
        self._load()
        return np.diff(self._ends[pop], prepend=0)

    # ------------------------------------------------------------------ spikes

    def spikes(self, pop: str, segment: int | None = None, window=None) -> tuple[np.ndarray, np.ndarray]:
        """Spike times and neuron indices of population ``pop``.

        Parameters
        ----------
        pop : str
            Population name.
        segment : int, optional
            Only the spikes of this segment; times are then relative to its start.
        window : tuple of two float, optional
            ``(start_s, stop_s)``: only spikes with ``start_s <= t < stop_s`` on the presentation
            clock, in seconds; times stay on the presentation clock.

        Returns
        -------
        times_s : ndarray of float64
            Spike times in seconds: ``step * dt`` on the presentation clock, or from the segment
            start when ``segment`` is given. Sorted.
        neurons : ndarray of int64
            Neuron index of each spike within the population.

        Raises
        ------
        RunFileError
            If the population is unknown, the segment out of range, the window malformed, or
            both ``segment`` and ``window`` are given.
        """
        g = self._population(pop)
        self._load()
        if segment is not None and window is not None:
            raise self.error("give either segment or window, not both")
        dt = self.dt
        if segment is not None:
            if isinstance(segment, (bool, np.bool_)) or not isinstance(segment, Integral):
                raise self.error(f"segment must be an int, got {segment!r}")
            s = int(self._segment_selection([segment])[0])
            first, stop = s, s + 1
        elif window is not None:
            start_s, stop_s = self._check_window(window)
            first = int(np.searchsorted(self._segments["stop_step"] * dt, start_s, side="right"))
            stop = int(np.searchsorted(self._segments["start_step"] * dt, stop_s, side="left"))
            if stop <= first:
                return np.empty(0), np.empty(0, dtype=np.int64)
        else:
            first, stop = 0, self._n
        lo, hi = self._span(pop, first, stop)
        steps = g["spike_step"][lo:hi].astype(np.int64)
        neurons = self._checked_neurons(pop, g["spike_neuron"][lo:hi])
        self._check_spike_steps(pop, steps, first, stop, lo)
        if segment is not None:
            return (steps - int(self._segments["start_step"][first])) * dt, neurons
        times = steps.astype(np.float64) * dt
        if window is not None:
            keep = (times >= start_s) & (times < stop_s)
            return times[keep], neurons[keep]
        return times, neurons

    def _checked_neurons(self, pop, neurons) -> np.ndarray:
        """``neurons`` as int64, refused if an index is not below the population's size."""
        neurons = np.asarray(neurons).astype(np.int64)
        n = self.n_neurons(pop)
        if neurons.size and neurons.max() >= n:
            raise self.error(f"populations/{pop}/spike_neuron holds neuron {int(neurons.max())}; expected < "
                             f"n_neurons = {n} (damaged file?)")
        return neurons

    def _check_spike_steps(self, pop, steps, first, stop, lo) -> None:
        """Refuse spikes (global steps of segments first .. stop-1, from spike index ``lo``) that are
        out of clock order or outside their own segment. In clock order, a segment's spikes lie
        inside it when its first and last one do: the check reads one bool per spike."""
        if not steps.size:
            return
        backwards = np.flatnonzero(steps[1:] < steps[:-1])
        if backwards.size:
            raise self.error(f"populations/{pop}/spike_step is out of clock order at row {lo + int(backwards[0]) + 1} "
                             "(damaged file?)")
        counts = np.diff(self._ends[pop][first:stop], prepend=lo)
        ends = np.cumsum(counts)
        spiking = counts > 0
        head, tail = (ends - counts)[spiking], (ends - 1)[spiking]
        low = self._segments["start_step"][first:stop][spiking].astype(np.int64)
        high = self._segments["stop_step"][first:stop][spiking].astype(np.int64)
        outside = np.flatnonzero((steps[head] < low) | (steps[tail] >= high))
        if outside.size:
            k = int(outside[0])
            row = int(head[k]) if steps[head[k]] < low[k] else int(tail[k])
            raise self.error(f"populations/{pop}/spike_step[{lo + row}] = {steps[row]} lies outside its segment "
                             f"[{low[k]}, {high[k]}) (damaged file?)")

    def _check_window(self, window) -> tuple[float, float]:
        try:
            start_s, stop_s = window
            start_s, stop_s = float(start_s), float(stop_s)
        except (TypeError, ValueError):
            raise self.error(f"window {window!r} is malformed; expected (start_s, stop_s) in seconds") from None
        if not (math.isfinite(start_s) and math.isfinite(stop_s) and start_s < stop_s):
            raise self.error(f"window ({start_s}, {stop_s}) is invalid; expected finite "
                             "start_s < stop_s in seconds")
        return start_s, stop_s

    def local_spikes(self, pop: str, segments=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Spikes of several segments, each timed from the start of its own segment.

        Parameters
        ----------
        pop : str
            Population name.
        segments : array_like of int or bool, optional
            Segment indices or a mask over the complete segments; default all.

        Returns
        -------
        segment : ndarray of int64
            Segment index of each spike; spikes come in clock order (a segment listed twice
            appears once).
        local_step : ndarray of int64
            Step of each spike counted from the start of its segment (0 .. n_steps-1);
            multiply by `dt` for seconds.
        neurons : ndarray of int64
            Neuron index of each spike.
        """
        owner, local, keep, (lo, hi) = self._local_steps(pop, segments)
        neurons = self._checked_neurons(pop, self._population(pop)["spike_neuron"][lo:hi])
        return owner, local, neurons if keep is None else neurons[keep]

    def trial_spikes(self, pop: str, segments=None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Spikes of each selected segment (trial), timed from that trial's start.

        The time of a spike is ``local_step * dt``: its step counted from the start of its own
        segment (an integer) multiplied by `dt` once, so every time is the float nearest to an
        integer multiple of `dt` and no interval between two spikes spans two trials. Trial-aligned
        analyses (ISI, CV, PSTH) need this; the presentation clock of `spikes` does not give it.

        Parameters
        ----------
        pop : str
            Population name.
        segments : array_like of int or bool, optional
            Segment indices (any order; one entry per index given) or a mask over the complete
            segments; default all complete segments.

        Returns
        -------
        list of (times_s, neurons)
            One pair per selected segment, in the order given: ``times_s`` (float64, seconds from
            the segment start, ``0 <= t < n_steps * dt``, ascending) and ``neurons`` (int64 neuron
            index of each spike).

        Raises
        ------
        RunFileError
            If the population is unknown or a segment out of range.
        """
        sel = self._segment_selection(segments)
        owner, local, neurons = self.local_spikes(pop, sel)
        dt = self.dt
        lo = np.searchsorted(owner, sel, side="left")   # owner is sorted: spikes come in clock order
        hi = np.searchsorted(owner, sel, side="right")
        return [(local[a:b] * dt, neurons[a:b]) for a, b in zip(lo, hi)]

    def _local_steps(self, pop, segments, want_owner=True):
        """Owner segment and local step of the spikes of the selected segments.

        Returns ``(owner, local_step, keep, (lo, hi))``: ``owner`` is None if not wanted and
        not needed; ``keep`` is None when every spike of the index range [lo, hi) is selected,
        else the mask over that range.
        """
        g = self._population(pop)
        sel = self._segment_selection(segments)
        if sel.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), None, (0, 0)
        first, stop = int(sel.min()), int(sel.max()) + 1
        lo, hi = self._span(pop, first, stop)
        per_segment = np.diff(self._ends[pop][first:stop], prepend=lo)
        local = g["spike_step"][lo:hi].astype(np.int64)
        self._check_spike_steps(pop, local, first, stop, lo)
        local -= _expand(self._segments["start_step"][first:stop].astype(np.int64), per_segment)
        contiguous = len(np.unique(sel)) == stop - first
        owner = None
        if want_owner or not contiguous:
            owner = _expand(np.arange(first, stop, dtype=np.int64), per_segment)
        keep = None
        if not contiguous:
            wanted = np.zeros(stop - first, dtype=bool)
            wanted[sel - first] = True
            keep = wanted[owner - first]
            owner, local = owner[keep], local[keep]
        return owner, local, keep, (lo, hi)

    def spike_counts(self, pop: str, segments=None) -> np.ndarray:
        """Spike count of every neuron of ``pop`` in every selected segment.

        Parameters
        ----------
        pop : str
            Population name.
        segments : array_like of int or bool, optional
            Segment indices (rows in this order) or a mask over the complete segments;
            default all complete segments.

        Returns
        -------
        ndarray of int64, shape (n_selected, n_neurons)
        """
        g = self._population(pop)
        n_neurons = self.n_neurons(pop)
        sel = self._segment_selection(segments)
        if sel.size == 0:
            return np.zeros((0, n_neurons), dtype=np.int64)
        first, stop = int(sel.min()), int(sel.max()) + 1
        lo, hi = self._span(pop, first, stop)
        per_segment = np.diff(self._ends[pop][first:stop], prepend=lo)
        owner = _expand(np.arange(stop - first, dtype=np.int64), per_segment)
        neurons = g["spike_neuron"][lo:hi].astype(np.int64)
        if neurons.size and neurons.max() >= n_neurons:
            raise self.error(f"population {pop!r} has a spike of neuron {int(neurons.max())}; "
                             f"expected < n_neurons = {n_neurons} (damaged file?)")
        owner *= n_neurons
        owner += neurons
        counts = np.bincount(owner, minlength=(stop - first) * n_neurons)
        return counts.reshape(stop - first, n_neurons)[sel - first]

    def rates(self, pop: str, segments=None) -> np.ndarray:
        """Firing rate of every neuron of ``pop`` in every selected segment, in Hz.

        Parameters
        ----------
        pop : str
            Population name.
        segments : array_like of int or bool, optional
            As for `spike_counts`.

        Returns
        -------
        ndarray of float64, shape (n_selected, n_neurons)
            ``spike_counts / ((stop_step - start_step) * dt)``, i.e. count / (`n_steps` · `dt`).
        """
        counts = self.spike_counts(pop, segments)
        sel = self._segment_selection(segments)
        duration_s = (self._segments["stop_step"][sel] - self._segments["start_step"][sel]).astype(np.float64)
        return counts / (duration_s * self.dt)[:, None]

    # ------------------------------------------------------------------ tasks and metrics

    @property
    def n_tasks(self) -> int:
        """int: Number of tasks of the protocol (from /tasks, the config or the accuracy matrix)."""
        counts = [len(self.h5["tasks"])] if "tasks" in self.h5 else []
        tasks = self.config.get("protocol", {}).get("tasks")
        if isinstance(tasks, int):
            counts.append(tasks)
        matrix = self.h5.get(f"metrics/{schema.ACCURACY_MATRIX}")
        if isinstance(matrix, h5py.Dataset) and matrix.ndim == 2:
            counts.append(matrix.shape[0])
        return max(counts, default=0)

    def check_task(self, task, what: str = "task") -> None:
        """Raise `RunFileError` unless ``task`` is an int with ``0 <= task < n_tasks``.

        Parameters
        ----------
        task : int
            Task index to check.
        what : str
            Name used in the message, e.g. ``"stage"``.
        """
        n = self.n_tasks
        if isinstance(task, (bool, np.bool_)) or not isinstance(task, Integral) or not 0 <= task < n:
            raise self.error(f"{what} {task!r} is out of range; expected 0 <= {what} < {n}")

    def tasks(self) -> list[dict]:
        """The task descriptions stored in /tasks.

        Returns
        -------
        list of dict
            One dict per task in index order: ``index`` (int), ``name`` (str) and every stored
            array, e.g. ``permutation`` (input pixel order).
        """
        if "tasks" not in self.h5:
            return []
        found = []
        for key in sorted(self.h5["tasks"], key=_natural_key):
            group = self.h5["tasks"][key]
            entry = {"index": int(key) if key.isdigit() else key, "name": _as_str(group.attrs.get("name", key))}
            for name, dataset in group.items():
                value = dataset[()]
                if dataset.dtype.kind == "O":
                    value = np.array([_as_str(v) for v in np.atleast_1d(value)])
                entry[name] = value
            found.append(entry)
        return found

    def accuracy_matrix(self) -> np.ndarray:
        """The accuracy matrix, in percent.

        Returns
        -------
        ndarray of float64, shape (n_tasks, n_tasks)
            ``R[i, j]`` = % correct on task ``j`` after training task ``i``; NaN where not
            measured (all NaN if the run never finished an evaluation).
        """
        dataset = self.h5.get(f"metrics/{schema.ACCURACY_MATRIX}")
        if isinstance(dataset, h5py.Dataset):
            if dataset.dtype.kind not in "iuf":
                raise self.error(f"metrics/accuracy_matrix has dtype {dataset.dtype}; expected numbers (damaged file?)")
            R = np.asarray(dataset[()], dtype=np.float64)
            if R.ndim != 2 or R.shape[0] != R.shape[1]:
                raise self.error(f"metrics/accuracy_matrix has shape {R.shape}; expected (N, N)")
            return R
        n = self.n_tasks
        return np.full((n, n), np.nan)

    def summary(self) -> dict:
        """ACC, BWT and forgetting of the filled part of the accuracy matrix.

        If the last row of `accuracy_matrix` with a finite entry is row ``k``, ACC, BWT and
        forgetting (the formulas of `hlopsim.protocols.metrics`) are computed on ``R[:k+1, :k+1]``,
        as if the run had ended after task ``k``.

        Returns
        -------
        dict
            ``ACC``, ``BWT``, ``forgetting`` (percentage points, NaN when nothing was
            evaluated) and ``tasks_evaluated`` (``k + 1``, 0 when nothing was evaluated).
        """
        R = self.accuracy_matrix()
        k = filled_tasks(R)
        if not k:
            return {"ACC": math.nan, "BWT": math.nan, "forgetting": math.nan, "tasks_evaluated": 0}
        try:
            metrics = summarize(R[:k, :k])
        except ValueError as err:
            raise self.error(f"accuracy matrix: {err}") from None
        return {**metrics, "tasks_evaluated": k}

    # ------------------------------------------------------------------ recorded state variables

    def state_variables(self) -> dict[str, list[str]]:
        """Recorded state variables per population, e.g. ``{"hidden_1": ["v", "I_syn"]}``; empty for
        a run that recorded none (files written before state recording existed included)."""
        group = self.h5.get(schema.STATES_GROUP)
        if group is None:
            return {}
        if not isinstance(group, h5py.Group):
            raise self.error(f"/{schema.STATES_GROUP} is a dataset; expected a group (damaged file?)")
        return {pop: sorted(member) for pop, member in sorted(group.items(), key=lambda item: _natural_key(item[0]))
                if isinstance(member, h5py.Group)}

    def states(self, pop: str, variable: str, segments=None, values: bool = True) -> dict:
        """Recorded values of one state variable, one array per recorded presentation.

        Parameters
        ----------
        pop : str
            Population name.
        variable : str
            Recorded variable, one of ``state_variables()[pop]``.
        segments : array_like of int or bool, optional
            Keep only the recorded presentations among these segments (indices or a mask over the
            complete segments); default every recorded presentation of a complete segment.
        values : bool
            False: leave out ``values`` (reads only the small datasets; for summaries).

        Returns
        -------
        dict
            ``values``: float64 array (presentations, neurons, n_steps) in SI units, the variable at
            the start of every step of each presentation (step 0: the state it starts from);
            ``segment``: int64 row of `segments` of each presentation (increasing); ``neuron``: int64
            recorded neuron indices; ``unit``: SI unit text (``"V"``, ``"V/s"``, ``"Hz"``, ``"1"``
            dimensionless); ``times_s``: float64 (n_steps,), ``k · dt`` from the presentation start.
            (The reader imports no Brian2; ``values * brian2.volt`` makes a Quantity of ``"V"``.)

        Raises
        ------
        RunFileError
            If the population or variable was not recorded (naming those that were), a segment is out
            of range, or the datasets are damaged.
        """
        recorded = self.state_variables()
        if pop not in recorded or variable not in recorded[pop]:
            listed = "; ".join(f"{p}: {', '.join(v)}" for p, v in recorded.items()) or "none in this file"
            raise self.error(f"state {variable!r} of population {pop!r} was not recorded; recorded: {listed}")
        group = self.h5[schema.STATES_GROUP][pop][variable]
        where = f"{schema.STATES_GROUP}/{pop}/{variable}"
        if not all(isinstance(group.get(name), h5py.Dataset) for name in schema.STATE_DTYPES):
            raise self.error(f"{where} lacks one of {', '.join(schema.STATE_DTYPES)} (damaged file?)")
        values_ds, segment_ds, neuron_ds = (group[name] for name in ("values", "segment", "neuron"))
        if values_ds.ndim != 3 or segment_ds.ndim != 1 or neuron_ds.ndim != 1 or \
                values_ds.shape[1] != neuron_ds.shape[0] or segment_ds.dtype.kind not in "iu":
            raise self.error(f"{where}: values {values_ds.shape}, segment {segment_ds.shape}, neuron "
                             f"{neuron_ds.shape} do not fit together (damaged file?)")
        segment = segment_ds[()].astype(np.int64)
        if np.any(np.diff(segment) <= 0):
            raise self.error(f"{where}/segment is not increasing (damaged file?)")
        # rows of complete segments whose values were written (a killed run may leave either short)
        n = min(int(np.searchsorted(segment, self.n_segments, side="left")), values_ds.shape[0])
        rows = np.arange(n)
        if segments is not None:
            rows = rows[np.isin(segment[:n], self._segment_selection(segments))]
        out = {"segment": segment[rows], "neuron": neuron_ds[()].astype(np.int64),
               "unit": _as_str(group.attrs.get("unit", "")), "times_s": np.arange(values_ds.shape[2]) * self.dt}
        if values:
            data = values_ds[rows[0]:rows[-1] + 1][rows - rows[0]] if rows.size else \
                np.empty((0, *values_ds.shape[1:]), dtype=np.float64)
            out["values"] = np.asarray(data, dtype=np.float64)
        return out

    # ------------------------------------------------------------------ snapshots

    @property
    def weight_names(self) -> list[str]:
        """list of str: Names of the weight layers with snapshots, e.g. ``["w_1", "w_2"]``."""
        return sorted(self.h5.get("weights", {}), key=_natural_key)

    def weight_tasks(self, name: str) -> list[int]:
        """Tasks after which weights ``name`` were stored."""
        group = self._snapshot_group("weights", name, "weight layer", self.weight_names)
        return _snapshot_tasks(group, schema.WEIGHTS_PREFIX)

    def weights(self, name: str, task: int) -> np.ndarray:
        """Weights of layer ``name`` after training ``task``.

        Returns
        -------
        ndarray of float64, shape (n_post, n_pre)
            In units of the spike cost (as stored by the simulator).

        Raises
        ------
        RunFileError
            If the layer is unknown or has no snapshot after ``task``.
        """
        group = self._snapshot_group("weights", name, "weight layer", self.weight_names)
        key = f"{schema.WEIGHTS_PREFIX}{task}"
        if key not in group:
            raise self.error(f"weights {name!r} have no snapshot after task {task!r}; "
                             f"available after tasks {self.weight_tasks(name)}")
        return np.asarray(group[key][()], dtype=np.float64)

    @property
    def lateral_layers(self) -> list[str]:
        """list of str: Layers with lateral (HLOP) circuit snapshots; empty for finetune runs."""
        return sorted(self.h5.get("lateral", {}), key=_natural_key)

    def presynaptic_population(self, layer: str) -> str:
        """The population whose activity the weight layer (and its lateral circuit) ``layer`` reads.

        Weight layer ``l`` (``l``-th of `weight_names`, or of `lateral_layers` when the file has no
        weight snapshot yet) reads the ``l``-th population of `populations` (input first).

        Raises
        ------
        RunFileError
            If ``layer`` is unknown or the population's size disagrees with the layer's inputs.
        """
        names = self.weight_names or self.lateral_layers
        if layer not in names:
            raise self.error(f"weight layer {layer!r} is unknown; expected one of {', '.join(names)}")
        pop = self.populations[names.index(layer)]
        if layer in self.lateral_layers:
            H, _ = self.lateral(layer, self.lateral_tasks(layer)[0])
            if H.shape[1] != self.n_neurons(pop):
                raise self.error(f"lateral {layer!r} has {H.shape[1]} inputs but population {pop!r} has "
                                 f"{self.n_neurons(pop)} neurons (damaged file?)")
        return pop

    def lateral_tasks(self, layer: str) -> list[int]:
        """Tasks after which the lateral circuit of ``layer`` was stored."""
        group = self._snapshot_group("lateral", layer, "lateral layer", self.lateral_layers)
        return _snapshot_tasks(group, schema.LATERAL_H_PREFIX)

    def lateral(self, layer: str, task: int) -> tuple[np.ndarray, np.ndarray]:
        """Lateral circuit of ``layer`` after training ``task``.

        Returns
        -------
        H : ndarray of float64, shape (K, n_pre)
            Subspace-neuron weights (dimensionless), one row per allocated lateral neuron; rows
            of neurons not grown yet are zero.
        frozen_mask : ndarray of bool, shape (K,)
            Which lateral neurons are frozen.

        Raises
        ------
        RunFileError
            If the file has no lateral circuit for ``layer`` (e.g. a finetune run) or none
            after ``task``.
        """
        group = self._snapshot_group("lateral", layer, "lateral layer", self.lateral_layers)
        h_key, mask_key = f"{schema.LATERAL_H_PREFIX}{task}", f"{schema.LATERAL_FROZEN_PREFIX}{task}"
        if h_key not in group or mask_key not in group:
            raise self.error(f"lateral {layer!r} has no snapshot after task {task!r}; "
                             f"available after tasks {self.lateral_tasks(layer)}")
        H, mask = group[h_key], group[mask_key]
        where = f"lateral/{layer}/{h_key}"
        if not isinstance(H, h5py.Dataset) or H.dtype.kind not in "iuf" or H.ndim != 2:
            shape = H.shape if isinstance(H, h5py.Dataset) else "a group"
            raise self.error(f"{where} is {shape}; expected a 2-D array of numbers (damaged file?)")
        H = np.asarray(H[()], dtype=np.float64)
        if not np.isfinite(H).all():
            raise self.error(f"{where} holds non-finite values (NaN or inf); a circuit that diverges stops the run "
                             "before its snapshot (damaged file?)")
        if not isinstance(mask, h5py.Dataset) or mask.shape != (H.shape[0],) or mask.dtype.kind not in "biu":
            raise self.error(f"lateral/{layer}/{mask_key} has shape {getattr(mask, 'shape', None)}; expected one "
                             f"flag per row of {where} ({H.shape[0]},) (damaged file?)")
        return H, np.asarray(mask[()], dtype=bool)

    def lateral_sizes(self) -> dict[str, list[dict]]:
        """Size of every lateral circuit after every task.

        Returns
        -------
        dict of str to list of dict
            ``{layer: [{"task", "allocated", "grown", "frozen", "row_deviation"}, ...]}``: lateral
            neurons allocated (rows of H), grown so far (rows not all zero) and frozen, and
            `sim.row_measures.row_deviation` of the rows that froze at that task (how far from
            orthonormal the task's neurons ended; above `UNSETTLED_ROW_DEVIATION` they had not settled).
        """
        sizes = {}
        for layer in self.lateral_layers:
            rows = []
            before = 0
            for task in self.lateral_tasks(layer):
                H, frozen = self.lateral(layer, task)
                grown = int(np.count_nonzero(np.any(H != 0, axis=tuple(range(1, H.ndim))))) if H.ndim > 1 \
                    else int(np.count_nonzero(H))
                n_frozen = int(np.count_nonzero(frozen))
                deviation = row_deviation(H[before:n_frozen]) if H.ndim == 2 and n_frozen >= before else math.nan
                rows.append({"task": task, "allocated": int(H.shape[0]), "grown": grown, "frozen": n_frozen,
                             "row_deviation": deviation})
                before = n_frozen
            sizes[layer] = rows
        return sizes

    def _snapshot_group(self, kind, name, what, known):
        if not isinstance(name, str) or name not in known:
            listed = ", ".join(known) if known else "none in this file"
            raise self.error(f"{what} {name!r} is unknown; expected one of: {listed}")
        group = self.h5[kind][name]
        if not isinstance(group, h5py.Group):
            raise self.error(f"{kind}/{name} is a dataset; expected a group of snapshots (damaged file?)")
        return group


def _open_read_only(path) -> h5py.File:
    """Open read-only; if HDF5's file lock is in the way (a run still writing the file, or the
    file already open with other locking flags), open again without locking."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        if "lock" not in str(err).lower():
            raise
    return h5py.File(path, "r", locking=False)


def _snapshot_tasks(group, prefix) -> list[int]:
    """Sorted tasks ``t`` of the members ``<prefix><t>`` of a snapshot group."""
    return sorted(int(k[len(prefix):]) for k in group if re.fullmatch(re.escape(prefix) + r"\d+", k))


def _expand(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``np.repeat(values, counts)`` for int64 values, via a cumulative sum (faster for long
    outputs)."""
    total = int(counts.sum())
    out = np.zeros(total, dtype=np.int64)
    if total == 0:
        return out
    starts = np.cumsum(counts) - counts           # first output index of each value
    steps = np.diff(values, prepend=0)            # change when a value's block begins
    inside = starts < total                       # trailing empty blocks start past the end
    np.add.at(out, starts[inside], steps[inside])
    return np.cumsum(out, out=out)


def _one_line(err) -> str:
    return " ".join(str(err).split())
