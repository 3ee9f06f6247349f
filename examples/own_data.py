"""Your own data as numpy arrays: three tasks of a synthetic two-class problem, each in its own input
subspace, made into tasks with `make_task` and learned one after the other with HLOP and fine-tuning.

    python examples/own_data.py [--tiny]
"""
import sys

import numpy as np

import hlopsim as hs

tiny = "--tiny" in sys.argv
rng = np.random.default_rng(0)
n_inputs, n_train, n_test = 40, 100 if tiny else 400, 100


def two_blobs(n, task):
    """Class c lights up its own 5 inputs of this task's block of 10 inputs (values in [0, 1])."""
    y = rng.integers(0, 2, size=n)
    x = rng.uniform(0.0, 0.2, size=(n, n_inputs))
    for c in (0, 1):
        x[y == c, 10 * task + 5 * c: 10 * task + 5 * c + 5] += 0.7
    return np.clip(x, 0.0, 1.0), y


tasks = []
for t in range(3):
    x_train, y_train = two_blobs(n_train, t)
    x_test, y_test = two_blobs(n_test, t)
    tasks.append(hs.make_task(f"blobs-{t}", x_train, y_train, x_test, y_test))

net = hs.NetworkSpec(hidden=[32], batch_size=32)
for method in (hs.Finetune(), hs.HLOP(first_task=[4, 4], per_task=[4, 4], consolidation_epochs=2)):
    result = hs.run_tasks(tasks, net, method, epochs=1 if tiny else 3, seed=0, out=f"blobs-{method.name}.h5",
                          overwrite=True, target="numpy" if tiny else None)
    print(method.name, result.summary)
