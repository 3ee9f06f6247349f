"""The graded lateral HLOP circuit with one shared ``H`` and no per-copy synapses.

The circuit of `sim.lateral` — ``x`` integrating the layer's spikes, ``y = H x``, the feedback
``x̂ = Hᵀ y`` and Oja's subspace rule ``dH/dt = g(t) · plastic · η · y (x − x̂)ᵀ`` summed over the
learning copies — computed by one Brian2 ``NetworkOperation`` per circuit on the lateral clock, reading
one ``(K_max, n)`` weight matrix instead of ``2 · C · K · n`` synapse weights:

- ``x`` is not integrated spike by spike: a copy's input at a lateral step is the number ``m`` of spikes
  its presynaptic neuron fired since the presentation began (the network's spike monitor counts them),
  mapped to ``m`` repeated additions of ``1/n_steps`` — the value the drive synapses of `sim.lateral` hold;
- ``y``, ``x̂`` and the plasticity are computed only at the lateral steps inside the plasticity window
  (the only ones that change ``H``) and, with ``lateral.projection = "neural"``, once at each
  presentation boundary for the residual;
- the plasticity adds, for every plastic row, the drift each learning copy's Euler step would make, summed
  over the copies (the merge `sim.lateral_base.SharedSubspaceWeights._merge_copies` makes).

Every sum is taken in the order Brian2's numpy target takes it for the synapses of `sim.lateral` (``y_i``
over inputs ascending, ``x̂_j`` over subspace neurons ascending, each drift as ``(H + Δ) − H``, the drifts
over copies ascending), so the two circuits hold bit-identical ``H`` on that target (tested). Brian2's cython
code is compiled with ``-ffast-math`` and may fuse a product into the addition that follows it: there the
two agree to the last bits only, and a run may then follow a different trajectory in the last bits.

Why: the per-copy synapses cost memory (``2 · C · K · n`` weights and indices) and, at every lateral step,
a pass over all of them for ``y``, ``x̂``, the Euler step and the merge, whether the window is open or not;
here a plastic step is three small dense passes over ``H`` in cache, and the other steps cost nothing.
Not covered (`choose_lateral`): the spiking circuit and decorrelated plasticity stay in `sim.lateral`.
"""
from __future__ import annotations

import numba
import numpy as np
from brian2 import NetworkOperation, Quantity, second
from numba import prange

from hlopsim.models.lateral import LateralSpec
from hlopsim.sim import threaded
from hlopsim.sim.threaded import twin
from hlopsim.sim.lateral_base import SharedSubspaceWeights, simulated_copies

#: How the lateral circuits are simulated: ``"shared"`` (`SharedGradedLateralCircuit`), ``"brian2"``
#: (`sim.lateral` / `sim.spiking_lateral`, synapses per copy) or ``"auto"`` (shared wherever supported).
LATERAL_PATHS = ("auto", "shared", "brian2")


def shared_lateral_supported(spec: LateralSpec) -> bool:
    """True if `SharedGradedLateralCircuit` simulates ``spec``: the graded circuit without decorrelation."""
    return spec.neuron == "graded" and not spec.decorrelate


def choose_lateral(requested: str, spec: LateralSpec) -> str:
    """The path the lateral circuits take: ``requested`` (``SimNetwork``'s ``propagation``) resolved and checked.

    Raises
    ------
    ValueError
        ``"shared"`` for a circuit it does not simulate (spiking, or decorrelated plasticity).
    """
    if requested == "auto":
        return "shared" if shared_lateral_supported(spec) else "brian2"
    if requested == "shared" and not shared_lateral_supported(spec):
        raise ValueError(f"propagation = 'shared' for the lateral circuits: lateral.neuron = {spec.neuron!r}, "
                         f"lateral.decorrelate = {spec.decorrelate} is not supported (graded without "
                         "decorrelation); use 'brian2' or 'auto'")
    return requested


# -- kernels -------------------------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False)
def subspace_activity(H, HT, x, rows, y, xhat):
    """``y = H x`` and ``x̂ = Hᵀ y`` per copy over the first ``rows`` rows, in place.

    ``y[c, i] = Σ_j H[i, j] x[c, j]`` summed over ``j`` ascending and ``x̂[c, j] = Σ_i H[i, j] y[c, i]``
    over ``i`` ascending, each from 0.0 with one rounding per addition (Brian2's summed variables over
    synapses in index order). Zero terms (``x[c, j] = 0``, ``y[c, i] = 0``) are skipped: adding a zero
    product to a sum that starts at +0.0 leaves it unchanged. The loops run over rows of ``HT = Hᵀ`` and
    ``H`` so the innermost one is contiguous (vectorisable without reordering any sum).

    Parameters
    ----------
    H : ndarray (K, n), HT : ndarray (n, K)
        The shared weights and their transpose (dimensionless).
    x : ndarray (C, n)
        Presynaptic input per copy (spikes per step so far).
    rows : int
        Rows in use (grown); the others are zero.
    y : ndarray (C, K), xhat : ndarray (C, n)
        Written (``y[:, rows:]`` untouched).
    """
    copies, n = x.shape
    for c in prange(copies):       # copies are independent (threaded twin: in parallel)
        for i in range(rows):
            y[c, i] = 0.0
        for j in range(n):
            xj = x[c, j]
            if xj != 0.0:
                for i in range(rows):
                    y[c, i] += HT[j, i] * xj
        for j in range(n):
            xhat[c, j] = 0.0
        for i in range(rows):
            yi = y[c, i]
            if yi != 0.0:
                for j in range(n):
                    xhat[c, j] += H[i, j] * yi


