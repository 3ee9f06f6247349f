"""Data safety under faults: Ctrl-C inside a Brian2 run, two writers of one file, ``--overwrite``, a
full or read-only file system, damaged run files, arguments that are not UTF-8, a closed output pipe
and sizes that cannot fit in memory.

Each fault must end as one line — ``hlopsim: error: …`` with exit code 2, or ``hlopsim: interrupted; …``
with exit code 130 — with no traceback, and nothing already written may be lost: an interrupted or
failed run leaves a file that reads and resumes to the uninterrupted result. Runs, signals and
concurrent writers are real subprocesses; the full and read-only file systems are small tmpfs mounts
(skipped where this process may not mount). Cases that need no second process call the CLI's
``main`` in this process.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import TINY, cli_command, cli_env
from hlopsim.protocols.cli import main
from hlopsim.sim.runfile import RunFileBusyError, RunFileError, RunRecorder, being_written, open_run

TRAIN, TEST = 128, 450          # per task, TINY's sizes (data.train_size, the digits' default test split)
COMPARED = ("metrics/accuracy_matrix", "segments/task", "segments/stage", "segments/trial", "segments/start_step",
            "populations/hidden_1/spike_step", "populations/hidden_1/spike_neuron",
            "populations/output/segment_end", "weights/w_1/after_task_1", "lateral/w_2/H_after_task_1")


def start(*args, cwd) -> subprocess.Popen:
    return subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=cli_env())


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


def one_line(result, code: int, *texts) -> str:
    """The single stderr line of a result (returncode, stdout, stderr), checked."""
    returncode, stdout, stderr = result
    assert "Traceback" not in stdout + stderr, stderr
    assert returncode == code, (returncode, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    prefix = "hlopsim: interrupted" if code == 130 else "hlopsim: error: "
    assert lines[0].startswith(prefix), lines[0]
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def run_main(capsys, *args) -> tuple[int, str, str]:
    """The CLI's ``main`` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def arrays(path) -> dict:
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in COMPARED}


def assert_same_run(path, reference) -> None:
    got, expected = arrays(path), arrays(reference)
    for name in COMPARED:
        assert np.array_equal(got[name], expected[name], equal_nan=True), name


