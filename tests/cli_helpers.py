"""Running the real `hlopsim` CLI in a subprocess from tests (no mocks)."""
import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def cli_env() -> dict:
    """The environment for a CLI subprocess, with the project importable from any folder."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cli_command(*args) -> list[str]:
    """``python -m protocols.cli ARGS`` with this interpreter."""
    return [sys.executable, "-m", "protocols.cli", *args]
