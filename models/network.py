"""The feed-forward spiking network as a spec: layer sizes, neuron and synapse models, clocks, input coding."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from brian2 import Hz, Quantity, ms

from hlopsim.models.neurons import NeuronModel, lif
from hlopsim.models.quantities import parse_quantity
from hlopsim.models.synapses import Delta, SynapseModel


def _default_neuron() -> NeuronModel:
    return lif(tau_m="100 ms", v_threshold="20 mV")


@dataclass(frozen=True)
class NetworkSpec:
    """A fully connected spiking network ``input → hidden … → output``.

    Every argument has the bundled protocol's default, so ``NetworkSpec(hidden=[256], neuron=my_model)``
    is a whole network; the input and output sizes are filled in from the tasks by `run_tasks`.

    Parameters
    ----------
    hidden : sequence of int
        Widths of the hidden layers (may be empty: input → output).
    neuron : NeuronModel
        Model of every hidden and output neuron (default: `lif` with ``tau_m = 100 ms``,
        ``v_threshold = 20 mV``).
    dt : Quantity or str
        Simulation time step (second), e.g. ``"1 ms"``.
    presentation : Quantity or str
        How long one sample is shown (second); a whole number of ``dt``.
    input_max_rate : Quantity or str
        Firing rate (Hz) of an input neuron at full intensity (value 1); at most one spike per ``dt``.
    input_dead_time : Quantity or str
        Shortest interval between two input spikes of the ``"refractory-poisson"`` encoder
        (`data.encoders.refractory_poisson_encode`); a whole number of ``dt``, at least ``dt``
        (``dt``: plain Bernoulli-Poisson). The other encoders ignore it.
    batch_size : int
        Samples simulated side by side in one Brian2 run: the network is instantiated
        ``batch_size`` times with shared weights, and one supervised update is made per batch.
    init_gain : float
        Initial weights (in units of the neuron's spike cost) are drawn from
        ``N(0, (init_gain / sqrt(fan_in))²)``.
    input_size, output_size : int or None
        Number of input neurons (one per feature) and output neurons (one per class and head);
        None until `with_sizes` fills them from the data.
    synapse : SynapseModel or sequence of SynapseModel
        How spikes reach each weight layer's postsynaptic neurons (`models.synapses`): one model for
        every layer, or one per weight layer (input → first layer first). Default `Delta()`
        (``v_post += w``). Delays must be whole numbers of ``dt``.
    isi : Quantity or str
        Inter-stimulus interval: silence (no input spikes) before every presentation, during which
        the network runs on and its state decays. ``"0 ms"`` (default): presentations follow each other
        at once. A whole number of ``dt``. Spikes in the silence are counted in no presentation.
    reset : bool
        Restore every neuron's ``initial`` state at the start of each presentation (True, default:
        presentations are independent trials), or only at the start of each Brian2 run (False: within a
        training or test run the state carries over from one presentation, through the silence, to the next).
        The rate map the credit assignment uses is measured from the initial state (`sim.transfer`), as
        a presentation with reset starts; without reset, give the silence a few membrane time constants.
    """

    hidden: tuple[int, ...] = (128,)
    neuron: NeuronModel = field(default_factory=_default_neuron)
    dt: Quantity = "1 ms"
    presentation: Quantity = "40 ms"
    input_max_rate: Quantity = "500 Hz"
    batch_size: int = 64
    init_gain: float = 1.5
    input_size: int | None = None
    output_size: int | None = None
    synapse: SynapseModel | tuple[SynapseModel, ...] = field(default_factory=Delta)
    input_dead_time: Quantity = "2 ms"
    isi: Quantity = "0 ms"
    reset: bool = True

    def __post_init__(self):
        set_ = object.__setattr__
        if isinstance(self.hidden, (str, bytes)) or not hasattr(self.hidden, "__iter__"):
            raise ValueError(f"network.hidden = {self.hidden!r} must be a list of layer widths")
        set_(self, "hidden", tuple(self.hidden))
        for width in self.hidden:
            if not (isinstance(width, int) and not isinstance(width, bool) and width > 0):
                raise ValueError(f"network.hidden = {list(self.hidden)}: every width must be a positive integer")
        if not isinstance(self.neuron, NeuronModel):
            hint = f" (call it: {self.neuron.__name__}())" if callable(self.neuron) else ""
            raise ValueError(f"network.neuron = {self.neuron!r} must be a NeuronModel{hint}")
        for name, unit in (("dt", ms), ("presentation", ms), ("input_max_rate", Hz)):
            set_(self, name, parse_quantity(getattr(self, name), unit, name=f"network.{name}", positive=True))
        for name in ("input_size", "output_size", "batch_size"):
            value = getattr(self, name)
            if value is None and name != "batch_size":
                continue
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"network.{name} = {value!r} must be a positive integer")
        steps = float(self.presentation / self.dt)
        if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ValueError(
                f"network.presentation = {self.presentation} must be a whole number of dt = {self.dt}")
        if float(self.input_max_rate * self.dt) > 1:
            raise ValueError(
                f"network.input_max_rate = {self.input_max_rate} gives more than one spike per dt = {self.dt}")
        if not (isinstance(self.init_gain, (int, float)) and math.isfinite(self.init_gain) and self.init_gain > 0):
            raise ValueError(f"network.init_gain = {self.init_gain!r} must be a positive number")
        set_(self, "init_gain", float(self.init_gain))
        self._check_timing_and_synapses()

    def _check_timing_and_synapses(self):
        """Parse and check ``isi``, ``input_dead_time``, ``reset`` and ``synapse`` (one line per bad value)."""
        set_ = object.__setattr__
        isi = parse_quantity(self.isi, ms, name="network.isi")
        isi_steps = float(isi / self.dt)
        if not isi_steps >= 0 or abs(isi_steps - round(isi_steps)) > 1e-9:
            raise ValueError(f"network.isi = {self.isi!r} must be a time ≥ 0 and a whole number of dt = {self.dt}")
        set_(self, "isi", isi)
        dead = parse_quantity(self.input_dead_time, ms, name="network.input_dead_time", positive=True)
        dead_steps = float(dead / self.dt)
        if abs(dead_steps - round(dead_steps)) > 1e-9 or round(dead_steps) < 1:
            raise ValueError(f"network.input_dead_time = {self.input_dead_time!r} must be a whole number (≥ 1) "
                             f"of dt = {self.dt}")
        set_(self, "input_dead_time", dead)
        if not isinstance(self.reset, bool):
            raise ValueError(f"network.reset = {self.reset!r} must be true or false")
        n_layers = len(self.hidden) + 1
        synapse = self.synapse
        if isinstance(synapse, SynapseModel):
            pass
        elif isinstance(synapse, (list, tuple)) and all(isinstance(s, SynapseModel) for s in synapse):
            if len(synapse) != n_layers:
                raise ValueError(f"network.synapse names {len(synapse)} synapse models; the network has {n_layers} "
                                 "weight layers (give one model, or one per layer)")
            synapse = tuple(synapse)
        else:
            raise ValueError(f"network.synapse = {synapse!r} must be a SynapseModel (e.g. Delta(), ExpCurrent(), "
                             "Conductance()) or one per weight layer")
        set_(self, "synapse", synapse)
        for layer in range(n_layers):
            delay = self.synapse_for(layer).delay
            if delay is not None:
                steps = float(delay / self.dt)
                if abs(steps - round(steps)) > 1e-9:
                    raise ValueError(f"network.synapse delay = {delay} of layer w_{layer + 1} must be a whole number "
                                     f"of dt = {self.dt}")

    def synapse_for(self, layer: int) -> SynapseModel:
        """The synapse model of weight layer ``layer`` (0: input → first layer)."""
        if isinstance(self.synapse, SynapseModel):
            return self.synapse
        return self.synapse[layer]

    @property
    def dead_steps(self) -> int:
        """``input_dead_time`` in time steps (≥ 1)."""
        return int(round(float(self.input_dead_time / self.dt)))

    @property
    def isi_steps(self) -> int:
        """Time steps of silence before every presentation."""
        return int(round(float(self.isi / self.dt)))

    @property
    def period_steps(self) -> int:
        """Time steps from one presentation's start to the next: ``isi_steps + n_steps``."""
        return self.isi_steps + self.n_steps

    def with_sizes(self, input_size: int, output_size: int) -> "NetworkSpec":
        """This spec with its input and output sizes; a size already set must agree."""
        for name, value in (("input_size", input_size), ("output_size", output_size)):
            given = getattr(self, name)
            if given is not None and given != value:
                raise ValueError(f"network.{name} = {given} but the tasks need {value}")
        return replace(self, input_size=input_size, output_size=output_size)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Sizes of all populations, input first."""
        if self.input_size is None or self.output_size is None:
            raise ValueError("the network's input and output sizes are not set yet (NetworkSpec.with_sizes)")
        return (self.input_size, *self.hidden, self.output_size)

    @property
    def n_steps(self) -> int:
        """Time steps per presentation."""
        return int(round(float(self.presentation / self.dt)))

    @property
    def population_names(self) -> tuple[str, ...]:
        """Stable names of the populations: ``input``, ``hidden_1`` …, ``output``."""
        hidden = tuple(f"hidden_{i + 1}" for i in range(len(self.hidden)))
        return ("input", *hidden, "output")

    @property
    def weight_names(self) -> tuple[str, ...]:
        """Stable names of the weight layers, ``w_1`` (input → first layer) onwards."""
        return tuple(f"w_{i + 1}" for i in range(len(self.hidden) + 1))
