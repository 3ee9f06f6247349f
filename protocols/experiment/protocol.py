"""Run a protocol configuration (a bundled protocol or a protocol file) with one method.

The configuration becomes a typed `Experiment` (`protocols.experiment.config`), the experiment
builds its data set, tasks, network and method, and the one experiment loop (`run_tasks`) runs them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hlopsim.protocols.experiment.config import ConfigError, Experiment
from hlopsim.protocols.experiment.loop import RunResult, run_tasks


def run_protocol(config: dict, method: str, out: Path | None, *, overwrite: bool = False, progress: bool = True,
                 test_run_samples: int | None = None) -> RunResult:
    """Run a resolved protocol configuration with ``method``; write the run file ``out`` if given.

    An existing, interrupted ``out`` written by the same configuration and method is resumed.
    The task sequence draws from the first of four streams spawned from the protocol's seed; the
    loop uses the other three (initial weights, sample order, input spikes).
    """
    experiment = Experiment.from_config(config)
    method_object = experiment.method(method)
    task_rng = np.random.default_rng(np.random.SeedSequence(experiment.seed).spawn(4)[0])
    tasks = experiment.make_tasks(task_rng)
    return run_tasks(tasks, experiment.network, method_object, epochs=experiment.epochs, seed=experiment.seed,
                     out=out, overwrite=overwrite, lr=experiment.lr, logit_scale=experiment.logit_scale,
                     encoder=experiment.data.encoder, record_spikes=experiment.record_spikes,
                     target=experiment.target, progress=progress, config=experiment.config, name=experiment.name,
                     test_run_samples=test_run_samples, record_states=experiment.record_states,
                     propagation=experiment.propagation, threads=experiment.threads)


def resume_settings(path: Path) -> tuple[dict, str]:
    """The configuration and method stored in an interrupted run file (to finish it with `run_protocol`)."""
    from hlopsim.sim.runfile import read_checkpoint
    stored = read_checkpoint(path)
    config, method = stored["config"], stored["method"]
    if config.get("protocol", {}).get("kind") == "script":
        raise ConfigError(f"{str(path)!r} was written by a Python script (run_tasks); run the same script again "
                          "with the same file to resume it")
    return config, method
