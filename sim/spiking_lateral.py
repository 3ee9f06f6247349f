"""The lateral HLOP circuit of one weight layer with spiking subspace neurons (``lateral.neuron = "spiking"``).

Same interface and the same weight sharing, growth and freezing as `sim.lateral.GradedLateralCircuit`;
here every subspace neuron is a pair of spiking units and the plasticity is event-driven, so the cost
of learning grows with the subspace units' spikes, not with synapses × steps.

What is computed (``x`` = presynaptic activity in spikes per network step, as in the graded circuit):
``y = H x`` (signed), the feedback ``x̂ = Hᵀ y``, the residual ``r = x − x̂``, and Oja's subspace rule in
synapse form ``dH_ij/dt = η · y_i · r_j`` (docs/design.md).

Sign coding — ON/OFF pairs. Subspace neuron ``i`` is two spiking units made from one neuron model
(`models.subspace_neurons`; every model variable renamed ``v → v_on / v_off``). The ON unit is driven by
``+Hx`` and the OFF unit by ``−Hx``, with gain ``rate_scale · dt · spike_cost`` per presynaptic spike, so
an integrate-and-fire unit with subtractive reset fires ``rate(ON_i) = rate_scale · [y_i]₊`` and
``rate(OFF_i) = rate_scale · [−y_i]₊``, i.e. ``y_i = (rate(ON_i) − rate(OFF_i)) / rate_scale``. The two
units of a pair are two membranes of one Brian2 element with two custom events (``on_spike``,
``off_spike``) because they share their synapses: one synapse per (input, subspace neuron) and direction
carries ``H_ij`` once. They cannot fire in the same step (``v_on + v_off`` only decreases).

Populations (``C = lateral.copies`` copies matching the network's first ``C`` copies, or the whole batch
with the neural projection), network clock:

- ``<name>_x`` (C·n relay units). A relay unit fires one step after its presynaptic neuron (the
  network's groups cannot carry the circuit's state). It holds the two traces whose difference is the
  residual read by the plasticity, ``r = x_trace − xhat_trace``:
  ``x_trace`` — low-pass of its spikes, ``+1/n_steps`` per spike; ``xhat_trace`` — low-pass of the
  feedback, ``±H_ij / (rate_scale · dt · n_steps)`` per ON/OFF spike of subspace neuron ``i``. Both decay
  with ``lateral.trace_tau`` and are reset at the start of every presentation; for a time constant long
  compared with the presentation (default 200 ms against 40 ms) they integrate the presentation, and
  ``x_trace`` at its end is the presynaptic rate, the graded circuit's ``x``.
- ``<name>_y`` (C·K ON/OFF pairs): the two membranes, ``plastic`` (per neuron), spike counters. Each
  spike raises ``on_spike`` (``off_spike``); while the neuron learns (``plastic`` and inside the
  window) it also raises ``learning_on_spike`` (``learning_off_spike``), which alone runs the
  plasticity pathways, so frozen neurons and spikes outside the window cost 2n synaptic events, not 3n.

Synapses:

- ``<name>_drive``: presynaptic neuron → its relay unit (one-to-one, event-driven).
- ``<name>_synapses``: reciprocal synapses between relay ``x_j`` and pair ``i``, one per pair of
  neurons, holding ``H_ij`` for both directions (a single copy of ``H``, so the two directions cannot
  disagree). Forward, on a relay spike: ``v_on += gain·H_ij`` and ``v_off −= gain·H_ij``. Feedback, on
  an ON (OFF) spike of pair ``i``: ``H_ij`` enters ``xhat_trace_j`` with sign ``+`` (``−``), i.e.
  ``−Hᵀy`` in the residual. Plasticity, on a learning ON (OFF) spike of pair ``i``:
  ``H_ij += (−=) η' r_j`` with ``η' = η / rate_scale``, so the expected drift is ``η y_i r_j``. The
  feedback and the plasticity are Brian2 postsynaptic pathways (``on_post``) of the same synapses;
  their code writes the relay's variables. Separate forward and feedback ``Synapses`` would hold two
  copies of ``H`` and make every update twice; one set halves the plasticity's synaptic events and the
  weights' memory.

The plasticity is gated by ``plastic`` (frozen neurons change by exactly zero) and by the plasticity
window (the last ``lateral.window`` of each presentation).

Timing within a step, and why (the fixed point depends on it). The relay units fire and their drive
reaches the subspace membranes before the subspace units' thresholds (``before_thresholds``), so a unit
deciding to fire at step t has integrated every relay spike up to t. A non-leaky integrate-and-fire
unit that starts at half its threshold then fires at the step where its integrated drive ``U``
crosses ``(k + ½)·θ``: its spike count so far plus one half equals ``U/θ``. The plasticity therefore
reads every trace at the midpoint of the step: the relay adds half of its jump before the synaptic
pathways and half after them, and the feedback of this step's subspace spikes is split into two halves
around the learning pathways (pathway ``order``: drive 0, first halves 1, learning 2, second halves 3).
Then what a spike reads in ``xhat_trace`` (its own spikes and everyone else's) matches what it reads in
``x_trace`` through the same integrated drive, and the Hebbian and anti-Hebbian terms balance exactly at
``HHᵀ = I``. Read before (after) the step's own spike, ``r`` is off by half a spike, which for units firing a
few spikes per presentation unbalances the two terms at the PCA fixed point; the midpoint rule balances
them (docs/results.md, "The spiking circuit's timing and stability").

Weight sharing across copies: every copy changes its own synapses; every ``lateral.dt`` inside the
plasticity window, and at the end of every presentation, the changes are summed into the shared ``H``
(`sim.kernels.reduce_shared_weights`) and all copies are set to it (only the inputs whose weights can
have changed: `SpikingLateralCircuit._live_columns`). Because the
traces integrate the presentation, the copies' merged change reaches the feedback with a delay; the
circuit is stable for roughly ``η · window · copies · λ_max(E[x xᵀ]) < 1.5`` (docs/results.md), a
smaller ``η`` than the graded circuit tolerates.
Growth: all neurons a run will ever need are allocated at build time with ``H = 0`` (silent); a new
task's neurons get orthonormal initial rows orthogonal to the frozen ones and ``plastic = 1``; at the
end of the task they freeze. Same draws from ``rng`` as the graded circuit.

Neural projection (``lateral.projection = "neural"``, see `sim.lateral_base`): the circuit runs in every
copy of the batch, and each relay unit holds two more variables that do not decay and are reset at the
start of every presentation: ``x_sum`` (``+1/n_steps`` per presynaptic spike, counted when the drive
reaches the relay) and ``xhat_old`` (``±H_ij / (rate_scale · dt · n_steps)`` per ON/OFF spike of subspace
neuron ``i`` if it is frozen, in the feedback's first-half pathways). At the end of a presentation
``x_sum = a`` exactly and ``xhat_old = H_oldᵀ ŷ_old`` with ``ŷ_old = (n_on − n_off) / (rate_scale · dt ·
n_steps)`` the frozen neurons' spike-count code of ``H_old a``, so ``x_sum − xhat_old ≈ a_⊥``. Two errors
remain: the spike counts are the rounded integrated drive (±½ spike per neuron, relative error ∝
1/rate_scale) and the presynaptic spikes of the last step have reached the relays but not yet the
subspace units (one-step relay delay, ∝ 1/n_steps). tests/test_neural_projection.py bounds the error;
docs/results.md ("The neural projection") gives its size against ``rate_scale``.
"""
from __future__ import annotations

