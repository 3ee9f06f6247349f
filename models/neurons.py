"""Neuron models as Brian2 equations: what is simulated, not how.

A `NeuronModel` is frozen text plus parameters with units. `sim.build` turns it into a NeuronGroup;
nothing here creates a Brian2 object. Users may pass their own equations, threshold and reset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from brian2 import Equations, Quantity, mV, ms, volt

from models.quantities import parse_quantity


@dataclass(frozen=True)
class NeuronModel:
    """A spiking neuron model defined by Brian2 equation strings.

    Parameters
    ----------
    name : str
        Short label stored in run files.
    equations : str
        Brian2 model equations; must define the membrane variable ``v`` (volt) that synapses drive.
    threshold, reset : str
        Brian2 threshold condition and reset statements.
    parameters : Mapping[str, Quantity]
        Values substituted by name into the equations (Brian2 checks their units at build time).
    spike_cost : Quantity
        Input (in volts of ``v``) that one output spike stands for. For an integrate-and-fire
        neuron with subtractive reset the firing rate per step is ``r = clip(u / spike_cost, 0, 1)``
        where ``u`` is the mean input per step; the rate-based credit assignment uses this map.
    initial : Mapping[str, Quantity]
        State restored by "reset dynamics, keep weights" before every presentation.
    method : str
        Brian2 integration method (passed explicitly to keep Brian2 quiet and choices visible).
    """

    name: str
    equations: str
    threshold: str
    reset: str
    parameters: Mapping[str, Quantity]
    spike_cost: Quantity
    initial: Mapping[str, Quantity] = field(default_factory=dict)
    method: str = "exact"

    def __post_init__(self):
        try:
            eqs = Equations(self.equations)
        except Exception as err:  # Brian2 raises several exception types for bad text
            raise ValueError(f"neuron model {self.name!r}: malformed equations {self.equations!r}: {err}") from None
        if "v" not in eqs.names:
            raise ValueError(f"neuron model {self.name!r}: equations must define the membrane variable 'v'")
        if not float(self.spike_cost / volt) > 0:
            raise ValueError(f"neuron model {self.name!r}: spike_cost = {self.spike_cost} must be a positive voltage")


def lif(tau_m="20 ms", v_threshold="20 mV") -> NeuronModel:
    """Leaky integrate-and-fire neuron with subtractive reset.

    ``dv/dt = -v / tau_m``; a synaptic spike adds its weight (volt) to ``v``; when ``v > v_threshold``
    the neuron spikes and ``v -= v_threshold`` (subtractive reset keeps the surplus, so the firing rate
    follows the input rate: ``r ≈ clip(u / v_threshold, 0, 1)`` spikes per step for slow leak).

    Parameters
    ----------
    tau_m : Quantity or str
        Membrane time constant (second).
    v_threshold : Quantity or str
        Threshold above rest (volt); also the spike cost used by the credit assignment.
    """
    tau = parse_quantity(tau_m, ms, name="neuron.tau_m", positive=True)
    theta = parse_quantity(v_threshold, mV, name="neuron.v_threshold", positive=True)
    return NeuronModel(
        name="lif",
        equations="dv/dt = -v / tau_m : volt",
        threshold="v > v_threshold",
        reset="v -= v_threshold",
        parameters={"tau_m": tau, "v_threshold": theta},
        spike_cost=theta,
        initial={"v": 0 * mV},
        method="exact",
    )