@numba.njit(cache=True, fastmath=False)
def hebbian_step(H, HT, x, y, xhat, first, stop, step):
    """One Euler step of Oja's rule on rows ``first … stop − 1``, summed over copies, in place.

    ``H[i] += Σ_c ((H[i] + step · (y[c, i] (x[c] − x̂[c]))) − H[i])``, the copies' drifts summed in copy
    order from 0.0 — each term the drift one copy's synapses make in an Euler step (``step = dt_L · η``)
    and the sum the merge of the copies (`sim.kernels.reduce_shared_weights`). ``HT`` is kept equal to ``Hᵀ``.

    Parameters
    ----------
    H : ndarray (K, n), HT : ndarray (n, K)
        Written on rows ``first … stop − 1`` (columns of ``HT``).
    x, xhat : ndarray (C, n); y : ndarray (C, K)
        This step's input, feedback and activity of the learning copies.
    first, stop : int
        The plastic rows.
    step : float
        ``dt_L · η`` (dimensionless).
    """
    copies, n = x.shape
    for i in prange(first, stop):  # rows are independent (threaded twin: in parallel); scratch per row
        acc = np.empty(n)
        for j in range(n):
            acc[j] = 0.0
        for c in range(copies):
            yi = y[c, i]
            for j in range(n):
                acc[j] += (H[i, j] + step * (yi * (x[c, j] - xhat[c, j]))) - H[i, j]
        for j in range(n):
            H[i, j] += acc[j]
            HT[j, i] = H[i, j]


#: The two passes with their copies / rows on ``sim.threads`` threads (`sim.threaded`).
subspace_activity_threaded = twin(subspace_activity)
hebbian_step_threaded = twin(hebbian_step)


def subspace_activity_numpy(H, x, rows):
    """Numpy twin of `subspace_activity`, summed as Brian2's numpy target sums the synapses of `sim.lateral`
    (``bincount`` over synapses laid out (copy, neuron, input)); returns ``(y, xhat)`` of shapes (C, rows), (C, n)."""
    copies, n = x.shape
    block = H[:rows]
    c, i, j = np.meshgrid(np.arange(copies), np.arange(rows), np.arange(n), indexing="ij")
    y = np.bincount((c * rows + i).ravel(), weights=(block[i, j] * x[c, j]).ravel(),
                    minlength=copies * rows).reshape(copies, rows)
    # the feedback synapses in the same order; each x unit's terms arrive row by row
    xhat = np.bincount((c * n + j).ravel(), weights=(block[i, j] * y[c, i]).ravel(),
                       minlength=copies * n).reshape(copies, n)
    return y, xhat


def hebbian_step_numpy(H, x, y, xhat, first, stop, step):
    """Numpy twin of `hebbian_step` (in place on ``H``): every copy's Euler step, then the drifts summed."""
    rows = slice(first, stop)
    copies = H[rows][None] + step * (y[:, rows, None] * (x[:, None, :] - xhat[:, None, :]))
    drift = np.zeros_like(H[rows])
    for per_copy in copies:
        drift += per_copy - H[rows]
    H[rows] += drift


