"""Tests of the run-file writer (`hlopsim.sim.runfile.RunRecorder`) and `read_checkpoint` on real
HDF5 files, read back with plain h5py."""

import json
from pathlib import Path
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from hlopsim.protocols.metrics import summarize
from hlopsim.sim.runfile import RunFileError, RunRecorder, read_checkpoint
from hlopsim.sim.runfile import writer
from hlopsim.sim.runfile.schema import FORMAT, FORMAT_VERSION

PROJECT = Path(__file__).resolve().parents[1]
POPULATIONS = {"input": 20, "hidden": 5}
ATTRS = {"dt": 1e-3, "seed": 7, "config": '{"lr": 0.1}', "command": "hlopsim run x"}


def make_block(rng, n_seg, n_steps, n_spikes, task=0, phase="train"):
    """Segments and unsorted spikes of one block (hidden is silent if n_spikes["hidden"] == 0)."""
    segments = {
        "task": np.full(n_seg, task),
        "stage": task,
        "epoch": 0 if phase == "train" else -1,
        "phase": np.array([phase] * n_seg),
        "trial": np.arange(n_seg) * 3,
        "label": rng.integers(0, 10, n_seg),
    }
    spikes = {}
    for name, n_neurons in POPULATIONS.items():
        if n_spikes[name]:
            spikes[name] = (
                rng.integers(0, n_seg, n_spikes[name]),
                rng.integers(0, n_steps, n_spikes[name]),
                rng.integers(0, n_neurons, n_spikes[name]).astype(np.uint16),
            )
    return segments, spikes, n_steps


def blocks(seed=0):
    rng = np.random.default_rng(seed)
    return [
        make_block(rng, 3, 10, {"input": 300, "hidden": 40}),
        make_block(rng, 5, 4, {"input": 2000, "hidden": 0}, task=1, phase="test"),
        make_block(rng, 1, 7, {"input": 5, "hidden": 1}, task=1),
    ]


def write_run(path, run_blocks, complete=True):
    with RunRecorder.create(path, attrs=ATTRS) as rec:
        for name, n in POPULATIONS.items():
            rec.add_population(name, n, model="LIF", role=name)
        for block in run_blocks:
            rec.append_block(*block)
        rec.close(complete=complete)


def test_schema_round_trip(tmp_path, monkeypatch):
    # small chunks so that blocks cross many chunk boundaries
    monkeypatch.setattr(writer, "SPIKE_CHUNK", 64)
    monkeypatch.setattr(writer, "SEGMENT_CHUNK", 2)
    path = tmp_path / "run.h5"
    run_blocks = blocks()
    write_run(path, run_blocks)

    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert bool(f.attrs["complete"]) is True
        assert "T" in f.attrs["created"]
        for key, value in ATTRS.items():
            assert f.attrs[key] == value
        for group in ("populations", "segments", "tasks", "weights", "lateral", "metrics"):
            assert group in f

        seg = {name: f["segments"][name][:] for name in f["segments"]}
        dtypes = {"task": "i4", "stage": "i4", "epoch": "i4", "phase": "u1",
                  "trial": "i8", "label": "i4", "start_step": "u8", "stop_step": "u8"}
        assert {name: ds.dtype for name, ds in seg.items()} == {k: np.dtype(v) for k, v in dtypes.items()}
        assert {len(column) for column in seg.values()} == {9}
        assert f["segments"]["task"].maxshape == (None,)
        assert json.loads(f["segments/phase"].attrs["phase_names"]) == ["train", "test"]
        np.testing.assert_array_equal(seg["phase"], [0] * 3 + [1] * 5 + [0])
        np.testing.assert_array_equal(seg["epoch"], [0] * 3 + [-1] * 5 + [0])
        np.testing.assert_array_equal(seg["stage"], [0] * 3 + [1] * 6)
        np.testing.assert_array_equal(seg["trial"], [0, 3, 6, 0, 3, 6, 9, 12, 0])
        # contiguous presentation clock
        n_steps = np.repeat([10, 4, 7], [3, 5, 1])
        assert seg["start_step"][0] == 0
        np.testing.assert_array_equal(seg["stop_step"] - seg["start_step"], n_steps)
        np.testing.assert_array_equal(seg["start_step"][1:], seg["stop_step"][:-1])

        for name, n_neurons in POPULATIONS.items():
            group = f["populations"][name]
            assert dict(group.attrs) == {"n_neurons": n_neurons, "model": "LIF", "role": name}
            for key, dtype in (("spike_step", "u8"), ("spike_neuron", "u4"), ("segment_end", "u8")):
                assert group[key].dtype == np.dtype(dtype)
                assert group[key].compression == "lzf" and group[key].shuffle
                assert group[key].maxshape == (None,)
            steps, neurons, ends = (group[key][:] for key in ("spike_step", "spike_neuron", "segment_end"))
            assert len(ends) == 9 and ends[-1] == len(steps) == len(neurons)

            first_segment = 0
            for segments, spikes, _ in run_blocks:
                given_seg, given_step, given_neuron = spikes.get(name, ([], [], []))
                for s in range(len(segments["label"])):
                    g = first_segment + s
                    lo = ends[g - 1] if g else 0
                    got_steps, got_neurons = steps[lo:ends[g]], neurons[lo:ends[g]]
                    mine = np.asarray(given_seg) == s
                    want = sorted(zip(np.asarray(given_step)[mine] + seg["start_step"][g],
                                      np.asarray(given_neuron)[mine]))
                    assert list(zip(got_steps, got_neurons)) == want
                    assert np.all((got_steps >= seg["start_step"][g]) & (got_steps < seg["stop_step"][g]))
                    np.testing.assert_array_equal(
                        np.bincount(got_neurons, minlength=n_neurons),
                        np.bincount(np.asarray(given_neuron, dtype=int)[mine], minlength=n_neurons),
                    )
                first_segment += len(segments["label"])


