"""The one experiment loop from Python (`hlopsim.run_tasks`) and protocol files from a path (CLI)."""
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import run_file_datasets, tiny_split_tasks

import hlopsim as hs
from hlopsim.protocols.experiment.loop import output_heads

NET = dict(hidden=[16], batch_size=16)



def test_output_heads_lay_out_one_slice_per_head():
    tasks = tiny_split_tasks(2)
    n, slices = output_heads(tasks)
    assert n == 6 and [(s.start, s.stop) for s in slices] == [(0, 2), (2, 4), (4, 6)]
    shared = [hs.make_task("a", t.x_train, t.y_train + 2 * i, t.x_test, t.y_test + 2 * i) for i, t in enumerate(tasks)]
    assert output_heads(shared) == (6, [None, None, None])
    with pytest.raises(ValueError, match="integer head"):
        output_heads([tasks[0], shared[1]])


class StopAtTask1(hs.Finetune):
    """Fine-tuning that is interrupted (as by Ctrl-C) when task 1 begins."""

    def begin_task(self, net, task):
        if task == 1:
            raise KeyboardInterrupt
        super().begin_task(net, task)


def test_a_script_run_resumes_by_calling_it_again_and_equals_an_uninterrupted_run(tmp_path):
    tasks = tiny_split_tasks()
    kwargs = dict(epochs=1, seed=3, target="numpy", encoder="poisson")
    full = hs.run_tasks(tasks, hs.NetworkSpec(**NET), "finetune", out=tmp_path / "full.h5", **kwargs)
    with pytest.raises(KeyboardInterrupt):
        hs.run_tasks(tasks, hs.NetworkSpec(**NET), StopAtTask1(), out=tmp_path / "cut.h5", **kwargs)
    with hs.open_run(tmp_path / "cut.h5") as run:
        assert not run.complete
    again = hs.run_tasks(tasks, hs.NetworkSpec(**NET), "finetune", out=tmp_path / "cut.h5", **kwargs)
    np.testing.assert_array_equal(again.accuracy, full.accuracy)
    a, b = run_file_datasets(tmp_path / "full.h5"), run_file_datasets(tmp_path / "cut.h5")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # Heads: each task's test reads only its own two outputs, and every task was learned.
    assert np.all(np.diag(full.accuracy) > 70), full.accuracy


def test_resuming_with_other_settings_is_refused(tmp_path):
    tasks = tiny_split_tasks(10)
    with pytest.raises(KeyboardInterrupt):
        hs.run_tasks(tasks, hs.NetworkSpec(**NET), StopAtTask1(), epochs=1, target="numpy", out=tmp_path / "r.h5")
    with pytest.raises(ValueError, match="different run"):
        hs.run_tasks(tasks, hs.NetworkSpec(**NET), "finetune", epochs=1, seed=1, target="numpy", out=tmp_path / "r.h5")


