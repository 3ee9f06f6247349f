"""Resuming an interrupted ewc run: with a penalty its Fisher information and anchor weights are not in
the checkpoint, so `read_checkpoint` refuses it (one line) before the file is opened for writing; without
a penalty (strength 0, fine-tuning) nothing is missing and the resumed file equals an uninterrupted one."""
import hashlib

import numpy as np
import pytest
from cli_helpers import run_file_datasets, tiny_split_tasks

import hlopsim as hs
from hlopsim.protocols.experiment.methods import EWC
from hlopsim.sim.runfile import RunFileError, read_checkpoint

NET = dict(hidden=[16], batch_size=16)


class EWCStoppedAtTask1(EWC):
    """EWC interrupted (as by Ctrl-C) when task 1 begins; same name and settings as EWC."""

    def begin_task(self, net, task):
        if task == 1:
            raise KeyboardInterrupt
        super().begin_task(net, task)


def _interrupted(path, strength):
    with pytest.raises(KeyboardInterrupt):
        hs.run_tasks(tiny_split_tasks(20, 40), hs.NetworkSpec(**NET), EWCStoppedAtTask1(strength=strength),
                     epochs=1, target="numpy", out=path)
    return path


def test_an_interrupted_ewc_run_is_refused_and_left_untouched(tmp_path):
    path = _interrupted(tmp_path / "cut.h5", strength=5.0)
    with pytest.raises(RunFileError, match=r"is an ewc run \(strength 5.0\), which cannot be resumed"):
        read_checkpoint(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(RunFileError, match="ewc run"):
        hs.run_tasks(tiny_split_tasks(20, 40), hs.NetworkSpec(**NET), EWC(strength=5.0), epochs=1, target="numpy",
                     out=path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_an_ewc_run_without_penalty_resumes_equal_to_an_uninterrupted_one(tmp_path):
    full = hs.run_tasks(tiny_split_tasks(20, 40), hs.NetworkSpec(**NET), EWC(strength=0.0), epochs=1, target="numpy",
                        out=tmp_path / "full.h5")
    path = _interrupted(tmp_path / "cut.h5", strength=0.0)
    assert read_checkpoint(path)["checkpoint"]["task"] == 0
    again = hs.run_tasks(tiny_split_tasks(20, 40), hs.NetworkSpec(**NET), EWC(strength=0.0), epochs=1, target="numpy",
                         out=path)
    np.testing.assert_array_equal(again.accuracy, full.accuracy)
    a, b = run_file_datasets(tmp_path / "full.h5"), run_file_datasets(path)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class Unresumable(hs.Finetune):
    """A user's method that keeps state its checkpoint does not hold, interrupted when task 1 begins."""

    name = "mine"
    resumable = False

    def begin_task(self, net, task):
        if task == 1:
            raise KeyboardInterrupt


def test_a_method_that_says_it_cannot_resume_is_refused_by_its_file(tmp_path):
    path = tmp_path / "cut.h5"
    with pytest.raises(KeyboardInterrupt):
        hs.run_tasks(tiny_split_tasks(20, 40), hs.NetworkSpec(**NET), Unresumable(), epochs=1, target="numpy",
                     out=path)
    with pytest.raises(RunFileError, match=r"is a mine run, which cannot be resumed"):
        read_checkpoint(path)
    with hs.open_run(path) as run:
        assert run.attrs["resumable"] == False    # noqa: E712 (an HDF5 numpy bool)
