"""The lateral HLOP circuit as a spec: subspace neurons per task, plasticity, clocks."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from numbers import Real

from brian2 import Hz, Quantity, ms, second
from brian2.units.fundamentalunits import have_same_dimensions

from hlopsim.models.neurons import NeuronModel
from hlopsim.models.subspace_neurons import integrate_and_fire

NEURON_KINDS = ("graded", "spiking")
PROJECTIONS = ("closed-form", "neural")
GROWTHS = ("fixed", "residual")
PROTECTIONS = ("full", "graded")


@dataclass(frozen=True)
class LateralSpec:
    """One lateral circuit per projected weight layer.

    Subspace neurons ``y`` receive the layer's presynaptic activity ``x`` through synapses ``H``
    (``y = H x``) and feed back ``-Hᵀ y`` onto the ``x`` units, which leaves the residual
    ``r = x - Hᵀ y``. The synapses follow Oja's subspace rule ``dH_ij/dt = η · y_i · r_j``.

    Parameters
    ----------
    first_task : tuple of int
        Subspace neurons added at task 0, one entry per weight layer (input layer first).
    per_task : tuple of int
        Subspace neurons added at each later task, per weight layer.
    hebbian_rate : tuple of Quantity
        ``η`` in ``dH/dt = η y r`` (1/second) per weight layer, per simulated copy of the circuit.
        Stability needs ``η · dt · copies · λ_max < 1`` with ``λ_max`` the largest eigenvalue of
        ``E[x xᵀ]``; wider, busier layers need a smaller ``η``.
    copies : int
        In how many of the parallel network copies the circuit is simulated (≤ batch size); the
        copies share ``H``: their plastic changes are summed at the end of every batch.
    dt : Quantity
        Clock of the lateral synapses (second). The spiking circuit runs its neurons and synapses on
        the network's clock and uses ``dt`` as the period at which the copies' weight changes are
        merged into the shared ``H``.
    window : Quantity
        Plasticity acts only during the last ``window`` of each presentation, once the
        presynaptic activity has been integrated (docs/design.md: a circuit whose ``y`` lags ``x`` settles
        at a scaled ``H``).
    neuron : str
        Subspace neuron model: ``"graded"`` (rate units, ``y`` follows ``Hx`` instantly, `sim.lateral`)
        or ``"spiking"`` (ON/OFF pairs of spiking units, event-driven plasticity, `sim.spiking_lateral`).
    rate_scale : Quantity
        Spiking circuit only: firing rate (Hz) of an ON (OFF) unit per unit of positive (negative)
        ``y = Hx``, with ``x`` in presynaptic spikes per step. Keep ``rate_scale · |y| · dt`` well
        below 1 spike per step (the units fire at most once per step).
    trace_tau : Quantity
        Spiking circuit only: time constant (second) of the traces ``x_trace`` (low-pass of the
        presynaptic spikes) and ``xhat_trace`` (low-pass of the feedback) whose difference is the
        residual the plasticity reads.
    subspace_neuron : NeuronModel
        Spiking circuit only: model of the ON and OFF units (`models.subspace_neurons`).
    projection : str
        Where the projected presynaptic activity ``a_⊥`` of the supervised update comes from:
        ``"closed-form"`` computes ``a_⊥ = a − H_oldᵀ(H_old a)`` from the frozen rows (docs/design.md);
        ``"neural"`` reads it from the simulated circuit, as its residual ``x − x̂_old`` with only the
        frozen neurons feeding back (`sim.lateral_base`). In neural mode the circuit is simulated in
        every one of the network's ``batch_size`` copies (each sample's update needs its own
        residual); Hebbian plasticity still acts in the first ``copies`` only.
    decorrelate : bool
        Graded circuit only: the plasticity's postsynaptic factor is the current task's subspace
        activity decorrelated by lateral synapses among those neurons, ``z = P y`` with
        ``P = m (C + μ m I)⁻¹``, ``C`` a running average of ``y yᵀ`` and ``m = tr C / k``:
        ``dH/dt = η z (x − Hᵀy)ᵀ``. Same fixed points as Oja's rule, but every direction converges
        at a similar rate instead of a rate proportional to its variance (`sim.lateral`).
    decorrelation_floor : float
        ``μ`` above: the smallest eigenvalue of ``C`` the decorrelation assumes, as a fraction of
        the mean one (positive; larger is closer to plain Oja, smaller is faster and less stable).
    growth : str
        How many of a task's neurons are kept. ``"fixed"``: all ``first_task``/``per_task`` of them
        (the layer's sizes are fixed at build time, the total capped at the layer width).
        ``"residual"``: ``first_task``/``per_task`` (capped by the room left in the layer) grow and
        learn; at the end of the task they are made orthonormal and orthogonal to the frozen rows
        within their span, turned onto the principal axes of the task's activity
        (`protocols.experiment.methods.principal_rows`), and only the fewest top ones are kept (frozen) that bring the
        residual energy ``‖x − Hᵀ H x‖² / ‖x‖²`` of the task's activity (``H`` all kept rows) to
        ``residual_threshold`` or below; the others are released for later tasks. Graded
        circuits without decorrelation only.
    residual_threshold : float
        Fraction of a task's activity energy, in (0, 1), the kept rows may leave unexplained
        (``growth = "residual"``).
    protection : str
        ``"full"``: supervised updates are projected out of the frozen rows, ``a − H_oldᵀ H_old a``.
        ``"graded"``: ``a − H_oldᵀ diag(s) H_old a``, each frozen row scaled by its importance
        ``s_i = (α+1) r_i / (α r_i + r_max)`` ∈ [0, 1], ``r_i`` the RMS of ``y_i = H_i x`` on the
        old tasks' activity (the largest over the tasks since it froze), ``r_max`` the layer's
        largest (as scaled gradient projection does for GPM's bases). The task's rows are made
        orthonormal and turned onto its principal axes as for residual growth. Closed-form projection only.
    protection_scale : float
        ``α`` above (≥ 0): 0 scales linearly with ``r_i``; larger values protect weak rows more
        (``α → ∞`` is full protection).
    """

    first_task: tuple[int, ...]
    per_task: tuple[int, ...]
    hebbian_rate: tuple[Quantity, ...]
    dt: Quantity
    window: Quantity
    copies: int = 32
    neuron: str = "graded"
    rate_scale: Quantity = field(default_factory=lambda: 200 * Hz)
    trace_tau: Quantity = field(default_factory=lambda: 200 * ms)
    subspace_neuron: NeuronModel = field(default_factory=integrate_and_fire)
    projection: str = "closed-form"
    decorrelate: bool = False
    decorrelation_floor: float = 0.3
    growth: str = "fixed"
    residual_threshold: float = 0.05
    protection: str = "full"
    protection_scale: float = 100.0

    def __post_init__(self):
        if not len(self.first_task) == len(self.per_task) == len(self.hebbian_rate):
            raise ValueError(f"lateral.first_task {self.first_task}, lateral.per_task {self.per_task} and "
                             f"lateral.hebbian_rate {self.hebbian_rate} must name the same number of layers")
        for value in (*self.first_task, *self.per_task):
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"lateral neuron count {value!r} must be a non-negative integer")
        if not (isinstance(self.copies, int) and self.copies > 0):
            raise ValueError(f"lateral.copies = {self.copies!r} must be a positive integer")
        for rate in self.hebbian_rate:
            if not (math.isfinite(float(rate)) and float(rate) > 0):
                raise ValueError(f"lateral.hebbian_rate = {rate} must be finite and positive")
        for name in ("dt", "window"):
            if not (math.isfinite(float(getattr(self, name))) and float(getattr(self, name)) > 0):
                raise ValueError(f"lateral.{name} = {getattr(self, name)} must be finite and positive")
        if self.neuron not in NEURON_KINDS:
            raise ValueError(f"lateral.neuron = {self.neuron!r} is unknown; expected one of {NEURON_KINDS}")
        for name, unit in (("rate_scale", Hz), ("trace_tau", second)):
            value = getattr(self, name)
            if not have_same_dimensions(value, unit):
                raise ValueError(f"lateral.{name} = {value!r} has the wrong dimensions; expected a value in {unit!r}")
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise ValueError(f"lateral.{name} = {value} must be finite and positive")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"lateral.projection = {self.projection!r} is unknown; expected one of {PROJECTIONS}")
        if not isinstance(self.decorrelate, bool):
            raise ValueError(f"lateral.decorrelate = {self.decorrelate!r} must be true or false")
        if self.decorrelate and self.neuron != "graded":
            raise ValueError(f"lateral.decorrelate = true needs lateral.neuron = 'graded' (got {self.neuron!r})")
        floor = self.decorrelation_floor
        if isinstance(floor, bool) or not isinstance(floor, Real) or not (math.isfinite(floor) and floor > 0):
            raise ValueError(f"lateral.decorrelation_floor = {floor!r} must be a finite positive number (a fraction "
                             "of the mean eigenvalue, e.g. 0.3)")
        if self.growth not in GROWTHS:
            raise ValueError(f"lateral.growth = {self.growth!r} is unknown; expected one of {GROWTHS}")
        if self.growth == "residual" and (self.neuron != "graded" or self.decorrelate):
            raise ValueError(f"lateral.growth = 'residual' needs lateral.neuron = 'graded' and lateral.decorrelate = "
                             f"false (got neuron {self.neuron!r}, decorrelate {self.decorrelate})")
        threshold = self.residual_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < threshold < 1:
            raise ValueError(f"lateral.residual_threshold = {threshold!r} must be a fraction of the energy in (0, 1)")
        if self.protection not in PROTECTIONS:
            raise ValueError(f"lateral.protection = {self.protection!r} is unknown; expected one of {PROTECTIONS}")
        if self.protection == "graded" and self.projection != "closed-form":
            raise ValueError(f"lateral.protection = 'graded' needs lateral.projection = 'closed-form' "
                             f"(got {self.projection!r})")
        scale = self.protection_scale
        if isinstance(scale, bool) or not isinstance(scale, Real) or not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"lateral.protection_scale = {scale!r} must be a finite number ≥ 0")
        if not isinstance(self.subspace_neuron, NeuronModel):
            raise ValueError(f"lateral.subspace_neuron = {self.subspace_neuron!r} must be a models.neurons.NeuronModel")

    def neurons_per_task(self, layer: int, n_tasks: int, width: int, layer_name: str = "") -> list[int]:
        """Subspace neurons added at each task for one layer, capped at the layer's input width.

        A circuit with as many neurons as inputs would project out everything and leave the layer
        no plasticity, so the total is capped at ``width`` with a warning. With ``growth =
        "residual"`` these are the neurons each task grows at most (each capped at ``width``); how
        many are kept, and so the room left for later tasks, is decided at the end of each task.
        """
        sizes = [self.first_task[layer]] + [self.per_task[layer]] * (n_tasks - 1)
        if self.growth == "residual":
            return [min(size, width) for size in sizes]
        capped, total = [], 0
        for size in sizes:
            add = max(0, min(size, width - total))
            capped.append(add)
            total += add
        if sum(sizes) > width:
            warnings.warn(f"lateral circuit of layer {layer_name or layer}: {sum(sizes)} subspace neurons "
                          f"requested over {n_tasks} tasks but the layer has {width} inputs; capped at "
                          f"{width} (added per task: {capped})", stacklevel=2)
        return capped