import numpy as np
from brian2 import Equations, NetworkOperation, NeuronGroup, Quantity, Synapses, second
from brian2.utils.stringtools import word_substitute

from hlopsim.models.lateral import LateralSpec
from hlopsim.sim.blocks import block_diagonal_indices, one_to_one_indices
from hlopsim.sim.lateral_base import SharedSubspaceWeights, simulated_copies


def check_spiking_settings(spec: LateralSpec, presentation: Quantity, dt: Quantity) -> None:
    """Raise ValueError for settings the spiking circuit cannot simulate at this ``dt``."""
    spikes_per_step = float(spec.rate_scale * dt)  # spikes per step of a unit at |y| = 1
    if spikes_per_step >= 1:
        raise ValueError(f"lateral.rate_scale = {spec.rate_scale} gives {spikes_per_step:g} spikes per step at "
                         f"|y| = 1 with dt = {dt}; it must stay well below 1 per step")
    if not float(spec.trace_tau / dt) >= 1:
        raise ValueError(f"lateral.trace_tau = {spec.trace_tau} must be at least one time step ({dt})")
    if spec.subspace_neuron.refractory is not None and float(spec.subspace_neuron.refractory) > 0:
        # The ON and OFF units of a pair share one row of the group (custom events), which Brian2's
        # refractoriness does not cover.
        raise ValueError(f"lateral.subspace_neuron {spec.subspace_neuron.name!r}: refractory = "
                         f"{spec.subspace_neuron.refractory} is not supported by the spiking circuit; expected none")
    window_steps = int(round(float(spec.window / dt)))
    if not 1 <= window_steps <= int(round(float(presentation / dt))):
        raise ValueError(f"lateral.window = {spec.window} must lie within the presentation ({presentation})")


