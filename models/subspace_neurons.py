"""Spiking subspace neurons of the lateral circuit (``lateral.neuron = "spiking"``), as Brian2 equations.

A subspace neuron is a `models.neurons.NeuronModel` (frozen: equation text, threshold, reset and
parameters with units). `sim.spiking_lateral` instantiates it twice per subspace neuron, as an ON
and an OFF unit, by renaming every variable of the model (``v`` → ``v_on`` / ``v_off``); nothing here
creates a Brian2 object. Any model whose membrane variable ``v`` (volt) is driven by synaptic jumps
and whose firing rate for a mean input of ``u`` volt per step is close to ``u / spike_cost`` spikes
per step (integrate-and-fire with subtractive reset) can be substituted.

``initial`` is the state every ON/OFF unit is reset to at the start of a presentation. The default
starts the membrane half-way to threshold: an integrate-and-fire unit with subtractive reset then
fires ``round(U / θ)`` spikes for a cumulative input ``U`` (a rounding rather than a truncating
spike-count code), which removes the half-spike lag of a unit starting at rest.
"""
from __future__ import annotations

from dataclasses import replace

from brian2 import mV

from hlopsim.models.neurons import NeuronModel, lif
from hlopsim.models.quantities import parse_quantity


def integrate_and_fire(v_threshold="20 mV") -> NeuronModel:
    """Non-leaky integrate-and-fire unit with subtractive reset (the default subspace neuron).

    ``v`` only changes by synaptic jumps; when ``v > v_threshold`` the unit spikes and
    ``v -= v_threshold``. The spike count is then the cumulative input in units of the threshold,
    rounded (``v`` starts at ``v_threshold / 2``): a first-order sigma-delta code, so the firing rate
    is ``u / v_threshold`` spikes per step for a mean input of ``u`` volt per step, with a count
    error below one spike over any interval.

    Parameters
    ----------
    v_threshold : Quantity or str
        Threshold (volt); also the spike cost. Its value does not matter to the circuit, which scales
        the synaptic gain by it.
    """
    theta = parse_quantity(v_threshold, mV, name="subspace_neuron.v_threshold", positive=True)
    return NeuronModel(
        name="if",
        equations="v : volt",
        threshold="v > v_threshold",
        reset="v -= v_threshold",
        parameters={"v_threshold": theta},
        spike_cost=theta,
        initial={"v": theta / 2},
        method="exact",
    )


def leaky_integrate_and_fire(tau_m="500 ms", v_threshold="20 mV") -> NeuronModel:
    """Leaky integrate-and-fire unit with subtractive reset.

    ``dv/dt = -v / tau_m``; jumps and reset as `integrate_and_fire`. The leak loses a fraction of
    about ``T / (2 tau_m)`` of the input integrated over an inter-spike interval ``T``, so the rate
    code is biased low (and the circuit's fixed point scaled) unless ``tau_m`` is much longer than
    the inter-spike intervals; provided for comparison and as an example of a substituted model.

    Parameters
    ----------
    tau_m : Quantity or str
        Membrane time constant (second).
    v_threshold : Quantity or str
        Threshold (volt); also the spike cost.
    """
    model = lif(tau_m=tau_m, v_threshold=v_threshold)
    # Same start as `integrate_and_fire`: half a threshold, so the count is the rounded drive.
    return replace(model, initial={"v": model.spike_cost / 2})
