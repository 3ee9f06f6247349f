"""The scripts in examples/ run as a user would run them (a real subprocess each, tiny settings)."""
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script, *args, cwd):
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_own_neuron_then_analyse_its_run_file_with_elephant(tmp_path):
    done = run("own_neuron.py", "--tiny", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ACC" in done.stdout and (tmp_path / "alif.h5").is_file()
    pytest.importorskip("elephant", reason="examples/analyse_with_elephant.py needs pip install '.[export]'")
    analysed = run("analyse_with_elephant.py", "alif.h5", cwd=tmp_path)
    assert analysed.returncode == 0, analysed.stderr
    lines = analysed.stdout.splitlines()
    assert any(line.startswith("hidden_1") and "Hz" in line and "CV" in line for line in lines), analysed.stdout


def test_own_data(tmp_path):
    done = run("own_data.py", "--tiny", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ACC") == 2
    assert (tmp_path / "blobs-finetune.h5").is_file() and (tmp_path / "blobs-hlop.h5").is_file()


@pytest.mark.slow   # fast tier time; its parts: tests/test_synapses.py, test_isi.py, test_state_recording.py
def test_the_biological_study_runs_and_its_trial_aligned_analysis(tmp_path):
    """The README's walkthrough: the protocol file through the CLI (tiny), then the analysis script."""
    pytest.importorskip("elephant", reason="examples/biological_study.py needs pip install '.[export]'")
    from cli_helpers import TINY, cli_command, cli_env
    done = subprocess.run(cli_command("run", str(EXAMPLES / "biological_study.toml"), "--out", "bio.h5", *TINY,
                                      "--set", "network.batch_size=8", "--set", "record.presentations=10",
                                      "--set", "data.test_size=100"),
                          capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    analysed = run("biological_study.py", "bio.h5", "--plot", "bio.png", cwd=tmp_path)
    assert analysed.returncode == 0, analysed.stderr
    out = analysed.stdout
    assert "hidden_1.theta_a" in out and "hidden_1.g_e" in out and "ISI CV" in out, out
    # presentations 8 and 9 of a test run follow a trial and a silence: some start adapted
    inherited = [line for line in out.splitlines() if "inherits" in line]
    assert inherited and " 0 % of" not in inherited[0], out
    assert (tmp_path / "bio.png").stat().st_size > 1000
