"""The lateral HLOP circuit of one weight layer, as Brian2 neurons and synapses.

Populations (``C`` parallel copies, matching the first ``C`` copies of the network; ``C = lateral.copies``,
or the whole batch with the neural projection, see below):

- ``<name>_x``  (C·n units): ``x`` integrates the layer's presynaptic spikes over the presentation,
  ``x += 1/n_steps`` per spike, so at the end of a presentation ``x`` equals the presynaptic rate
  in spikes per step — the same ``a`` the supervised update uses. ``xhat`` is the feedback.
- ``<name>_y``  (C·K graded units): ``y = Σ_j H_ij x_j``, instantaneous (a rate neuron without lag,
  so Hebbian and anti-Hebbian terms see the same moment; a lagging ``y`` or ``xhat`` would make the two
  terms average different moments and settle at a scaled ``H``, see docs/design.md).

Synapses (lateral clock ``dt_L``):

- ``<name>_drive``: presynaptic neuron → its ``x`` unit (event-driven, one synapse per neuron).
- ``<name>_forward``: ``x → y`` with weights ``H``; ``y_post = H x_pre (summed)`` and the plasticity
  ``dH/dt = g(t) · plastic_post · η · y_post · (x_pre − xhat_pre)``, Oja's subspace rule in synapse
  form (each synapse sees only its own two ends). ``g(t)`` opens during the last ``window`` of each
  presentation.
- ``<name>_feedback``: ``y → x`` with weights ``H`` entering as ``-Hᵀy``: ``xhat_post = H y_pre (summed)``,
  the residual is ``x − xhat``. Summed variables are computed in the order y, then xhat, then the
  plasticity step (explicit ``order``), so all three see one consistent moment.

Sign coding: graded units carry signed values directly (``y`` and ``H`` may be negative).

Decorrelated plasticity (``lateral.decorrelate = true``). Oja's rule moves ``H`` towards a direction
of the input at a rate proportional to that direction's variance, and the strongest direction caps
``η``, so the weak directions of a task are learned slowly. With
decorrelation the postsynaptic factor of the plasticity is ``z = P y`` instead of ``y``, computed
by ``<name>_decorrelate`` (synapses among the subspace neurons grown at the same task, weights
``P``, ``z_post = P y_pre`` summed). For the current task's ``k`` neurons
``P = m (C + μ m I)⁻¹`` with ``C`` a running average of ``y yᵀ`` over the learning copies and plastic
steps, ``m = tr C / k`` and ``μ`` = ``lateral.decorrelation_floor``. ``C`` and ``P`` are updated at every
plastic lateral step *before* ``z`` is computed (`_decorrelation_step`, between ``y = Hx`` and
``z = P y``), so ``C`` always includes the current step's ``y``: a direction in which the step's samples
have variance ``λ`` then moves at most at the rate ``η m λ / (λ + μ m) < η m`` on these very
samples, which keeps the raised η that decorrelation allows stable from a task's first step. The newest step weighs
``max(1/s, DECORRELATION_MEMORY)`` at the task's ``s``-th plastic step: a plain mean over the first
steps, then an exponential average.
The rule ``dH/dt = η z (x − Hᵀy)ᵀ`` has the same fixed points as Oja's (``P`` is invertible, so
``E[z rᵀ] = 0 ⇔ E[y rᵀ] = 0``) but preconditions the drift by ``C⁻¹``: every direction converges at a
similar rate.

Neural projection (``lateral.projection = "neural"``, see `sim.lateral_base`): the circuit runs in every
copy of the batch and the feedback synapses compute a second summed variable
``xhat_old_post = frozen_pre · H · y_pre``, the feedback of the frozen neurons only, so that
``x − xhat_old`` is the residual of the circuit with only the frozen neurons active. Summed variables
are evaluated on the lateral clock, but the last network steps of a presentation come after its last
lateral step, so `residual` makes the circuit take one more step of its two summed pathways
(``y = Hx``, then ``xhat_old = H_oldᵀ y``) at the boundary, on the complete ``x``: then ``x = a`` and the
residual equals the closed form up to floating-point summation order (tested).

Weight sharing across copies: every copy makes its own Euler step of ``H``; after each plastic step
the changes are summed into the shared ``H`` (a Numba kernel) and all copies, forward and feedback,
are set to it. Frozen neurons (``plastic = 0``) change by exactly zero.
Growth: all neurons a run will ever need are allocated at build time (silent), their synapses created
when their task begins (`_connect_rows`; the summed variables and the plasticity cost per synapse and
lateral step, so the neurons of later tasks would cost time while adding zeros); a new task's neurons
get orthonormal initial rows and ``plastic = 1``; at the end of the task they freeze. With
``lateral.growth = "residual"`` all ``n`` rows are allocated, a task grows at most the room left, and at
its end the method keeps only some of its rows (`SharedSubspaceWeights.freeze_rows`); the rest are
zeroed and grown again by the next task, so synapses are created up to the highest row ever grown.
"""
from __future__ import annotations

