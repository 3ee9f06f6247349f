"""Neuron models as Brian2 equations: what is simulated, not how.

A `NeuronModel` is frozen text plus parameters with units. `sim.network` turns it into a NeuronGroup;
nothing here creates a Brian2 object. Users may pass their own equations, threshold, reset and
refractory period; the built-in models are `lif`, `adaptive_lif` and `izhikevich` (`NEURON_MODELS`).

How a model learns: the rate-based credit assignment (`sim.learning.credit`) needs the map from a
neuron's mean input per step ``u`` (in units of ``spike_cost``) to its firing rate (spikes per step).
``transfer = "integrate-and-fire"`` declares the analytic map ``clip(u, 0, 1)`` of an integrate-and-fire
neuron with subtractive reset; ``transfer = "measured"`` (the default) has `sim.transfer` measure the
model's own f–I curve with Brian2 when a network is built, and refuse the model with one line if it
cannot carry a rate code in one presentation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import brian2
from brian2 import Equations, Hz, Quantity, get_unit, mV, ms, volt
from brian2.units.fundamentalunits import Unit

from hlopsim.models.quantities import parse_quantity

#: Rate maps a model may declare (`NeuronModel.transfer`).
TRANSFERS = ("measured", "integrate-and-fire")

# SI symbols Brian2 spells out in full (as in `models.quantities`).
_SYMBOLS = {"s": brian2.second, "V": brian2.volt, "A": brian2.amp, "S": brian2.siemens, "F": brian2.farad}
_UNIT_NAME = re.compile(r"^\s*[-+]?[0-9.]+(?:[eE][-+]?\d+)?\s*([A-Za-z_][A-Za-z_0-9]*)?\s*$")


def parse_value(value, name: str):
    """A parameter or initial value written as a Quantity, a number or text such as ``"20 ms"``.

    The unit named in the text decides the dimensions (Brian2 checks them against the equations when
    the group is built); a bare number is dimensionless.

    Parameters
    ----------
    value : Quantity or float or str
    name : str
        Used in error messages, e.g. ``"neuron 'izhikevich' parameters['a']"``.

    Returns
    -------
    Quantity or float

    Raises
    ------
    ValueError
        One line naming ``name`` and the value if it is not a finite number with a known unit.
    """
    if isinstance(value, Quantity):
        return parse_quantity(value, get_unit(value.dim), name=name)
    if isinstance(value, str):
        match = _UNIT_NAME.match(value)
        if match is None:
            raise ValueError(f"{name} = {value!r} is not a number with a unit; expected e.g. '20 ms', '-65 mV' "
                             "or '0.2'")
        unit_name = match.group(1)
        if unit_name is None:
            return parse_quantity(value, Unit(1), name=name)
        unit = _SYMBOLS.get(unit_name) or getattr(brian2.units, unit_name, None)
        if not isinstance(unit, Unit):
            raise ValueError(f"{name} = {value!r}: unknown unit {unit_name!r}; expected e.g. '20 ms' or '-65 mV'")
        return parse_quantity(value, unit, name=name)
    return parse_quantity(value, Unit(1), name=name)


@dataclass(frozen=True)
class NeuronModel:
    """A spiking neuron model defined by Brian2 equation strings.

    Parameters
    ----------
    name : str
        Short label stored in run files and named in error messages.
    equations : str
        Brian2 model equations; must define the membrane variable ``v`` (volt) that synapses drive.
        A differential equation may carry the flag ``(unless refractory)`` only if ``refractory`` is set.
    threshold, reset : str
        Brian2 threshold condition and reset statements.
    parameters : Mapping[str, Quantity or str or float]
        Values substituted by name into the equations; text such as ``"20 ms"`` is parsed
        (`parse_value`). Brian2 checks their units against the equations at build time.
    spike_cost : Quantity or str
        The unit of the synaptic weights: one unit of weight adds ``spike_cost`` (volt) to ``v``
        when its presynaptic neuron spikes (``v += w``, ``w = weight · spike_cost``). Inputs ``u``
        of the rate-based learning are counted in this unit per step. For an integrate-and-fire
        neuron with subtractive reset it is the threshold, so that the rate per step is
        ``clip(u, 0, 1)``.
    initial : Mapping[str, Quantity or str or float]
        State restored by "reset dynamics, keep weights" before every presentation. Its ``v`` (0 V if
        absent) is also the reference of the output decision (`sim.network.RunActivity.scores`).
    method : str or tuple of str
        Brian2 integration method, e.g. ``"exact"`` (linear equations), ``"euler"``, ``"rk4"``. The
        default lets Brian2 take the first of ``("exact", "euler", "heun")`` that applies, so nonlinear
        equations (an exponential or quadratic integrate-and-fire neuron) work without setting it.
    refractory : Quantity or str or None
        Refractory period (time ≥ 0) passed to Brian2's ``NeuronGroup(refractory=...)``: no spike
        within this time after a spike, and equations flagged ``(unless refractory)`` are frozen.
        None: no refractory period.
    transfer : {"measured", "integrate-and-fire"}
        Rate map the credit assignment uses (module docstring): measured from this model with Brian2
        (default), or declared to be the analytic integrate-and-fire map ``clip(u, 0, 1)``.

    Raises
    ------
    ValueError
        One line naming the model and the bad field: malformed equations, no ``v``, a non-positive or
        non-voltage ``spike_cost``, a bad parameter/initial value, a negative or non-time
        ``refractory``, ``(unless refractory)`` without ``refractory``, or an unknown ``transfer``.
    """

    name: str
    equations: str
    threshold: str
    reset: str
    parameters: Mapping[str, Quantity]
    spike_cost: Quantity
    initial: Mapping[str, Quantity] = field(default_factory=dict)
    method: str | tuple[str, ...] = ("exact", "euler", "heun")
    refractory: Quantity | None = None
    transfer: str = "measured"

    def __post_init__(self):
        label = f"neuron model {self.name!r}"
        try:
            eqs = Equations(self.equations)
        except Exception as err:  # Brian2 raises several exception types for bad text
            raise ValueError(f"{label}: malformed equations {self.equations!r}: {err}") from None
        if "v" not in eqs.names:
            raise ValueError(f"{label}: equations must define the membrane variable 'v'")
        if isinstance(self.spike_cost, (str, Quantity)):
            cost = parse_quantity(self.spike_cost, volt, name=f"{label}: spike_cost")
        else:
            cost = self.spike_cost
        if not (isinstance(cost, Quantity) and cost.dim == volt.dim and float(cost / volt) > 0):
            raise ValueError(f"{label}: spike_cost = {self.spike_cost} must be a positive voltage")
        object.__setattr__(self, "spike_cost", cost)
        # Sorted by name: the same model gives the same spec (and run-file fingerprint) whatever the
        # order its parameters were written in (a protocol file, or its JSON copy in a run file).
        object.__setattr__(self, "parameters", {
            key: parse_value(value, f"{label}: parameters[{key!r}]") for key, value in sorted(dict(self.parameters).items())})
        object.__setattr__(self, "initial", {
            key: parse_value(value, f"{label}: initial[{key!r}]") for key, value in sorted(dict(self.initial).items())})
        if isinstance(self.method, list):
            object.__setattr__(self, "method", tuple(self.method))
        if self.refractory is not None:
            period = parse_quantity(self.refractory, ms, name=f"{label}: refractory")
            if float(period / ms) < 0:
                raise ValueError(f"{label}: refractory = {self.refractory!r} must be a time ≥ 0 (or None)")
            object.__setattr__(self, "refractory", period)
        elif any("unless refractory" in eq.flags for eq in eqs.values()):
            raise ValueError(f"{label}: equations use '(unless refractory)' but refractory is None; "
                             "give a refractory period such as '2 ms'")
        if self.transfer not in TRANSFERS:
            raise ValueError(f"{label}: transfer = {self.transfer!r} is unknown; expected one of "
                             f"{', '.join(map(repr, TRANSFERS))}")

    @property
    def v_start(self) -> Quantity:
        """Membrane potential every presentation starts from (``initial["v"]``, 0 V if absent)."""
        return self.initial.get("v", 0 * volt)


def lif(tau_m="20 ms", v_threshold="20 mV") -> NeuronModel:
    """Leaky integrate-and-fire neuron with subtractive reset.

    ``dv/dt = -v / tau_m``; a synaptic spike adds its weight (volt) to ``v``; when ``v > v_threshold``
    the neuron spikes and ``v -= v_threshold`` (subtractive reset keeps the surplus, so the firing rate
    follows the input rate: ``r ≈ clip(u / v_threshold, 0, 1)`` spikes per step for slow leak). It
    declares that analytic map (``transfer = "integrate-and-fire"``), so nothing is measured for it.

    Parameters
    ----------
    tau_m : Quantity or str
        Membrane time constant (second).
    v_threshold : Quantity or str
        Threshold above rest (volt); also the spike cost (the unit of the weights).
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
        transfer="integrate-and-fire",
    )


