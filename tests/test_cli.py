"""The ``hlopsim`` command line, run for real in subprocesses (numpy target, tiny protocol).

One end-to-end run of two methods is shared by the tests that read its output and run files;
the bad-input cases are started side by side (each is a separate process in its own folder).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import cli_command, cli_env
from hlopsim.protocols.experiment.config import load_protocol


TINY = ["--tasks", "2", "--epochs", "1", "--quiet",
        "--set", "data.train_size=128", "--set", "network.hidden=[16]", "--set", "network.batch_size=32",
        "--set", "lateral.copies=8", "--set", "lateral.first_task=[4,4]", "--set", "lateral.per_task=[2,2]",
        "--set", 'sim.target="numpy"']
N_TASKS, TRAIN_SIZE, TEST_PER_TASK = 2, 128, 450
DEFAULT_CONSOLIDATION = load_protocol("permuted-digits")["lateral"]["consolidation_epochs"]




# ---------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    proc = subprocess.run(cli_command("run", "permuted-digits", "--method", "finetune,hlop", "--out", str(out), *TINY),
                          capture_output=True, text=True, cwd=out, env=cli_env(), timeout=300)
    return proc, out


def _parse_matrices(stdout: str) -> dict[str, tuple[Path, np.ndarray]]:
    """``{method: (path, R)}`` from the printed accuracy matrices."""
    lines = stdout.splitlines()
    found = {}
    for k, line in enumerate(lines):
        m = re.match(r"^(\w+): accuracy matrix .* -> (.+)$", line)
        if not m:
            continue
        assert lines[k + 1].startswith("after task |"), lines[k + 1]
        n = len(re.findall(r"task \d+", lines[k + 1]))
        rows = []
        for i in range(n):
            index, _, values = lines[k + 2 + i].partition("|")
            assert int(index) == i
            rows.append([float(v) for v in values.split()])
        found[m.group(1)] = (Path(m.group(2)), np.array(rows))
    return found


def _parse_table(stdout: str) -> dict[str, dict[str, float]]:
    lines = stdout.splitlines()
    heads = [k for k, line in enumerate(lines) if line.split()[:3] == ["method", "ACC", "BWT"]]
    assert len(heads) == 1, stdout
    k = heads[0]
    assert set(lines[k + 1]) == {"-"}
    table = {}
    for line in lines[k + 2:]:
        if not line.strip():
            break
        method, acc, bwt, forget, *_ = line.split()
        table[method] = {"ACC": float(acc), "BWT": float(bwt), "forgetting": float(forget)}
    return table


def test_run_two_methods_exits_zero_and_prints_results(e2e):
    proc, out = e2e
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    matrices = _parse_matrices(proc.stdout)
    assert sorted(matrices) == ["finetune", "hlop"]
    for method, (path, R) in matrices.items():
        assert path == out / f"{method}.h5"
        assert R.shape == (N_TASKS, N_TASKS)
        assert np.all((R >= 0) & (R <= 100))
    table = _parse_table(proc.stdout)
    assert sorted(table) == ["finetune", "hlop"]
    assert sorted(p.name for p in out.iterdir()) == ["finetune.h5", "hlop.h5"]


@pytest.mark.parametrize("method", ["finetune", "hlop"])
def test_run_file_matches_printed_results(e2e, method):
    proc, out = e2e
    assert proc.returncode == 0, proc.stderr
    _, printed = _parse_matrices(proc.stdout)[method]
    row = _parse_table(proc.stdout)[method]
    with h5py.File(out / f"{method}.h5", "r") as f:
        complete = f.attrs["complete"]
        assert isinstance(complete, (bool, np.bool_)) and bool(complete) is True
        assert f.attrs["method"] == method
        R = f["metrics/accuracy_matrix"][()]
        metrics = dict(f["metrics"].attrs)
    assert R.shape == (N_TASKS, N_TASKS)
    assert np.all(np.isfinite(R))
    # printed with one decimal
    np.testing.assert_allclose(printed, R, rtol=0, atol=0.05 + 1e-9)
    for key in ("ACC", "BWT", "forgetting"):
        assert abs(row[key] - metrics[key]) <= 0.05 + 1e-9, (key, row[key], metrics[key])
    assert metrics["ACC"] == pytest.approx(R[-1].mean())
    assert metrics["BWT"] == pytest.approx(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


@pytest.mark.parametrize("method", ["finetune", "hlop"])
def test_run_file_segments_and_spikes_agree(e2e, method):
    proc, out = e2e
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out / f"{method}.h5", "r") as f:
        seg = {name: f["segments"][name][()] for name in f["segments"]}
        n_seg = len(seg["task"])
        assert {len(v) for v in seg.values()} == {n_seg}
        # one training epoch per task (+ the default consolidation epochs for hlop) + an evaluation
        # of every task after each task
        consolidation = DEFAULT_CONSOLIDATION if method == "hlop" else 0
        assert n_seg == N_TASKS * TRAIN_SIZE * (1 + consolidation) + N_TASKS * N_TASKS * TEST_PER_TASK
        n_steps = int(f.attrs["n_steps_per_presentation"])
        assert np.all(seg["stop_step"] - seg["start_step"] == n_steps)
        assert np.array_equal(seg["start_step"][1:], seg["stop_step"][:-1])
        assert sorted(f["populations"]) == ["hidden_1", "input", "output"]
        for name, pop in f["populations"].items():
            step, neuron, end = pop["spike_step"][()], pop["spike_neuron"][()], pop["segment_end"][()]
            assert len(step) == len(neuron) > 0, name
            assert len(end) == n_seg, name
            per_segment = np.diff(np.concatenate([[0], end.astype(np.int64)]))
            assert np.all(per_segment >= 0), name
            assert per_segment.sum() == len(step), name
            owner = np.repeat(np.arange(n_seg), per_segment)
            assert np.all(step >= seg["start_step"][owner]) and np.all(step < seg["stop_step"][owner]), name
            assert neuron.max() < pop.attrs["n_neurons"], name


# ---------------------------------------------------------------------------------- bad input

# case id -> (arguments after "run", texts the error line must contain)
BAD = {
    "unknown-protocol": (["permuted-digitz", *TINY], ["permuted-digitz"]),
    "unknown-method": (["permuted-digits", "--method", "finetune,hlopp", *TINY], ["hlopp"]),
    "unknown-key": (["permuted-digits", *TINY, "--set", "network.hiddn=[16]"], ["network.hiddn"]),
    "wrong-type": (["permuted-digits", *TINY, "--set", 'network.batch_size="x"'], ["network.batch_size", "x"]),
    "zero-batch": (["permuted-digits", *TINY, "--set", "network.batch_size=0"], ["network.batch_size", "0"]),
    "zero-tasks": (["permuted-digits", *TINY, "--tasks", "0"], ["tasks", "0"]),
    "negative-rate": (["permuted-digits", *TINY, "--set", 'network.input_max_rate="-5 Hz"'],
                      ["network.input_max_rate", "-5 Hz"]),
    "zero-dt": (["permuted-digits", *TINY, "--set", 'network.dt="0 ms"'], ["network.dt", "0 ms"]),
    "dt-in-volt": (["permuted-digits", *TINY, "--set", 'network.dt="5 mV"'], ["network.dt", "5 mV"]),
    "missing-folder": (["permuted-digits", *TINY, "--out", "/nonexistent/x.h5"], ["/nonexistent"]),
    "negative-consolidation": (["permuted-digits", *TINY, "--set", "lateral.consolidation_epochs=-1"],
                               ["lateral.consolidation_epochs", "-1"]),
    # the second method's settings are wrong: refused before the first method runs
    "bad-gpm-setting": (["permuted-digits", "--method", "hlop,gpm", *TINY, "--set", 'gpm.basis_sizes="x"'],
                        ["gpm.basis_sizes", "'x'"]),
    "bad-decorrelation-floor": (["permuted-digits", *TINY, "--set", "lateral.decorrelation_floor=-1"],
                                ["lateral.decorrelation_floor", "-1"]),
}
EXISTING_BYTES = b"not an HDF5 file, must survive\n" * 7


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Start every bad-input case at once; each runs in its own empty folder. {case: (proc, folder)}."""
    started = {}
    for case, (args, _) in BAD.items():
        folder = tmp_path_factory.mktemp(case)
        if "--out" not in args:
            several = "--method" in args and "," in args[args.index("--method") + 1]
            args = [*args, "--out", str(folder if several else folder / "run.h5")]
        started[case] = (folder, subprocess.Popen(cli_command("run", *args), stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, text=True, cwd=folder, env=cli_env()))
    # an existing run file, single method
    folder = tmp_path_factory.mktemp("existing-file")
    (folder / "run.h5").write_bytes(EXISTING_BYTES)
    started["existing-file"] = (folder, subprocess.Popen(
        cli_command("run", "permuted-digits", "--method", "finetune", "--out", str(folder / "run.h5"), *TINY),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder, env=cli_env()))
    # an existing run file among several methods written into a folder
    folder = tmp_path_factory.mktemp("existing-in-folder")
    (folder / "hlop.h5").write_bytes(EXISTING_BYTES)
    started["existing-in-folder"] = (folder, subprocess.Popen(
        cli_command("run", "permuted-digits", "--method", "finetune,hlop", "--out", str(folder), *TINY),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder, env=cli_env()))
    # a lateral circuit whose Hebbian rate is far beyond its stable range
    folder = tmp_path_factory.mktemp("diverging-circuit")
    started["diverging-circuit"] = (folder, subprocess.Popen(
        cli_command("run", "permuted-digits", "--out", str(folder / "run.h5"), *TINY,
                    "--set", 'lateral.hebbian_rate=["20000 Hz","20000 Hz"]'),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder, env=cli_env()))
    # more subspace neurons than the first layer has inputs: capped, with a warning (not an error)
    folder = tmp_path_factory.mktemp("capped-sizes")
    started["capped-sizes"] = (folder, subprocess.Popen(
        cli_command("run", "permuted-digits", "--out", str(folder / "run.h5"), *TINY, "--tasks", "1",
                    "--set", "lateral.first_task=[70,4]"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder, env=cli_env()))
    results = {}
    for case, (folder, proc) in started.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[case] = (proc.returncode, stdout, stderr, folder)
    return results


def _assert_clean_error(result, *must_contain):
    code, stdout, stderr, _ = result
    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, (code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("hlopsim: error: "), lines[0]
    for text in must_contain:
        assert text in lines[0], (text, lines[0])


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clean_error_line(bad_runs, case):
    _assert_clean_error(bad_runs[case], *BAD[case][1])
    folder = bad_runs[case][3]
    assert list(folder.iterdir()) == [], "a refused run must not write anything"


def test_existing_run_file_is_refused_and_untouched(bad_runs):
    result = bad_runs["existing-file"]
    folder = result[3]
    _assert_clean_error(result, str(folder / "run.h5"), "--overwrite")
    assert (folder / "run.h5").read_bytes() == EXISTING_BYTES
    assert [p.name for p in folder.iterdir()] == ["run.h5"]


def test_existing_run_file_among_methods_is_refused_before_any_run(bad_runs):
    result = bad_runs["existing-in-folder"]
    folder = result[3]
    _assert_clean_error(result, str(folder / "hlop.h5"), "--overwrite")
    assert (folder / "hlop.h5").read_bytes() == EXISTING_BYTES
    # finetune comes first but nothing may be run (or written) once an output is refused
    assert [p.name for p in folder.iterdir()] == ["hlop.h5"]
    assert "accuracy matrix" not in result[1]


def test_diverging_lateral_circuit_stops_the_run_with_a_clear_error(bad_runs):
    """An unstable Hebbian rate must not silently train on NaN weights (chance accuracy): the run stops
    at the first batch whose H has run away, names the circuit and the setting, and leaves a readable,
    incomplete run file."""
    result = bad_runs["diverging-circuit"]
    _assert_clean_error(result, "lateral_w_1", "diverged", "lateral.hebbian_rate", "lateral.copies = 8")
    with h5py.File(result[3] / "run.h5", "r") as f:
        assert f.attrs["format"] == "hlopsim-run"
        assert not f.attrs["complete"]
        assert "checkpoint" not in f  # stopped inside task 0


def test_warnings_are_one_line_and_the_run_goes_on(bad_runs):
    code, _, stderr, folder = bad_runs["capped-sizes"]
    assert code == 0, stderr
    warned = [line for line in stderr.splitlines() if line.startswith("hlopsim: warning: ")]
    assert len(warned) == 1 and "70 subspace neurons" in warned[0] and "capped at 64" in warned[0], stderr
    assert "warnings.warn" not in stderr and "Traceback" not in stderr
    with h5py.File(folder / "run.h5", "r") as f:
        assert f.attrs["complete"]