def test_many_spikes_default_chunks(tmp_path):
    # more than two default chunks, in blocks that end mid-chunk
    rng = np.random.default_rng(1)
    run_blocks = [make_block(rng, 4, 1000, {"input": n, "hidden": 3}) for n in (50_000, 90_000, 10)]
    path = tmp_path / "run.h5"
    write_run(path, run_blocks)
    with h5py.File(path, "r") as f:
        steps = f["populations/input/spike_step"][:]
        neurons = f["populations/input/spike_neuron"][:]
        assert f["populations/input/spike_step"].chunks == (writer.SPIKE_CHUNK,)
    assert len(steps) == 140_010
    order = np.lexsort((neurons, steps))
    np.testing.assert_array_equal(order, np.arange(len(steps)))
    offsets = np.repeat([0, 4000, 8000], [50_000, 90_000, 10])
    given_steps = np.concatenate([b[1]["input"][0] * 1000 + b[1]["input"][1] for b in run_blocks])
    np.testing.assert_array_equal(steps, np.sort(given_steps + offsets))


def raw_datasets(path):
    """Map dataset path -> (dtype, shape, raw bytes of every stored chunk)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                chunks = []
                if obj.chunks:
                    for i in range(obj.id.get_num_chunks()):
                        info = obj.id.get_chunk_info(i)
                        chunks.append(obj.id.read_direct_chunk(info.chunk_offset))
                out[name] = (obj.dtype, obj.shape, obj[()].tobytes(), chunks)
        f.visititems(visit)
    return out


def test_same_input_gives_identical_bytes(tmp_path):
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    write_run(first, blocks(seed=3))
    # same spikes, given in another order
    shuffled = []
    rng = np.random.default_rng(99)
    for segments, spikes, n_steps in blocks(seed=3):
        spikes = {k: tuple(a[p] for a in v) for k, v in spikes.items()
                  for p in [rng.permutation(len(v[0]))]}
        shuffled.append((segments, spikes, n_steps))
    write_run(second, shuffled)
    a, b = raw_datasets(first), raw_datasets(second)
    assert a.keys() == b.keys() and "populations/input/spike_step" in a
    for name in a:
        assert a[name] == b[name], name


def test_closed_incomplete_is_readable(tmp_path):
    path = tmp_path / "run.h5"
    write_run(path, blocks()[:2], complete=False)
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) is False
        assert len(f["segments/task"]) == 8


def test_exception_in_with_block_keeps_data_and_marks_incomplete(tmp_path):
    path = tmp_path / "run.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with RunRecorder.create(path, attrs={}) as rec:
            for name, n in POPULATIONS.items():
                rec.add_population(name, n, "LIF", name)
            rec.append_block(*blocks()[0])
            raise RuntimeError("boom")
    assert rec.closed
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) is False
        assert len(f["segments/task"]) == 3
        assert f["populations/input/segment_end"][-1] == 300


def test_killed_writer_leaves_completed_blocks(tmp_path):
    path = tmp_path / "run.h5"
    script = textwrap.dedent(f"""
        import os, signal, sys
        import numpy as np
        sys.path.insert(0, {str(PROJECT)!r})
        from hlopsim.sim.runfile import RunRecorder
        rec = RunRecorder.create({str(path)!r}, attrs={{"seed": 1}})
        rec.add_population("input", 20, "LIF", "input")
        n = 0
        for n_seg, n_spikes in ((3, 70_000), (5, 10)):
            rng = np.random.default_rng(n_seg)
            segments = dict(task=0, stage=0, epoch=0, phase="train",
                            trial=np.arange(n_seg), label=np.zeros(n_seg, int))
            spikes = {{"input": (rng.integers(0, n_seg, n_spikes),
                                rng.integers(0, 10, n_spikes),
                                rng.integers(0, 20, n_spikes))}}
            rec.append_block(segments, spikes, 10)
        rec.wait()                      # both blocks are on disk (append_block returns earlier)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) is False
        assert f.attrs["seed"] == 1
        assert {len(f["segments"][name]) for name in f["segments"]} == {8}
        assert f["segments/stop_step"][-1] == 80
        ends = f["populations/input/segment_end"][:]
        assert len(ends) == 8
        assert ends[-1] == len(f["populations/input/spike_step"]) == 70_010
        assert np.all(np.diff(f["populations/input/spike_step"][:].astype(np.int64)) >= 0)


