"""`benchmarks/forgetting_sources.py` on a real (tiny) run file: its replay reproduces the recorded
accuracies, its exact rows are never worse than the circuit's on the task they were fitted to, and
its capacity counts agree with the singular values they come from."""
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from cli_helpers import PROJECT, TINY, cli_command, cli_env, load_benchmark

# the shared tiny protocol, with one consolidation epoch so that the circuit learns something
TINY_CONSOLIDATED = [*TINY, "--set", "lateral.consolidation_epochs=1"]


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    path = tmp_path_factory.mktemp("forgetting") / "hlop.h5"
    subprocess.run(cli_command("run", "permuted-digits", "--method", "hlop", "--out", str(path), *TINY_CONSOLIDATED),
                   check=True, capture_output=True, env=cli_env(), timeout=300)
    done = subprocess.run([sys.executable, str(PROJECT / "benchmarks" / "forgetting_sources.py"), str(path),
                           "--target", "numpy"], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    with h5py.File(path, "r") as f:
        accuracy = f["metrics/accuracy_matrix"][:]
    return done.stdout, accuracy


def test_replay_reproduces_the_recorded_accuracies(diagnosed):
    out, R = diagnosed
    rows = [line.split("|")[1].split() for line in out.splitlines() if re.match(r"^\s+\d+ \|", line)]
    assert len(rows) == 1                                  # one old task in a 2-task run
    own, swap_w1, swap_w2, both = map(float, rows[0])
    assert own == pytest.approx(R[0, 0], abs=0.051)        # weights after task 0 -> R[0, 0]
    assert both == pytest.approx(R[1, 0], abs=0.051)       # weights after task 1 -> R[1, 0]
    assert all(0.0 <= value <= 100.0 for value in (swap_w1, swap_w2))


def test_exact_rows_hold_at_least_the_circuits_energy_of_their_own_task(diagnosed):
    out, _ = diagnosed
    first = re.findall(r"after task 0 \(\s*(\d+) rows\): ([\d.]+) \| ([\d.]+)", out)
    assert [rows for rows, _, _ in first] == ["4", "4"]   # both layers' task-0 neurons
    for _, circuit, exact in first:
        assert 0.0 <= float(exact) <= float(circuit) + 1e-4 <= 1.0001


def test_directions_needed_counts_singular_value_energy():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(50, 4)))
    v, _ = np.linalg.qr(rng.normal(size=(12, 4)))
    energy = np.array([0.5, 0.3, 0.15, 0.05])               # cumulative 0.5, 0.8, 0.95, 1.0
    A = u @ np.diag(np.sqrt(energy)) @ v.T
    assert load_benchmark("forgetting_sources").directions_needed(A) == [3, 3, 4, 4]   # for 90, 95, 97, 99 %


def test_capacity_table_lists_every_task_and_layer(diagnosed):
    out, _ = diagnosed
    assert "w_1 (64 inputs): directions holding" in out and "w_2 (16 inputs): directions holding" in out
    for block in re.findall(r"directions holding.*?\n(.*?)all stacked", out, flags=re.S):
        tasks = re.findall(r"^\s+(\d+)((?:\s+\d+){4})$", block, flags=re.M)
        assert [int(t) for t, _ in tasks] == [0, 1]
        summed = re.search(r"sum((?:\s+\d+){4})", block).group(1).split()
        assert [int(x) for x in summed] == [sum(int(c.split()[i]) for _, c in tasks) for i in range(4)]
