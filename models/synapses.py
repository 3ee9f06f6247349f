"""Synapse models as Brian2 equations: how a presynaptic spike reaches a postsynaptic neuron.

A synapse model is a frozen spec; it builds nothing. `sim.network` creates one Brian2 ``Synapses``
per weight layer with the model variable ``w : volt`` and the model's `on_pre` statement, and the
postsynaptic ``NeuronGroup`` from `compose` (the neuron model extended by the synapse's kinetics).

Weights. The network stores every weight dimensionless, in units of the neuron's ``spike_cost``; Brian2
holds ``w = weight · spike_cost`` (volt). Every model is normalised so that one spike of weight
``w`` delivers the same total depolarisation ``∫ (dv/dt)_syn dt = w`` when the membrane is at rest
and leak-free, whatever its kinetics: a weight means the same input ``u`` (spike costs per step) to the
rate-based credit assignment under every model, and only the time course differs.

- `Delta`: ``v_post += w`` (a jump of ``w`` at the spike; the default, today's model).
- `ExpCurrent` (current-based, exponential): a synaptic current per unit capacitance
  ``dI_syn/dt = −I_syn / tau_syn`` (volt/second) enters ``dv/dt`` as ``+ I_syn``; a spike adds
  ``w / tau_syn`` to ``I_syn``, so ``∫ I_syn dt = w``.
- `Conductance` (conductance-based, exponential, two receptors): conductances per unit capacitance
  ``g_e``, ``g_i`` (1/second, i.e. siemens per farad; multiply by a membrane capacitance for
  siemens) decaying with ``tau_e``, ``tau_i``, entering ``dv/dt`` as
  ``+ g_e (E_e − v) + g_i (E_i − v)``. The sign of a weight chooses the receptor: ``w > 0`` adds
  ``Δg_e = w / (tau_e (E_e − v_rest))`` to ``g_e``, ``w < 0`` adds ``Δg_i = |w| / (tau_i (v_rest − E_i))``
  to ``g_i``, with ``v_rest`` the neuron's starting potential (`NeuronModel.v_start`): at rest the
  total depolarisation of a spike is exactly ``w`` (``−|w|`` for inhibition); away from rest it scales
  with the driving force.

Every model takes an axonal/synaptic ``delay`` (a time, a whole number of the network's ``dt``): the
spike takes effect ``delay`` after the presynaptic threshold crossing (Brian2 ``Synapses(delay=...)``).

The contract with a neuron model (`compose`). A `Delta` synapse writes ``v`` directly and leaves the
neuron model unchanged. The other models add their state equations to the neuron's and append their
input term to the right-hand side of the membrane equation ``dv/dt = f(...)``, which becomes
``dv/dt = (f(...)) + (term)`` with the same unit and flags: a custom model needs no synaptic term of its
own, but it must define ``v`` by a differential equation and must not use the synapse's variable or
parameter names (``I_syn``, ``tau_syn``; ``g_e``, ``g_i``, ``tau_e``, ``tau_i``, ``E_e``, ``E_i``). With
``(unless refractory)`` on ``dv/dt`` the synaptic input is ignored during the refractory period (the
synaptic variables keep decaying); a `Delta` spike still adds to ``v`` then. The composed model is
measured for the credit assignment unless it is a `Delta` synapse without delay on a model that
declares its rate map (`sim.transfer`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from brian2 import Equations, Hz, Quantity, mV, ms, second, volt

from hlopsim.models.neurons import NeuronModel
from hlopsim.models.quantities import parse_quantity

#: Protocol-file names of the synapse models (``[network] synapse``).
SYNAPSE_KINDS = ("delta", "exp_current", "conductance")

# ``dv/dt = EXPR : UNIT (FLAGS)  # comment`` on one line of a Brian2 equation string.
_MEMBRANE = re.compile(r"^(?P<lead>\s*dv\s*/\s*dt\s*=\s*)(?P<expr>[^:#]*?)(?P<tail>\s*:[^#]*)(?P<comment>#.*)?$")


def _delay(value, label: str) -> Quantity | None:
    if value is None:
        return None
    delay = parse_quantity(value, ms, name="network.delay")
    if not float(delay / ms) >= 0:
        raise ValueError(f"network.delay = {value!r} ({label}) must be a time ≥ 0 (or None)")
    return delay if float(delay / ms) > 0 else None


@dataclass(frozen=True)
class SynapseModel:
    """Common interface of the synapse models (`Delta`, `ExpCurrent`, `Conductance`).

    Parameters
    ----------
    delay : Quantity or str or None, keyword-only
        Transmission delay (time ≥ 0); None or 0: the spike acts in the step it is emitted.

    Attributes
    ----------
    kind : str
        Protocol-file name (`SYNAPSE_KINDS`).
    """

    delay: Quantity | None = field(default=None, kw_only=True)
    kind: ClassVar[str] = ""

    def __post_init__(self):
        object.__setattr__(self, "delay", _delay(self.delay, f"synapse {self.kind!r}"))

    # -- what the builder reads ------------------------------------------------------------------
    @property
    def on_pre(self) -> str:
        """Brian2 ``on_pre`` statement of the ``Synapses`` (model variable ``w : volt``)."""
        raise NotImplementedError

    @property
    def state_equations(self) -> str:
        """Equations added to the postsynaptic neuron's (empty for `Delta`)."""
        return ""

    @property
    def input_term(self) -> str:
        """Expression (volt/second) appended to the right-hand side of ``dv/dt`` (empty for `Delta`)."""
        return ""

    @property
    def initial(self) -> dict:
        """Starting values of the synaptic state variables (restored with the neuron's)."""
        return {}

    @property
    def parameters(self) -> dict:
        """Constants the added neuron equations name (substituted by Brian2 from the group's namespace)."""
        return {}

    @property
    def conductance_based(self) -> bool:
        """True if the input term multiplies ``v`` (the ``exact`` integrator cannot be used)."""
        return False

    @property
    def instantaneous(self) -> bool:
        """True for a `Delta` synapse without delay: a spike changes ``v`` by ``w`` in the step it is emitted."""
        return False

    def synapse_namespace(self, neuron: NeuronModel) -> dict:
        """Constants the `on_pre` statement names, for a postsynaptic ``neuron``."""
        return {}

    def increment(self, weight, neuron: NeuronModel):
        """What one presynaptic spike of ``weight`` (spike costs; float or array) adds to the synaptic state.

        Returns
        -------
        Quantity or tuple of Quantity
            `Delta`: the jump of ``v`` (volt); `ExpCurrent`: the jump of ``I_syn`` (volt/second);
            `Conductance`: the jumps of ``(g_e, g_i)`` (1/second, per unit capacitance).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Delta(SynapseModel):
    """A spike adds its weight to the membrane potential at once: ``v_post += w``.

    Parameters
    ----------
    delay : Quantity or str or None, keyword-only
        Transmission delay; None (default) or 0: none.
    """

    kind: ClassVar[str] = "delta"

    @property
    def on_pre(self) -> str:
        return "v_post += w"

    @property
    def instantaneous(self) -> bool:
        return self.delay is None

    def increment(self, weight, neuron: NeuronModel):
        return weight * neuron.spike_cost


@dataclass(frozen=True)
class ExpCurrent(SynapseModel):
    """Current-based synapse with an exponentially decaying current.

    Equations added to the neuron (``I_syn`` is a current per unit capacitance)::

        dI_syn/dt = -I_syn / tau_syn : volt/second       dv/dt = (...) + (I_syn)
        on_pre:  I_syn_post += w / tau_syn

    For a leaky neuron ``dv/dt = −v/τ_m + I_syn`` at rest, one spike of weight ``w`` at ``t = 0`` gives
    ``I_syn(t) = (w/τ_s) e^{−t/τ_s}`` and ``v(t) = w τ_m/(τ_m − τ_s) (e^{−t/τ_m} − e^{−t/τ_s})``, peaking at
    ``t* = τ_m τ_s/(τ_m − τ_s) · ln(τ_m/τ_s)``; ``∫ I_syn dt = w``.

    Parameters
    ----------
    tau_syn : Quantity or str
        Decay time constant of the current (time > 0).
    delay : Quantity or str or None, keyword-only
        Transmission delay; None or 0: none.
    """

    tau_syn: Quantity = "5 ms"
    kind: ClassVar[str] = "exp_current"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "tau_syn", parse_quantity(self.tau_syn, ms, name="network.tau_syn", positive=True))

    @property
    def on_pre(self) -> str:
        return "I_syn_post += w / tau_syn"

    @property
    def state_equations(self) -> str:
        return "dI_syn/dt = -I_syn / tau_syn : volt/second"

    @property
    def input_term(self) -> str:
        return "I_syn"

    @property
    def initial(self) -> dict:
        return {"I_syn": 0 * volt / second}

    @property
    def parameters(self) -> dict:
        return {"tau_syn": self.tau_syn}

    def synapse_namespace(self, neuron: NeuronModel) -> dict:
        return {"tau_syn": self.tau_syn}

    def increment(self, weight, neuron: NeuronModel):
        return weight * neuron.spike_cost / self.tau_syn


@dataclass(frozen=True)
class Conductance(SynapseModel):
    """Conductance-based synapses with excitatory and inhibitory receptors and reversal potentials.

    Equations added to the neuron (conductances per unit capacitance, 1/second)::

        dg_e/dt = -g_e / tau_e : Hz        dg_i/dt = -g_i / tau_i : Hz
        dv/dt = (...) + (g_e * (E_e - v) + g_i * (E_i - v))
        on_pre:  g_e_post += k_e * w * int(w > 0 V)
                 g_i_post -= k_i * w * int(w < 0 V)

    with ``k_e = 1 / (tau_e (E_e − v_rest))`` and ``k_i = 1 / (tau_i (v_rest − E_i))`` (1/(volt·second)),
    ``v_rest`` the neuron's starting potential: a weight ``w`` (volt) is a conductance jump
    ``Δg_e = w / (tau_e (E_e − v_rest))`` (``w > 0``) or ``Δg_i = |w| / (tau_i (v_rest − E_i))``
    (``w < 0``), so that at rest one spike depolarises (hyperpolarises) by ``|w|`` in total.
    Times a membrane capacitance ``C`` these are conductances in siemens: ``G = C g``.

    ``E_e`` and ``E_i`` are in the frame of the neuron's ``v``: the built-in `lif` measures ``v`` from rest
    (0 mV), so the defaults 70 mV and −20 mV are reversal potentials of 0 mV and −90 mV for a cell
    resting at −70 mV; for `izhikevich` (absolute potentials, rest ≈ −65 mV) use e.g. ``E_e = "0 mV"``,
    ``E_i = "-85 mV"``. `compose` requires ``E_i < v_rest < E_e``.

    Why ``E_i`` matters for learning: inhibition with its reversal potential near rest is shunting —
    its driving force grows from ``v_rest − E_i`` at rest to ``θ + v_rest − E_i`` near threshold, so the
    same weight inhibits (1 + θ / (v_rest − E_i)) times more there than at rest, which the rate map
    measured with inhibition or excitation alone does not see. The default keeps ``E_i`` 20 mV below rest.

    Parameters
    ----------
    tau_e, tau_i : Quantity or str
        Decay time constants of the excitatory and inhibitory conductances (time > 0).
    E_e, E_i : Quantity or str
        Reversal potentials (volt) of the excitatory and inhibitory receptors.
    delay : Quantity or str or None, keyword-only
        Transmission delay; None or 0: none.
    """

    tau_e: Quantity = "5 ms"
    tau_i: Quantity = "10 ms"
    E_e: Quantity = "70 mV"
    E_i: Quantity = "-20 mV"
    kind: ClassVar[str] = "conductance"

    def __post_init__(self):
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "tau_e", parse_quantity(self.tau_e, ms, name="network.tau_e", positive=True))
        set_(self, "tau_i", parse_quantity(self.tau_i, ms, name="network.tau_i", positive=True))
        set_(self, "E_e", parse_quantity(self.E_e, mV, name="network.E_e"))
        set_(self, "E_i", parse_quantity(self.E_i, mV, name="network.E_i"))
        if not float(self.E_i / mV) < float(self.E_e / mV):
            raise ValueError(f"network.E_i = {self.E_i} must lie below network.E_e = {self.E_e}")

    @property
    def on_pre(self) -> str:
        return "g_e_post += k_e * w * int(w > 0 * volt)\ng_i_post -= k_i * w * int(w < 0 * volt)"

    @property
    def state_equations(self) -> str:
        return "dg_e/dt = -g_e / tau_e : Hz\ndg_i/dt = -g_i / tau_i : Hz"

    @property
    def input_term(self) -> str:
        return "g_e * (E_e - v) + g_i * (E_i - v)"

    @property
    def initial(self) -> dict:
        return {"g_e": 0 * Hz, "g_i": 0 * Hz}

    @property
    def parameters(self) -> dict:
        return {"tau_e": self.tau_e, "tau_i": self.tau_i, "E_e": self.E_e, "E_i": self.E_i}

    @property
    def conductance_based(self) -> bool:
        return True

    def _check_rest(self, neuron: NeuronModel) -> Quantity:
        rest = neuron.v_start
        if not float(self.E_i / volt) < float(rest / volt) < float(self.E_e / volt):
            raise ValueError(f"synapse 'conductance' on neuron model {neuron.name!r}: its starting potential "
                             f"{rest} must lie between E_i = {self.E_i} and E_e = {self.E_e} (reversal potentials "
                             "are in the frame of the neuron's v)")
        return rest

    def synapse_namespace(self, neuron: NeuronModel) -> dict:
        rest = self._check_rest(neuron)
        return {"k_e": 1.0 / (self.tau_e * (self.E_e - rest)), "k_i": 1.0 / (self.tau_i * (rest - self.E_i))}

    def increment(self, weight, neuron: NeuronModel):
        k = self.synapse_namespace(neuron)
        w = weight * neuron.spike_cost
        positive = (weight > 0) * 1.0
        negative = (weight < 0) * 1.0
        return k["k_e"] * w * positive, -k["k_i"] * w * negative


#: Synapse models by protocol-file name.
SYNAPSE_MODELS = {"delta": Delta, "exp_current": ExpCurrent, "conductance": Conductance}


def synapse_model(kind: str, **parameters) -> SynapseModel:
    """A synapse model by its protocol-file name, e.g. ``synapse_model("exp_current", tau_syn="5 ms")``.

    Raises
    ------
    ValueError
        An unknown ``kind`` or a parameter the model does not take.
    """
    if kind not in SYNAPSE_MODELS:
        raise ValueError(f"network.synapse = {kind!r} is unknown; expected one of "
                         f"{', '.join(map(repr, SYNAPSE_KINDS))}")
    try:
        return SYNAPSE_MODELS[kind](**parameters)
    except TypeError as err:
        raise ValueError(f"synapse {kind!r}: {err}") from None


def compose(neuron: NeuronModel, synapse: SynapseModel) -> NeuronModel:
    """The postsynaptic neuron model with the synapse's kinetics: what `sim.network` simulates.

    `Delta`: ``neuron`` itself (the synapse writes ``v``). Otherwise a new `NeuronModel` whose equations
    are the neuron's with ``dv/dt = f`` replaced by ``dv/dt = (f) + (synapse.input_term)`` (same unit and
    flags) followed by ``synapse.state_equations``; its parameters, initial state and name
    (``"<neuron>+<kind>"``) are extended by the synapse's. Integration: a conductance-based input makes
    the membrane equation depend on the product ``g v``, which Brian2's ``exact`` integrator cannot
    handle, so ``exact`` becomes ``exponential_euler`` (exact for ``v`` given the conductances over a
    step, and for the exponential decays), also inside a tuple of methods for Brian2 to try; other
    methods are kept. The rate map is always measured
    (``transfer = "measured"``): the kinetics change it.

    Raises
    ------
    ValueError
        ``v`` is not defined by a single-line differential equation, the neuron already uses one of the
        synapse's names, or (conductance) the neuron's starting potential is not between ``E_i`` and ``E_e``.
    """
    if not isinstance(neuron, NeuronModel) or not isinstance(synapse, SynapseModel):
        raise ValueError(f"compose({neuron!r}, {synapse!r}): expected a NeuronModel and a SynapseModel")
    if not synapse.input_term:
        return neuron
    label = f"synapse {synapse.kind!r} on neuron model {neuron.name!r}"
    original = Equations(neuron.equations)
    added = Equations(synapse.state_equations)
    clash = (set(original.names) | set(neuron.parameters)) & (set(added.names) | set(synapse.parameters))
    if clash:
        raise ValueError(f"{label}: the neuron already uses the name(s) {sorted(clash)} the synapse defines")
    if original["v"].type != "differential equation":
        raise ValueError(f"{label}: the neuron's 'v' must be defined by a differential equation dv/dt = ...")
    if isinstance(synapse, Conductance):
        synapse._check_rest(neuron)
    lines, found = [], 0
    for line in neuron.equations.splitlines():
        match = _MEMBRANE.match(line)
        if match:
            found += 1
            line = f"{match['lead']}({match['expr'].strip()}) + ({synapse.input_term}){match['tail']}"
        lines.append(line)
    if found != 1:
        raise ValueError(f"{label}: expected the membrane equation on one line 'dv/dt = ... : volt', found {found}")
    equations = "\n".join(lines) + "\n" + synapse.state_equations
    composed = Equations(equations)
    if composed["v"].flags != original["v"].flags or set(composed.names) != set(original.names) | set(added.names):
        raise ValueError(f"{label}: the membrane equation could not be extended ({neuron.equations!r})")
    method = neuron.method
    if synapse.conductance_based:   # "exact" → "exponential_euler", also within a list of methods to try
        method = "exponential_euler" if method == "exact" else method if isinstance(method, str) else \
            tuple("exponential_euler" if m == "exact" else m for m in method)
    return NeuronModel(name=f"{neuron.name}+{synapse.kind}", equations=equations, threshold=neuron.threshold,
                       reset=neuron.reset, parameters={**neuron.parameters, **synapse.parameters},
                       spike_cost=neuron.spike_cost, initial={**neuron.initial, **synapse.initial}, method=method,
                       refractory=neuron.refractory, transfer="measured")