@pytest.mark.parametrize("delay", [0.05, 0.6, 0.8])
def test_writer_killed_mid_block_leaves_a_consistent_file(tmp_path, delay):
    """Killed while the writer thread is busy with a large block (sorting it, or writing its chunks,
    depending on the delay and the machine): the file opens and agrees with itself."""
    path = tmp_path / "run.h5"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import numpy as np
        sys.path.insert(0, {str(PROJECT)!r})
        from hlopsim.sim.runfile import RunRecorder
        rec = RunRecorder.create({str(path)!r}, attrs={{"seed": 1}})
        rec.add_population("input", 20, "LIF", "input")
        rng = np.random.default_rng(0)
        for n_seg, n_spikes in ((2, 1000), (400, 4_000_000)):
            segments = dict(task=0, stage=0, epoch=0, phase="train",
                            trial=np.arange(n_seg), label=np.zeros(n_seg, int))
            spikes = {{"input": (rng.integers(0, n_seg, n_spikes),
                                rng.integers(0, 10, n_spikes),
                                rng.integers(0, 20, n_spikes))}}
            rec.append_block(segments, spikes, 10)
            if n_seg == 2:
                rec.wait()
        time.sleep({delay})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    with h5py.File(path, "r") as f:
        n_seg = len(f["segments/task"])
        assert {len(f["segments"][name]) for name in f["segments"]} == {n_seg}
        assert n_seg in (2, 402)
        ends = f["populations/input/segment_end"][:n_seg]
        assert len(f["populations/input/spike_step"]) >= ends[-1] == (1000 if n_seg == 2 else 4_001_000)


def test_existing_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "run.h5"
    write_run(path, blocks()[:1])
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    with pytest.raises(FileExistsError, match="overwrite=True") as error:
        RunRecorder.create(path, attrs={})
    assert str(path) in str(error.value)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    # with overwrite the new run is written beside it and replaces it only once complete
    RunRecorder.create(path, attrs={}, overwrite=True).close(complete=False)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    pending = path.with_name(path.name + ".new")
    with h5py.File(pending, "r") as f:
        assert f.attrs["replaces"] == path.name and not f.attrs["complete"]
    RunRecorder.create(path, attrs={}, overwrite=True).close(complete=True)
    assert not pending.exists()
    with h5py.File(path, "r") as f:
        assert len(f["segments/task"]) == 0 and f.attrs["complete"] and "replaces" not in f.attrs


def test_missing_folder_is_refused(tmp_path):
    folder = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="missing"):
        RunRecorder.create(folder / "run.h5", attrs={})
    assert not folder.exists()


