"""A neuron model's rate map (f–I curve per presentation), measured with Brian2, for the credit assignment.

The rate-based learning (`sim.learning.credit`) back-propagates through the map ``r(u)`` from a
neuron's mean input per step ``u`` (in units of the model's spike cost) to its firing rate ``r``
(spikes per step over one presentation). For an integrate-and-fire neuron with subtractive reset this
map is ``clip(u, 0, 1)`` (`TransferCurve.ideal`); for any other model it is measured here: ``N`` copies
of the neuron, each with its own constant ``u`` from a grid, run for one presentation exactly as the
network runs them (same equations, threshold, reset, refractory period, integration method and dt,
every copy starting from the model's ``initial`` state, the input added as ``v += u · spike_cost`` once
per step in the ``synapses`` slot of Brian2's schedule, where synaptic spikes arrive). With a synapse
model other than an undelayed `Delta` (`models.synapses`), the neuron measured is the neuron + synapse
model (`compose`) and the input ``u`` arrives as one presynaptic spike of weight ``u`` per step through a
Brian2 ``Synapses`` with the synapse's own ``on_pre`` statement and delay, so the curve is that of the
whole model the network simulates. The measured
counts form a staircase (one presentation has few spikes); the credit needs a derivative, so the curve
is made monotone, passed through the middle of each step, and smoothed (`TransferCurve.measured`).

`check_rate_code` refuses, with one line, a model that cannot carry a rate code in one presentation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from brian2 import Equations, Network, NeuronGroup, Quantity, SpikeMonitor, Synapses, second, volt
from brian2.codegen.runtime.numpy_rt import NumpyCodeObject

from hlopsim.models.neurons import NeuronModel
from hlopsim.models.synapses import Delta, SynapseModel, compose

#: Inputs per step ``u`` (spike costs) at which a model is measured: −1 to 4 in steps of 0.02 (251 neurons).
#: −1 shows whether inhibition keeps a neuron silent; 4 is four times the input at which an integrate-and-fire
#: neuron saturates. Outside the grid the slope is 0: inputs beyond it get no credit, as inputs above 1 get
#: none under the integrate-and-fire map.
DEFAULT_DRIVE = np.round(np.linspace(-1.0, 4.0, 251), 12)
DEFAULT_DRIVE.setflags(write=False)

#: Width (spike costs) of the Gaussian that smooths the measured curve: two grid steps of `DEFAULT_DRIVE`.
DEFAULT_SMOOTHING = 0.04

_CACHE: dict[tuple, "TransferCurve"] = {}


class TransferError(ValueError):
    """A neuron model cannot carry a rate code in one presentation (never fires, saturated, non-monotone)."""


def _frozen(array) -> np.ndarray:
    out = np.array(array, dtype=np.float64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class TransferCurve:
    """Rate per step as a function of the mean input per step, and the slope the credit uses.

    Attributes
    ----------
    drive : ndarray, shape (N,)
        Mean input per step ``u`` (spike costs), strictly increasing.
    rate : ndarray, shape (N,)
        Spikes per step at each ``drive`` (measured over one presentation, or ``clip(u, 0, 1)``).
    gain : ndarray, shape (N,)
        ``dr/du`` at each ``drive`` (dimensionless, ≥ 0): the smoothed derivative of a monotone,
        continuous estimate of ``rate`` (see `measured`).
    kind : {"measured", "integrate-and-fire"}
        ``"integrate-and-fire"``: the analytic map, whose `slope` is exactly ``1[0 < u < 1]``.
    n_steps : int
        Steps per presentation of the measurement (0 for the analytic map).
    """

    drive: np.ndarray
    rate: np.ndarray
    gain: np.ndarray
    kind: str = "measured"
    n_steps: int = 0

    @property
    def is_ideal(self) -> bool:
        """True for the analytic integrate-and-fire map (the credit then uses its exact indicator)."""
        return self.kind == "integrate-and-fire"

    def slope(self, u) -> np.ndarray:
        """``dr/du`` at inputs ``u`` (spike costs per step).

        For the analytic map ``1`` where ``0 < u < 1``, else ``0``; for a measured curve ``gain``
        interpolated linearly between grid points and ``0`` outside ``[drive[0], drive[-1]]``.
        """
        u = np.asarray(u, dtype=np.float64)
        if self.is_ideal:
            return np.where((u > 0.0) & (u < 1.0), 1.0, 0.0)
        inside = (u >= self.drive[0]) & (u <= self.drive[-1])
        return np.where(inside, np.interp(u, self.drive, self.gain), 0.0)

    @classmethod
    def ideal(cls, drive=DEFAULT_DRIVE) -> "TransferCurve":
        """The integrate-and-fire map ``r = clip(u, 0, 1)``, ``dr/du = 1[0 < u < 1]``, sampled at ``drive``."""
        drive = _frozen(drive)
        return cls(drive=drive, rate=_frozen(np.clip(drive, 0.0, 1.0)),
                   gain=_frozen(np.where((drive > 0.0) & (drive < 1.0), 1.0, 0.0)), kind="integrate-and-fire")

    @classmethod
    def measured(cls, drive, rate, n_steps: int, smoothing: float = DEFAULT_SMOOTHING) -> "TransferCurve":
        """A curve from rates measured on a grid, with its slope estimated in three steps.

        1. Monotone: the non-decreasing least-squares fit of ``rate`` (pool-adjacent-violators).
        2. Through the steps: a one-presentation count is a staircase in ``u``; the piecewise-linear
           curve through the middle of every rise (and along the lowest and highest plateaus, so the
           flat ends stay flat) turns it into a continuous monotone curve.
        3. Smooth: ``gain`` is that curve's derivative on the grid (central differences) convolved
           with a Gaussian of width ``smoothing`` (spike costs), the ends extended with their values;
           ≥ 0, and exactly 0 wherever the rate is flat farther than 4 widths away.

        Parameters
        ----------
        drive : array, shape (N,)
            Strictly increasing, uniformly spaced inputs per step (spike costs), N ≥ 3.
        rate : array, shape (N,)
            Spikes per step at each input.
        n_steps : int
            Steps per presentation of the measurement.
        smoothing : float
            Gaussian width (spike costs), ≥ 0.
        """
        drive = np.asarray(drive, dtype=np.float64)
        rate = np.asarray(rate, dtype=np.float64)
        step = np.diff(drive) if drive.ndim == 1 and len(drive) >= 3 else np.zeros(1)
        if drive.ndim != 1 or drive.shape != rate.shape or len(drive) < 3 or not np.all(step > 0) \
                or not np.allclose(step, step[0], rtol=1e-6, atol=0.0):
            raise ValueError(f"transfer curve: drive (shape {drive.shape}) must be a uniform increasing grid of "
                             f"at least 3 points with one rate each (rate shape {rate.shape})")
        if not smoothing >= 0:
            raise ValueError(f"transfer curve: smoothing = {smoothing!r} must be ≥ 0 spike costs")
        spacing = (drive[-1] - drive[0]) / (len(drive) - 1)
        through = _through_steps(drive, _isotonic(rate))
        gain = np.maximum(_gaussian_smooth(np.gradient(through, spacing), smoothing / spacing), 0.0)
        return cls(drive=_frozen(drive), rate=_frozen(rate), gain=_frozen(gain), kind="measured",
                   n_steps=int(n_steps))


def _isotonic(y: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit of ``y`` (equal weights; pool adjacent violators)."""
    values, sizes = [], []
    for value in y:
        values.append(float(value))
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            size = sizes[-2] + sizes[-1]
            values[-2] = (values[-2] * sizes[-2] + values[-1] * sizes[-1]) / size
            sizes[-2] = size
            values.pop()
            sizes.pop()
    return np.repeat(values, sizes)


