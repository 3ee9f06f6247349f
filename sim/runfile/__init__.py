"""The run file: one HDF5 file per run holding spikes, presentations, snapshots and accuracies.

- `schema`: the format name and version, group and dataset names, segment columns and dtypes,
  defined once and used by both sides.
- `RunRecorder` (`writer`): writes a run file while the simulation runs, and reopens one to
  resume it; `pending_path` (where an overwriting run is written until it is complete) and
  `being_written` (whether a live process writes a file); its failures are `RunFileWriteError`
  (an ``OSError``) and `RunFileBusyError` (another process writes the file).
- `RunFile`, `open_run` (`reader`): read a run file as numpy arrays; `read_checkpoint`: the
  configuration, method and checkpoint a resumed run starts from. Every problem raises
  `RunFileError` (a ``ValueError``) with a one-line message.

The package reads and writes HDF5 with h5py only: it imports neither Brian2 nor
`hlopsim.protocols`.
"""
from hlopsim.sim.runfile.reader import RunFile, RunFileError, open_run, read_checkpoint
from hlopsim.sim.runfile.writer import RunFileBusyError, RunFileWriteError, RunRecorder, being_written, pending_path

__all__ = ["RunRecorder", "RunFile", "open_run", "RunFileError", "read_checkpoint", "RunFileBusyError",
           "RunFileWriteError", "being_written", "pending_path"]
