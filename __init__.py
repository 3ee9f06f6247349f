"""hlopsim: continual learning in event-driven spiking networks with Hebbian orthogonal projection (HLOP).

The public API, in one name::

    import hlopsim as hs
    tasks = hs.split_tasks(hs.load_digits(), classes=[(0, 1), (2, 3), (4, 5)], heads="per-task")
    result = hs.run_tasks(tasks, hs.NetworkSpec(hidden=[128], neuron=hs.adaptive_lif()),
                          hs.HLOP(first_task=[16, 32], per_task=[10, 20]), epochs=3, out="run.h5")
    print(result.summary)

Names are imported on first use, so ``import hlopsim`` (and ``hlopsim --help``) does not start Brian2.
"""
from importlib import import_module

__version__ = "0.2.0"

_WHERE = {
    # neuron models and network specs (models/)
    "NeuronModel": "hlopsim.models.neurons", "lif": "hlopsim.models.neurons",
    "adaptive_lif": "hlopsim.models.neurons", "izhikevich": "hlopsim.models.neurons",
    "NetworkSpec": "hlopsim.models.network", "LateralSpec": "hlopsim.models.lateral",
    "Delta": "hlopsim.models.synapses", "ExpCurrent": "hlopsim.models.synapses",
    "Conductance": "hlopsim.models.synapses", "StateRecording": "hlopsim.models.recording",
    # data sets, task builders, encoders (data/)
    "Dataset": "hlopsim.data", "load_digits": "hlopsim.data", "load_mnist_5k": "hlopsim.data",
    "load_idx": "hlopsim.data", "load_npz": "hlopsim.data", "load_dataset": "hlopsim.data",
    "Task": "hlopsim.data", "make_task": "hlopsim.data", "permuted_tasks": "hlopsim.data", "split_tasks": "hlopsim.data",
    "regular_encode": "hlopsim.data", "poisson_encode": "hlopsim.data", "random_phase_encode": "hlopsim.data",
    "refractory_poisson_encode": "hlopsim.data", "latency_encode": "hlopsim.data", "SpikeTrains": "hlopsim.data",
    # methods and the experiment loop (protocols/experiment/)
    "Finetune": "hlopsim.protocols.experiment.methods", "HLOP": "hlopsim.protocols.experiment.methods",
    "GPM": "hlopsim.protocols.experiment.methods", "Multitask": "hlopsim.protocols.experiment.methods",
    "EWC": "hlopsim.protocols.experiment.methods", "Replay": "hlopsim.protocols.experiment.methods",
    "HLOPReplay": "hlopsim.protocols.experiment.methods",
    "run_tasks": "hlopsim.protocols.experiment.loop", "RunResult": "hlopsim.protocols.experiment.loop",
    "run_protocol": "hlopsim.protocols.experiment.protocol", "load_protocol": "hlopsim.protocols.experiment.config",
    # the run file and its analysis
    "open_run": "hlopsim.sim.runfile", "RunFile": "hlopsim.sim.runfile", "RunFileError": "hlopsim.sim.runfile",
    "summarize": "hlopsim.protocols.metrics", "forward_transfer": "hlopsim.protocols.metrics",
    "learning_accuracy": "hlopsim.protocols.metrics", "to_neo_block": "hlopsim.protocols.reports.export",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name):
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value
        _plain_tracebacks()
        return value
    raise AttributeError(f"module 'hlopsim' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


def _plain_tracebacks():
    """Undo Brian2's process-wide exception hook (installed when Brian2 is imported), which presents
    every uncaught error — a user's own ValueError included — as a Brian2 bug to report."""
    import sys
    if getattr(sys.excepthook, "__module__", "").startswith("brian2"):
        sys.excepthook = sys.__excepthook__
