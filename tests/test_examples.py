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