def adaptive_lif(tau_m="100 ms", v_threshold="20 mV", tau_adapt="200 ms", adapt_jump="2 mV",
                 refractory=None) -> NeuronModel:
    """Leaky integrate-and-fire neuron with a spike-triggered adaptive threshold.

    ``dv/dt = -v / tau_m``, ``dθ_a/dt = -θ_a / tau_adapt``; the neuron spikes when
    ``v > v_threshold + θ_a``, then ``v -= v_threshold + θ_a`` (subtractive reset by the current
    threshold) and ``θ_a += adapt_jump``. The adaptation ``θ_a`` carries across the steps of a
    presentation (every spike makes the next one dearer, so the rate grows sub-linearly with the input)
    and is reset to 0 with ``v`` at each presentation. Its rate map is measured (`sim.transfer`).

    Parameters
    ----------
    tau_m : Quantity or str
        Membrane time constant (second).
    v_threshold : Quantity or str
        Resting threshold above rest (volt); also the spike cost (the unit of the weights).
    tau_adapt : Quantity or str
        Decay time of the adaptation (second).
    adapt_jump : Quantity or str
        Threshold increase per spike (volt, ≥ 0).
    refractory : Quantity or str or None
        Refractory period; when given, no spike within it and the leak of ``v`` pauses during it
        (``(unless refractory)``; synaptic input still adds to ``v``).
    """
    tau = parse_quantity(tau_m, ms, name="neuron.tau_m", positive=True)
    theta = parse_quantity(v_threshold, mV, name="neuron.v_threshold", positive=True)
    tau_a = parse_quantity(tau_adapt, ms, name="neuron.tau_adapt", positive=True)
    jump = parse_quantity(adapt_jump, mV, name="neuron.adapt_jump")
    if float(jump / mV) < 0:
        raise ValueError(f"neuron.adapt_jump = {adapt_jump!r} must be ≥ 0")
    flag = " (unless refractory)" if refractory is not None else ""
    return NeuronModel(
        name="adaptive_lif",
        equations=f"dv/dt = -v / tau_m : volt{flag}\ndtheta_a/dt = -theta_a / tau_adapt : volt",
        threshold="v > v_threshold + theta_a",
        reset="v -= v_threshold + theta_a\ntheta_a += adapt_jump",
        parameters={"tau_m": tau, "v_threshold": theta, "tau_adapt": tau_a, "adapt_jump": jump},
        spike_cost=theta,
        initial={"v": 0 * mV, "theta_a": 0 * mV},
        method="exact",
        refractory=refractory,
    )


