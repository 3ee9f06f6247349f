"""``hlopsim sweep`` on Dask distributed: a two-worker LocalCluster gives the same run files as running
each run alone, a second sweep skips complete files and resumes interrupted ones, a failed run is
reported while the others complete; argument parsing; Brian2's shared code cache across processes."""
from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import h5py
import pytest
from cli_helpers import assert_same_run_files

from hlopsim.protocols.experiment.config import ConfigError
from hlopsim.protocols.experiment.protocol import run_protocol
from hlopsim.protocols.sweep import (add_sweep_parser, parse_grid, parse_seeds, plan_sweep, run_file_name, sweep,
                                     sweep_command)

distributed = pytest.importorskip("distributed")

TINY = ["protocol.tasks=2", "protocol.epochs=1", "data.train_size=64", "data.test_size=100",
        'sim.target="numpy"', "network.hidden=[32]"]




@pytest.fixture(scope="module")
def client():
    """A two-worker LocalCluster as `hlopsim sweep` starts it (one single-threaded process per worker)."""
    from hlopsim.protocols.sweep import _start_client
    client, cluster = _start_client(None, 2)
    yield client
    client.close()
    cluster.close()


# -- parsing and planning ----------------------------------------------------------------------------
def test_seeds_and_grid_parse():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3, 0-1,3") == [3, 0, 1]
    assert parse_grid(["network.hidden=[128],[64, 64]", 'sim.target="numpy"']) == [
        ("network.hidden", ["[128]", "[64, 64]"]), ("sim.target", ['"numpy"'])]
    assert run_file_name("hlop", [("network.hidden", "[64, 64]"), ("network.dt", '"0.5 ms"')], 3) == \
        "hlop_network.hidden=64-64_network.dt=0.5ms_seed3.h5"