class SpikingLateralCircuit(SharedSubspaceWeights):
    """Lateral circuit with spiking ON/OFF subspace neurons for one weight layer.

    Parameters
    ----------
    name : str
        Prefix of the Brian2 object names.
    pre_group : brian2 group
        The layer's presynaptic population (all network copies; the first ``spec.copies`` are used,
        all of them with ``spec.projection = "neural"``).
    n_inputs : int
        Presynaptic neurons per copy (``n``).
    sizes_per_task : list of int
        Subspace neurons added at each task (already capped at ``n``).
    spec : LateralSpec
        Uses ``copies``, ``window``, ``dt`` (weight-sync period), ``rate_scale``, ``trace_tau``,
        ``subspace_neuron``, ``projection``.
    hebbian_rate : Quantity
        This layer's ``η`` (1/second), same meaning as in the graded circuit.
    presentation, dt : Quantity
        Presentation length and network time step (the circuit's clock).
    rng : numpy.random.Generator
        Draws the initial rows of new neurons.

    Attributes
    ----------
    H : ndarray, shape (K_max, n)
        The shared weights, dimensionless; rows of neurons not yet grown are zero.
    n_frozen, n_grown : int
        Frozen neurons (the first ``n_frozen`` rows) and neurons grown so far.

    Raises
    ------
    ValueError
        If ``rate_scale · dt ≥ 1`` (a unit at ``|y| = 1`` would have to fire every step) or the trace
        time constant is shorter than ``dt``.
    """

    rate_key = "lateral.spiking_hebbian_rate"  # the setting that holds this circuit's η (named in errors)

    def __init__(self, name: str, pre_group, n_inputs: int, sizes_per_task: list[int], spec: LateralSpec,
                 hebbian_rate: Quantity, presentation: Quantity, dt: Quantity, rng: np.random.Generator):
        neural = spec.projection == "neural"
        self._init_shared(name, n_inputs, sizes_per_task, spec.copies, rng,
                          simulated=simulated_copies(spec, pre_group, n_inputs), neural_projection=neural)
        n, k, c = n_inputs, self.k_max, self.simulated

        check_spiking_settings(spec, presentation, dt)
        spikes_per_step = float(spec.rate_scale * dt)  # spikes per step of a unit at |y| = 1
        model = spec.subspace_neuron
        self.n_steps = n_steps = int(round(float(presentation / dt)))
        window_steps = int(round(float(spec.window / dt)))
        self._first_plastic_step = n_steps - window_steps
        self._sync_steps = max(1, int(round(float(spec.dt / dt))))
        self._dt = float(dt / second)
        open_after = presentation - spec.window - dt / 2

        # -- relay units: x_trace and xhat_trace, the residual r = x_trace - xhat_trace ----------------
        # A relay unit fires in the step after the drive set `pending`, before the subspace units'
        # thresholds (its forward drive follows in the same slot). Its reset runs before the synaptic
        # pathways (so the drive can set `pending` again in the same step) and adds the first half of
        # the x_trace jump; the second half follows the pathways (a second event, same condition).
        # Neural projection only: x_sum counts the relay's input (+1/n_steps per presynaptic spike, no
        # decay) and xhat_old sums the frozen neurons' feedback (no decay); x_sum − xhat_old is a_⊥.
        readout = "\nx_sum : 1\nxhat_old : 1" if neural else ""
        self.x = NeuronGroup(
            c * n, """dx_trace/dt = -x_trace / tau_trace : 1
                      dxhat_trace/dt = -xhat_trace / tau_trace : 1
                      pending : 1""" + readout,
            threshold="pending > 0.5", reset="pending = 0\nx_trace += x_half", events={"relay_late": "pending > 0.5"},
            method="exact", dt=dt, name=f"{name}_x",
            namespace={"tau_trace": spec.trace_tau, "x_half": 0.5 / n_steps})
        self.x.set_event_schedule("spike", when="before_thresholds", order=-10)
        self.x.resetter["spike"].when = "before_synapses"
        self.x.run_on_event("relay_late", "x_trace += x_half", when="after_synapses")

        # -- subspace neurons: ON/OFF pairs of the user's model -------------------------------------
        names = sorted(Equations(model.equations).names)
        self._on = {var: f"{var}_on" for var in names}
        self._off = {var: f"{var}_off" for var in names}
        pair_eqs = (Equations(model.equations, **self._on) + Equations(model.equations, **self._off)
                    + Equations("""plastic : 1
                                   t_start : second (shared)
                                   gate = plastic * int(t - t_start > open_after) : 1
                                   n_on : 1
                                   n_off : 1
                                   n_learning : 1""" + ("\nfrozen : 1" if neural else "")))
        self.y = NeuronGroup(
            c * k, pair_eqs, method=model.method, dt=dt, name=f"{name}_y",
            # The learning pathways listen to their own events, raised by the same spikes but only while
            # the neuron learns (plastic, inside the window): frozen neurons, non-learning copies and
            # spikes before the window then cost no plasticity events (the update would be zero anyway).
            events={"on_spike": word_substitute(model.threshold, self._on),
                    "off_spike": word_substitute(model.threshold, self._off),
                    "learning_on_spike": f"({word_substitute(model.threshold, self._on)}) and gate > 0.5",
                    "learning_off_spike": f"({word_substitute(model.threshold, self._off)}) and gate > 0.5"},
            namespace={**model.parameters, "open_after": open_after})
        self.y.run_on_event("on_spike", word_substitute(model.reset, self._on) + "\nn_on += 1", when="resets")
        self.y.run_on_event("off_spike", word_substitute(model.reset, self._off) + "\nn_off += 1", when="resets")
        self.y.run_on_event("learning_on_spike", "n_learning += 1", when="resets")
        self.y.run_on_event("learning_off_spike", "n_learning += 1", when="resets")
        self._initial = dict(model.initial)

        # -- synapses ---------------------------------------------------------------------------------
        self.drive = Synapses(pre_group, self.x, on_pre="pending_post = 1" + ("\nx_sum_post += x_unit" if neural else ""),
                              dt=dt, name=f"{name}_drive", namespace={"x_unit": 1.0 / n_steps})
        self.drive.connect(i=one_to_one_indices(c, n)[0], j=one_to_one_indices(c, n)[1])
        v_on, v_off = self._on["v"], self._off["v"]
        # One synapse per (relay j, pair i) in each copy carries H_ij both ways (see the module docstring).
        # The learning pathways run on learning spikes only (the gate is in the event's condition).
        learn = "H {op}= eta_spike * (x_trace_pre - xhat_trace_pre)"
        feedback_half = "xhat_trace_pre {op}= c_half * H"
        feedback_old = "\nxhat_old_pre {op}= frozen_post * c_full * H" if neural else ""
        self.synapses = Synapses(
            self.x, self.y, model="H : 1",
            on_pre=f"{v_on}_post += gain * H\n{v_off}_post -= gain * H",
            on_post={"fb_on_1": (feedback_half + feedback_old).format(op="+"),
                     "fb_off_1": (feedback_half + feedback_old).format(op="-"),
                     "learn_on": learn.format(op="+"), "learn_off": learn.format(op="-"),
                     "fb_on_2": feedback_half.format(op="+"), "fb_off_2": feedback_half.format(op="-")},
            on_event={"fb_on_1": "on_spike", "fb_off_1": "off_spike", "learn_on": "learning_on_spike",
                      "learn_off": "learning_off_spike", "fb_on_2": "on_spike", "fb_off_2": "off_spike"},
            dt=dt, name=f"{name}_synapses",
            namespace={"gain": model.spike_cost * spikes_per_step, "eta_spike": float(hebbian_rate / spec.rate_scale),
                       "c_half": 0.5 / (spikes_per_step * n_steps), "c_full": 1.0 / (spikes_per_step * n_steps)})
        # Laid out (copy, subspace neuron, input): the weights reshape → (C, K, n).
        pre, post = block_diagonal_indices(c, n, k)
        self.synapses.connect(i=pre, j=post)
        # Midpoint rule: first halves of the feedback, then the learning, then second halves.
        self.drive.pre.order = 0
        self.synapses.pre.when = "before_thresholds"
        self.synapses.pre.order = 0
        self.synapses.fb_on_1.order = self.synapses.fb_off_1.order = 1
        self.synapses.learn_on.order = self.synapses.learn_off.order = 2
        self.synapses.fb_on_2.order = self.synapses.fb_off_2.order = 3
        self._weight_blocks = [(slice(0, k), (self.synapses.variables["H"].get_value().reshape(c, k, n),))]
        self._plastic = np.zeros(k, dtype=bool)
        self._x_trace_view = self.x.variables["x_trace"].get_value()
        self._xhat_trace_view = self.x.variables["xhat_trace"].get_value()
        # Merges the copies' changes at the end of a network step; it decides in Python whether it is due,
        # from the integer time step of its clock (a live view; Quantity arithmetic would cost ~30 µs).
        self.sync = NetworkOperation(self._sync_step, dt=dt, when="end", name=f"{name}_sync")
        self._timestep = self.sync.clock.variables["timestep"].get_value()
        self._start_step = 0
        self.objects = [self.x, self.y, self.drive, self.synapses, self.sync]
        self._reset_state()
        self._write_copies()

    # -- hooks called by the network at batch boundaries --------------------------------------------
    def start_presentation(self, t: Quantity) -> None:
        """Reset traces and membranes and start the plasticity timer."""
        self._reset_state()
        self.y.t_start = t
        self._start_step = int(round(float(t / second) / self._dt))

    def _reset_state(self) -> None:
        self.x.x_trace = 0.0
        self.x.xhat_trace = 0.0
        self.x.pending = 0.0
        if self.neural_projection:
            self.x.x_sum = 0.0
            self.x.xhat_old = 0.0
        for var, value in self._initial.items():
            setattr(self.y, self._on[var], value)
            setattr(self.y, self._off[var], value)

    # -- spikes --------------------------------------------------------------------------------------
    def spike_counts(self) -> tuple[int, int]:
        """ON and OFF spikes of all subspace units (all copies) since the circuit was built."""
        return int(np.sum(self.y.n_on[:])), int(np.sum(self.y.n_off[:]))

    def learning_spike_count(self) -> int:
        """Spikes (ON and OFF, all copies) that ran the plasticity: of plastic neurons, in the window."""
        return int(np.sum(self.y.n_learning[:]))

    # -- weight sharing ------------------------------------------------------------------------------
    def _sync_step(self) -> None:
        """Sum every copy's plastic change into the shared H and reset all copies to it.

        Runs at the end of every network step and acts every ``lateral.dt`` inside the plasticity
        window and at the end of every presentation.
        """
        if not self._plastic.any():
            return
        step = int(self._timestep[0]) - self._start_step
        done = step - self._first_plastic_step + 1
        if done <= 0 or (done % self._sync_steps and step != self.n_steps - 1):
            return
        columns = self._live_columns()
        if columns is not None:
            self._merge_copies(columns)

    def _live_columns(self) -> slice | None:
        """The inputs whose weights may have changed since the last merge, as one column range.

        A learning spike changes ``H_ij`` by ``η' (x_trace_j − xhat_trace_j)``. Both traces start the
        presentation at zero; ``x_trace_j`` stays zero until input ``j`` spikes (in that copy) and
        ``xhat_trace_j`` while every grown row's weight from ``j`` is zero. An input that has not spiked
        in this presentation in any learning copy, whose traces are zero and whose column of ``H`` is
        zero therefore had every update exactly ``0`` — its weights equal ``H`` in every copy — and the
        merge can skip it bit for bit. Silent inputs at Oja's fixed point (a zero column) then cost the
        merges nothing. Returns None if no input is live.
        """
        n = self.n_inputs
        x_trace = self._x_trace_view[: self.copies * n].reshape(self.copies, n)
        xhat_trace = self._xhat_trace_view[: self.copies * n].reshape(self.copies, n)
        live = (x_trace != 0).any(axis=0) | (xhat_trace != 0).any(axis=0) | (self.H[: self.n_grown] != 0).any(axis=0)
        index = np.flatnonzero(live)
        if not len(index):
            return None
        return slice(int(index[0]), int(index[-1]) + 1)

    def _residual_now(self):
        """``x_sum − xhat_old``: every presynaptic spike of the presentation minus the frozen feedback."""
        return self.x.x_sum[:] - self.x.xhat_old[:]