def file_state(path) -> tuple[int, int]:
    """(last checkpointed task or -1, segments written) of a file another process is writing; (-2, 0) if
    it cannot be read at this moment."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            task = json.loads(f["checkpoint"].attrs["state"])["task"] if "checkpoint" in f else -1
            return task, len(f["segments/task"])
    except (OSError, KeyError, ValueError):
        return -2, 0


OLD_RUN = b"the previous run, which --overwrite must keep until the new one is complete\n" * 100
CREATION_DELAYS_MS = (0, 10)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict:
    """The subprocess scenarios, started side by side (each in its own folder); {name: (returncode,
    stdout, stderr, folder)} plus ``"first still running"``.

    - ``reference``: a complete, uninterrupted run of the tiny protocol (hlop, seed 0);
    - ``interrupted``: ``--overwrite`` of an existing file, Ctrl-C once task 1's training block is on
      disk, i.e. during the last evaluation (one Brian2 run of 2 × 450 presentations);
    - ``first``: a longer run (3 tasks) writing run.h5; once the file exists, ``second`` (``--out run.h5
      --overwrite``) and ``third`` (``--resume run.h5``) start in the same folder;
    - ``created-<ms>``: Ctrl-C <ms> ms after the first file appears in the run's folder;
    - ``full``: a run on a small tmpfs that this fixture fills up (a filler file) as soon as task 0's
      checkpoint is on disk; left out where this process may not mount.
    """
    base = tmp_path_factory.mktemp("scenes")
    folders, procs = {}, {}
    disk = mount(base / "disk", "8m")

    def launch(name, *args, folder=None):
        folders[name] = folder or base / name
        folders[name].mkdir(exist_ok=True)
        procs[name] = start(*args, cwd=folders[name])

    launch("reference", "run", "permuted-digits", *TINY, "--out", "run.h5")
    (base / "interrupted").mkdir()
    (base / "interrupted" / "run.h5").write_bytes(OLD_RUN)
    launch("interrupted", "run", "permuted-digits", *TINY, "--out", "run.h5", "--overwrite")
    launch("first", "run", "permuted-digits", *TINY, "--tasks", "3", "--out", "run.h5")
    for delay in CREATION_DELAYS_MS:
        launch(f"created-{delay}", "run", "permuted-digits", *TINY, "--out", "run.h5")
    if disk is not None:
        launch("full", "run", "permuted-digits", *TINY, "--out", disk / "run.h5")

    seen, signalled, still_running = {}, set(), {}
    deadline, next_poll = time.time() + 300, 0.0
    while time.time() < deadline:
        now = time.time()
        for delay in CREATION_DELAYS_MS:
            name = f"created-{delay}"
            if name in signalled or procs[name].poll() is not None:
                continue
            if name not in seen and any(folders[name].iterdir()):
                seen[name] = now
            if name in seen and now >= seen[name] + delay / 1000:
                procs[name].send_signal(signal.SIGINT)
                signalled.add(name)
        if now >= next_poll:
            next_poll = now + 0.005
            if "interrupted" not in signalled and procs["interrupted"].poll() is None:
                task, n_segments = file_state(folders["interrupted"] / "run.h5.new")
                if task == 0 and n_segments >= TRAIN + 2 * TEST + TRAIN:
                    procs["interrupted"].send_signal(signal.SIGINT)
                    signalled.add("interrupted")
            if "second" not in procs and (folders["first"] / "run.h5").exists():
                launch("second", "run", "permuted-digits", *TINY, "--out", "run.h5", "--overwrite",
                       folder=folders["first"])
                launch("third", "run", "--resume", "run.h5", folder=folders["first"])
            for name in ("second", "third"):
                if name in procs and name not in still_running and procs[name].poll() is not None:
                    still_running[name] = procs["first"].poll() is None
            if disk is not None and "full" not in signalled and file_state(disk / "run.h5")[0] == 0:
                fill(disk / "filler")
                signalled.add("full")
        if all(proc.poll() is not None for proc in procs.values()) and "second" in procs:
            break
        time.sleep(0.0005)
    results = {name: (*finish(proc), folders[name]) for name, proc in procs.items()}
    results["first still running"] = still_running
    results["signalled"] = signalled
    results["disk"] = disk
    yield results
    if disk is not None:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def mount(folder: Path, size: str, read_only: bool = False) -> Path | None:
    """A tmpfs of ``size`` mounted at ``folder`` (created), or None where this process may not mount."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return None
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return folder if done.returncode == 0 else None


def fill(path: Path) -> None:
    """Write ``path`` until its file system is full."""
    block = b"\0" * 65536
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError:
            pass
    with open(path, "ab", buffering=0) as handle:   # the last partial block
        try:
            while True:
                handle.write(b"\0" * 512)
        except OSError:
            pass


@pytest.fixture(scope="module")
def reference(scenes) -> Path:
    """The run file of the uninterrupted run."""
    code, _, stderr, folder = scenes["reference"]
    assert code == 0, stderr
    return folder / "run.h5"


def resumable_copy(reference: Path, path: Path) -> Path:
    """The reference run as if killed after its last checkpoint: resuming it finishes at once."""
    shutil.copy(reference, path)
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    return path


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(name, size, read_only=False)``: a small tmpfs folder under tmp_path (unmounted
    afterwards); skips the test where this process may not mount."""
    mounted = []

    def mount_or_skip(name: str, size: str, read_only: bool = False) -> Path:
        folder = mount(tmp_path / name, size, read_only)
        if folder is None:
            pytest.skip("cannot mount a small tmpfs here (needs root and mount)")
        mounted.append(folder)
        return folder

    yield mount_or_skip
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# ---------------------------------------------------------------------------------- interrupts

STOP_INSIDE_A_RUN = r"""
import os, signal
import numpy as np
from brian2 import second
from hlopsim.sim import prefs
prefs.configure("numpy")
from hlopsim.data.encoders import regular_encode
from hlopsim.models.network import NetworkSpec
from hlopsim.sim.network import SimNetwork