def test_bad_tasks_get_one_line_errors():
    task = tiny_split_tasks(2)[0]
    bad = hs.make_task("t", task.x_train, task.y_train, task.x_test, task.y_test)
    object.__setattr__(bad, "x_train", task.x_train * 2)
    with pytest.raises(ValueError, match=r"x_train must hold finite values in \[0, 1\]"):
        hs.run_tasks([bad], hs.NetworkSpec(**NET), "finetune", target="numpy")
    with pytest.raises(ValueError, match=r"must be a NeuronModel \(call it: lif\(\)\)"):
        hs.NetworkSpec(neuron=hs.lif)
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        hs.run_tasks([task], hs.NetworkSpec(**NET), "sgd", target="numpy")
    with pytest.raises(ValueError, match="2 layers"):
        hs.run_tasks([task], hs.NetworkSpec(hidden=[8, 8], batch_size=16), hs.HLOP(first_task=[2, 2], per_task=[1, 1]),
                     target="numpy")


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hlopsim", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_a_protocol_file_from_a_path_runs_and_resume_needs_no_protocol(tmp_path):
    protocol = tmp_path / "my-split.toml"
    protocol.write_text('''
[protocol]
name = "my-split"
tasks = 2
epochs = 1
[data]
train_size = 300
[tasks]
builder = "split"
classes = [[0, 1], [2, 3]]
heads = "per-task"
[network]
hidden = [16]
batch_size = 32
[lateral]
first_task = [4, 4]
per_task = [2, 2]
consolidation_epochs = 0
[sim]
target = "numpy"
''')
    done = run_cli("run", str(protocol), "--method", "finetune", "--out", "a.h5", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with hs.open_run(tmp_path / "a.h5") as run:
        assert run.protocol == "my-split" and run.complete
        assert run.config["tasks"]["heads"] == "per-task"
        R = run.accuracy_matrix()
    assert R.shape == (2, 2) and R[0, 0] > 80, R
    refused = run_cli("run", "--resume", "a.h5", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "complete run" in refused.stderr


@pytest.mark.parametrize("text, message", [
    ("[network]\nhiden = [16]\n", "unknown key network.hiden"),
    ("[netwrk]\nhidden = [16]\n", "unknown section [netwrk]"),
    ("[protocol]\nepochs = \"3\"\n", "protocol.epochs"),
    ("[tasks]\nbuilder = \"rotated\"\n", "tasks.builder = 'rotated' is unknown"),
    ("[network]\ndt = \"1 mV\"\n", "network.dt"),
    ("[neuron]\nmodel = \"custom\"\n", "neuron.equations"),
    ("not toml at all [", "not a valid TOML file"),
])
def test_a_bad_protocol_file_is_one_line_naming_the_key(tmp_path, text, message):
    protocol = tmp_path / "bad.toml"
    protocol.write_text(text)
    done = run_cli("run", str(protocol), "--out", "x.h5", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("hlopsim: error:") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr, done.stderr
    assert not (tmp_path / "x.h5").exists()


def test_unknown_protocol_names_the_bundled_ones_and_version(tmp_path):
    done = run_cli("run", "./nope.toml", cwd=tmp_path)
    assert done.returncode == 2 and "permuted-digits" in done.stderr and "path of a protocol file" in done.stderr
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"hlopsim {hs.__version__}"


def test_public_api_lists_only_what_it_has():
    for name in hs.__all__:
        assert getattr(hs, name) is not None, name
    with pytest.raises(AttributeError):
        hs.no_such_name


def test_a_custom_neuron_model_from_a_protocol_file(tmp_path):
    protocol = tmp_path / "custom.toml"
    protocol.write_text('''
[protocol]
tasks = 2
epochs = 1
[tasks]
builder = "split"
heads = "per-task"
classes = [[0, 1], [2, 3]]
[network]
hidden = [16]
batch_size = 32
[neuron]
model = "custom"
name = "refractory-lif"
equations = "dv/dt = -v / tau : volt (unless refractory)"
threshold = "v > theta"
reset = "v -= theta"
refractory = "2 ms"
spike_cost = "20 mV"
parameters = {tau = "100 ms", theta = "20 mV"}
initial = {v = "0 mV"}
[sim]
target = "numpy"
''')
    done = run_cli("run", str(protocol), "--method", "finetune", "--out", "c.h5", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with hs.open_run(tmp_path / "c.h5") as run:
        assert "unless refractory" in run.population_info("hidden_1")["model"]
        R = run.accuracy_matrix()
    assert np.mean(np.diag(R)) > 85, R


def test_a_refractory_model_resumes_bit_for_bit(tmp_path):
    """Refractoriness is reset with the rest of the state at every presentation, so a resumed run (whose
    network starts fresh) equals an uninterrupted one."""
    tasks = tiny_split_tasks(20)
    neuron = hs.NeuronModel("rlif", equations="dv/dt = -v / tau : volt (unless refractory)", threshold="v > th",
                            reset="v = 0*mV", refractory="3 ms", parameters={"tau": "20 ms", "th": "15 mV"},
                            spike_cost="15 mV", initial={"v": "0 mV"})
    net = hs.NetworkSpec(hidden=[16], neuron=neuron, batch_size=16)
    hs.run_tasks(tasks, net, "finetune", epochs=1, target="numpy", out=tmp_path / "full.h5")
    with pytest.raises(KeyboardInterrupt):
        hs.run_tasks(tasks, net, StopAtTask1(), epochs=1, target="numpy", out=tmp_path / "cut.h5")
    hs.run_tasks(tasks, net, "finetune", epochs=1, target="numpy", out=tmp_path / "cut.h5")
    a, b = run_file_datasets(tmp_path / "full.h5"), run_file_datasets(tmp_path / "cut.h5")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_lateral_lists_shorter_than_the_network_repeat_their_last_entry():
    """The bundled lists name two weight layers; a deeper network takes their last entry for the others
    (what the run file stores), and a list longer than the network is refused in one line."""
    from hlopsim.protocols.experiment.config import ConfigError, Experiment, apply_overrides, load_protocol

    base = load_protocol("permuted-digits")
    deep = Experiment.from_config(apply_overrides(base, ["network.hidden=[16,16,16]"]))
    assert deep.config["lateral"]["first_task"] == [16, 32, 32, 32]
    assert deep.config["lateral"]["hebbian_rate"] == ["16 Hz", "6 Hz", "6 Hz", "6 Hz"]
    spec = deep.method("hlop").lateral
    assert spec.first_task == (16, 32, 32, 32) and spec.per_task == (10, 20, 20, 20)
    shallow = Experiment.from_config(apply_overrides(base, ["network.hidden=[16]"]))
    assert shallow.config["lateral"]["per_task"] == [10, 20]              # as given when it fits
    with pytest.raises(ConfigError, match=r"lateral.first_task \(4, 4, 4\), lateral.per_task \(10, 20\).*same number"):
        Experiment.from_config(apply_overrides(base, ["network.hidden=[16]", "lateral.first_task=[4,4,4]"]))
