"""The feed-forward spiking network as a spec: layer sizes, neuron model, clocks, input coding."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from brian2 import Hz, Quantity, ms

from hlopsim.models.neurons import NeuronModel, lif
from hlopsim.models.quantities import parse_quantity


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
    batch_size : int
        Samples simulated side by side in one Brian2 run: the network is instantiated
        ``batch_size`` times with shared weights, and one supervised update is made per batch.
    init_gain : float
        Initial weights (in units of the neuron's spike cost) are drawn from
        ``N(0, (init_gain / sqrt(fan_in))²)``.
    input_size, output_size : int or None
        Number of input neurons (one per feature) and output neurons (one per class and head);
        None until `with_sizes` fills them from the data.
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

    def __post_init__(self):
        set_ = object.__setattr__
        if isinstance(self.hidden, (str, bytes)) or not hasattr(self.hidden, "__iter__"):
            raise ValueError(f"network.hidden = {self.hidden!r} must be a list of layer widths")
        set_(self, "hidden", tuple(self.hidden))
        for width in self.hidden:
            if not (isinstance(width, int) and not isinstance(width, bool) and width > 0):
                raise ValueError(f"network.hidden = {list(self.hidden)}: every width must be a positive integer")
        if not isinstance(self.neuron, NeuronModel):
            raise ValueError(f"network.neuron = {self.neuron!r} must be a NeuronModel")
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