@pytest.mark.parametrize("call, message", [
    (lambda: parse_seeds("4-1"), "--seeds '4-1': expected seeds like 0-4"),
    (lambda: parse_seeds("a"), "--seeds 'a'"),
    (lambda: parse_grid(["learning.lr"]), "--grid 'learning.lr' is not of the form section.key=value1,value2"),
    (lambda: parse_grid(["learning.lr=0.1,"]), "is not of the form"),
    (lambda: parse_grid(["protocol.seed=1,2"]), "give the seeds with --seeds"),
    (lambda: parse_grid(["learning.lr=1", "learning.lr=2"]), "names learning.lr twice"),
])
def test_bad_arguments_are_one_line_errors(call, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        call()


def test_plan_checks_every_run_before_anything_runs(tmp_path):
    runs = plan_sweep("permuted-digits", [0, 1], tmp_path, grid=parse_grid(["learning.lr=0.1,0.05"]),
                      methods=["finetune", "hlop"], overrides=TINY)
    assert len(runs) == 8 and len({run.path for run in runs}) == 8
    assert runs[0].config["learning"]["lr"] == 0.1 and runs[0].config["protocol"]["seed"] == 0
    with pytest.raises(ConfigError, match="--method 'sgd' is unknown"):
        plan_sweep("permuted-digits", [0], tmp_path, methods=["sgd"], overrides=TINY)
    with pytest.raises(ConfigError, match="unknown key"):
        plan_sweep("permuted-digits", [0], tmp_path, grid=parse_grid(["learning.rate=1,2"]), overrides=TINY)
    with pytest.raises(ConfigError, match="give the same file name"):
        plan_sweep("permuted-digits", [0], tmp_path, grid=parse_grid(['network.dt="1 ms","1ms"']), overrides=TINY)
    assert not list(tmp_path.iterdir())     # nothing written


# -- sweeps on the cluster ---------------------------------------------------------------------------
def test_sweep_equals_runs_alone_and_a_second_sweep_skips_or_resumes(tmp_path, client):
    lines = []
    first = sweep("permuted-digits", [0, 1], tmp_path / "sweep", grid=parse_grid(["learning.lr=0.1,0.05"]),
                  methods=["finetune"], overrides=TINY, client=client, progress=False, echo=lines.append)
    assert [run.status for run in first.runs] == ["done"] * 4, [run.error for run in first.runs]
    assert "groups (mean ± sd" in first.table and "finetune learning.lr=0.05" in first.table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for run in first.runs:        # the same runs, one after the other in this process
            run_protocol(run.config, run.method, tmp_path / run.path.name, progress=False)
    for run in first.runs:
        assert_same_run_files(run.path, tmp_path / run.path.name)

    stamps = {run.path: run.path.stat().st_mtime_ns for run in first.runs}
    again = sweep("permuted-digits", [0, 1], tmp_path / "sweep", grid=parse_grid(["learning.lr=0.1,0.05"]),
                  methods=["finetune"], overrides=TINY, client=client, progress=False, echo=lines.append)
    assert [run.status for run in again.runs] == ["skipped"] * 4
    assert {run.path: run.path.stat().st_mtime_ns for run in first.runs} == stamps

    # an interrupted file is resumed from its checkpoint, not started again
    interrupted = first.runs[0].path
    with h5py.File(interrupted, "r+") as f:
        f.attrs["complete"] = False
    third = sweep("permuted-digits", [0, 1], tmp_path / "sweep", grid=parse_grid(["learning.lr=0.1,0.05"]),
                  methods=["finetune"], overrides=TINY, client=client, progress=False, echo=lines.append)
    assert [(run.action, run.status) for run in third.runs] == [("resume", "done")] + [("skip", "skipped")] * 3
    with h5py.File(interrupted, "r") as f:
        assert bool(f.attrs["complete"])
    assert_same_run_files(interrupted, tmp_path / interrupted.name)

    # a complete file of other settings under a run's name is refused, not overwritten
    with pytest.raises(ConfigError):
        sweep("permuted-digits", [0], tmp_path / "missing" / "deeper", overrides=TINY, client=client, progress=False)
    other = sweep("permuted-digits", [0], tmp_path / "sweep", grid=parse_grid(["learning.lr=0.1"]),
                  methods=["finetune"], overrides=TINY + ["data.test_size=90"], client=client, progress=False,
                  echo=lines.append)
    assert other.runs[0].status == "failed" and "holds a run with other settings" in other.runs[0].error


def test_a_failing_run_is_reported_and_the_others_complete(tmp_path, client, capsys):
    """Through the command: --scheduler reaches the running cluster; exit code 1 names the failure."""
    parser = argparse.ArgumentParser()
    add_sweep_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", "permuted-digits", "--seeds", "0", "--method", "finetune", "--out",
                              str(tmp_path / "sweep"), "--grid", 'data.dataset="digits","no-such-file.npz"',
                              "--scheduler", client.scheduler_info()["address"], "--quiet",
                              *[f"--set={item}" for item in TINY]])
    assert sweep_command(args) == 1
    printed = capsys.readouterr().out
    bad = run_file_name("finetune", [("data.dataset", '"no-such-file.npz"')], 0)
    good = run_file_name("finetune", [("data.dataset", '"digits"')], 0)
    assert f"FAILED  {Path(bad).stem}: ConfigError: data.dataset = 'no-such-file.npz'" in printed
    assert f"done    {Path(good).stem}" in printed
    assert "1 of 2 runs failed" in printed and "groups (mean ± sd" in printed
    with h5py.File(tmp_path / "sweep" / good, "r") as f:
        assert bool(f.attrs["complete"])


# -- Brian2's code cache shared by processes -----------------------------------------------------------
CHILD = textwrap.dedent("""
    import sys
    from hlopsim.sim import prefs
    prefs.configure("cython")
    prefs.set_cache_dir(sys.argv[1])
    import brian2 as b
    group = b.NeuronGroup(4, "dv/dt = (1.5 - v) / (10*ms) : 1", threshold="v > 1", reset="v = 0",
                          method="exact", name="cache_probe")
    spikes = b.SpikeMonitor(group, name="cache_probe_spikes")
    b.Network(group, spikes).run(25 * b.ms)
    print([int(i) for i in spikes.i[:]], [round(float(t), 6) for t in spikes.t_[:]])
""")


@pytest.mark.slow
def test_two_processes_compile_into_one_shared_cache(tmp_path):
    """Two processes started together on an empty cache folder: both run, one module per code object."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cache = tmp_path / "cache"
    children = [subprocess.Popen([sys.executable, str(script), str(cache)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [child.communicate(timeout=600) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err for _, err in outputs]
    assert outputs[0][0] == outputs[1][0] and outputs[0][0].startswith("[0, 1, 2, 3, 0, 1, 2, 3] ")
    modules = sorted(p.name for p in cache.glob("*.so"))
    assert modules and len(modules) == len({name.split(".")[0] for name in modules})
    assert len(modules) == len(list(cache.glob("*.lock")))