def izhikevich(a="20 Hz", b=0.2, c="-65 mV", d="8 mV", v_peak="30 mV", spike_cost="100 mV",
               v_floor="-85 mV") -> NeuronModel:
    """Izhikevich's quadratic model, regular-spiking parameters by default, in Brian2 units.

    ``dv/dt = (0.04 v_q²/mV + 5 v_q + 140 mV − u) / ms``, ``du/dt = a (b v − u)``, with
    ``v_q = clip(v, v_floor, v_peak)``; when ``v ≥ v_peak`` the neuron spikes, ``v = c`` and ``u += d``.
    Integrated with Brian2's ``"euler"`` at the network's dt; every presentation starts at ``v = c``,
    ``u = b c``. A synaptic weight of 1 adds ``spike_cost`` to ``v``; the default, 100 mV, is about the
    input that takes ``v`` from ``c`` past ``v_peak`` within one 1 ms step (the analogue of an
    integrate-and-fire neuron's threshold), so that weights and rates have the scale they have for
    `lif`. Its rate map is measured (`sim.transfer`).

    Why ``v_floor``: forward Euler of the quadratic is unstable where ``dt · (0.08 v/mV + 5)/ms < −2``,
    i.e. below −87.5 mV at dt = 1 ms: one inhibitory input that pushes ``v`` from rest to −110 mV makes
    the next step overshoot to about −10 mV and the neuron spike a step later, so inhibition raises the
    rate (the opposite of what the rate-based credit assumes). Below ``v_floor`` the quadratic is held
    at its value at ``v_floor``, so the Euler step is stable (``v`` climbs back by about 18 mV per step
    at rest's ``u``); at and above ``v_floor`` the equations are Izhikevich's exactly.
    ``v_floor=None`` gives the unmodified equations.

    Parameters
    ----------
    a : Quantity or str
        Recovery rate (1/second; Izhikevich's 0.02/ms).
    b : float
        Sensitivity of the recovery variable to ``v`` (dimensionless).
    c : Quantity or str
        Reset potential (volt), also the initial ``v``.
    d : Quantity or str
        Recovery increment per spike (volt).
    v_peak : Quantity or str
        Spike cut-off (volt).
    spike_cost : Quantity or str
        What one unit of weight adds to ``v`` (volt), > 0.
    v_floor : Quantity or str or None
        Potential (volt) below which the quadratic drive is held constant; None: not held.
    """
    rate = parse_quantity(a, Hz, name="neuron.a", positive=True)
    sensitivity = parse_quantity(b, Unit(1), name="neuron.b")
    reset_v = parse_quantity(c, mV, name="neuron.c")
    jump = parse_quantity(d, mV, name="neuron.d")
    peak = parse_quantity(v_peak, mV, name="neuron.v_peak")
    cost = parse_quantity(spike_cost, mV, name="neuron.spike_cost", positive=True)
    parameters = {"a": rate, "b": sensitivity, "c": reset_v, "d": jump, "v_peak": peak}
    if v_floor is None:
        quadratic = "0.04 / mV * v**2 + 5 * v"
    else:
        parameters["v_floor"] = parse_quantity(v_floor, mV, name="neuron.v_floor")
        if not float(parameters["v_floor"] / mV) < float(reset_v / mV):
            raise ValueError(f"neuron.v_floor = {v_floor!r} must lie below the reset potential c = {c!r}")
        quadratic = "0.04 / mV * clip(v, v_floor, v_peak)**2 + 5 * clip(v, v_floor, v_peak)"
    return NeuronModel(
        name="izhikevich",
        equations=f"dv/dt = ({quadratic} + 140 * mV - u) / ms : volt\n"
                  "du/dt = a * (b * v - u) : volt",
        threshold="v >= v_peak",
        reset="v = c\nu += d",
        parameters=parameters,
        spike_cost=cost,
        initial={"v": reset_v, "u": sensitivity * reset_v},
        method="euler",
    )


#: Built-in models by name; each constructor takes its parameters as keywords (Quantities or text).
NEURON_MODELS = {"lif": lif, "adaptive_lif": adaptive_lif, "izhikevich": izhikevich}
