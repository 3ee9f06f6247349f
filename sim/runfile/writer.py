"""Writer of the run file (layout and names in `schema`): `RunRecorder`.

The appendable datasets are written in whole chunks from small in-memory buffers; only the last,
partial chunk of each is rewritten when the file is flushed. After every ``append_block`` the file
is flushed, spikes first, so a killed process leaves a readable file whose segments and spikes
agree up to the last completed block. Blocks are written by one background thread, in order,
overlapping the simulation of the next block; every other method waits for them first.

Data safety. A recorder holds an exclusive advisory lock (``flock``) on its file while it writes
it, so a second writer (another run, a resume, an overwrite) is refused with `RunFileBusyError`
instead of both writing one file; readers are not blocked. A new file is built under a private
name and linked into place once it is a valid, flushed run file, so an interrupt at any moment
leaves either no file or one every reader accepts. With ``overwrite`` the run is written to
`pending_path` (``<file>.new``) and renamed over ``<file>`` only when it is complete: until then
the old run is untouched. A failed write (full disk, read-only folder, I/O error) raises
`RunFileWriteError`, one line naming the file and the system's reason; what was flushed before
stays readable.

This module reads and writes HDF5 with h5py only; it imports neither Brian2 nor the protocol
layer (the caller computes the metrics it stores, see `RunRecorder.write_metrics`).
"""

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
import contextlib
from datetime import datetime, timezone
import functools
import json
from numbers import Integral, Real
import os
from pathlib import Path
import re
import signal
import threading

import h5py
import numpy as np

from hlopsim.sim.runfile import schema
from hlopsim.sim.runfile._metrics import filled_tasks
from hlopsim.sim.runfile.reader import RunFileError, read_checkpoint

try:
    import fcntl
except ImportError:  # no advisory locks on this platform: files are written unguarded
    fcntl = None

__all__ = ["RunRecorder", "RunFileBusyError", "RunFileWriteError", "being_written", "pending_path"]


class RunFileBusyError(RunFileError):
    """Another live process is writing the run file (it holds the writer's lock); nothing was touched."""


class RunFileWriteError(OSError):
    """Writing a run file failed: a full disk, a read-only or vanished folder, an I/O error.

    The message is one line naming the file and the system's reason; ``errno`` is the system's
    error number when known. Everything flushed before the failure (every finished block and
    checkpoint) stays in the file.
    """

    def __init__(self, errno, message):
        super().__init__(message)
        self.errno = errno

    def __str__(self):
        return self.args[0]


def pending_path(path) -> Path:
    """Where a run that replaces ``path`` (``overwrite``) is written until it is complete:
    ``<path>.new`` beside it (`schema.PENDING_SUFFIX`)."""
    path = Path(path)
    return path.with_name(path.name + schema.PENDING_SUFFIX)


def being_written(path) -> bool:
    """Whether a live process holds the writer's lock on ``path``.

    Probes with a non-blocking shared ``flock``: a recorder holds an exclusive one for as long as
    it writes (readers' shared locks do not count). False if the file does not exist or the
    platform or file system has no such locks.
    """
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the probe's lock
    return False


def _busy_message(path) -> str:
    return (f"{str(path)!r} is being written by another running process (an hlopsim run or resume); "
            "wait for it to finish or choose another file")


class _WriterLock:
    """The exclusive ``flock`` a recorder holds on its file (on the inode: it follows renames)."""

    def __init__(self, path):
        self.fd = None
        if fcntl is None:
            return
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFileBusyError(_busy_message(path)) from None
        except OSError:  # the file system has no locks: write unguarded
            os.close(fd)
            return
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _reason(err) -> str:
    """The system's reason for a failed write, in one line (HDF5's messages embed errno and text)."""
    text = " ".join(str(err).split())
    found = re.search(r"errno = (\d+), error message = '([^']*)'", text)
    if found:
        return f"{found.group(2)} (errno {found.group(1)})"
    if isinstance(err, OSError) and err.errno and err.strerror:
        return f"{err.strerror} (errno {err.errno})"
    return text[:300]


def _write_error(path, err) -> RunFileWriteError:
    errno = getattr(err, "errno", None)
    found = re.search(r"errno = (\d+)", str(err))
    if found:
        errno = int(found.group(1))
    return RunFileWriteError(errno, f"cannot write run file {str(path)!r}: {_reason(err)}")


@contextlib.contextmanager
def _interrupts_held():
    """Hold Ctrl-C (SIGINT) until the block has finished, then act on it as the handler in force would.

    A KeyboardInterrupt raised inside an h5py call can leave h5py's own state broken (later calls
    then fail with unrelated errors), so file operations are not interrupted half-way; an interrupt
    during one takes effect right after it. Signal handlers live in the main thread; elsewhere the
    block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def _uninterrupted(method):
    """Run a recorder method with Ctrl-C held (`_interrupts_held`)."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _interrupts_held():
            return method(*args, **kwargs)
    return wrapper