spec = NetworkSpec(hidden=[8], batch_size=4).with_sizes(6, 3)
net = SimNetwork(spec, np.random.default_rng(0), record_spikes=False)
spikes = regular_encode(np.full((12, 6), 0.5), 500.0, float(spec.dt / second), spec.n_steps)
before = signal.getsignal(signal.SIGINT)
scored = []

def on_batch(batch):
    scored.append(batch.batch)
    if batch.batch == 1:
        os.kill(os.getpid(), signal.SIGINT)    # Ctrl-C while batch 2 of 3 is being simulated
    return False

try:
    net.present(spikes, on_batch=on_batch)
    print("finished", scored)
except KeyboardInterrupt:
    print("interrupted", scored)
print("handler restored", signal.getsignal(signal.SIGINT) is before)
try:
    net.present(spikes)
except RuntimeError as err:
    print("next run refused:", "interrupted" in str(err))
"""


def test_ctrl_c_inside_a_brian2_run_is_never_scored(tmp_path):
    """Brian2 turns Ctrl-C into Network.stop(): its run returns early. The unfinished batch must not be
    handed to the learning rule or scored; the run raises KeyboardInterrupt instead."""
    done = subprocess.run([sys.executable, "-c", STOP_INSIDE_A_RUN], capture_output=True, text=True, cwd=tmp_path,
                          env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["interrupted [0, 1]", "handler restored True", "next run refused: True"], \
        done.stdout + done.stderr
    assert "Simulation stop requested" not in done.stderr


def test_ctrl_c_during_the_last_evaluation_of_an_overwrite(scenes, reference, capsys):
    """Ctrl-C during the last evaluation of ``--overwrite``: exit 130 with one line, the old file untouched,
    the new run incomplete (task 1 not scored) and resumable to the uninterrupted result."""
    assert "interrupted" in scenes["signalled"], "the run finished before it could be interrupted"
    *result, folder = scenes["interrupted"]
    target, pending = folder / "run.h5", folder / "run.h5.new"
    line = one_line(result, 130, "run.h5.new keeps 1 finished task of 2", "hlopsim run --resume run.h5")
    assert "run.h5 is unchanged" in line
    assert target.read_bytes() == OLD_RUN
    with h5py.File(pending, "r") as f:
        assert not f.attrs["complete"] and f.attrs["replaces"] == "run.h5"
        assert json.loads(f["checkpoint"].attrs["state"])["task"] == 0
        R = f["metrics/accuracy_matrix"][()]
        assert np.isfinite(R[0]).all() and np.isnan(R[1]).all(), R   # the half-run evaluation was not scored
    # a plain run may not start over the pending replacement
    one_line(run_main(capsys, "run", "permuted-digits", *TINY, "--out", target), 2, "run.h5.new", "--resume")
    code, _, err = run_main(capsys, "run", "--resume", target, "--quiet")   # finds run.h5.new
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["run.h5"]
    assert_same_run(target, reference)
    with h5py.File(target, "r") as f:
        assert f.attrs["complete"] and "replaces" not in f.attrs


@pytest.mark.parametrize("delay_ms", CREATION_DELAYS_MS)
def test_ctrl_c_right_after_the_file_is_created(scenes, delay_ms, capsys):
    """Ctrl-C within ~10 ms of the run's first file appearing leaves no file or one `inspect` reads, and
    no stray temporary file."""
    name = f"created-{delay_ms}"
    assert name in scenes["signalled"], "the run ended before it could be interrupted"
    *result, folder = scenes[name]
    one_line(result, 130)
    left = sorted(p.name for p in folder.iterdir())
    assert left in ([], ["run.h5"]), left
    if left:
        code, out, err = run_main(capsys, "inspect", folder / "run.h5")
        assert code == 0 and "INCOMPLETE" in out, err


def test_overwrite_that_fails_at_once_keeps_the_old_run(reference, tmp_path, capsys):
    """A new run that fails in its first batch (a diverging circuit) leaves the complete old run as it was."""
    target = tmp_path / "run.h5"
    shutil.copy(reference, target)
    old = target.read_bytes()
    line = one_line(run_main(capsys, "run", "permuted-digits", *TINY, "--out", target, "--overwrite",
                             "--set", 'lateral.hebbian_rate=["20000 Hz","20000 Hz"]'), 2, "diverged")
    assert "run.h5 is unchanged" in line and "holds no finished task" in line
    assert target.read_bytes() == old
    with open_run(target) as run:
        assert run.complete


# ---------------------------------------------------------------------------------- concurrent writers

def test_a_second_writer_is_refused_and_the_first_run_completes(scenes):
    """While a run writes F, ``run --out F --overwrite`` and ``run --resume F`` are refused with one line
    (nothing touched), and the first run ends with a complete, readable F."""
    assert scenes["first still running"] == {"second": True, "third": True}, \
        "the first run ended before the others were refused; make it longer"
    for name in ("second", "third"):
        one_line(scenes[name][:3], 2, "run.h5", "is being written by another running process")
    code, _, stderr, folder = scenes["first"]
    assert code == 0, stderr
    assert sorted(p.name for p in folder.iterdir()) == ["run.h5"]
    with open_run(folder / "run.h5") as run:
        assert run.complete and run.n_tasks == 3 and np.isfinite(run.accuracy_matrix()).all()


def test_the_writer_lock(tmp_path):
    """A recorder holds its file for as long as it writes: a second recorder (overwrite or resume) is
    refused, readers are not."""
    path = tmp_path / "run.h5"
    recorder = RunRecorder.create(path, attrs={"method": "hlop", "config": "{}", "dt": 0.001,
                                               "n_steps_per_presentation": 40})
    recorder.write_checkpoint(task=0)
    assert being_written(path)
    with pytest.raises(RunFileBusyError, match="being written by another running process"):
        RunRecorder.create(path, attrs={}, overwrite=True)
    with pytest.raises(RunFileBusyError, match="being written"):
        RunRecorder.resume(path)
    with open_run(path) as run:              # reading is not blocked
        assert not run.complete_flag
    recorder.close(complete=False)
    assert not being_written(path)
    RunRecorder.resume(path)[0].close(complete=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


# ---------------------------------------------------------------------------------- full and read-only disks

def test_full_disk_during_a_run_keeps_every_finished_task(scenes, reference, capsys):
    """The disk fills during task 1: one line (no traceback, no crash), a readable file holding task 0,
    and once there is space again ``--resume`` gives the uninterrupted run."""
    disk = scenes["disk"]
    if disk is None:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount)")
    assert "full" in scenes["signalled"], "the run ended before the disk could be filled"
    line = one_line(scenes["full"][:3], 2, "No space left on device", "run.h5 keeps 1 finished task of 2",
                    "--resume")
    assert "cannot write run file" in line
    with open_run(disk / "run.h5") as run:
        assert not run.complete and run.summary()["tasks_evaluated"] == 1
    (disk / "filler").unlink()
    code, _, err = run_main(capsys, "run", "--resume", disk / "run.h5", "--quiet")
    assert code == 0, err
    assert_same_run(disk / "run.h5", reference)


def test_full_disk_during_an_export(reference, tmp_path, mount_tmpfs):
    disk = mount_tmpfs("disk", "200k")
    line = one_line(finish(start("export", reference, "--nwb", disk / "run.nwb", cwd=tmp_path)), 2,
                    "No space left on device")
    assert "run.nwb" in line
    assert list(disk.iterdir()) == []


def test_read_only_folders(reference, tmp_path, mount_tmpfs, capsys):
    disk = mount_tmpfs("disk", "4m")
    resumable_copy(reference, disk / "run.h5")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    before = (disk / "run.h5").read_bytes()
    one_line(run_main(capsys, "run", "permuted-digits", *TINY, "--out", disk / "new.h5"), 2, "not writable")
    one_line(run_main(capsys, "export", reference, "--nwb", disk / "run.nwb"), 2, "not writable")
    one_line(run_main(capsys, "plot", reference, "accuracy", "--out", disk / "R.png"), 2, "not writable")
    one_line(run_main(capsys, "run", "--resume", disk / "run.h5"), 2, "run.h5", "read-only")
    assert (disk / "run.h5").read_bytes() == before


def test_device_outputs(tmp_path, capsys):
    for extra in ([], ["--overwrite"]):
        one_line(run_main(capsys, "run", "permuted-digits", *TINY, "--out", "/dev/full", *extra), 2,
                 "/dev/full", "not a regular file")


# ---------------------------------------------------------------------------------- bad arguments and settings

def test_a_method_file_that_is_a_folder_is_refused_before_any_method_runs(tmp_path, capsys):
    (tmp_path / "hlop.h5").mkdir()
    one_line(run_main(capsys, "run", "permuted-digits", *TINY, "--method", "finetune,hlop", "--out", tmp_path), 2,
             "hlop.h5", "is a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["hlop.h5"]


@pytest.mark.parametrize("setting, texts", [
    (["--set", 'lateral.dt="100 ms"'], ["lateral.dt", "100 ms", "network.presentation"]),
    (["--set", "lateral.decorrelation_floor=inf"], ["lateral.decorrelation_floor", "inf"]),
    (["--set", 'lateral.window="1 ms"'], ["lateral.window", "lateral.dt"]),
    (["--seed", str(2 ** 64)], ["protocol.seed", str(2 ** 64)]),
    (["--set", "network.batch_size=100000000"], ["estimated", "network.batch_size"]),
    (["--set", "network.hidden=[2000000]"], ["estimated", "network.hidden"]),
    (["--tasks", "1000000"], ["estimated", "protocol.tasks"]),
    (["--set", "lateral.consolidation_epochs=100000000"], ["estimated", "lateral.consolidation_epochs"]),
    (["--set", 'network.dt="0.000001 ms"'], ["estimated", "network.presentation or network.dt"]),
    (["--set", 'network.presentation="1000000000 ms"'], ["estimated", "network.presentation or network.dt"]),
], ids=["lateral-dt", "floor-inf", "window", "seed", "batch", "hidden", "tasks", "consolidation", "dt",
        "presentation"])
def test_settings_that_cannot_work_are_refused_before_anything_is_built(tmp_path, capsys, setting, texts):
    started = time.perf_counter()
    one_line(run_main(capsys, "run", "permuted-digits", *TINY, *setting, "--out", tmp_path / "run.h5"), 2, *texts)
    assert time.perf_counter() - started < 30
    assert list(tmp_path.iterdir()) == []


def test_the_memory_estimate_guards_run_tasks_too(tmp_path):
    import hlopsim as hs
    from hlopsim.sim.resources import MemoryEstimateError
    tasks = hs.permuted_tasks(hs.load_digits(), 2, np.random.default_rng(0))
    with pytest.raises(MemoryEstimateError, match="network.batch_size"):
        hs.run_tasks(tasks, hs.NetworkSpec(batch_size=10 ** 8), "finetune", epochs=1, out=tmp_path / "run.h5",
                     target="numpy")
    assert list(tmp_path.iterdir()) == []


def test_arguments_that_are_not_utf8(tmp_path):
    for args in (["run", "permuted-digits", "--out", os.fsdecode(b"r\xffn.h5")], ["inspect", os.fsdecode(b"\xff.h5")]):
        command = [os.fsencode(part) for part in cli_command(*args)]
        done = subprocess.run(command, capture_output=True, cwd=tmp_path, env=cli_env(), timeout=60)
        result = (done.returncode, done.stdout.decode(), done.stderr.decode(errors="replace"))
        one_line(result, 2, "is not valid UTF-8")
    assert list(tmp_path.iterdir()) == []


def test_inspect_into_a_closed_pipe(reference, tmp_path):
    """``hlopsim inspect FILE | head -1``: the reader goes away; the command ends quietly."""
    proc = subprocess.Popen(cli_command("inspect", reference), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, env=cli_env())
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and stderr == "", stderr


def test_plot_prints_the_file_it_writes(reference, tmp_path, capsys):
    code, out, err = run_main(capsys, "plot", reference, "accuracy", "--out", tmp_path / "d2")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "d2.png") and (tmp_path / "d2.png").is_file()


# ---------------------------------------------------------------------------------- resuming bad files

def _set_attr(name, value):
    def change(path):
        with h5py.File(path, "r+") as f:
            f.attrs[name] = value
    return change


def _set_state(**changes):
    def change(path):
        with h5py.File(path, "r+") as f:
            state = json.loads(f["checkpoint"].attrs["state"])
            f["checkpoint"].attrs["state"] = json.dumps({**state, **changes})
    return change


def _delete(name):
    def change(path):
        with h5py.File(path, "r+") as f:
            del f[name]
    return change


def _config(edit):
    def change(path):
        with h5py.File(path, "r+") as f:
            config = json.loads(f.attrs["config"])
            f.attrs["config"] = json.dumps(edit(config))
    return change


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


RESUME_CASES = {
    "text": (lambda path: path.write_text("not a run\n"), ["not an hlopsim run file"]),
    "empty": (lambda path: path.write_bytes(b""), ["not an hlopsim run file"]),
    "truncated": (_truncate, ["truncated or damaged"]),
    "config-empty": (_set_attr("config", "{}"), ["[protocol]"]),
    "config-list": (_set_attr("config", "[1, 2]"), ["config", "list"]),
    "config-not-json": (_set_attr("config", "{{"), ["config", "neither JSON nor TOML"]),
    "config-lacks-sections": (_config(lambda c: {"protocol": c["protocol"]}), ["holds a different run"]),
    "config-contradicts-arrays": (_config(lambda c: {**c, "network": {**c["network"], "hidden": [32]}}),
                                  ["holds a different run"]),
    "config-bad-value": (_config(lambda c: {**c, "network": {**c["network"], "batch_size": 0}}),
                         ["stored configuration", "network.batch_size"]),
    "checkpoint-not-json": (lambda path: _set_attr_group(path, "{{"), ["/checkpoint attribute 'state'"]),
    "checkpoint-task-beyond": (_set_state(task=7), ["names task 7", "2 tasks"]),
    "checkpoint-no-rng": (_set_state(rng=None), ["/checkpoint attribute 'state'"]),
    "no-accuracy-matrix": (_delete("metrics/accuracy_matrix"), ["metrics/accuracy_matrix"]),
    "no-weight-snapshot": (_delete("weights/w_1/after_task_1"), ["'w_1'", "after task 1"]),
    "no-spikes": (_delete("populations/hidden_1/spike_step"), ["hidden_1"]),
}


def _set_attr_group(path, text):
    with h5py.File(path, "r+") as f:
        f["checkpoint"].attrs["state"] = text


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_of_a_bad_file_is_one_line_and_touches_nothing(reference, tmp_path, capsys, case):
    change, texts = RESUME_CASES[case]
    path = resumable_copy(reference, tmp_path / "run.h5")
    change(path)
    before = path.read_bytes()
    one_line(run_main(capsys, "run", "--resume", path), 2, str(path), *texts)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5"]


def test_resume_of_a_file_killed_after_its_last_checkpoint(reference, tmp_path, capsys):
    """The control of the cases above: the same copy, undamaged, resumes (nothing left to run) and is then
    the reference run, complete."""
    path = resumable_copy(reference, tmp_path / "run.h5")
    code, _, err = run_main(capsys, "run", "--resume", path, "--quiet")
    assert code == 0, err
    assert_same_run(path, reference)
    with open_run(path) as run:
        assert run.complete


# ---------------------------------------------------------------------------------- damaged run files

def _replace(name, make):
    def change(path):
        with h5py.File(path, "r+") as f:
            data = make(f[name][()])
            del f[name]
            f.create_dataset(name, data=data)
    return change


def _assign(name, index, value):
    def change(path):
        with h5py.File(path, "r+") as f:
            f[name][index] = value
    return change


def _attr(group, name, value):
    def change(path):
        with h5py.File(path, "r+") as f:
            f[group].attrs[name] = value
    return change


RASTER, PSTH, ANGLES = ["plot", "{f}", "raster"], ["plot", "{f}", "psth"], ["plot", "{f}", "angles"]
TRAIN_PSTH = ["plot", "{f}", "psth", "--phase", "train", "--stage", "0"]   # reads the first spikes
INSPECT, COMPARE, EXPORT = ["inspect", "{f}"], ["compare", "{f}"], ["export", "{f}", "--nwb", "{f}.nwb"]
# damage -> (change, the dataset the message names, commands that read it, what the Python API refuses)
DAMAGES = {
    "2-D segment column": (_replace("segments/task", lambda a: np.stack([a, a], axis=1)), "segments/task",
                           [INSPECT, COMPARE, RASTER, EXPORT], lambda run: run.segments()),
    "float spike steps": (_replace("populations/hidden_1/spike_step", lambda a: a.astype(float)),
                          "populations/hidden_1/spike_step", [INSPECT, COMPARE, RASTER, EXPORT], None),
    "segment_end decreasing": (_assign("populations/hidden_1/segment_end", 5, 0), "populations/hidden_1/segment_end",
                               [INSPECT, COMPARE, PSTH, EXPORT], lambda run: run.n_segments),
    "start_step after stop_step": (_assign("segments/start_step", 3, 10 ** 9), "segments/start_step",
                                   [INSPECT, COMPARE, RASTER, EXPORT], lambda run: run.segments()),
    "unsorted spikes": (_assign("populations/hidden_1/spike_step", slice(0, 10), np.arange(10)[::-1] * 10 ** 6),
                        "populations/hidden_1/spike_step", [RASTER, TRAIN_PSTH, EXPORT],
                        lambda run: run.spikes("hidden_1")),
    "NaN in H": (_assign("lateral/w_1/H_after_task_1", (0, 0), np.nan), "lateral/w_1/H_after_task_1",
                 [INSPECT, ANGLES], lambda run: run.lateral("w_1", 1)),
    "population without neurons": (_attr("populations/output", "n_neurons", 0), "populations/output",
                                   [INSPECT, COMPARE, RASTER, EXPORT], None),
    "neuron index out of range": (_assign("populations/output/spike_neuron", 0, 10 ** 6),
                                  "populations/output/spike_neuron", [RASTER, EXPORT],
                                  lambda run: run.spikes("output")),
    "phase code without a name": (_assign("segments/phase", 0, 200), "segments/phase", [INSPECT, RASTER, EXPORT],
                                  lambda run: run.segments()),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_run_file_is_one_line_naming_the_file_and_dataset(reference, tmp_path, capsys, damage):
    change, dataset, commands, api = DAMAGES[damage]
    path = tmp_path / "run.h5"
    shutil.copy(reference, path)
    change(path)
    for command in commands:
        one_line(run_main(capsys, *[part.format(f=path) for part in command]), 2, str(path), dataset)
    if api is not None:
        with pytest.raises(RunFileError, match=dataset):
            with open_run(path) as run:
                api(run)
    else:
        with pytest.raises(RunFileError, match=dataset):
            open_run(path)
