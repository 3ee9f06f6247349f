"""Crash safety and resume: a run killed with SIGKILL mid-task leaves a readable file, and
``hlopsim run ... --resume FILE`` finishes it with the same accuracy matrix as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

TINY = ["--tasks", "3", "--epochs", "2", "--set", "data.train_size=256", "--set", "network.hidden=[16]",
        "--set", "network.batch_size=32", "--set", "lateral.copies=8", "--set", "lateral.first_task=[4,4]",
        "--set", "lateral.per_task=[2,2]", "--set", 'sim.target="numpy"']


def hlopsim(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "hlopsim", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


def checkpoint_task(path):
    """The last finished task recorded in a run file being written, or -1."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            if "checkpoint" in f:
                return json.loads(f["checkpoint"].attrs["state"])["task"]
    except (OSError, KeyError, ValueError):
        pass  # the writer is between writes; try again
    return -1


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("full") / "full.h5"
    done = hlopsim("run", "permuted-digits", "--method", "hlop", "--out", str(path), "--quiet", *TINY)
    assert done.returncode == 0, done.stderr
    with h5py.File(path, "r") as f:
        return path, f["metrics/accuracy_matrix"][:]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run file whose writer was SIGKILLed during the second task's training."""
    path = tmp_path_factory.mktemp("killed") / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-m", "hlopsim", "run", "permuted-digits", "--method", "hlop",
                             "--out", str(path), "--quiet", *TINY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while checkpoint_task(path) < 0 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # well into task 1's training
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return path


def test_killed_file_is_readable_and_reports_incomplete(killed):
    with h5py.File(killed, "r") as f:
        assert not f.attrs["complete"]
        assert json.loads(f["checkpoint"].attrs["state"])["task"] == 0
        R = f["metrics/accuracy_matrix"][:]
        assert np.isfinite(R[0]).all() and np.isnan(R[1:]).all()
    shown = hlopsim("inspect", str(killed), "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert json.dumps(report).count("complete") >= 1
    text = hlopsim("inspect", str(killed))
    assert text.returncode == 0 and "INCOMPLETE" in text.stdout


def test_resume_gives_the_uninterrupted_accuracy_matrix(killed, uninterrupted):
    _, expected = uninterrupted
    other = hlopsim("run", "split-digits", "--resume", str(killed))
    assert other.returncode == 2 and "'permuted-digits' run, not 'split-digits'" in other.stderr, other.stderr
    done = hlopsim("run", "--resume", str(killed), "--quiet")   # no protocol argument needed
    assert done.returncode == 0, done.stderr
    with h5py.File(killed, "r") as f:
        assert f.attrs["complete"]
        assert np.array_equal(f["metrics/accuracy_matrix"][:], expected)
        # the file is whole again: every segment's spikes are there exactly once
        n_segments = len(f["segments/task"])
        for pop in f["populations"].values():
            assert len(pop["segment_end"]) == n_segments
            assert pop["segment_end"][-1] == len(pop["spike_step"])


def test_resumed_file_equals_the_uninterrupted_one(killed, uninterrupted):
    full, _ = uninterrupted
    with h5py.File(killed, "r") as a, h5py.File(full, "r") as b:
        for name in ("segments/task", "segments/trial", "segments/start_step", "populations/hidden_1/spike_step",
                     "populations/hidden_1/spike_neuron", "populations/output/segment_end",
                     "weights/w_1/after_task_2", "lateral/w_2/H_after_task_2"):
            assert np.array_equal(a[name][:], b[name][:]), name


def test_resume_refuses_bad_requests(tmp_path, uninterrupted):
    full, _ = uninterrupted
    complete = hlopsim("run", "permuted-digits", "--resume", str(full))
    assert complete.returncode == 2 and "complete" in complete.stderr and "Traceback" not in complete.stderr
    extra = hlopsim("run", "permuted-digits", "--resume", str(full), "--set", "network.batch_size=8")
    assert extra.returncode == 2 and "--set" in extra.stderr
    missing = hlopsim("run", "permuted-digits", "--resume", str(tmp_path / "nope.h5"))
    assert missing.returncode == 2 and "nope.h5" in missing.stderr
