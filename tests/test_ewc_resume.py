"""Resuming an interrupted ewc run: with a penalty its Fisher information and anchor weights are not in
the checkpoint, so `read_checkpoint` refuses it (one line) before the file is opened for writing; without
a penalty (strength 0, fine-tuning) nothing is missing and the resumed file equals an uninterrupted one."""
import hashlib

import numpy as np
import pytest
from cli_helpers import run_file_datasets

import hlopsim as hs
from hlopsim.protocols.experiment.methods import EWC
from hlopsim.sim.runfile import RunFileError, read_checkpoint

NET = dict(hidden=[16], batch_size=16)


def tiny_tasks(per_class=20):
    """Three 2-class tasks of the digits, one head each, a few samples per class (fast with numpy)."""
    tasks = hs.split_tasks(hs.load_digits(), classes=[(0, 1), (2, 3), (4, 5)], heads="per-task")
    out = []
    for task in tasks:
        keep = np.concatenate([np.flatnonzero(task.y_train == c)[:per_class] for c in (0, 1)])
        out.append(hs.make_task(task.name, task.x_train[keep], task.y_train[keep], task.x_test[:40],
                                task.y_test[:40], head=task.head))
    return out


class EWCStoppedAtTask1(EWC):
    """EWC interrupted (as by Ctrl-C) when task 1 begins; same name and settings as EWC."""

    def begin_task(self, net, task):
        if task == 1:
            raise KeyboardInterrupt
        super().begin_task(net, task)


def _interrupted(path, strength):
    with pytest.raises(KeyboardInterrupt):
        hs.run_tasks(tiny_tasks(), hs.NetworkSpec(**NET), EWCStoppedAtTask1(strength=strength), epochs=1,
                     target="numpy", out=path)
    return path


def test_an_interrupted_ewc_run_is_refused_and_left_untouched(tmp_path):
    path = _interrupted(tmp_path / "cut.h5", strength=5.0)
    with pytest.raises(RunFileError, match=r"is an ewc run \(strength 5.0\), which cannot be resumed"):
        read_checkpoint(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(RunFileError, match="ewc run"):
        hs.run_tasks(tiny_tasks(), hs.NetworkSpec(**NET), EWC(strength=5.0), epochs=1, target="numpy", out=path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_an_ewc_run_without_penalty_resumes_equal_to_an_uninterrupted_one(tmp_path):
    full = hs.run_tasks(tiny_tasks(), hs.NetworkSpec(**NET), EWC(strength=0.0), epochs=1, target="numpy",
                        out=tmp_path / "full.h5")
    path = _interrupted(tmp_path / "cut.h5", strength=0.0)
    assert read_checkpoint(path)["checkpoint"]["task"] == 0
    again = hs.run_tasks(tiny_tasks(), hs.NetworkSpec(**NET), EWC(strength=0.0), epochs=1, target="numpy", out=path)
    np.testing.assert_array_equal(again.accuracy, full.accuracy)
    a, b = run_file_datasets(tmp_path / "full.h5"), run_file_datasets(path)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