@pytest.mark.parametrize("field, index, value, message", [
    ("local_step", 1, 10, r"spikes\['hidden'\] local_step: value 10"),
    ("local_step", 1, -1, r"spikes\['hidden'\] local_step: value -1"),
    ("neuron", 2, 5, r"spikes\['hidden'\] neuron: value 5"),
    ("segment", 0, 3, r"spikes\['hidden'\] segment .*value 3"),
])
def test_out_of_range_spikes_raise_and_write_nothing(tmp_path, field, index, value, message):
    path = tmp_path / "run.h5"
    segments, spikes, n_steps = blocks()[0]
    columns = list(spikes["hidden"])
    columns[index] = columns[index].astype(np.int64)
    columns[index][4] = value
    spikes = {**spikes, "hidden": tuple(columns)}
    with RunRecorder.create(path, attrs={}) as rec:
        for name, n in POPULATIONS.items():
            rec.add_population(name, n, "LIF", name)
        with pytest.raises(ValueError, match=message):
            rec.append_block(segments, spikes, n_steps)
        assert rec.clock == 0
    with h5py.File(path, "r") as f:
        assert len(f["segments/task"]) == 0
        assert len(f["populations/input/spike_step"]) == 0


def test_bad_block_arguments_raise(tmp_path):
    segments, spikes, n_steps = blocks()[0]
    with RunRecorder.create(tmp_path / "run.h5", attrs={}) as rec:
        rec.add_population("input", 20, "LIF", "input")
        with pytest.raises(ValueError, match="unknown population"):
            rec.append_block(segments, spikes, n_steps)  # has "hidden"
        spikes = {"input": spikes["input"]}
        with pytest.raises(ValueError, match="missing columns \\['label'\\]"):
            rec.append_block({k: v for k, v in segments.items() if k != "label"}, spikes, n_steps)
        with pytest.raises(ValueError, match="phase names"):
            rec.append_block({**segments, "phase": np.zeros(3, int)}, spikes, n_steps)
        with pytest.raises(ValueError, match="common length"):
            rec.append_block({**segments, "label": [1, 2]}, spikes, n_steps)
        with pytest.raises(ValueError, match="n_steps"):
            rec.append_block(segments, spikes, 0)
        with pytest.raises(ValueError, match="float64"):
            rec.append_block(segments, {"input": tuple(a.astype(float) for a in spikes["input"])}, n_steps)
        rec.append_block(segments, spikes, n_steps)
        with pytest.raises(ValueError, match="after the first append_block"):
            rec.add_population("late", 3, "LIF", "hidden")
    with pytest.raises(ValueError, match="is closed"):
        rec.append_block(segments, spikes, n_steps)


def test_new_phase_names_are_appended(tmp_path):
    path = tmp_path / "run.h5"
    segments, spikes, n_steps = blocks()[0]
    with RunRecorder.create(path, attrs={}) as rec:
        rec.append_block({**segments, "phase": ["validate", "test", "validate"]}, {}, n_steps)
    with h5py.File(path, "r") as f:
        assert json.loads(f["segments/phase"].attrs["phase_names"]) == ["train", "test", "validate"]
        np.testing.assert_array_equal(f["segments/phase"][:], [2, 1, 2])


def test_write_metrics_attrs_match_summarize(tmp_path):
    path = tmp_path / "run.h5"
    R = np.array([[0.9, 0.2, 0.1], [0.8, 0.85, 0.1], [np.nan] * 3])
    with RunRecorder.create(path, attrs={}) as rec:
        rec.write_metrics(R, summarize(R[:2, :2]))  # incomplete: row 1 is the last filled row
        R[2] = [0.7, 0.75, 0.9]  # then overwritten with the full matrix
        rec.write_metrics(R, summarize(R), timings={"train_seconds": [1.5, 2.0, 2.5]})
    with h5py.File(path, "r") as f:
        metrics = f["metrics"]
        np.testing.assert_array_equal(metrics["accuracy_matrix"][:], R)
        assert metrics["accuracy_matrix"].dtype == np.float64
        assert {k: metrics.attrs[k] for k in ("ACC", "BWT", "forgetting")} == summarize(R)
        assert metrics.attrs["tasks_evaluated"] == 3
        np.testing.assert_array_equal(metrics["train_seconds"][:], [1.5, 2.0, 2.5])


