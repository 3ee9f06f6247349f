"""`benchmarks/forgetting_sources.py` on a real (tiny) run file: its replay reproduces the recorded
accuracies and its exact rows are never worse than the circuit's on the task they were fitted to."""
import re
import subprocess
import sys

import h5py
import pytest

from cli_helpers import PROJECT, cli_command, cli_env

TINY = ["--tasks", "2", "--epochs", "1", "--quiet",
        "--set", "data.train_size=128", "--set", "network.hidden=[16]", "--set", "network.batch_size=32",
        "--set", "lateral.copies=8", "--set", "lateral.first_task=[4,4]", "--set", "lateral.per_task=[2,2]",
        "--set", "lateral.consolidation_epochs=1", "--set", 'sim.target="numpy"']


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    path = tmp_path_factory.mktemp("forgetting") / "hlop.h5"
    subprocess.run(cli_command("run", "permuted-digits", "--method", "hlop", "--out", str(path), *TINY),
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