# -- the circuit ---------------------------------------------------------------------------------------
class SharedGradedLateralCircuit(SharedSubspaceWeights):
    """Graded lateral circuit of one weight layer on one shared weight matrix (module docstring).

    Parameters
    ----------
    name : str
        Name prefix; the Brian2 operation is ``<name>_step``.
    pre_group : brian2 group
        The layer's presynaptic population (all network copies).
    spike_counts : callable
        Returns the live ``count`` array of ``pre_group``'s spike monitor (spikes per neuron since the
        monitor began; the network replaces its monitors between runs, so it is looked up at every use).
    n_inputs : int
        Presynaptic neurons per copy (``n``).
    sizes_per_task : list of int
        Subspace neurons added at each task.
    spec : LateralSpec
        Graded, without decorrelation (`shared_lateral_supported`).
    hebbian_rate : Quantity
        This layer's ``η`` (1/second).
    presentation, dt : Quantity
        Presentation length and network time step.
    rng : numpy.random.Generator
        Draws the initial rows of new neurons.

    Attributes
    ----------
    H : ndarray, shape (K_max, n)
        The shared weights (dimensionless); rows not grown are zero.
    objects : list
        The Brian2 objects to add to the network (one ``NetworkOperation``).
    """

    rate_key = "lateral.hebbian_rate"

    def __init__(self, name: str, pre_group, spike_counts, n_inputs: int, sizes_per_task: list[int],
                 spec: LateralSpec, hebbian_rate: Quantity, presentation: Quantity, dt: Quantity,
                 rng: np.random.Generator):
        if not shared_lateral_supported(spec):
            raise ValueError(f"{name}: the shared circuit is graded without decorrelation")
        neural = spec.projection == "neural"
        self._init_shared(name, n_inputs, sizes_per_task, spec.copies, rng,
                          simulated=simulated_copies(spec, pre_group, n_inputs), neural_projection=neural,
                          residual_growth=spec.growth == "residual")
        n, k, c = n_inputs, self.k_max, self.simulated
        n_steps = int(round(float(presentation / dt)))
        self._counts = spike_counts
        self._base = np.zeros(c * n, dtype=np.int64)       # counts when the presentation began
        self._gain = 1.0 / n_steps                          # what one spike adds to x (the drive synapse's x_gain)
        self._table = self._repeated_sums(n_steps)
        self._HT = np.zeros((n, k))
        self._y = np.zeros((c, k))
        self._xhat = np.zeros((c, n))
        self._plastic = np.zeros(k, dtype=bool)
        open_after = presentation - spec.window
        self._open_after = float((open_after - dt / 2) / second)
        self._t_start = 0.0
        self.operation = NetworkOperation(self._step, dt=spec.dt, when="groups", name=f"{name}_step")
        self._step_size = float(self.operation.clock.dt_) * float(hebbian_rate)   # dt_L · η, as Brian2 computes it
        self.objects = [self.operation]
        self._weight_blocks = []

    def _repeated_sums(self, m: int) -> np.ndarray:
        """``table[s]`` = ``s`` additions of the gain to 0.0, one rounding each (the drive synapse's ``x``)."""
        table = np.zeros(m + 1)
        for s in range(1, m + 1):
            table[s] = table[s - 1] + self._gain
        return table

    # -- hooks of the network --------------------------------------------------------------------
    def start_presentation(self, t: Quantity) -> None:
        """Start integrating ``x`` from zero now and start the plasticity timer."""
        self._base[:] = self._counts()[: len(self._base)]
        self._t_start = float(t / second)

    def _x_now(self, copies: int) -> np.ndarray:
        """Each copy's ``x``: the repeated-sum value of its spikes since the presentation began, shape (copies, n)."""
        m = self._counts()[: copies * self.n_inputs] - self._base[: copies * self.n_inputs]
        if m.size and m.max() >= len(self._table):
            self._table = self._repeated_sums(int(m.max()))
        return self._table[m].reshape(copies, self.n_inputs)

    def _step(self) -> None:
        """A lateral step: inside the plasticity window, ``y``, ``x̂`` and one summed Euler step of the plastic rows."""
        if not self._plastic_step(self.operation):
            return
        plastic = np.flatnonzero(self._plastic)
        x = self._x_now(self.copies)
        y, xhat = self._y[: self.copies], self._xhat[: self.copies]
        many = threaded.active() > 1
        (subspace_activity_threaded if many else subspace_activity)(self.H, self._HT, x, self.n_grown, y, xhat)
        (hebbian_step_threaded if many else hebbian_step)(self.H, self._HT, x, y, xhat, int(plastic[0]),
                                                           int(plastic[-1]) + 1, self._step_size)

    def _residual_now(self) -> np.ndarray:
        """``x − H_oldᵀ(H_old x)`` of every simulated copy, on the complete ``x`` of the presentation."""
        x = self._x_now(self.simulated)
        feedback = np.empty_like(x)
        # y = H_old x and the frozen rows' feedback H_oldᵀ y: the activity pass over the first n_frozen rows
        (subspace_activity_threaded if threaded.active() > 1 else subspace_activity)(
            self.H, self._HT, x, self.n_frozen, self._y, feedback)
        return (x - feedback).ravel()

    # -- what the base class writes into the simulation ----------------------------------------------
    def _write_flags(self) -> None:
        """Nothing to write: the step reads ``_plastic`` and ``n_frozen`` directly."""

    def _write_copies(self) -> None:
        """Keep ``Hᵀ`` (the layout `subspace_activity` reads) equal to ``H``; there are no copies."""
        self._HT[:] = self.H.T
