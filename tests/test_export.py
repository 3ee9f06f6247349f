"""`hlopsim export` (NWB via pynwb) and `protocols.reports.export.to_neo_block` (neo) on a tiny run file
written by ``hlopsim run`` (numpy target). Everything read back is compared with what
`hlopsim.sim.runfile.RunFile` reads from the run file. pynwb and neo are optional: the tests needing them
skip without them, and one test checks the one-line error when pynwb cannot be imported.
"""
from __future__ import annotations

import datetime
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from hlopsim.sim.runfile import RunFileError, open_run

from cli_helpers import cli_command, cli_env

TINY = ["--tasks", "2", "--epochs", "1", "--quiet",
        "--set", "data.train_size=128", "--set", "data.test_size=64", "--set", "network.hidden=[16]",
        "--set", "network.batch_size=32", "--set", "lateral.copies=8", "--set", "lateral.first_task=[4,4]",
        "--set", "lateral.per_task=[2,2]", "--set", "lateral.consolidation_epochs=0", "--set", 'sim.target="numpy"']
TRAIN_SIZE, TEST_PER_TASK = 128, 64




@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    """hlop.h5 of a tiny protocol (2 tasks, 128 training and 64 test samples per task)."""
    out = tmp_path_factory.mktemp("export-run") / "hlop.h5"
    proc = subprocess.run(cli_command("run", "permuted-digits", "--method", "hlop", "--out", str(out), *TINY),
                          capture_output=True, text=True, cwd=out.parent, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def nwb_file(run_file, tmp_path_factory) -> Path:
    """The run file exported by ``hlopsim export`` in a subprocess."""
    pytest.importorskip("pynwb")
    out = tmp_path_factory.mktemp("export-nwb") / "hlop.nwb"
    proc = subprocess.run(cli_command("export", str(run_file), "--nwb", str(out)), capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert proc.stdout.startswith(f"{out}: ") and "units" in proc.stdout, proc.stdout
    return out


def _unit_times(run, pop, neuron):
    times, neurons = run.spikes(pop)
    return times[neurons == neuron]


# ---------------------------------------------------------------------------------- NWB


def test_nwb_round_trip(run_file, nwb_file):
    pynwb = pytest.importorskip("pynwb")
    with open_run(run_file) as run, pynwb.NWBHDF5IO(str(nwb_file), "r") as io:
        nwb = io.read()
        seg = run.segments()
        units = nwb.units
        assert len(units) == sum(run.n_neurons(p) for p in run.populations)
        population = list(units["population"][:])
        neuron = np.asarray(units["neuron"][:])
        assert population == [p for p in run.populations for _ in range(run.n_neurons(p))]
        assert np.array_equal(neuron, np.concatenate([np.arange(run.n_neurons(p)) for p in run.populations]))
        end = float(seg["stop_s"][-1])
        assert end == pytest.approx((2 * TRAIN_SIZE + 2 * 2 * TEST_PER_TASK) * run.presentation_s)
        counts = {p: run.spike_counts(p).sum(axis=0) for p in run.populations}
        total = 0
        for i in range(len(units)):
            pop, n = population[i], int(neuron[i])
            times = np.asarray(units.get_unit_spike_times(i))
            assert times.size == counts[pop][n], (pop, n)
            np.testing.assert_allclose(times, _unit_times(run, pop, n), rtol=0, atol=1e-9)
            assert np.all(np.diff(times) >= 0)
            np.testing.assert_allclose(units.get_unit_obs_intervals(i), [[0.0, end]], rtol=0, atol=1e-12)
            total += times.size
        assert total == sum(int(c.sum()) for c in counts.values()) > 0
        assert units.resolution == run.dt

        trials = nwb.trials
        assert len(trials) == run.n_segments == 2 * TRAIN_SIZE + 2 * 2 * TEST_PER_TASK
        np.testing.assert_allclose(trials["start_time"][:], seg["start_s"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(trials["stop_time"][:], seg["stop_s"], rtol=0, atol=1e-12)
        for column in ("task", "stage", "epoch", "trial", "label"):
            assert np.array_equal(np.asarray(trials[column][:]), seg[column]), column
        assert [str(p) for p in trials["phase"][:]] == list(seg["phase"])

        for text in (f"protocol {run.protocol}", f"method {run.method}", f"seed {run.seed}"):
            assert text in nwb.session_description
        created = datetime.datetime.fromisoformat(run.attrs["created"])
        assert nwb.session_start_time == created
        identifier = nwb.identifier
    assert list(pynwb.validate(path=str(nwb_file))) == []  # NWB schema check (pynwb >= 4.2 signature)
    # the identifier is stable: the same file exported again (in-process this time) gets the same one
    from hlopsim.protocols.reports.export import to_nwb
    again = to_nwb(run_file, nwb_file.with_name("again.nwb"))
    with pynwb.NWBHDF5IO(str(again), "r") as io:
        assert io.read().identifier == identifier


def test_neo_nwbio_reads_the_nwb_file(run_file, nwb_file):
    pytest.importorskip("neo")
    try:
        from neo.io import NWBIO
    except ImportError:
        pytest.skip("neo.io.NWBIO is not available")
    blocks = NWBIO(str(nwb_file), "r").read_all_blocks()
    trains = [st for block in blocks for segment in block.segments for st in segment.spiketrains]
    with open_run(run_file) as run:
        counts = np.concatenate([run.spike_counts(p).sum(axis=0) for p in run.populations])
    assert len(trains) == counts.size
    assert sorted(len(st) for st in trains) == sorted(counts.tolist())


def test_incomplete_run_exports_its_complete_presentations(run_file, tmp_path):
    """A file cut as if killed while writing the last evaluation: only complete presentations."""
    pynwb = pytest.importorskip("pynwb")
    from hlopsim.protocols.reports.export import to_nwb
    cut = tmp_path / "cut.h5"
    shutil.copy(run_file, cut)
    with h5py.File(cut, "r+") as f:
        n = len(f["segments/task"])
        for pop in f["populations"]:
            f[f"populations/{pop}/segment_end"].resize((n - 2 * TEST_PER_TASK,))
    with open_run(cut) as run:
        assert not run.complete and run.n_segments == n - 2 * TEST_PER_TASK
        end = float(run.segments()["stop_s"][-1])
        counts = np.concatenate([run.spike_counts(p).sum(axis=0) for p in run.populations])
        out = to_nwb(run, tmp_path / "cut.nwb")
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        assert len(nwb.trials) == n - 2 * TEST_PER_TASK
        trains = [np.asarray(nwb.units.get_unit_spike_times(i)) for i in range(len(nwb.units))]
        assert [t.size for t in trains] == counts.tolist()
        assert max(t.max() for t in trains if t.size) < end
        np.testing.assert_allclose(nwb.units.get_unit_obs_intervals(0), [[0.0, end]])


def test_export_refuses_bad_outputs(run_file, tmp_path, capsys):
    pytest.importorskip("pynwb")
    from hlopsim.protocols.cli import main
    existing = tmp_path / "existing.nwb"
    existing.write_bytes(b"keep me")
    cases = [
        (["export", str(run_file), "--nwb", str(existing)], f"{existing}: exists; pass --overwrite"),
        (["export", str(run_file), "--nwb", str(tmp_path / "no" / "x.nwb")], "does not exist"),
        (["export", str(tmp_path / "missing.h5"), "--nwb", str(tmp_path / "x.nwb")], "no such file"),
        (["export", str(run_file), "--nwb", str(run_file), "--overwrite"], "is the run file"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("hlopsim: error: ") and expected in err, err
    assert existing.read_bytes() == b"keep me"
    assert not (tmp_path / "x.nwb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.nwb"]  # no temporary left behind
    assert main(["export", str(run_file), "--nwb", str(existing), "--overwrite"]) == 0
    assert existing.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


def test_export_without_pynwb_says_what_to_install(run_file, tmp_path):
    """Runs with or without pynwb installed: a meta-path finder makes ``import pynwb`` fail."""
    out = tmp_path / "x.nwb"
    code = textwrap.dedent(f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pynwb", "neo"):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import hlopsim.protocols.reports.export
        from hlopsim.protocols.cli import main
        assert "pynwb" not in sys.modules and "neo" not in sys.modules
        try:
            hlopsim.protocols.reports.export.to_neo_block({str(run_file)!r})
        except hlopsim.protocols.reports.export.MissingDependencyError as err:
            assert "neo" in str(err) and "pip install" in str(err), err
        else:
            raise AssertionError("to_neo_block worked without neo")
        sys.exit(main(["export", {str(run_file)!r}, "--nwb", {str(out)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hlopsim: error: NWB export needs pynwb: ") and "pip install '.[export]'" in lines[0]
    assert not out.exists()


# ---------------------------------------------------------------------------------- Neo


def test_neo_block_one_segment_per_stage_and_phase(run_file):
    pq = pytest.importorskip("quantities")
    pytest.importorskip("neo")
    from hlopsim.protocols.reports.export import to_neo_block
    with open_run(run_file) as run:
        block = to_neo_block(run)
        assert block.annotations["protocol"] == run.protocol and block.annotations["method"] == run.method
        assert block.annotations["seed"] == run.seed
        assert [s.name for s in block.segments] == ["stage 0 train", "stage 0 test", "stage 1 train", "stage 1 test"]
        seg = run.segments()
        n_units = sum(run.n_neurons(p) for p in run.populations)
        for segment in block.segments:
            stage, phase = segment.annotations["stage"], segment.annotations["phase"]
            sel = run.select(stage=stage, phase=phase)
            assert segment.annotations["tasks"] == ([stage] if phase == "train" else [0, 1])
            assert len(segment.spiketrains) == n_units
            counts = np.concatenate([run.spike_counts(p, sel).sum(axis=0) for p in run.populations])
            assert [len(st) for st in segment.spiketrains] == counts.tolist()
            t_start, t_stop = seg["start_s"][sel[0]], seg["stop_s"][sel[-1]]
            pops = [st.annotations["population"] for st in segment.spiketrains]
            assert pops == [p for p in run.populations for _ in range(run.n_neurons(p))]
            for st in segment.spiketrains:
                assert st.units == pq.s
                assert float(st.t_start) == pytest.approx(t_start) and float(st.t_stop) == pytest.approx(t_stop)
            st = max(segment.spiketrains, key=len)
            times, neurons = run.spikes(st.annotations["population"], window=(t_start, t_stop))
            np.testing.assert_allclose(st.magnitude, times[neurons == st.annotations["neuron"]], rtol=0, atol=1e-9)
            assert len(segment.epochs[0]) == sel.size
            assert np.array_equal(segment.epochs[0].array_annotations["segment"], sel)
        assert sum(len(st) for s in block.segments for st in s.spiketrains) == \
            sum(int(run.spikes_per_segment(p).sum()) for p in run.populations)


def test_neo_block_selection(run_file):
    pytest.importorskip("neo")
    from hlopsim.protocols.reports.export import to_neo_block
    block = to_neo_block(run_file, populations="output", phases=["test"], tasks=[1])
    assert [s.name for s in block.segments] == ["stage 0 test", "stage 1 test"]
    with open_run(run_file) as run:
        for segment in block.segments:
            sel = run.select(task=1, phase="test", stage=segment.annotations["stage"])
            assert segment.annotations["tasks"] == [1] and segment.annotations["n_presentations"] == sel.size
            assert [len(st) for st in segment.spiketrains] == run.spike_counts("output", sel).sum(axis=0).tolist()
            assert {st.annotations["population"] for st in segment.spiketrains} == {"output"}
    for bad in ({"populations": ["nope"]}, {"phases": "rest"}, {"tasks": [5]}):
        with pytest.raises(RunFileError):
            to_neo_block(run_file, **bad)