def _through_steps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A non-decreasing staircase ``y(x)`` as the piecewise-linear curve through the middle of each rise.

    Knots: the first and last points, the last point of the lowest plateau, the first point of the
    highest plateau, and ``((x_i + x_{i+1}) / 2, (y_i + y_{i+1}) / 2)`` for every rise ``y_i < y_{i+1}``.
    """
    rises = np.flatnonzero(np.diff(y) > 0)
    if len(rises) == 0:
        return y.copy()
    low_end, high_start = rises[0], rises[-1] + 1
    knots_x = np.concatenate([[x[0], x[low_end]], (x[rises] + x[rises + 1]) / 2, [x[high_start], x[-1]]])
    knots_y = np.concatenate([[y[0], y[low_end]], (y[rises] + y[rises + 1]) / 2, [y[high_start], y[-1]]])
    keep = np.concatenate([[True], np.diff(knots_x) > 0])  # drop repeated knots at the ends
    return np.interp(x, knots_x[keep], knots_y[keep])


def _gaussian_smooth(y: np.ndarray, width: float) -> np.ndarray:
    """``y`` convolved with a normalised Gaussian of ``width`` grid steps (cut at 4 widths), the ends
    extended with their values."""
    if width <= 0:
        return y.copy()
    half = int(np.ceil(4 * width))
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / width) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.full(half, y[0]), y, np.full(half, y[-1])])
    return np.convolve(padded, kernel, mode="valid")


def _cache_key(model: NeuronModel, dt: Quantity, n_steps: int, drive: np.ndarray, smoothing: float,
               synapse: SynapseModel | None = None) -> tuple:
    key = (repr(model), float(dt / second), int(n_steps), drive.tobytes(), float(smoothing))
    return key if synapse is None or synapse.instantaneous else key + (repr(synapse),)


def measure_rates(model: NeuronModel, dt: Quantity, n_steps: int, drive=DEFAULT_DRIVE,
                  synapse: SynapseModel | None = None) -> np.ndarray:
    """Spikes per step of ``model`` for each constant input per step in ``drive``, with Brian2.

    One neuron per input value (``len(drive)`` copies in one NeuronGroup), each starting from
    ``model.initial``; one presentation of ``n_steps`` steps of ``dt``. The input of each step:

    - ``synapse`` None or an undelayed `Delta`: ``v += u · spike_cost`` once per step in the
      ``synapses`` slot (after thresholds, before resets), as a synaptic spike would be;
    - any other synapse model: ``model`` is extended by the synapse's kinetics (`compose`) and a
      driver neuron that fires at every step reaches every copy through a ``Synapses`` with the
      model's ``on_pre``, delay and ``w = u · spike_cost`` (volt): exactly how a presynaptic neuron
      firing once per step would drive it in the network.

    Runs its own explicit Brian2 ``Network`` with Brian2's numpy code objects whatever the
    code-generation target (a one-off of a few hundred neurons, where compiling would cost more than
    it saves).

    Parameters
    ----------
    model : NeuronModel
        The neuron model (without the synapse's kinetics).
    dt : Quantity
        Time step (second).
    n_steps : int
        Steps per presentation.
    drive : array, shape (N,)
        Inputs per step (spike costs).
    synapse : SynapseModel or None
        How the input arrives (None: as an undelayed `Delta`).

    Returns
    -------
    ndarray, shape (N,)
        Spike count / ``n_steps``.
    """
    drive = np.asarray(drive, dtype=np.float64)
    if synapse is not None and not synapse.instantaneous:
        return _measure_through_synapses(model, synapse, dt, n_steps, drive)
    # Our own state variable: the model's equations must not define it (checked by Brian2 on clash).
    equations = Equations(model.equations) + Equations("transfer_input : volt (constant)")
    group = NeuronGroup(len(drive), equations, threshold=model.threshold, reset=model.reset,
                        refractory=model.refractory if model.refractory is not None else False,
                        method=model.method, namespace=dict(model.parameters), dt=dt, name="transfer_neurons",
                        codeobj_class=NumpyCodeObject)
    group.run_regularly("v += transfer_input", when="synapses", name="transfer_neurons_input",
                        codeobj_class=NumpyCodeObject)
    for var, value in model.initial.items():
        setattr(group, var, value)
    group.transfer_input = drive * float(model.spike_cost / volt) * volt
    monitor = SpikeMonitor(group, record=False, name="transfer_spikes", codeobj_class=NumpyCodeObject)
    net = Network(group, monitor, name="transfer_network")
    net.run(n_steps * dt, namespace={})
    return np.asarray(monitor.count[:], dtype=np.float64) / n_steps


def _measure_through_synapses(model: NeuronModel, synapse: SynapseModel, dt: Quantity, n_steps: int,
                              drive: np.ndarray) -> np.ndarray:
    """`measure_rates` for a synapse with kinetics or delay: a driver firing every step, one synapse per copy."""
    full = compose(model, synapse)
    group = NeuronGroup(len(drive), full.equations, threshold=full.threshold, reset=full.reset,
                        refractory=full.refractory if full.refractory is not None else False,
                        method=full.method, namespace=dict(full.parameters), dt=dt, name="transfer_neurons",
                        codeobj_class=NumpyCodeObject)
    for var, value in full.initial.items():
        setattr(group, var, value)
    driver = NeuronGroup(1, "", threshold="True", reset="", dt=dt, name="transfer_driver",
                         codeobj_class=NumpyCodeObject)
    options = {"delay": synapse.delay} if synapse.delay is not None else {}
    synapses = Synapses(driver, group, "w : volt", on_pre=synapse.on_pre, dt=dt, name="transfer_synapses",
                        namespace=synapse.synapse_namespace(model), codeobj_class=NumpyCodeObject, **options)
    synapses.connect(i=0, j=np.arange(len(drive)))
    synapses.w = drive * float(model.spike_cost / volt) * volt
    monitor = SpikeMonitor(group, record=False, name="transfer_spikes", codeobj_class=NumpyCodeObject)
    net = Network(group, driver, synapses, monitor, name="transfer_network")
    net.run(n_steps * dt, namespace={})
    return np.asarray(monitor.count[:], dtype=np.float64) / n_steps


def measure_transfer(model: NeuronModel, dt: Quantity, n_steps: int, drive=DEFAULT_DRIVE,
                     smoothing: float = DEFAULT_SMOOTHING, synapse: SynapseModel | None = None) -> TransferCurve:
    """The measured rate map of ``model`` (driven through ``synapse``) for presentations of ``n_steps`` steps.

    `measure_rates` on the grid ``drive``, then `TransferCurve.measured`. Results are cached in this
    process per (model, dt, n_steps, drive, smoothing, synapse), so every network of one model measures once.

    Parameters
    ----------
    model : NeuronModel
    dt : Quantity
        Time step (second).
    n_steps : int
        Steps per presentation, ≥ 1.
    drive : array, shape (N,)
        Uniform grid of inputs per step (spike costs); default `DEFAULT_DRIVE` (−1 to 4).
    smoothing : float
        Gaussian width of the slope estimate (spike costs); default `DEFAULT_SMOOTHING`.
    synapse : SynapseModel or None
        How the input arrives (`measure_rates`); None: as an undelayed `Delta`.

    Returns
    -------
    TransferCurve
    """
    if not (isinstance(n_steps, (int, np.integer)) and n_steps >= 1):
        raise ValueError(f"measure_transfer: n_steps = {n_steps!r} must be a positive integer")
    drive = np.asarray(drive, dtype=np.float64)
    key = _cache_key(model, dt, n_steps, drive, smoothing, synapse)
    if key not in _CACHE:
        rates = measure_rates(model, dt, int(n_steps), drive, synapse=synapse)
        _CACHE[key] = TransferCurve.measured(drive, rates, int(n_steps), smoothing)
    return _CACHE[key]


def check_rate_code(curve: TransferCurve, model_name: str, tolerance: float | None = None) -> None:
    """Refuse a model that cannot carry a rate code in one presentation.

    With ``q = 1 / n_steps`` (one spike per presentation) and ``tolerance`` defaulting to ``2 q``:

    - never fires: the rate is 0 at every input of the grid;
    - non-monotone: the rate falls by more than ``tolerance`` somewhere as ``u`` grows;
    - saturated: the highest rate at ``u ≤ 0`` is within ``tolerance`` of the highest rate over the grid
      (it fires at its maximum with no input, so input cannot raise it);
    - too little range: the rate changes by less than ``tolerance`` over the whole grid.

    Parameters
    ----------
    curve : TransferCurve
    model_name : str
        Named in the message.
    tolerance : float or None
        Spikes per step; None: two spikes per presentation.

    Raises
    ------
    TransferError
        One line naming the model and what was measured.
    """
    if curve.is_ideal:
        return
    n_steps = curve.n_steps
    tol = 2.0 / n_steps if tolerance is None else float(tolerance)
    drive, rate = curve.drive, curve.rate
    where = (f"in a {n_steps}-step presentation for constant inputs u = {drive[0]:g} … {drive[-1]:g} spike costs "
             "per step")
    top = float(rate.max())
    if top == 0:
        raise TransferError(f"neuron model {model_name!r} never fires {where}; it cannot carry a rate code")
    drop = np.maximum.accumulate(rate) - rate
    worst = int(np.argmax(drop))
    if drop[worst] > tol:
        peak = int(np.argmax(rate[:worst + 1]))
        raise TransferError(f"neuron model {model_name!r} is non-monotone {where}: its rate falls from "
                            f"{rate[peak]:.3f} spikes per step at u = {drive[peak]:g} to {rate[worst]:.3f} at "
                            f"u = {drive[worst]:g}")
    rest = rate[drive <= 0]
    if len(rest) and float(rest.max()) >= top - tol:
        raise TransferError(f"neuron model {model_name!r} is saturated {where}: it fires {float(rest.max()):.3f} "
                            f"spikes per step already at u ≤ 0 and at most {top:.3f} at any input")
    if top - float(rate.min()) < tol:
        raise TransferError(f"neuron model {model_name!r} barely responds {where}: its rate only spans "
                            f"{float(rate.min()):.3f} … {top:.3f} spikes per step")


def transfer_for(model: NeuronModel, dt: Quantity, n_steps: int,
                 synapse: SynapseModel | None = None) -> TransferCurve:
    """The rate map the credit assignment uses for ``model`` receiving its input through ``synapse``, checked.

    The analytic map if the model declares ``transfer = "integrate-and-fire"`` and the synapse is an
    undelayed `Delta` (or None): nothing is simulated, and the integrate-and-fire map is exact.
    Otherwise `measure_transfer` of the whole neuron + synapse model followed by `check_rate_code`.

    Parameters
    ----------
    model : NeuronModel
        The neuron model (without synaptic kinetics).
    dt : Quantity
    n_steps : int
    synapse : SynapseModel or None
        None: `Delta()`.

    Raises
    ------
    TransferError
        If the measured model cannot carry a rate code, or Brian2 cannot build or integrate it.
    """
    synapse = Delta() if synapse is None else synapse
    if model.transfer == "integrate-and-fire" and synapse.instantaneous:
        return TransferCurve.ideal()
    name = model.name if synapse.instantaneous else f"{model.name}+{synapse.kind}"
    try:
        curve = measure_transfer(model, dt, n_steps, synapse=synapse)
    except (TransferError, KeyboardInterrupt):
        raise
    except Exception as err:  # Brian2 raises many types for equations it cannot build or integrate
        text = " ".join(str(err).split())
        raise TransferError(f"neuron model {name!r}: Brian2 cannot simulate it ({type(err).__name__}: "
                            f"{text[:300]}); check its equations, units and integration method "
                            "(e.g. method = 'euler' for nonlinear equations)") from None
    check_rate_code(curve, name)
    return curve
