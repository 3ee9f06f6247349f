"""Per-task output heads: a task's head rows compute no other task's outputs, so their update is not
projected, while the shared hidden layers' updates are (HLOP and GPM alike)."""
from __future__ import annotations

import numpy as np
import pytest

import hlopsim as hs


def split_tasks(heads, per_class=30, n_test=40):
    tasks = hs.split_tasks(hs.load_digits(), classes=[(0, 1), (2, 3)], heads=heads)
    out = []
    for task in tasks:
        classes = np.unique(task.y_train)
        keep = np.concatenate([np.flatnonzero(task.y_train == c)[:per_class] for c in classes])
        out.append(hs.make_task(task.name, task.x_train[keep], task.y_train[keep], task.x_test[:n_test],
                                task.y_test[:n_test], head=task.head))
    return out


class Watched(hs.HLOP):
    """HLOP that keeps every layer's weights and frozen rows at the start and end of task 1."""

    seen: dict = {}

    def begin_task(self, net, task):
        super().begin_task(net, task)
        if task == 1:
            Watched.seen["before"] = [w.copy() for w in net.weights]
            Watched.seen["frozen"] = [c.frozen_H.copy() for c in net.lateral]

    def end_task(self, net, task):
        if task == 1:
            Watched.seen["after"] = [w.copy() for w in net.weights]
        super().end_task(net, task)


@pytest.mark.parametrize("heads", ["per-task", "shared"])
def test_only_a_tasks_own_head_is_updated_unprojected(heads):
    tasks = split_tasks(heads)
    method = Watched(first_task=[8, 8], per_task=[4, 4], consolidation_epochs=1, copies=4)
    hs.run_tasks(tasks, hs.NetworkSpec(hidden=[16], batch_size=16), method, epochs=1, seed=0, target="numpy",
                 record_spikes=False)
    seen = Watched.seen
    deltas = [after - before for after, before in zip(seen["after"], seen["before"])]

    def inside(delta, H):
        """Fraction of the update's energy inside the span of the old rows (an orthonormal basis of them)."""
        basis = np.linalg.qr(H.T)[0]
        return float(np.sum((delta @ basis) ** 2) / np.sum(delta ** 2))

    hidden, output = (inside(d, H) for d, H in zip(deltas, seen["frozen"]))
    assert seen["frozen"][1].shape[0] == 8 and np.abs(deltas[1]).max() > 0
    # The shared hidden layer: projected out of the old rows (up to their distance from orthonormal).
    assert hidden < 0.01
    if heads == "per-task":
        assert output > 0.2                    # its own head: free inside the old rows' span too
        assert not deltas[1][:2].any()         # task 0's head is untouched
    else:
        assert output < 0.01                   # a shared head: projected like any shared layer
