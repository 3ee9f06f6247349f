"""``hlopsim inspect`` and ``hlopsim plot`` run for real in subprocesses on run files written by
``hlopsim run`` (numpy target, tiny protocol). The figures and the bad-file cases are started side
by side; each is a separate process.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hlopsim.sim.runfile.schema import FORMAT_VERSION

from cli_helpers import cli_command, cli_env, tiny_runs

TRAIN_SIZE, TEST_PER_TASK = 128, 450
KINDS = ["raster", "psth", "accuracy", "acc-curve", "angles", "weights"]




def _start(*args, cwd):
    return subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=cli_env())


def _finish(started: dict) -> dict:
    """{case: (returncode, stdout, stderr)} of started processes."""
    results = {}
    for case, proc in started.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[case] = (proc.returncode, stdout, stderr)
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A folder with finetune.h5 and hlop.h5 of the tiny protocol (`cli_helpers.tiny_runs`)."""
    return tiny_runs(tmp_path_factory.getbasetemp())


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG header (signature, then the IHDR chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", head
    return struct.unpack(">II", head[16:24])


def _assert_one_error_line(result, path, *must_contain):
    code, stdout, stderr = result
    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, (code, stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"hlopsim: error: {path}: "), lines[0]
    for text in must_contain:
        assert text in lines[0], (text, lines[0])


# ---------------------------------------------------------------------------------- inspect


def test_protocols_do_not_import_brian2():
    code = ("import sys, hlopsim.sim.runfile, hlopsim.protocols.reports.inspect, hlopsim.protocols.reports.compare, "
            "hlopsim.protocols.reports.plots, hlopsim.protocols.reports.export, hlopsim.protocols.cli; "
            "assert 'brian2' not in sys.modules, 'brian2 imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("method", ["finetune", "hlop"])
def test_inspect_prints_the_run(runs, method):
    path = runs / f"{method}.h5"
    proc = subprocess.run(cli_command("inspect", str(path)), capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    text = proc.stdout
    for expected in (str(path), f"method {method}", "permuted-digits", "dt = 1 ms", "complete: 2056 segments",
                     "hidden_1", "brian2", "ACC", "BWT", "forgetting", "lateral circuit"):
        assert expected in text, (expected, text)
    assert "INCOMPLETE" not in text
    with h5py.File(path, "r") as f:
        R = f["metrics/accuracy_matrix"][()]
    for value in R.ravel():
        assert f"{value:.1f}" in text


@pytest.mark.parametrize("method", ["finetune", "hlop"])
def test_inspect_json_agrees_with_the_file(runs, method):
    path = runs / f"{method}.h5"
    proc = subprocess.run(cli_command("inspect", str(path), "--json"), capture_output=True, text=True, env=cli_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    with h5py.File(path, "r") as f:
        R = f["metrics/accuracy_matrix"][()]
        metrics = dict(f["metrics"].attrs)
        seg = {k: f["segments"][k][()] for k in ("task", "phase")}
        spikes = {pop: len(f[f"populations/{pop}/spike_step"]) for pop in f["populations"]}
        n_steps, dt = int(f.attrs["n_steps_per_presentation"]), float(f.attrs["dt"])
        n_neurons = {pop: int(f[f"populations/{pop}"].attrs["n_neurons"]) for pop in f["populations"]}
        ends = {pop: f[f"populations/{pop}/segment_end"][()].astype(np.int64) for pop in f["populations"]}
    assert np.array_equal(np.array(info["accuracy"]["matrix"], dtype=float), R)
    assert info["accuracy"]["ACC"] == pytest.approx(metrics["ACC"], abs=1e-12)
    assert info["accuracy"]["BWT"] == pytest.approx(metrics["BWT"], abs=1e-12)
    assert info["accuracy"]["forgetting"] == pytest.approx(metrics["forgetting"], abs=1e-12)
    assert info["method"] == method and info["seed"] == 0 and info["dt_s"] == dt
    assert info["complete"] is True and info["n_segments"] == len(seg["task"])
    assert info["last_complete_segment"]["index"] == len(seg["task"]) - 1
    assert {p["name"]: p["n_spikes"] for p in info["populations"]} == spikes
    counts = {(s["task"], s["phase"]): s["count"] for s in info["segments"]}
    assert counts == {(0, "train"): TRAIN_SIZE, (1, "train"): TRAIN_SIZE,
                      (0, "test"): 2 * TEST_PER_TASK, (1, "test"): 2 * TEST_PER_TASK}
    # mean rate of task 1's evaluations, recomputed from segment_end
    mask = (seg["task"] == 1) & (seg["phase"] == 1)
    for pop in info["populations"]:
        per_segment = np.diff(ends[pop["name"]], prepend=0)
        expected = per_segment[mask].sum() / (mask.sum() * n_steps * dt * n_neurons[pop["name"]])
        rate = {(r["task"], r["phase"]): r["mean_rate_hz"] for r in pop["rates_hz"]}[(1, "test")]
        assert rate == pytest.approx(expected, rel=1e-9)
    if method == "hlop":
        assert [(layer["layer"], [(t["grown"], t["frozen"]) for t in layer["tasks"]]) for layer in info["lateral"]] \
            == [("w_1", [(4, 4), (6, 6)]), ("w_2", [(4, 4), (6, 6)])]
        # each task's frozen rows: ‖HHᵀ − I‖_F / √k, recomputed from the raw snapshots
        with h5py.File(path, "r") as f:
            for layer in info["lateral"]:
                before = 0
                for t in layer["tasks"]:
                    H = f[f"lateral/{layer['layer']}/H_after_task_{t['task']}"][()]
                    rows = H[before:t["frozen"]]
                    expected = np.linalg.norm(rows @ rows.T - np.eye(len(rows))) / np.sqrt(len(rows))
                    assert t["row_deviation"] == pytest.approx(expected, rel=1e-9, abs=1e-15)
                    before = t["frozen"]
    else:
        assert info["lateral"] == []


@pytest.fixture(scope="module")
def cut_copy(runs, tmp_path_factory) -> Path:
    """A copy of hlop.h5 whose segments/* are one block (the last evaluation) longer than every
    population's segment_end, as if the run had been killed while writing that block."""
    copy = tmp_path_factory.mktemp("cut") / "cut.h5"
    shutil.copy(runs / "hlop.h5", copy)
    with h5py.File(copy, "r+") as f:
        n = len(f["segments/task"])
        for pop in f["populations"]:
            f[f"populations/{pop}/segment_end"].resize((n - 2 * TEST_PER_TASK,))
    return copy


def test_inspect_reports_an_incomplete_file(cut_copy):
    last = 2 * TRAIN_SIZE + 2 * TEST_PER_TASK - 1       # the last training presentation of task 1
    proc = subprocess.run(cli_command("inspect", str(cut_copy), "--json"), capture_output=True, text=True, env=cli_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["complete"] is False and info["n_segments"] == last + 1
    assert info["last_complete_segment"] == {**info["last_complete_segment"], "index": last, "task": 1,
                                             "stage": 1, "phase": "train"}
    assert info["partial_rows"]["segments/task"] == 2 * TEST_PER_TASK
    proc = subprocess.run(cli_command("inspect", str(cut_copy)), capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "INCOMPLETE" in proc.stdout and f"last complete segment #{last}" in proc.stdout


# ---------------------------------------------------------------------------------- plot

# case -> (run file, arguments after the file, output file name relative to the runs folder)
PLOTS = {
    **{kind: ("hlop.h5", [kind], f"hlop-{kind}.png") for kind in KINDS},
    "raster-task-phase": ("hlop.h5", ["raster", "--task", "1", "--phase", "test", "--population", "hidden_1,output",
                                      "--out", "custom/raster.png"], "custom/raster.png"),
    "raster-window": ("finetune.h5", ["raster", "--window", "41.23:41.5", "--out", "window.png"], "window.png"),
    "psth-task": ("finetune.h5", ["psth", "--task", "0", "--phase", "train", "--population", "output"],
                  "finetune-psth.png"),
    "weights-task": ("finetune.h5", ["weights", "--task", "1", "--out", "w1.png"], "w1.png"),
}


@pytest.fixture(scope="module")
def plots(runs):
    """Every plot case started at once, in the runs folder. {case: (code, stdout, stderr)}."""
    (runs / "custom").mkdir(exist_ok=True)
    return _finish({case: _start("plot", file, *args, cwd=runs) for case, (file, args, _) in PLOTS.items()})


@pytest.mark.parametrize("case", list(PLOTS))
def test_plot_writes_a_png(runs, plots, case):
    code, stdout, stderr = plots[case]
    assert code == 0, stderr
    assert "Traceback" not in stderr
    expected = runs / PLOTS[case][2]
    assert Path(runs / stdout.strip()).resolve() == expected.resolve()
    assert expected.stat().st_size > 5000
    width, height = _png_size(expected)
    assert 400 <= width <= 4000 and 300 <= height <= 4000, (width, height)


def test_plot_default_output_is_next_to_the_run_file(runs, tmp_path):
    """Started from another folder, the default PNG still lands beside the run file."""
    proc = subprocess.run(cli_command("plot", str(runs / "finetune.h5"), "accuracy"), capture_output=True, text=True,
                          cwd=tmp_path, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(runs / "finetune-accuracy.png")
    assert (runs / "finetune-accuracy.png").stat().st_size > 5000
    assert list(tmp_path.iterdir()) == []


def test_plot_of_an_incomplete_file(cut_copy):
    proc = subprocess.run(cli_command("plot", str(cut_copy), "psth", "--phase", "train"), capture_output=True, text=True,
                          env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).stat().st_size > 5000


# ---------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(runs, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """{case: (path, text the error must contain)}."""
    folder = tmp_path_factory.mktemp("bad")
    text = folder / "notes.h5"
    text.write_text("these are notes, not HDF5\n")
    other = folder / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "someone-elses-format"
        f.create_dataset("x", data=np.arange(10))
    newer = folder / "newer.h5"
    shutil.copy(runs / "hlop.h5", newer)
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    half = folder / "half.h5"
    data = (runs / "hlop.h5").read_bytes()
    half.write_bytes(data[: len(data) // 2])
    return {
        "text": (text, "not an HDF5 file"),
        "other-format": (other, "not an hlopsim run file (format='someone-elses-format'"),
        "newer": (newer, f"format_version {FORMAT_VERSION + 1} is newer than this hlopsim reads "
                         f"(≤ {FORMAT_VERSION})"),
        "truncated": (half, "cannot be read (truncated or damaged?)"),
        "missing": (folder / "missing.h5", "no such file"),
    }


# case -> (run file, plot arguments, texts the error line must contain)
BAD_PLOTS = {
    "unknown-kind": ("hlop.h5", ["rastr"], ["'rastr'", "raster, psth"]),
    "task-out-of-range": ("hlop.h5", ["raster", "--task", "2"], ["task 2", "0 <= task < 2"]),
    "task-not-int": ("hlop.h5", ["psth", "--task", "one"], ["--task 'one'"]),
    "unknown-population": ("hlop.h5", ["raster", "--population", "hiden_1"], ["'hiden_1'", "hidden_1"]),
    "malformed-window": ("hlop.h5", ["raster", "--window", "0.1-0.2"], ["--window '0.1-0.2'", "START:STOP"]),
    "reversed-window": ("hlop.h5", ["raster", "--window", "0.2:0.1"], ["--window '0.2:0.1'"]),
    "unknown-phase": ("hlop.h5", ["psth", "--phase", "tset"], ["'tset'", "train, test"]),
    "option-not-used": ("hlop.h5", ["accuracy", "--window", "0:1"], ["does not use --window"]),
    "angles-finetune": ("finetune.h5", ["angles"], ["angles", "lateral", "finetune"]),
}


BAD_FILE_PLOTS = ("other-format", "truncated")
"""Bad files also given to ``plot`` (it opens files exactly as ``inspect`` does)."""


@pytest.fixture(scope="module")
def bad_results(runs, bad_files, tmp_path_factory):
    """Every bad-file case started at once. ({(command, case): (code, stdout, stderr)}, cwd)."""
    folder = tmp_path_factory.mktemp("bad-run")
    started = {}
    for case, (path, _) in bad_files.items():
        started[("inspect", case)] = _start("inspect", str(path), cwd=folder)
        started[("inspect --json", case)] = _start("inspect", str(path), "--json", cwd=folder)
    for case in BAD_FILE_PLOTS:
        started[("plot", case)] = _start("plot", str(bad_files[case][0]), "accuracy", cwd=folder)
    return _finish(started), folder


@pytest.mark.parametrize("command, case", [(command, case) for command in ("inspect", "inspect --json")
                                           for case in ("text", "other-format", "newer", "truncated", "missing")]
                         + [("plot", case) for case in BAD_FILE_PLOTS])
def test_bad_file_is_one_error_line(bad_files, bad_results, command, case):
    path, message = bad_files[case]
    results, folder = bad_results
    _assert_one_error_line(results[(command, case)], path, message)
    assert results[(command, case)][1] == ""
    assert list(folder.iterdir()) == []
    assert not path.with_name(f"{path.stem}-accuracy.png").exists()


@pytest.mark.parametrize("case", list(BAD_PLOTS))
def test_bad_plot_argument_is_one_error_line(runs, case, capsys):
    """In-process through ``protocols.cli.main`` (the console script's entry point)."""
    from hlopsim.protocols.cli import main

    file, args, must_contain = BAD_PLOTS[case]
    before = sorted(p.name for p in runs.iterdir())
    code = main(["plot", str(runs / file), *args])
    captured = capsys.readouterr()
    _assert_one_error_line((code, captured.out, captured.err), runs / file, *must_contain)
    assert sorted(p.name for p in runs.iterdir()) == before