def _writes(method):
    """Turn a failed HDF5 write inside a recorder method into `RunFileWriteError` and remember it;
    Ctrl-C is held until the method has finished (`_interrupts_held`)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            with _interrupts_held():
                return method(self, *args, **kwargs)
        except RunFileWriteError as err:
            self._failed = self._failed or err
            raise
        except (OSError, RuntimeError) as err:  # h5py reports failed writes as either
            error = _write_error(self.path, err)
            self._failed = self._failed or error
            raise error from None
    return wrapper

SPIKE_CHUNK = 2**16
"""Elements per chunk of the spike arrays."""
SEGMENT_CHUNK = 2**14
"""Elements per chunk of the segment table and of segment_end."""
SPACE_MARGIN = 2**20
"""Free bytes a write leaves on top of its own size (HDF5's metadata, rewritten partial chunks)."""


class _Appender:
    """Append to a resizable 1-D dataset, writing whole chunks.

    Values that do not yet fill a chunk stay in ``tail``. ``flush``
    writes the tail as the partial last chunk of the dataset but keeps it
    in memory, so the next ``append`` rewrites that chunk whole without
    reading the file.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.chunk = dataset.chunks[0]
        self.start = 0  # offset of the tail in the dataset, a chunk boundary
        self.tail = np.empty(0, dtype=dataset.dtype)

    @classmethod
    def existing(cls, dataset, length):
        """Continue an existing dataset, cut to its first ``length`` values."""
        appender = cls(dataset)
        if dataset.shape[0] < length:
            raise ValueError(f"{dataset.name} holds {dataset.shape[0]} values, fewer than the {length} expected")
        kept_tail = length - length % appender.chunk
        appender.tail = dataset[kept_tail:length]
        appender.start = kept_tail
        dataset.resize((length,))
        return appender

    def __len__(self):
        return self.start + len(self.tail)

    def append(self, values):
        data = np.concatenate([self.tail, np.asarray(values, dtype=self.dataset.dtype)])
        n_full = len(data) - len(data) % self.chunk
        if n_full:
            self._write(data[:n_full])
            self.start += n_full
        self.tail = data[n_full:].copy()

    def flush(self):
        if len(self.tail):
            self._write(self.tail)

    def _write(self, data):
        stop = self.start + len(data)
        if self.dataset.shape[0] < stop:
            self.dataset.resize((stop,))
        self.dataset[self.start : stop] = data


class _Population:
    """Appenders and size of one population."""

    def __init__(self, group, n_neurons, existing=None):
        self.n_neurons = n_neurons
        dtypes = schema.POPULATION_DTYPES
        if existing is None:
            self.spike_step = _Appender(_appendable(group, "spike_step", dtypes["spike_step"], SPIKE_CHUNK))
            self.spike_neuron = _Appender(_appendable(group, "spike_neuron", dtypes["spike_neuron"], SPIKE_CHUNK))
            self.segment_end = _Appender(_appendable(group, "segment_end", dtypes["segment_end"], SEGMENT_CHUNK))
        else:
            n_spikes, n_segments = existing
            self.spike_step = _Appender.existing(group["spike_step"], n_spikes)
            self.spike_neuron = _Appender.existing(group["spike_neuron"], n_spikes)
            self.segment_end = _Appender.existing(group["segment_end"], n_segments)


class _State:
    """Datasets of one recorded state variable, ``/states/<pop>/<var>``.

    ``values`` grows along its first axis by whole chunks of one presentation each, so appending a
    block never rewrites a compressed chunk; ``segment`` is appended through an `_Appender`.
    """

    def __init__(self, group, n_neurons, n_steps, existing=None):
        self.n_neurons, self.n_steps = n_neurons, n_steps
        self.values = group["values"]
        if existing is None:
            self.segment = _Appender(group["segment"])
        else:
            self.segment = _Appender.existing(group["segment"], existing)
            self.values.resize((existing, n_neurons, n_steps))

    @classmethod
    def create(cls, group, neurons, n_steps):
        dtypes = schema.STATE_DTYPES
        group.create_dataset("values", shape=(0, len(neurons), n_steps), maxshape=(None, len(neurons), n_steps),
                             dtype=dtypes["values"], chunks=(1, len(neurons), n_steps), compression="lzf",
                             shuffle=True, track_times=False)
        _appendable(group, "segment", dtypes["segment"], SEGMENT_CHUNK)
        _write_array(group, "neuron", np.asarray(neurons, dtype=dtypes["neuron"]))
        return cls(group, len(neurons), n_steps)

    def append(self, rows, values):
        """Write ``values`` (presentations × neurons × steps) and then their segment rows."""
        start = self.values.shape[0]
        self.values.resize((start + len(rows), self.n_neurons, self.n_steps))
        self.values[start:] = values
        self.segment.append(rows)
        self.segment.flush()


class RunRecorder:
    """Writer of one run file; create it with `RunRecorder.create`.

    Use it as a context manager: leaving the ``with`` block normally
    closes the file with ``complete=True``, leaving it by an exception
    closes it with ``complete=False``. Nothing written is ever deleted.
    Calling ``close`` inside the block takes precedence.

    Attributes
    ----------
    path : pathlib.Path
        The run file.
    """

    def __init__(self, file, path):
        """Wrap an open, freshly created h5py file; use `create` instead."""
        self._file = file
        self.path = path
        self._writer, self._pending = None, []
        self._failed, self._lock, self._replaces = None, None, None
        self._clock = 0
        self._phase_names = list(schema.PHASE_NAMES)
        self._populations = {}
        self._states, self._n_segments = {}, 0
        for name in schema.GROUPS:
            file.create_group(name)
        self._segments = {
            name: _Appender(_appendable(file["segments"], name, dtype, SEGMENT_CHUNK))
            for name, dtype in schema.SEGMENT_DTYPES.items()
        }
        self._write_phase_names()

    # ------------------------------------------------------------------ setup

    @classmethod
    @_uninterrupted
    def create(cls, path, *, attrs, overwrite=False):
        """Create a run file and return its recorder.

        Parameters
        ----------
        path : str or os.PathLike
            File to create; its folder must exist.
        attrs : dict
            Root attributes, e.g. ``dt`` in seconds, ``seed``, ``config``
            (TOML or JSON text), software versions (JSON text), command
            line, codegen target. Values must be str, bytes, numbers,
            bools or numeric arrays; encode mappings as JSON text.
        overwrite : bool, optional
            Replace an existing file instead of refusing.

        Returns
        -------
        RunRecorder

        Raises
        ------
        FileNotFoundError
            If the folder of ``path`` does not exist.
        FileExistsError
            If ``path`` exists and ``overwrite`` is False, or (without
            ``overwrite``) ``<path>.new`` holds an interrupted overwrite of
            it; the files are left untouched.
        RunFileBusyError
            If another live process writes ``path`` or ``<path>.new``.
        RunFileWriteError
            If the file cannot be written (read-only folder, full disk).
        ValueError
            If ``path`` is a folder or not a regular file, or an attribute
            name is reserved or its value cannot be stored.

        Notes
        -----
        The file is built under a private name beside ``path`` and linked
        into place once it holds a valid, flushed skeleton: an interrupt at
        any moment leaves no file or a readable one. With ``overwrite`` the
        recorder writes `pending_path` (``<path>.new``, root attribute
        ``replaces``) and `close` with ``complete=True`` renames it over
        ``path``; an existing ``<path>.new`` is replaced (resume it with
        `resume` instead to continue it).
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot create run file {str(path)!r}: folder {str(path.parent)!r} does not exist"
            )
        if path.is_dir():
            raise RunFileError(f"{str(path)!r} is a folder; expected the path of a run file (.h5)")
        if path.exists() and not path.is_file():
            raise RunFileError(f"{str(path)!r} is not a regular file; expected the path of a run file (.h5)")
        pending = pending_path(path)
        if not overwrite:
            if path.exists():
                raise FileExistsError(
                    f"run file {str(path)!r} already exists; pass overwrite=True to replace it"
                )
            if pending.exists():
                raise FileExistsError(
                    f"{str(pending)!r} holds an interrupted overwrite of {str(path)!r}; pass overwrite=True "
                    "to continue or replace it"
                )
            target = path
        else:
            for busy in (path, pending):
                if being_written(busy):
                    raise RunFileBusyError(_busy_message(busy))
            if pending.is_dir() or (pending.exists() and not pending.is_file()):
                raise RunFileError(f"{str(pending)!r} is in the way of the new run (not a regular file); "
                                   "remove it")
            target = pending
        _check_attrs(attrs)
        return _new_file(cls, target, path, attrs, replaces=path if overwrite else None)

    @classmethod
    @_uninterrupted
    def resume(cls, path):
        """Reopen a run file to continue it from its last checkpoint (see `write_checkpoint`).

        Everything recorded after the checkpoint (the spikes and segments of an unfinished task,
        snapshots of later tasks) is cut away; recording continues from there, and the root
        attribute ``complete`` is False until the recorder is closed complete.

        Parameters
        ----------
        path : str or os.PathLike
            An unfinished run file with a checkpoint.

        Returns
        -------
        recorder : RunRecorder
        checkpoint : dict
            The state given to the last `write_checkpoint`, with ``n_segments`` and ``n_spikes``.

        Raises
        ------
        RunFileError
            As `read_checkpoint`: not a run file, a complete run, no checkpoint, a gpm run; or
            the file's datasets do not hold what its checkpoint counts (damaged file).
        RunFileBusyError
            If another live process writes the file.
        RunFileWriteError
            If the file cannot be written (read-only file or file system, full disk).

        Notes
        -----
        A file ``<name>.new`` with the root attribute ``replaces = "<name>"`` (written with
        ``overwrite``) again replaces ``<name>`` when it is closed complete.
        """
        path = Path(path)
        checkpoint = read_checkpoint(path)["checkpoint"]
        if not os.access(path, os.W_OK):
            raise RunFileWriteError(13, f"cannot write run file {str(path)!r}: the file or its file system is "
                                        "read-only; copy it to a writable folder to resume it")
        lock = _WriterLock(path)
        try:
            file = h5py.File(path, "r+", locking=False)
        except (OSError, RuntimeError) as err:
            lock.release()
            raise _write_error(path, err) from None
        try:
            recorder = cls.__new__(cls)
            recorder._file, recorder.path = file, path
            recorder._writer, recorder._pending = None, []
            recorder._failed, recorder._lock, recorder._replaces = None, lock, None
            replaces = file.attrs.get(schema.REPLACES_ATTR)
            if replaces is not None:  # honoured only while the file keeps its name <replaces>.new
                replaces = path.with_name(Path(replaces.decode() if isinstance(replaces, bytes) else str(replaces)).name)
                recorder._replaces = replaces if pending_path(replaces) == path else None
            try:
                n_segments = int(checkpoint["n_segments"])
                recorder._phase_names = json.loads(file["segments/phase"].attrs[schema.PHASE_NAMES_ATTR])
                recorder._segments = {name: _Appender.existing(file["segments"][name], n_segments)
                                      for name in schema.SEGMENT_DTYPES}
                recorder._populations = {
                    name: _Population(group, int(group.attrs["n_neurons"]),
                                      existing=(int(checkpoint["n_spikes"][name]), n_segments))
                    for name, group in file["populations"].items()}
                recorder._clock = int(file["segments/stop_step"][n_segments - 1]) if n_segments else 0
                recorder._n_segments = n_segments
                recorder._states = {}
                for pop, group in file.get(schema.STATES_GROUP, {}).items():
                    for var, member in group.items():
                        # rows are in segment order: keep those of the checkpoint's segments
                        kept = int(np.searchsorted(member["segment"][()], n_segments, side="left"))
                        kept = min(kept, member["values"].shape[0])
                        recorder._states[(pop, var)] = _State(member, member["values"].shape[1],
                                                              member["values"].shape[2], existing=kept)
            except (KeyError, ValueError, TypeError, IndexError) as err:
                detail = f"{err.args[0]!r} is missing" if isinstance(err, KeyError) and err.args else \
                    " ".join(str(err).split())
                raise RunFileError(f"{str(path)!r} cannot be resumed: its datasets do not match its checkpoint "
                                   f"({detail}; damaged file?)") from None
            last_task = int(checkpoint["task"])
            for kind in ("weights", "lateral"):
                for group in file[kind].values():
                    for name in list(group):
                        if int(group[name].attrs.get("task", -1)) > last_task:
                            del group[name]
            file.attrs["complete"] = False
            file.flush()
        except BaseException as err:
            try:
                release_failed(file)
            finally:
                lock.release()
            if isinstance(err, (OSError, RuntimeError)) and not isinstance(err, RunFileWriteError):
                raise _write_error(path, err) from None
            raise
        return recorder, checkpoint

    @_writes
    def write_checkpoint(self, **state):
        """Record, as the last write of a finished task, what a resumed run needs.

        ``state`` (JSON-serialisable) is stored together with the current number of segments
        (``n_segments``) and of spikes per population (``n_spikes``).
        """
        self._check_open()
        self._check_space(0)
        self.flush()
        state = dict(state, n_segments=len(self._segments["task"]),
                     n_spikes={name: len(pop.spike_step) for name, pop in self._populations.items()})
        group = self._file.require_group(schema.CHECKPOINT_GROUP)
        group.attrs[schema.CHECKPOINT_STATE_ATTR] = json.dumps(state)
        self._file.flush()

    @_writes
    def add_population(self, name, n_neurons, model, role):
        """Register a population whose spikes will be recorded.

        All populations must be added before the first `append_block`.

        Parameters
        ----------
        name : str
            Population name, used as group name (no ``/``).
        n_neurons : int
            Number of neurons, at least 1.
        model : str
            Neuron model description.
        role : str
            Role in the network, e.g. ``"input"`` or ``"hidden"``.

        Raises
        ------
        ValueError
            If a value is invalid, the name is taken, or blocks were
            already appended.
        """
        self._check_open()
        _check_name(name, "population name")
        if name in self._populations:
            raise ValueError(f"population {name!r} already exists")
        if self._clock:
            raise ValueError(
                f"cannot add population {name!r} after the first append_block; "
                "add all populations first"
            )
        n_neurons = _check_int(n_neurons, "n_neurons", minimum=1)
        for value, what in ((model, "model"), (role, "role")):
            if not isinstance(value, str):
                raise ValueError(f"population {name!r}: {what} must be str, got {value!r}")
        group = self._file["populations"].create_group(name)
        group.attrs.update(dict(zip(schema.POPULATION_ATTRS, (n_neurons, model, role))))
        self._populations[name] = _Population(group, n_neurons)

    @_writes
    def add_state(self, population, variable, neurons, unit, n_steps):
        """Register a state variable whose values will be recorded (`append_block` ``states``).

        Creates ``/states/<population>/<variable>`` (`schema`): an empty ``values`` dataset of
        presentations × ``len(neurons)`` × ``n_steps`` (float64, SI units), ``segment`` and ``neuron``.

        Parameters
        ----------
        population : str
            A population added with `add_population`.
        variable : str
            Variable name (no ``/``), e.g. ``"v"``.
        neurons : array_like of int
            The recorded neuron indices within the population (distinct, in range).
        unit : str
            SI unit of the stored values, e.g. ``"V"``.
        n_steps : int
            Values per presentation.

        Raises
        ------
        ValueError
            If a value is invalid or the variable is already registered.
        """
        self._check_open()
        _check_name(variable, "state variable name")
        if population not in self._populations:
            raise ValueError(f"state {variable!r}: population {population!r} is unknown; known: "
                             f"{sorted(self._populations)}")
        if (population, variable) in self._states:
            raise ValueError(f"state {variable!r} of population {population!r} already exists")
        if not isinstance(unit, str) or not unit:
            raise ValueError(f"state {variable!r} of {population!r}: unit must be a non-empty str, got {unit!r}")
        n_steps = _check_int(n_steps, "n_steps", minimum=1)
        neurons = _integer_vector(neurons, f"state {variable!r} of {population!r} neurons")
        if len(neurons) == 0 or len(np.unique(neurons)) != len(neurons):
            raise ValueError(f"state {variable!r} of {population!r}: neurons must be distinct indices, at least one")
        _check_range(neurons, 0, self._populations[population].n_neurons,
                     f"state {variable!r} of {population!r} neurons")
        group = self._file.require_group(schema.STATES_GROUP).require_group(population).create_group(variable)
        group.attrs.update({"unit": unit, "n_steps": n_steps})
        self._states[(population, variable)] = _State.create(group, neurons, n_steps)
        self._file.flush()

    # -------------------------------------------------------------- recording

    @property
    def clock(self):
        """int: Steps laid out so far on the presentation clock."""
        return self._clock

    @_writes
    def append_block(self, segments, spikes, n_steps, states=None):
        """Append a block of presentations of ``n_steps`` steps each.

        The segments of the block are laid end to end after the ones
        recorded so far: segment ``s`` of the block starts at
        ``clock + s * n_steps``. Spikes are written sorted by (segment,
        step, neuron), so the same input gives the same bytes. The whole
        block is validated in the calling thread before anything is
        written; the writing itself (sort, compression, HDF5 I/O, then a
        flush) runs on the recorder's writer thread, in submission order,
        while the caller goes on. Every other method of the recorder
        first waits for it (`wait` does so explicitly); a writer error is
        raised by the next call. The spike arrays must not be modified
        after the call.

        Parameters
        ----------
        segments : dict of str to array_like
            Columns ``task``, ``stage``, ``epoch``, ``phase``, ``trial``
            and ``label``, each 1-D with one entry per segment, or a
            scalar applied to every segment (at least one column must be
            1-D). ``phase`` holds names (str) such as ``"train"`` or
            ``"test"``; the file stores codes into the
            ``phase_names`` attribute of ``/segments/phase``, which lists
            `schema.PHASE_NAMES` first and other names as they first appear.
            ``epoch`` is -1 for evaluations.
        spikes : dict of str to tuple of three array_like
            ``spikes[pop] = (segment, local_step, neuron)``: integer
            arrays of equal length in any order, ``segment`` indexing the
            segments of this block and ``local_step`` counting from the
            start of the segment. Populations left out had no spikes.
        n_steps : int
            Steps per presentation, at least 1.
        states : dict, optional
            ``states[pop][var] = (segment, values)`` for variables registered
            with `add_state`: ``segment`` the block's segment index of each
            recorded presentation (increasing), ``values`` a float array of
            shape (len(segment), neurons, n_steps) in SI units. Written after
            the block's segments, in the same flush.

        Raises
        ------
        ValueError
            If a column is missing, unknown, of the wrong type, length or
            range, a population is unknown, or a spike's segment,
            local_step or neuron is out of range, or a state is not
            registered or of the wrong shape.
        """
        self._check_open(wait=False)
        n_steps = _check_int(n_steps, "n_steps", minimum=1)
        columns, phase_names = self._segment_columns(segments)
        n_seg = len(columns["task"])
        starts = self._clock + np.arange(n_seg, dtype=np.uint64) * np.uint64(n_steps)
        if not isinstance(spikes, Mapping):
            raise ValueError(
                f"spikes must be a dict of population -> arrays, got {type(spikes).__name__}"
            )
        unknown = sorted(set(spikes) - set(self._populations))
        if unknown:
            raise ValueError(
                f"spikes given for unknown population(s) {unknown}; "
                f"known: {sorted(self._populations)}"
            )
        checked = {name: self._checked_spikes(name, spikes.get(name), n_seg, n_steps)
                   for name in self._populations}
        checked_states = self._checked_states(states, n_seg)
        columns["start_step"] = starts
        columns["stop_step"] = starts + np.uint64(n_steps)
        self._clock += n_seg * n_steps
        self._n_segments += n_seg
        # The phase list is this thread's state (the next block's codes build on it); the writer
        # only stores it.
        new_phase_names = None
        if phase_names != self._phase_names:
            self._phase_names = new_phase_names = phase_names
        self._submit(self._write_block, columns, new_phase_names, checked, starts, checked_states)

    def _checked_states(self, states, n_seg):
        """Validate a block's states; return ``[(_State, global segment rows, values)]``."""
        if not states:
            return []
        if not isinstance(states, Mapping):
            raise ValueError(f"states must be a dict of population -> variable -> (segment, values), "
                             f"got {type(states).__name__}")
        checked = []
        for pop, variables in states.items():
            for var, given in variables.items():
                state = self._states.get((pop, var))
                if state is None:
                    raise ValueError(f"states given for {pop!r} {var!r}, not registered with add_state; registered: "
                                     f"{sorted(self._states)}")
                if len(given) != 2:
                    raise ValueError(f"states[{pop!r}][{var!r}] must be (segment, values)")
                segment = _integer_vector(given[0], f"states[{pop!r}][{var!r}] segment")
                _check_range(segment, 0, n_seg, f"states[{pop!r}][{var!r}] segment (block has {n_seg} segments)")
                if np.any(np.diff(segment) <= 0):
                    raise ValueError(f"states[{pop!r}][{var!r}] segment must be increasing")
                values = np.asarray(given[1], dtype=np.float64)
                if values.shape != (len(segment), state.n_neurons, state.n_steps):
                    raise ValueError(f"states[{pop!r}][{var!r}] values have shape {values.shape}; expected "
                                     f"{(len(segment), state.n_neurons, state.n_steps)}")
                rows = (self._n_segments + segment).astype(np.uint64)
                checked.append((state, rows, values))
        return checked

    def _write_block(self, columns, new_phase_names, checked, starts, checked_states=()):
        """Sort and write one validated block, then flush (runs on the writer thread)."""
        n_seg = len(starts)
        n_spikes = sum(len(segment) for segment, _, _ in checked.values())
        self._check_space(n_spikes * 12 + n_seg * (41 + 8 * len(checked))
                          + sum(values.nbytes + 8 * len(rows) for _, rows, values in checked_states))
        # spikes first, so no segment row ever points past written spikes
        segment_ends = {}
        for name, (segment, local_step, neuron) in checked.items():
            steps, neurons, counts = self._sorted_spikes(name, segment, local_step, neuron, n_seg, starts)
            pop = self._populations[name]
            segment_ends[name] = len(pop.spike_step) + np.cumsum(counts)
            for appender, values in ((pop.spike_step, steps), (pop.spike_neuron, neurons)):
                appender.append(values)
                appender.flush()
        self._file.flush()

        for name, ends in segment_ends.items():
            segment_end = self._populations[name].segment_end
            segment_end.append(ends)
            segment_end.flush()
        if new_phase_names is not None:
            self._write_phase_names(new_phase_names)
        for name, appender in self._segments.items():
            appender.append(columns[name])
            appender.flush()
        for state, rows, values in checked_states:   # after their segments: a state row never points past them
            state.append(rows, values)
        self._file.flush()

    def _segment_columns(self, segments):
        """Validate the given segment columns; return them and the phase names."""
        if not isinstance(segments, Mapping):
            raise ValueError(f"segments must be a dict of column -> array, got {type(segments).__name__}")
        missing = [name for name in schema.GIVEN_COLUMNS if name not in segments]
        unknown = sorted(set(segments) - set(schema.GIVEN_COLUMNS))
        if missing or unknown:
            raise ValueError(
                f"segments: missing columns {missing}, unknown columns {unknown}; "
                f"expected exactly {list(schema.GIVEN_COLUMNS)}"
            )
        arrays = {name: np.asarray(segments[name]) for name in schema.GIVEN_COLUMNS}
        lengths = {}
        for name, array in arrays.items():
            if array.ndim > 1:
                raise ValueError(f"segments[{name!r}] must be 1-D or a scalar, got shape {array.shape}")
            if array.ndim == 1:
                lengths[name] = len(array)
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"segment columns must be 1-D arrays of one common length, got lengths {lengths}"
            )
        n_seg = next(iter(lengths.values()))
        if n_seg == 0:
            raise ValueError("a block needs at least one segment, got 0")

        columns = {}
        for name, (dtype, minimum) in schema.GIVEN_COLUMNS.items():
            if name == "phase":
                continue
            array = np.broadcast_to(arrays[name], (n_seg,))
            what = f"segments[{name!r}]"
            _check_integer_dtype(array, what)
            info = np.iinfo(dtype)
            _check_range(array, info.min if minimum is None else minimum, info.max + 1, what)
            columns[name] = array.astype(dtype)
        columns["phase"], phase_names = self._phase_codes(np.broadcast_to(arrays["phase"], (n_seg,)))
        return columns, phase_names

    def _phase_codes(self, names):
        """Map phase names to codes; return codes and the extended name list."""
        if names.dtype.kind != "U":
            raise ValueError(
                f"segments['phase'] must hold phase names (str) such as {list(schema.PHASE_NAMES)}, "
                f"got dtype {names.dtype}"
            )
        phase_names = list(self._phase_names)
        unique, inverse = np.unique(names, return_inverse=True)
        for name in unique.tolist():
            if name not in phase_names:
                phase_names.append(name)
        if len(phase_names) > 256:
            raise ValueError(f"at most 256 phase names fit in uint8 codes, got {len(phase_names)}")
        unique_codes = np.array([phase_names.index(name) for name in unique.tolist()], dtype=np.uint8)
        return unique_codes[inverse], phase_names

    def _checked_spikes(self, name, given, n_seg, n_steps):
        """Validate one population's spikes; return them as (segment, local_step, neuron)."""
        if given is None:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty
        if len(given) != 3:
            raise ValueError(
                f"spikes[{name!r}] must be (segment, local_step, neuron), got {len(given)} arrays"
            )
        fields = ("segment", "local_step", "neuron")
        segment, local_step, neuron = (
            _integer_vector(values, f"spikes[{name!r}] {field}") for values, field in zip(given, fields)
        )
        if not len(segment) == len(local_step) == len(neuron):
            raise ValueError(
                f"spikes[{name!r}]: segment, local_step and neuron must have equal lengths, "
                f"got {len(segment)}, {len(local_step)}, {len(neuron)}"
            )
        n_neurons = self._populations[name].n_neurons
        _check_range(segment, 0, n_seg, f"spikes[{name!r}] segment (block has {n_seg} segments)")
        _check_range(local_step, 0, n_steps, f"spikes[{name!r}] local_step")
        _check_range(neuron, 0, n_neurons, f"spikes[{name!r}] neuron")
        return segment, local_step, neuron

    def _sorted_spikes(self, name, segment, local_step, neuron, n_seg, starts):
        """Global steps and neurons sorted by (step, neuron), and spikes per segment."""
        segment = segment.astype(np.intp, copy=False)
        steps = starts[segment] + local_step.astype(np.uint64)
        neuron = neuron.astype(np.uint32)
        counts = np.bincount(segment, minlength=n_seg)
        # One integer key (global step, then neuron): a single argsort instead of np.lexsort on two keys.
        # Input already in this order (as `SimNetwork` delivers it) is only checked, not sorted.
        key = steps * np.uint64(self._populations[name].n_neurons) + neuron.astype(np.uint64)
        if np.all(key[1:] >= key[:-1]):
            return steps, neuron, counts
        order = np.argsort(key, kind="stable")
        return steps[order], neuron[order], counts

    # ------------------------------------------------------------ writer thread

    def _submit(self, job, *args):
        """Run ``job(*args)`` on the writer thread, after every job submitted before it.

        Writing a block (sorting, compressing, HDF5 I/O) takes much less time than the simulation
        that produced it; on its own thread it overlaps with the next simulation, mostly on another
        core (numpy's sort and HDF5 run without holding the GIL). A job that fails makes the next
        call of this recorder raise its error.
        """
        self._raise_failed()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hlopsim-recorder")
        self._pending.append(self._writer.submit(job, *args))

    def _raise_failed(self):
        """Re-raise the error of a finished writer job, if any; forget finished jobs."""
        still = []
        for future in self._pending:
            if future.done():
                future.result()
            else:
                still.append(future)
        self._pending = still

    @_writes
    def wait(self):
        """Block until every submitted block is written; re-raise a writer error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _write_phase_names(self, names=None):
        names = self._phase_names if names is None else names
        self._file["segments/phase"].attrs[schema.PHASE_NAMES_ATTR] = json.dumps(names)

    # -------------------------------------------------------------- snapshots

    @_writes
    def write_task(self, index, name, **arrays):
        """Write the description of task ``index`` to ``/tasks/<index>``.

        Parameters
        ----------
        index : int
            Task index, at least 0.
        name : str
            Task name.
        **arrays : array_like
            Datasets to store, e.g. ``permutation=...``. Numeric, bool or
            str arrays.

        Raises
        ------
        ValueError
            If a value is invalid or the task was already written.
        """
        self._check_open()
        self._check_space(sum(np.asarray(a).nbytes for a in arrays.values()))
        index = _check_int(index, "task index", minimum=0)
        if not isinstance(name, str):
            raise ValueError(f"task {index}: name must be str, got {name!r}")
        if str(index) in self._file["tasks"]:
            raise ValueError(f"task {index} was already written")
        arrays = {
            key: _storable_array(value, f"task {index} array {key!r}") for key, value in arrays.items()
        }
        group = self._file["tasks"].create_group(str(index))
        group.attrs["name"] = name
        for key, array in arrays.items():
            _write_array(group, key, array)
        self._file.flush()

    @_writes
    def write_weights(self, name, task, array):
        """Write a weight snapshot taken after training ``task``.

        Stored as ``/weights/<name>/after_task_<task>`` (float64) with
        attribute ``task``.

        Parameters
        ----------
        name : str
            Weight name, e.g. the synapse group (no ``/``).
        task : int
            Index of the task just trained, at least 0.
        array : array_like
            The weights.

        Raises
        ------
        ValueError
            If a value is invalid or this snapshot was already written.
        """
        self._check_open()
        _check_name(name, "weight name")
        task = _check_int(task, "task", minimum=0)
        array = _float_array(array, f"weights {name!r}")
        self._check_space(array.nbytes)
        group = self._file["weights"].require_group(name)
        key = f"{schema.WEIGHTS_PREFIX}{task}"
        if key in group:
            raise ValueError(f"weights {name!r} after task {task} were already written")
        _write_array(group, key, array).attrs["task"] = task
        self._file.flush()

    @_writes
    def write_lateral(self, layer, task, H, frozen_mask):
        """Write the lateral (HLOP) weights of ``layer`` after training ``task``.

        Stored as ``/lateral/<layer>/H_after_task_<task>`` (float64, attrs
        ``task`` and ``n_neurons`` = ``H.shape[0]``, the number of
        lateral neurons at that time) and ``frozen_after_task_<task>``
        (bool, attr ``task``).

        Parameters
        ----------
        layer : str
            Layer name (no ``/``).
        task : int
            Index of the task just trained, at least 0.
        H : array_like
            Lateral weights, one row per lateral neuron.
        frozen_mask : array_like of bool
            Which weights or neurons are frozen.

        Raises
        ------
        ValueError
            If a value is invalid or this snapshot was already written.
        """
        self._check_open()
        _check_name(layer, "layer name")
        task = _check_int(task, "task", minimum=0)
        H = _float_array(H, f"lateral {layer!r} H")
        self._check_space(2 * H.nbytes)
        if H.ndim == 0:
            raise ValueError(f"lateral {layer!r} H must have at least one dimension, got a scalar")
        frozen_mask = np.asarray(frozen_mask)
        if frozen_mask.dtype != np.bool_:
            raise ValueError(
                f"lateral {layer!r} frozen_mask must be a bool array, got dtype {frozen_mask.dtype}"
            )
        group = self._file["lateral"].require_group(layer)
        h_key, mask_key = f"{schema.LATERAL_H_PREFIX}{task}", f"{schema.LATERAL_FROZEN_PREFIX}{task}"
        if h_key in group or mask_key in group:
            raise ValueError(f"lateral {layer!r} after task {task} was already written")
        _write_array(group, h_key, H).attrs.update({"task": task, "n_neurons": H.shape[0]})
        _write_array(group, mask_key, frozen_mask).attrs["task"] = task
        self._file.flush()

    @_writes
    def write_metrics(self, R, summary, timings=None):
        """Write (or overwrite) the accuracy matrix and its summary.

        Attribute ``tasks_evaluated`` of ``/metrics`` is ``k + 1`` for the last row ``k`` of
        ``R`` with a finite entry (0 when there is none); attributes ``ACC``, ``BWT`` and
        ``forgetting`` are the values of ``summary``, which the caller computes on the filled
        block ``R[:k+1, :k+1]`` (as if the run had ended after task ``k``) with
        `hlopsim.protocols.metrics.summarize`. The writer stores the summary rather than
        computing it so that the simulation layer does not depend on the protocol layer.

        Parameters
        ----------
        R : array_like, shape (N, N)
            Accuracy matrix, ``R[i, j]`` = accuracy on task ``j`` after training task ``i``
            (percent), NaN where not measured yet. Stored as float64.
        summary : mapping
            Exactly the keys ``"ACC"``, ``"BWT"`` and ``"forgetting"`` with real numbers (same
            unit as ``R``; NaN when nothing was evaluated); stored as float64 attributes.
        timings : dict of str to array_like, optional
            Per-task timing arrays, stored as ``/metrics/<name>`` (float64).

        Raises
        ------
        ValueError
            If ``R`` is not square 2-D, ``summary`` lacks a key, has an extra one or a value
            that is not a real number, or a timing is invalid.
        """
        self._check_open()
        R = _float_array(R, "accuracy matrix")
        if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
            raise ValueError(f"accuracy matrix must be square (N, N) with N >= 1, got shape {R.shape}")
        summary = _checked_summary(summary)
        timings = {} if timings is None else dict(timings)
        for key in timings:
            _check_name(key, "timing name")
            if key == schema.ACCURACY_MATRIX:
                raise ValueError(f"timing name {schema.ACCURACY_MATRIX!r} is reserved for the accuracy matrix")
        timings = {key: _float_array(value, f"timing {key!r}") for key, value in timings.items()}
        self._check_space(R.nbytes + sum(array.nbytes for array in timings.values()))
        n_done = filled_tasks(R)

        group = self._file["metrics"]
        _replace_array(group, schema.ACCURACY_MATRIX, R)
        group.attrs.update({**summary, schema.TASKS_EVALUATED_ATTR: n_done})
        for key, array in timings.items():
            _replace_array(group, key, array)
        self._file.flush()

    @_writes
    def set_attrs(self, **attrs):
        """Set root attributes (same rules as ``attrs`` of `create`).

        Raises
        ------
        ValueError
            If a name is reserved or a value cannot be stored.
        """
        self._check_open()
        _check_attrs(attrs)
        self._check_space(0)
        self._file.attrs.update(attrs)
        self._file.flush()

    # ---------------------------------------------------------------- closing

    @_writes
    def flush(self):
        """Write all buffered data (partial last chunks) and flush the file."""
        self._check_open()
        for pop in self._populations.values():
            for appender in (pop.spike_step, pop.spike_neuron, pop.segment_end):
                appender.flush()
        for appender in self._segments.values():
            appender.flush()
        for state in self._states.values():
            state.segment.flush()
        self._file.flush()

    @_uninterrupted
    def close(self, complete):
        """Flush, set the root attribute ``complete`` and close the file.

        Closing a closed recorder does nothing.

        Parameters
        ----------
        complete : bool
            Whether the run finished.

        Raises
        ------
        ValueError
            If ``complete`` is not a bool.
        """
        if not isinstance(complete, (bool, np.bool_)):
            raise ValueError(f"complete must be a bool, got {complete!r}")
        if self._file is None:
            return
        error = None
        try:
            if self._failed is None:  # after a failed write nothing more is written: keep what was flushed
                try:
                    self.flush()
                    self._set_complete(bool(complete))
                except RunFileWriteError as err:
                    error = err
        finally:
            try:
                if self._writer is not None:
                    self._writer.shutdown(wait=True)     # a failed flush may leave jobs running
                    self._writer = None
                if self._failed is None:
                    try:
                        self._file.close()                # everything was flushed: nothing left to fail
                    except (OSError, RuntimeError) as err:
                        error = error or _write_error(self.path, err)
                else:
                    release_failed(self._file)
                self._file = None
                if error is None and self._failed is None and complete and self._replaces is not None:
                    error = self._replace_target()
            finally:
                if self._lock is not None:
                    self._lock.release()
        if error is not None:
            raise error

    @_writes
    def _set_complete(self, complete):
        self._file.attrs["complete"] = complete
        if complete and schema.REPLACES_ATTR in self._file.attrs:
            del self._file.attrs[schema.REPLACES_ATTR]
        self._file.flush()

    def _replace_target(self):
        """Rename the finished run over the file it replaces; return the error, if any."""
        if being_written(self._replaces):
            return RunFileBusyError(f"{str(self._replaces)!r} is being written by another running process; "
                                    f"the finished run is kept in {str(self.path)!r}")
        try:
            os.replace(self.path, self._replaces)
        except OSError as err:
            return RunFileWriteError(err.errno, f"cannot replace {str(self._replaces)!r} by the finished run "
                                                f"{str(self.path)!r}: {_reason(err)}")
        self.path = self._replaces
        return None

    @property
    def closed(self):
        """bool: Whether the file was closed."""
        return self._file is None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.close(complete=exc_type is None)
        return False

    def _check_space(self, n_bytes):
        """Refuse a write of about ``n_bytes`` (uncompressed) that the file system has no room for.

        Checked before anything of the write reaches the file, with `SPACE_MARGIN` for HDF5's own
        bookkeeping: a write that fails half-way on a full disk can leave HDF5's index of the file
        inconsistent (the file still reads, but cannot be continued), one refused beforehand leaves
        the file exactly as its last flush did, so it resumes once there is space.
        """
        try:
            stat = os.statvfs(self.path.parent)
        except (OSError, AttributeError):  # no statvfs: rely on the write's own error
            return
        free = stat.f_bavail * stat.f_frsize
        needed = int(n_bytes) + SPACE_MARGIN
        if free < needed:
            raise RunFileWriteError(28, f"cannot write run file {str(self.path)!r}: No space left on device "
                                        f"(errno 28; about {needed / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free)")

    def _check_open(self, wait=True):
        """Refuse a closed file; unless ``wait`` is False, let pending block writes finish first."""
        if self._file is None:
            raise ValueError(f"run file {str(self.path)!r} is closed")
        if wait:
            self.wait()


# -------------------------------------------------------------------- helpers


def _new_file(cls, target, path, attrs, replaces):
    """Create the run file ``target`` as `RunRecorder.create` describes: a private file beside it
    gets the skeleton (root attributes, groups) and the writer's lock, is flushed, and is then
    linked to ``target`` and unlinked. On any error or interrupt the private file is removed; so
    ``target`` either does not exist or is a flushed, valid run file."""
    scratch = target.with_name(f".{target.name}.{os.getpid()}.creating")
    file = lock = None
    try:
        scratch.unlink(missing_ok=True)
        # The default (earliest) file format: a file written with libver="latest" cannot be
        # opened after its writer was killed until h5clear resets its consistency flags.
        file = h5py.File(scratch, "w-", locking=False)
        lock = _WriterLock(scratch)
        file.attrs["format"] = schema.FORMAT
        file.attrs["format_version"] = schema.FORMAT_VERSION
        file.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        file.attrs["complete"] = False
        file.attrs.update(attrs)
        if replaces is not None:
            file.attrs[schema.REPLACES_ATTR] = replaces.name
        recorder = cls(file, target)
        recorder._lock, recorder._replaces = lock, replaces
        file.flush()
        if replaces is not None:
            target.unlink(missing_ok=True)  # a stale <path>.new that nobody writes (checked by the caller)
        _publish(scratch, target)
    except BaseException as err:
        if file is not None:
            release_failed(file)
        if lock is not None:
            lock.release()
        scratch.unlink(missing_ok=True)
        if isinstance(err, (OSError, RuntimeError)) and not isinstance(err, (RunFileWriteError, FileExistsError)):
            raise _write_error(path, err) from None
        raise
    return recorder


def release_failed(file):
    """Close an h5py file after a failed write without writing to it again.

    HDF5 cannot close a file whose buffered metadata it cannot write (a full disk): the close
    fails, the library keeps the file open, and the process crashes when the library shuts
    down. Pointing the file's descriptor at ``/dev/null`` first lets the close succeed; the file
    on disk keeps what the last successful flush wrote (the unwritable remainder is dropped).
    """
    try:
        fd = file.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    except Exception:  # noqa: BLE001 (already closed, or another driver: close as is)
        pass
    try:
        file.close()
    except Exception:  # noqa: BLE001 (nothing more can be done for this file)
        pass


def _publish(scratch, target):
    """Give the flushed skeleton ``scratch`` the name ``target`` without ever replacing a file: a
    hard link fails if ``target`` appeared meanwhile; on file systems without hard links, a rename
    after a last check."""
    try:
        os.link(scratch, target)
    except FileExistsError:
        raise FileExistsError(f"run file {str(target)!r} appeared while this run was creating it "
                              "(another run?); choose another file") from None
    except OSError:
        if target.exists():
            raise FileExistsError(f"run file {str(target)!r} appeared while this run was creating it") from None
        os.rename(scratch, target)
        return
    os.unlink(scratch)


def _appendable(group, name, dtype, chunk):
    """Create an empty, resizable, compressed 1-D dataset."""
    return group.create_dataset(
        name,
        shape=(0,),
        maxshape=(None,),
        dtype=dtype,
        chunks=(chunk,),
        compression="lzf",
        shuffle=True,
        track_times=False,
    )


def _write_array(group, name, array):
    """Create dataset ``name`` holding ``array`` (compressed if numeric and non-empty)."""
    if array.dtype.kind == "U":
        return group.create_dataset(
            name, data=array.astype(object), dtype=h5py.string_dtype(), track_times=False
        )
    compress = array.ndim > 0 and array.size > 0
    return group.create_dataset(
        name,
        data=array,
        compression="lzf" if compress else None,
        shuffle=compress,
        track_times=False,
    )


def _replace_array(group, name, array):
    """Overwrite dataset ``name`` with ``array``, in place when shape and dtype match."""
    if name in group:
        dataset = group[name]
        if dataset.shape == array.shape and dataset.dtype == array.dtype:
            dataset[...] = array
            return dataset
        del group[name]
    return group.create_dataset(name, data=array, track_times=False)


def _check_name(name, what):
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{what} must be a non-empty str without '/', got {name!r}")


def _check_int(value, what, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_attrs(attrs):
    """Refuse reserved attribute names and values HDF5 attributes cannot hold."""
    if not isinstance(attrs, Mapping):
        raise ValueError(f"attrs must be a dict, got {type(attrs).__name__}")
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"attribute names must be non-empty str, got {key!r}")
        if key in schema.RESERVED_ATTRS:
            raise ValueError(f"attribute {key!r} is set by the recorder; reserved: {list(schema.RESERVED_ATTRS)}")
        kind = None if value is None or isinstance(value, Mapping) else np.asarray(value).dtype.kind
        if kind not in ("b", "i", "u", "f", "U", "S"):
            raise ValueError(
                f"attribute {key!r}: cannot store {value!r}; expected str, bytes, number, bool "
                "or a numeric array (encode mappings as JSON text)"
            )


def _checked_summary(summary):
    """``summary`` as ``{name: float}`` in the order of `schema.METRIC_ATTRS`, or raise ValueError."""
    expected = list(schema.METRIC_ATTRS)
    if not isinstance(summary, Mapping) or sorted(summary) != sorted(expected):
        got = sorted(summary) if isinstance(summary, Mapping) else type(summary).__name__
        raise ValueError(f"summary must be a dict with exactly the keys {expected} "
                         f"(protocols.metrics.summarize of the filled accuracy matrix), got {got}")
    checked = {}
    for name in expected:
        value = summary[name]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
            raise ValueError(f"summary[{name!r}] must be a real number, got {value!r}")
        checked[name] = float(value)
    return checked


def _check_integer_dtype(array, what):
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integers, got dtype {array.dtype}")


def _integer_vector(values, what):
    """Return ``values`` as a 1-D integer array (an empty input may have any dtype)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        return array.astype(np.int64)
    _check_integer_dtype(array, what)
    return array


def _check_range(array, low, high, what):
    """Raise ValueError unless ``low <= array < high`` everywhere."""
    if array.size == 0:
        return
    smallest, largest = int(array.min()), int(array.max())
    if smallest < low or largest >= high:
        position = int(np.argmin(array)) if smallest < low else int(np.argmax(array))
        value = smallest if smallest < low else largest
        raise ValueError(
            f"{what}: value {value} at position {position} is out of range, "
            f"expected {low} <= value < {high}"
        )


def _float_array(values, what):
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    return array.astype(np.float64)


def _storable_array(values, what):
    array = np.asarray(values)
    if array.dtype.kind not in "biufU":
        raise ValueError(f"{what} must be a numeric, bool or str array, got dtype {array.dtype}")
    return array
