"""The feed-forward spiking network as a spec: layer sizes, neuron model, clocks, input coding."""
from __future__ import annotations

import math
from dataclasses import dataclass

from brian2 import Quantity

from models.neurons import NeuronModel


@dataclass(frozen=True)
class NetworkSpec:
    """A fully connected spiking network ``input → hidden … → output``.

    Parameters
    ----------
    input_size : int
        Number of input (Poisson) neurons, one per pixel.
    hidden_sizes : tuple of int
        Widths of the hidden LIF layers.
    output_size : int
        Number of output LIF neurons (one per class, one shared head for all tasks).
    neuron : NeuronModel
        Model of every hidden and output neuron.
    dt : Quantity
        Simulation time step (second).
    presentation : Quantity
        How long one sample is shown (second); must be a whole number of ``dt``.
    input_max_rate : Quantity
        Poisson rate (Hz) of an input neuron at full pixel intensity.
    batch_size : int
        Samples simulated side by side in one Brian2 run: the network is instantiated
        ``batch_size`` times with shared weights, and one supervised update is made per batch.
    init_gain : float
        Initial weights (in units of the neuron's spike cost) are drawn from
        ``N(0, (init_gain / sqrt(fan_in))²)``.
    """

    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int
    neuron: NeuronModel
    dt: Quantity
    presentation: Quantity
    input_max_rate: Quantity
    batch_size: int = 64
    init_gain: float = 3.0

    def __post_init__(self):
        for name in ("input_size", "output_size", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"network.{name} = {value!r} must be a positive integer")
        for width in self.hidden_sizes:
            if not (isinstance(width, int) and width > 0):
                raise ValueError(f"network.hidden = {width!r} must be a positive integer")
        for name in ("dt", "presentation", "input_max_rate"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"network.{name} = {getattr(self, name)} must be positive")
        steps = float(self.presentation / self.dt)
        if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ValueError(
                f"network.presentation = {self.presentation} must be a whole number of dt = {self.dt}")
        if float(self.input_max_rate * self.dt) > 1:
            raise ValueError(
                f"network.input_max_rate = {self.input_max_rate} gives more than one spike per dt = {self.dt}")
        if not (math.isfinite(self.init_gain) and self.init_gain > 0):
            raise ValueError(f"network.init_gain = {self.init_gain!r} must be positive")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Sizes of all populations, input first."""
        return (self.input_size, *self.hidden_sizes, self.output_size)

    @property
    def n_steps(self) -> int:
        """Time steps per presentation."""
        return int(round(float(self.presentation / self.dt)))

    @property
    def population_names(self) -> tuple[str, ...]:
        """Stable names of the populations: ``input``, ``hidden_1`` …, ``output``."""
        hidden = tuple(f"hidden_{i + 1}" for i in range(len(self.hidden_sizes)))
        return ("input", *hidden, "output")

    @property
    def weight_names(self) -> tuple[str, ...]:
        """Stable names of the weight layers, ``w_1`` (input → first layer) onwards."""
        return tuple(f"w_{i + 1}" for i in range(len(self.layer_sizes) - 1))