import numpy as np
from brian2 import NetworkOperation, NeuronGroup, Quantity, Synapses, second

from hlopsim.models.lateral import LateralSpec
from hlopsim.sim.blocks import block_diagonal_indices, one_to_one_indices
from hlopsim.sim.lateral_base import SharedSubspaceWeights, simulated_copies

# Weight of the newest plastic step in the running average C of y yᵀ (decorrelated plasticity): about
# 20 steps, i.e. 5 presentations at the default window of 4 lateral steps.
DECORRELATION_MEMORY = 0.05


class GradedLateralCircuit(SharedSubspaceWeights):
    """Lateral circuit with graded subspace neurons for one weight layer.

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
    hebbian_rate : Quantity
        This layer's ``η`` (1/second).
    presentation, dt : Quantity
        Presentation length and network time step.
    rng : numpy.random.Generator
        Draws the initial rows of new neurons.

    Attributes
    ----------
    H : ndarray, shape (K_max, n)
        The shared weights, dimensionless; rows of neurons not yet grown are zero.
    n_frozen : int
        Number of frozen neurons (the first ``n_frozen`` rows).
    n_grown : int
        Number of neurons grown so far.
    """

    rate_key = "lateral.hebbian_rate"  # the setting that holds this circuit's η (named in errors)

    def __init__(self, name: str, pre_group, n_inputs: int, sizes_per_task: list[int], spec: LateralSpec,
                 hebbian_rate: Quantity, presentation: Quantity, dt: Quantity, rng: np.random.Generator):
        neural = spec.projection == "neural"
        self._init_shared(name, n_inputs, sizes_per_task, spec.copies, rng,
                          simulated=simulated_copies(spec, pre_group, n_inputs), neural_projection=neural,
                          residual_growth=spec.growth == "residual")
        n, k, c = n_inputs, self.k_max, self.simulated
        n_steps = int(round(float(presentation / dt)))
        open_after = presentation - spec.window

        # x and y live on the lateral clock: Brian2 runs a summed variable's update on its *target*
        # group's clock, so this is what makes y = Hx and xhat = Hᵀy cost once per lateral step.
        self.x = NeuronGroup(c * n, "x : 1\nxhat : 1" + ("\nxhat_old : 1" if neural else ""), dt=spec.dt,
                             name=f"{name}_x")
        decorrelate = spec.decorrelate
        self.y = NeuronGroup(c * k, "y : 1\nplastic : 1\nt_start : second (shared)" + ("\nfrozen : 1" if neural else "")
                             + ("\nz : 1" if decorrelate else ""), dt=spec.dt, name=f"{name}_y")
        self.drive = Synapses(pre_group, self.x, on_pre="x_post += x_gain", dt=dt, name=f"{name}_drive",
                              namespace={"x_gain": 1.0 / n_steps})
        self.drive.connect(i=one_to_one_indices(c, n)[0], j=one_to_one_indices(c, n)[1])
        self.forward = Synapses(
            self.x, self.y,
            model=f"""y_post = H * x_pre : 1 (summed)
                     dH/dt = int(t - t_start_post > open_after) * plastic_post * eta * {"z" if decorrelate else "y"}_post * (x_pre - xhat_pre) : 1 (clock-driven)""",
            method="euler", dt=spec.dt, name=f"{name}_forward",
            namespace={"eta": hebbian_rate, "open_after": open_after - dt / 2})
        self.feedback = Synapses(self.y, self.x, model="H : 1\nxhat_post = H * y_pre : 1 (summed)" + (
                                     "\nxhat_old_post = frozen_pre * H * y_pre : 1 (summed)" if neural else ""),
                                 dt=spec.dt, name=f"{name}_feedback")
        # Synapses are created task by task, when the task's neurons grow (`_connect_through`): the summed
        # variables and the plasticity iterate every synapse at every lateral step, and the neurons of
        # later tasks would only add zeros. Task 0's (at least one row) are created now: Brian2 needs
        # every Synapses object to have been connected before it runs.
        self._weight_blocks = []
        self._connected_rows = 0
        self._connect_rows(max(1, self.sizes_per_task[0] if self.sizes_per_task else 0))
        # y first, then (decorrelation only) C and P from this y, then z = P y and the feedback
        # xhat = Hᵀy, then the plasticity step.
        self.forward.summed_updaters["y_post"].order = 0
        self.feedback.summed_updaters["xhat_post"].order = 2
        self.forward.state_updater.order = 3
        if neural:
            self.feedback.summed_updaters["xhat_old_post"].order = 2
        self.decorrelate = decorrelate
        decorrelation = self._build_decorrelation(name, spec) if decorrelate else []
        self._plastic = np.zeros(k, dtype=bool)
        self._open_after = float((open_after - dt / 2) / second)
        self._t_start = 0.0
        # After every plastic lateral step the copies' changes are summed into the shared H.
        self.sync = NetworkOperation(self._sync_step, dt=spec.dt, when="end", name=f"{name}_sync")
        self.objects = [self.x, self.y, self.drive, self.forward, self.feedback, self.sync, *decorrelation]
        self._write_copies()

    def _build_decorrelation(self, name: str, spec: LateralSpec) -> list:
        """Synapses ``z_post = P y_pre`` among the neurons grown at the same task, in every copy.

        Created copy by copy and, within a copy, task by task, each task's ``k × k`` block in the
        order (pre ``l``, post ``i``), so a task's weights in copy ``c`` are one contiguous slice
        holding ``Pᵀ`` row by row. Returns the Brian2 objects to add to the network.
        """
        c, k = self.simulated, self.k_max
        starts = np.concatenate([[0], np.cumsum(self.sizes_per_task)])      # first neuron of each task
        block = [size * size for size in self.sizes_per_task]
        pre, post, self._P_slices = [], [], {task: [] for task in range(len(block))}
        offset = 0
        for copy in range(c):
            for task, size in enumerate(self.sizes_per_task):
                members = copy * k + np.arange(starts[task], starts[task] + size)
                pre.append(np.repeat(members, size))
                post.append(np.tile(members, size))
                self._P_slices[task].append(slice(offset, offset + block[task]))
                offset += block[task]
        pre, post = np.concatenate(pre), np.concatenate(post)
        self.decorrelation = Synapses(self.y, self.y, model="P : 1\nz_post = P * y_pre : 1 (summed)", dt=spec.dt,
                                      name=f"{name}_decorrelate")
        self.decorrelation.connect(i=pre, j=post)
        # y = Hx (order 0), C and P from this step's y (order 1), z = P y (order 2), plasticity (order 3).
        self.decorrelation.summed_updaters["z_post"].order = 2
        self.decorrelation_update = NetworkOperation(self._decorrelation_step, dt=spec.dt, when="groups", order=1,
                                                     name=f"{name}_decorrelation_update")
        self._P = self.decorrelation.variables["P"].get_value()      # live view of the synapse weights
        self._P_identity = (pre == post).astype(float)   # P before a task's first plastic step (unused by it)
        self._P[:] = self._P_identity
        self._decorrelation_floor = float(spec.decorrelation_floor)
        self._y_covariance = None                                     # C, running average of y yᵀ
        self._covariance_steps = 0                                    # plastic steps folded into C
        return [self.decorrelation, self.decorrelation_update]

    def grow(self, task: int) -> int:
        """Add the neurons of ``task`` (see `SharedSubspaceWeights.grow`) with their synapses;
        decorrelation restarts at ``P = I``."""
        self._connect_through(task)
        added = super().grow(task)
        self._reset_decorrelation()
        return added

    def restore(self, H: np.ndarray, n_frozen: int, task: int) -> None:
        if self.residual_growth:
            self._connect_rows(min(self.k_max, n_frozen))
        else:
            self._connect_through(task)
        super().restore(H, n_frozen, task)
        self._reset_decorrelation()

    # -- synapses, created task by task ------------------------------------------------------------
    def _connect_through(self, task: int) -> None:
        """Create the synapses of every neuron of tasks ``0 … task`` that has none yet (residual growth:
        of the neurons frozen so far and those ``task`` grows)."""
        if self.residual_growth:
            self._connect_rows(self.n_frozen + self.growth_count(task))
            return
        self._connect_rows(min(self.k_max, int(sum(self.sizes_per_task[: task + 1]))))

    def _connect_rows(self, stop: int) -> None:
        """Create the forward and feedback synapses of subspace neurons ``_connected_rows … stop − 1``.

        Each call appends one block to both synapse arrays, laid out (copy, subspace neuron, input), so
        the block reshapes to (C, rows, n). Every synapse reaching a given ``y`` (or ``x``) unit still
        comes in the order of the inputs (of the subspace neurons), as if all had been created at once:
        the summed variables add the same terms in the same order. Brian2 may move the arrays when they
        grow, so every block's views are taken anew.
        """
        start = self._connected_rows
        if stop <= start:
            return
        c, n, k, rows = self.simulated, self.n_inputs, self.k_max, stop - start
        pre, local = block_diagonal_indices(c, n, rows)           # post = copy · rows + neuron in the block
        neuron = (local // rows) * k + start + local % rows          # → copy · K_max + row
        self.forward.connect(i=pre, j=neuron)
        self.feedback.connect(i=neuron, j=pre)
        self._connected_rows = stop
        bounds = [block for block, _ in self._weight_blocks] + [slice(start, stop)]
        arrays = [syn.variables["H"].get_value() for syn in (self.forward, self.feedback)]
        self._weight_blocks, offset = [], 0
        for block in bounds:
            size = c * (block.stop - block.start) * n
            # (forward, feedback): the forward weights learn, the feedback weights are set to the merged H.
            self._weight_blocks.append((block, tuple(a[offset: offset + size].reshape(c, -1, n) for a in arrays)))
            offset += size
        self._write_copies()

    def _reset_decorrelation(self) -> None:
        if self.decorrelate:
            self._y_covariance = None
            self._covariance_steps = 0
            self._P[:] = self._P_identity

    def _update_decorrelation(self) -> None:
        """Fold the current step's ``y yᵀ`` into ``C`` and set ``P`` of the current task's block."""
        plastic = np.flatnonzero(self._plastic)
        k = len(plastic)
        ys = self.y.y[:].reshape(self.simulated, self.k_max)[: self.copies, plastic]
        step = ys.T @ ys / len(ys)
        self._covariance_steps += 1
        # A plain mean of the first steps, then an exponential average: the early estimates weigh
        # every step measured so far equally instead of leaning on the first one.
        weight = max(1.0 / self._covariance_steps, DECORRELATION_MEMORY)
        C = step if self._y_covariance is None else self._y_covariance + weight * (step - self._y_covariance)
        self._y_covariance = C
        mean = float(np.trace(C)) / k
        if mean <= 0.0:                     # the task's neurons are silent: nothing to decorrelate
            return
        P = mean * np.linalg.inv(C + self._decorrelation_floor * mean * np.eye(k))
        for where in self._P_slices[self.task]:
            self._P[where] = P.T.ravel()

    # -- hooks called by the network at batch boundaries --------------------------------------------
    def start_presentation(self, t: Quantity) -> None:
        """Clear the presynaptic integrators and start the plasticity timer."""
        self.x.x = 0.0
        self.y.t_start = t
        self._t_start = float(t / second)

    def _sync_step(self) -> None:
        """Sum every copy's plastic change into the shared H and reset all copies to it.

        Called at the end of every lateral step; only steps inside the plasticity window changed
        anything. Summing over copies after each Euler step makes the shared ``H`` follow
        ``dH/dt = η Σ_c y_c r_cᵀ`` exactly, the batch form of Oja's rule.
        """
        if self._plastic_step(self.sync):
            self._merge_copies()

    def _decorrelation_step(self) -> None:
        """Inside the plasticity window: fold this step's ``y yᵀ`` into ``C`` and set ``P`` (before ``z = P y``)."""
        if self._plastic_step(self.decorrelation_update):
            self._update_decorrelation()

    def _residual_now(self):
        """``x − xhat_old`` after one more step of the pathways ``y = Hx`` and ``xhat_old = H_oldᵀ y``.

        The two summed-variable updaters are run once on the current ``x`` (their code objects exist
        once the network has run); within a run this is the boundary step, after the last batch of a
        run it is the step Brian2 stopped before.
        """
        self.forward.summed_updaters["y_post"].run()
        self.feedback.summed_updaters["xhat_old_post"].run()
        return self.x.x[:] - self.x.xhat_old[:]