def test_write_metrics_incomplete_matrix(tmp_path):
    path = tmp_path / "run.h5"
    R = np.full((3, 3), np.nan)
    R[0] = [0.9, 0.2, 0.1]
    R[1, :2] = [0.8, 0.85]
    with RunRecorder.create(path, attrs={}) as rec:
        rec.write_metrics(R, summarize(R[:2, :2]))
        with pytest.raises(ValueError, match="square"):
            rec.write_metrics(np.zeros((2, 3)), summarize(R[:2, :2]))
    with h5py.File(path, "r") as f:
        metrics = f["metrics"]
        # R[:2, :2] = [[0.9, 0.2], [0.8, 0.85]]: ACC = 0.825, BWT = forgetting magnitude 0.1
        summary = summarize(R[:2, :2])
        assert summary == pytest.approx({"ACC": 0.825, "BWT": -0.1, "forgetting": 0.1})
        assert {k: metrics.attrs[k] for k in ("ACC", "BWT", "forgetting")} == summary
        assert metrics.attrs["tasks_evaluated"] == 2
        assert np.isnan(metrics["accuracy_matrix"][2]).all()


def test_snapshots_and_attrs(tmp_path):
    path = tmp_path / "run.h5"
    permutation = np.random.default_rng(0).permutation(784)
    with RunRecorder.create(path, attrs={"seed": 3}) as rec:
        rec.write_task(0, "digits-0", permutation=permutation)
        rec.write_weights("input_hidden", 0, np.ones((4, 3), dtype=np.float32))
        rec.write_lateral("hidden", 0, np.zeros((2, 5)), np.array([True, False]))
        rec.set_attrs(software='{"numpy": "2.3"}', seed=4)
        with pytest.raises(ValueError, match="already written"):
            rec.write_task(0, "again")
        with pytest.raises(ValueError, match="reserved"):
            rec.set_attrs(complete=True)
        with pytest.raises(ValueError, match="'versions'.*JSON"):
            rec.set_attrs(versions={"numpy": "2.3"})
        with pytest.raises(ValueError, match="bool"):
            rec.write_lateral("hidden", 1, np.zeros((2, 5)), [0, 1])
    with h5py.File(path, "r") as f:
        assert f["tasks/0"].attrs["name"] == "digits-0"
        np.testing.assert_array_equal(f["tasks/0/permutation"][:], permutation)
        weights = f["weights/input_hidden/after_task_0"]
        assert weights.dtype == np.float64 and weights.attrs["task"] == 0
        assert f["lateral/hidden/H_after_task_0"].attrs["n_neurons"] == 2
        assert f["lateral/hidden/frozen_after_task_0"].dtype == np.bool_
        assert f.attrs["seed"] == 4 and f.attrs["software"] == '{"numpy": "2.3"}'
        assert bool(f.attrs["complete"]) is True


def test_new_phase_names_in_blocks_queued_back_to_back(tmp_path):
    """Blocks handed to the writer thread one after the other, each with a phase name not seen
    before: every segment decodes to its own phase (the codes are assigned in the caller's order)."""
    path = tmp_path / "phases.h5"
    rng = np.random.default_rng(5)
    names = ["warmup", "consolidate", "probe", "train"]
    with RunRecorder.create(path, attrs=ATTRS) as rec:
        for name, n in POPULATIONS.items():
            rec.add_population(name, n, model="LIF", role=name)
        for phase in names:                     # no wait in between: all four may be queued at once
            rec.append_block(*make_block(rng, 2, 5, {"input": 50, "hidden": 5}, phase=phase))
    with h5py.File(path, "r") as f:
        stored = json.loads(f["segments/phase"].attrs["phase_names"])
        decoded = [stored[code] for code in f["segments/phase"][:]]
    assert decoded == [name for name in names for _ in range(2)]


def test_write_metrics_refuses_a_bad_summary(tmp_path):
    R = np.array([[0.9, np.nan], [0.8, 0.85]])
    good = summarize(R)
    with RunRecorder.create(tmp_path / "run.h5", attrs={}) as rec:
        for bad, message in (({k: v for k, v in good.items() if k != "BWT"}, "exactly the keys"),
                             ({**good, "extra": 1.0}, "exactly the keys"),
                             ([0.8, -0.1, 0.1], "got list"),
                             ({**good, "ACC": "0.8"}, r"summary\['ACC'\] must be a real number"),
                             ({**good, "forgetting": True}, r"summary\['forgetting'\] must be a real number")):
            with pytest.raises(ValueError, match=message):
                rec.write_metrics(R, bad)
        rec.write_metrics(R, {"forgetting": np.float32(0.5), "ACC": 1, "BWT": -0.25})
    with h5py.File(tmp_path / "run.h5", "r") as f:
        attrs = f["metrics"].attrs
        assert {k: attrs[k] for k in ("ACC", "BWT", "forgetting")} == {"ACC": 1.0, "BWT": -0.25, "forgetting": 0.5}
        assert all(attrs[k].dtype == np.float64 for k in ("ACC", "BWT", "forgetting"))
        assert attrs["tasks_evaluated"] == 2


