"""Layout of the run file (format ``"hlopsim-run"``), defined once for the writer and the reader.

One HDF5 file per run. The simulator presents ``B`` samples in parallel, but the run file lays
every presentation (a *segment*) end to end on one virtual *presentation clock* of ``dt``
seconds per step: segment ``s`` occupies the integer steps ``[start_step[s], stop_step[s])``.
Layout::

    /                     attrs format, format_version, created, complete, plus the attrs
                          given to RunRecorder.create (dt in s, n_steps_per_presentation,
                          protocol, method, seed, config as JSON text, ...)
    /populations/<pop>/   attrs n_neurons, model, role
        spike_step        uint64, global step of each spike
        spike_neuron      uint32, neuron index within the population
        segment_end       uint64, one entry per segment: spikes of segment s are
                          [segment_end[s-1], segment_end[s])
    /segments/            task, stage, epoch (int32), phase (uint8, attr phase_names),
                          trial (int64), label (int32), start_step, stop_step (uint64);
                          equal lengths
    /tasks/<i>/           attr name; the arrays given to write_task
    /weights/<name>/      after_task_<t> (float64), attr task
    /lateral/<layer>/     H_after_task_<t> (attrs task, n_neurons),
                          frozen_after_task_<t> (bool, attr task)
    /metrics/             accuracy_matrix (float64, %), timing datasets; attrs ACC, BWT,
                          forgetting, tasks_evaluated
    /checkpoint           attr state: JSON text of what a resumed run needs (written after
                          every finished task)
    /states/<pop>/<var>/  only in runs that record state variables (`StateRecording`): attrs
                          unit (SI, e.g. "V", "V/s", "Hz"; "1" dimensionless), n_steps
        values            float64, (presentations, neurons, n_steps): the variable at the start
                          of every step of each recorded presentation, in SI units
        segment           uint64, one per recorded presentation: its row of /segments
        neuron            uint32, the recorded neuron indices within the population

A run started with ``overwrite`` is written as ``<file>.new`` (root attribute ``replaces`` names
``<file>``) and renamed over ``<file>`` once complete.

Only names and dtypes live here; the writer (`writer.RunRecorder`) and the reader
(`reader.RunFile`) both take them from this module, so the two cannot drift apart.
"""
from __future__ import annotations

import numpy as np

FORMAT = "hlopsim-run"
"""Value of the root attribute ``format``."""
FORMAT_VERSION = 1
"""Value of the root attribute ``format_version``; readers refuse larger values."""

RESERVED_ATTRS = ("format", "format_version", "created", "complete", "replaces")
"""Root attributes set by the writer itself, refused in the attrs given to it."""
REPLACES_ATTR = "replaces"
"""Root attribute of a run written with ``overwrite``: the name of the file (in the same folder) it
replaces once it is complete; removed when it does."""
PENDING_SUFFIX = ".new"
"""A run written with ``overwrite`` is written to ``<file><PENDING_SUFFIX>`` beside ``<file>`` and
renamed over it when complete, so the old run survives until the new one has finished."""
REQUIRED_READ_ATTRS = {"dt": "the time step in seconds",
                       "n_steps_per_presentation": "steps per presentation"}
"""Root attributes a reader needs, with what each means (for error messages)."""

GROUPS = ("populations", "segments", "tasks", "weights", "lateral", "metrics")
"""Groups created with every run file."""

PHASE_NAMES = ("train", "test")
"""Phase names with fixed codes 0, 1; other names get the next codes."""
PHASE_NAMES_ATTR = "phase_names"
"""Attribute of ``/segments/phase``: JSON list of the phase names, indexed by code."""

GIVEN_COLUMNS = {
    "task": (np.int32, 0),
    "stage": (np.int32, 0),
    "epoch": (np.int32, -1),
    "phase": (np.uint8, None),
    "trial": (np.int64, 0),
    "label": (np.int32, None),
}
"""Segment columns given by the caller: column -> (stored dtype, smallest allowed value or None
for the dtype's minimum). ``epoch`` is -1 for evaluations."""
SEGMENT_DTYPES = {
    **{name: dtype for name, (dtype, _) in GIVEN_COLUMNS.items()},
    "start_step": np.uint64,
    "stop_step": np.uint64,
}
"""Every column of ``/segments`` with its dtype, in storage order."""
SEGMENT_COLUMNS = tuple(SEGMENT_DTYPES)
"""Names of the columns of ``/segments``."""

POPULATION_DTYPES = {"spike_step": np.uint64, "spike_neuron": np.uint32, "segment_end": np.uint64}
"""Datasets of every ``/populations/<pop>`` group with their dtypes."""
POPULATION_ATTRS = ("n_neurons", "model", "role")
"""Attributes of every ``/populations/<pop>`` group."""

ACCURACY_MATRIX = "accuracy_matrix"
"""Dataset of ``/metrics``: ``R[i, j]`` = % correct on task ``j`` after training task ``i``."""
METRIC_ATTRS = ("ACC", "BWT", "forgetting")
"""Attributes of ``/metrics`` holding the summary of the filled part of the accuracy matrix."""
TASKS_EVALUATED_ATTR = "tasks_evaluated"
"""Attribute of ``/metrics``: number of leading rows of the accuracy matrix that were filled."""

CHECKPOINT_GROUP = "checkpoint"
"""Group written after every finished task."""
CHECKPOINT_STATE_ATTR = "state"
"""Attribute of the checkpoint group: JSON text of the resume state."""

WEIGHTS_PREFIX = "after_task_"
"""``/weights/<name>/<WEIGHTS_PREFIX><task>``."""
LATERAL_H_PREFIX = "H_after_task_"
"""``/lateral/<layer>/<LATERAL_H_PREFIX><task>``."""
LATERAL_FROZEN_PREFIX = "frozen_after_task_"
"""``/lateral/<layer>/<LATERAL_FROZEN_PREFIX><task>``."""

STATES_GROUP = "states"
"""Group of recorded state variables, ``/states/<pop>/<var>``; created only when a run records states
(files without it are read as recording none)."""
STATE_DTYPES = {"values": np.float64, "segment": np.uint64, "neuron": np.uint32}
"""Datasets of every ``/states/<pop>/<var>`` group with their dtypes."""
STATE_ATTRS = ("unit", "n_steps")
"""Attributes of every ``/states/<pop>/<var>`` group."""