RESUMABLE = {"method": "hlop", "config": json.dumps({"protocol": {"tasks": 2}}), "dt": 1e-3,
             "n_steps_per_presentation": 10}


def write_checkpointed(path, complete=False, method="hlop", checkpoint=True):
    """Task 0 finished and checkpointed, then half of task 1 recorded (one block, its weights)."""
    rng = np.random.default_rng(4)
    with RunRecorder.create(path, attrs={**RESUMABLE, "method": method}) as rec:
        for name, n in POPULATIONS.items():
            rec.add_population(name, n, model="LIF", role=name)
        rec.append_block(*make_block(rng, 3, 10, {"input": 60, "hidden": 6}))
        rec.write_weights("w_1", 0, np.ones((5, 20)))
        if checkpoint:
            rec.write_checkpoint(task=0, rng={"order": 17})
        rec.append_block(*make_block(rng, 2, 10, {"input": 30, "hidden": 3}, task=1))
        rec.write_weights("w_1", 1, np.zeros((5, 20)))
        rec.close(complete=complete)


def test_read_checkpoint_returns_config_method_and_state(tmp_path):
    path = tmp_path / "run.h5"
    write_checkpointed(path)
    found = read_checkpoint(path)
    assert found["config"] == {"protocol": {"tasks": 2}} and found["method"] == "hlop"
    assert found["checkpoint"] == {"task": 0, "rng": {"order": 17}, "n_segments": 3,
                                   "n_spikes": {"input": 60, "hidden": 6}}


@pytest.mark.parametrize("case, message", [
    ("complete", "is a complete run; nothing to resume"),
    ("no checkpoint", "has no finished task to resume from; start the run again"),
    ("gpm", "is a gpm run, which cannot be resumed (its bases are not checkpointed); start it again"),
    ("other format", "is not an hlopsim run file"),
    ("not hdf5", "is not an hlopsim run file"),
    ("missing", "no such file"),
])
def test_read_checkpoint_refuses_with_one_line(tmp_path, case, message):
    path = tmp_path / "run.h5"
    if case in ("complete", "no checkpoint", "gpm"):
        write_checkpointed(path, complete=case == "complete", method="gpm" if case == "gpm" else "hlop",
                           checkpoint=case != "no checkpoint")
    elif case == "other format":
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "something-else"
            f.create_group("checkpoint")
    elif case == "not hdf5":
        path.write_text("not a run file\n")
    with pytest.raises(RunFileError) as error:
        read_checkpoint(path)
    text = str(error.value)
    assert text.startswith(repr(str(path))) and message in text and "\n" not in text, text


def test_resume_cuts_what_followed_the_checkpoint_and_continues(tmp_path):
    path = tmp_path / "run.h5"
    write_checkpointed(path)
    rec, checkpoint = RunRecorder.resume(path)
    assert checkpoint["task"] == 0 and rec.clock == 30
    rng = np.random.default_rng(9)
    with rec:
        rec.append_block(*make_block(rng, 4, 5, {"input": 8, "hidden": 2}, task=1))
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) is True
        assert {len(f["segments"][name]) for name in f["segments"]} == {7}
        np.testing.assert_array_equal(f["segments/task"][:], [0, 0, 0, 1, 1, 1, 1])
        np.testing.assert_array_equal(f["segments/start_step"][3:], [30, 35, 40, 45])
        assert list(f["weights/w_1"]) == ["after_task_0"]
        for name in POPULATIONS:
            ends = f[f"populations/{name}/segment_end"][:]
            assert len(ends) == 7 and ends[-1] == len(f[f"populations/{name}/spike_step"])
        assert f["populations/input/segment_end"][2] == 60
    with pytest.raises(RunFileError, match="complete run"):
        RunRecorder.resume(path)


def test_runfile_package_imports_neither_brian2_nor_protocols():
    code = ("import sys; import hlopsim.sim.runfile; "
            "bad = sorted(m for m in sys.modules if m == 'brian2' or m.startswith('hlopsim.protocols')); "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
