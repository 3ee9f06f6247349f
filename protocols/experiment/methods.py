"""Continual-learning methods as small strategy objects.

A method decides what its task's supervised run presents (the task's samples, or rows of earlier
tasks too), whether (and which) lateral circuits run, what happens at the start and end of each task,
what projects each layer's supervised update (rows ``H``, or the circuit's own residual activity, see
`sim.learning.apply_update`) and what else happens to the weights after each update. It touches the
network only through the `sim.network.SimNetwork` handle and numpy arrays. The experiment loop
(`protocols.experiment.loop`) calls the hooks in this order per task: ``begin_task``,
``training_rows``, then after every training batch ``projections``, ``observe`` and ``after_update``,
then ``end_task``, ``snapshots``.

Methods: `Finetune` (no protection, the lower baseline), `Multitask` (joint training on every task
seen so far, the upper baseline), `EWC` (online elastic weight consolidation), `Replay` (a per-class
buffer of earlier tasks' samples), `HLOP`, `HLOPReplay` (both), `GPM` (exact projection bases).

To write a method, subclass `Finetune` and override the hooks you need; give it a ``name`` and a
``settings()`` dict (stored in the run file and compared when a run is resumed).
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # sim.learning pulls in Numba; the CLI imports this module before any run
    from hlopsim.sim.learning import NeuralResidual


class UnsettledCircuitWarning(UserWarning):
    """A lateral circuit ended a task with rows far from orthonormal (`sim.row_measures`)."""


class Finetune:
    """Sequential fine-tuning: plain updates, nothing protects old tasks (the lower baseline)."""

    name = "finetune"
    uses_lateral = False
    lateral = None                # the LateralSpec of the circuits this method simulates, if any
    consolidation_epochs = 0      # epochs of lateral learning only after each task's training
    resumable = True              # an interrupted run can continue from its checkpoint (no unstored state);
                                  # False is stored in the run file, and `read_checkpoint` then refuses it

    def settings(self) -> dict:
        """The method's settings as plain values (stored in run files; a resumed run must match)."""
        return {}

    def state(self) -> dict:
        """What a resumed run needs of the method besides the run file's weights and circuits (JSON
        values, stored in the checkpoint after every task). Default: nothing."""
        return {}

    def load_state(self, state: dict | None) -> None:
        """Take back, when a run is resumed, what `state` returned at the checkpoint."""

    def begin_task(self, net, task: int) -> None:
        """Prepare for training ``task``."""

    def end_task(self, net, task: int) -> None:
        """Finish ``task``."""

    def training_rows(self, tasks, task: int) -> list[tuple[int, np.ndarray | None]]:
        """What task ``task``'s supervised run presents, as ``(task index, training rows or None for
        all)`` pairs; every epoch presents their union in a new random order. Default: the task alone.
        Each row keeps its own task's label and output head."""
        return [(task, None)]

    def epoch_samples(self, presented: int, own: int) -> int:
        """Samples each epoch of a supervised run presents, drawn anew every epoch from the ``presented``
        rows of `training_rows` (``own`` of them the task's own). Default: all of them."""
        return presented

    def observe(self, rates, keep) -> None:
        """See the rates (every population, input first) of a training batch; ``keep`` marks the
        rows of the task's last training epoch (valid samples only)."""

    def after_update(self, net, deltas, rates, keep, lr: float) -> None:
        """After a batch's update of ``net.weights``: change them further in place if the method
        regularises (`EWC`). ``deltas`` are the batch's credits (`sim.learning.credit`, computed before
        the update), ``rates`` its rates (input first), ``keep`` as in `observe`, ``lr`` the step size."""

    def snapshots(self, net) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per weight layer, the protecting rows and their frozen mask to record after a task."""
        return []

    def projections(self, net) -> list[np.ndarray]:
        """Rows ``H_l`` (K × n) to project each layer's update out of; K = 0 means no projection."""
        return [np.zeros((0, w.shape[1])) for w in net.weights]


class HLOP(Finetune):
    """Hebbian learning based orthogonal projection (Xiao et al., ICLR 2024).

    At each task the lateral circuits grow new subspace neurons that learn, by Oja's rule in the
    simulated synapses, the principal subspace of the task's presynaptic activity; old neurons
    are frozen. Supervised updates are projected out of the frozen neurons' span: in closed form
    with their rows ``H_old`` (``lateral.projection = "closed-form"``), or with the residual the
    simulated circuit computes with only the frozen neurons feeding back (``"neural"``).

    Parameters
    ----------
    first_task, per_task : sequence of int
        Subspace neurons added per weight layer at task 0 and at each later task.
    hebbian_rate : sequence of Quantity or str, optional
        ``η`` of Oja's rule per layer (default 16 Hz for the first layer, 6 Hz for the others).
    consolidation_epochs : int
        Epochs of lateral (Hebbian) learning only, weights fixed, after each task's training.
    copies, dt, window, neuron, projection, ... :
        The other `LateralSpec` fields (strings with units accepted).
    lateral : LateralSpec, optional
        A whole circuit spec instead of the fields above.
    """

    name = "hlop"
    uses_lateral = True
    # Residual growth and graded protection (``lateral.growth``, ``lateral.protection``) measure every
    # layer's presynaptic activity in the task's last training epoch: its second moment M = E[x xᵀ]
    # decides the rows kept and their importance. Graded protection carries per-row state across tasks
    # (``_rms``), which a resumed run takes from the checkpoint (`state`, `load_state`).

    def __init__(self, first_task=(16, 32), per_task=(10, 20), *, hebbian_rate=None, consolidation_epochs: int = 6,
                 lateral=None, **options):
        from hlopsim.models.from_config import lateral_spec
        from hlopsim.models.lateral import LateralSpec

        if not (isinstance(consolidation_epochs, int) and not isinstance(consolidation_epochs, bool)
                and consolidation_epochs >= 0):
            raise ValueError(f"lateral.consolidation_epochs = {consolidation_epochs!r} must be a non-negative integer")
        self.consolidation_epochs = consolidation_epochs
        if lateral is None:
            first_task, per_task = tuple(first_task), tuple(per_task)
            if hebbian_rate is None:
                hebbian_rate = ("16 Hz",) + ("6 Hz",) * (len(first_task) - 1)
            options = {"copies": 8, "dt": "5 ms", "window": "20 ms", **options}
            lateral = lateral_spec({"first_task": first_task, "per_task": per_task,
                                    "hebbian_rate": list(hebbian_rate), **options})
        elif not isinstance(lateral, LateralSpec):
            raise ValueError(f"lateral = {lateral!r} must be a LateralSpec")
        self.lateral = lateral
        self._graded = lateral.protection == "graded"
        self._measure = self._graded or lateral.growth == "residual"
        self._moments: list[np.ndarray] = []         # per layer: Σ x xᵀ over the task's last epoch
        self._count = 0
        self._rms: list[np.ndarray] | None = None    # per layer: r_i of every frozen row (graded protection)
        self._projected: list[np.ndarray] = []       # per layer: √s_i · H_i of the frozen rows (graded protection)

    def settings(self) -> dict:
        return {"lateral": repr(self.lateral), "consolidation_epochs": self.consolidation_epochs}

    def state(self) -> dict:
        """What a resumed run needs besides ``H`` and the frozen counts (JSON values): the RMS ``r_i``
        of every frozen row for graded protection, else nothing."""
        return {"rms": [r.tolist() for r in self._rms]} if self._graded and self._rms is not None else {}

    def load_state(self, state: dict | None) -> None:
        """Take back what `state` returned (from a checkpoint)."""
        if self._graded and state and "rms" in state:
            self._rms = [np.asarray(r, dtype=np.float64) for r in state["rms"]]

    def begin_task(self, net, task: int) -> None:
        if self._graded:
            if self._rms is None:
                if task > 0:
                    raise ValueError(f"an hlop run with lateral.protection = 'graded' cannot continue at task {task}: "
                                     "the checkpoint holds no row importances; start the run again")
                self._rms = [np.zeros(0) for _ in net.lateral]
            for circuit, rms in zip(net.lateral, self._rms):
                if len(rms) != circuit.n_frozen:
                    raise ValueError(f"{circuit.name}: {len(rms)} row importances stored for {circuit.n_frozen} "
                                     "frozen rows (damaged checkpoint?)")
            self._projected = [circuit.frozen_H * np.sqrt(row_importance(rms, self.lateral.protection_scale))[:, None]
                               for circuit, rms in zip(net.lateral, self._rms)]
        if self._measure:
            self._moments = [np.zeros((circuit.n_inputs, circuit.n_inputs)) for circuit in net.lateral]
            self._count = 0
        for circuit in net.lateral:
            circuit.grow(task)

    def observe(self, rates, keep) -> None:
        """Residual growth, graded protection: add ``x xᵀ`` of the last epoch's presynaptic rates."""
        if not self._measure:
            return
        for moment, x in zip(self._moments, rates):
            x = x[keep]
            moment += x.T @ x
        self._count += int(np.count_nonzero(keep))

    def end_task(self, net, task: int) -> None:
        from hlopsim.sim.row_measures import UNSETTLED_ROW_DEVIATION

        for circuit in net.lateral:
            deviation = circuit.task_row_deviation()
            if deviation > UNSETTLED_ROW_DEVIATION:
                # Not an error: the run goes on, but the old tasks' projection will be poor (docs/results.md).
                warnings.warn(
                    f"lateral circuit {circuit.name!r}, task {task}: its new subspace neurons end the task "
                    f"{deviation:.2f} per row from orthonormal (a settled circuit: below 0.1); Oja's rule has "
                    f"not settled, probably oscillating near its stability bound: lower {circuit.rate_key} for "
                    f"this layer or lateral.copies", UnsettledCircuitWarning, stacklevel=2)
            if not self._measure:
                circuit.freeze()
        if not self._measure:
            return
        for layer, (circuit, moment) in enumerate(zip(net.lateral, self._moments)):
            M = moment / max(self._count, 1)
            rows, _ = principal_rows(circuit.H[circuit.n_frozen: circuit.n_grown], M, circuit.frozen_H)
            if self.lateral.growth == "residual":
                rows = rows[: kept_rows(circuit.frozen_H, rows, M, self.lateral.residual_threshold)]
            circuit.freeze_rows(rows)
            if self._graded:
                H = circuit.frozen_H
                rms = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", H, M, H), 0.0))
                old = self._rms[layer]
                self._rms[layer] = np.concatenate([np.maximum(old, rms[: len(old)]), rms[len(old):]])
        self._moments, self._count = [], 0

    def snapshots(self, net) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(circuit.H.copy(), np.arange(circuit.k_max) < circuit.n_frozen) for circuit in net.lateral]

    def projections(self, net) -> list[np.ndarray | NeuralResidual]:
        """Per layer the frozen rows, or (neural projection) the circuit's residual of the batch just presented."""
        from hlopsim.sim.learning import NeuralResidual
        if self._graded:
            return self._projected
        return [NeuralResidual(circuit.residual()) if circuit.neural_projection else circuit.frozen_H
                for circuit in net.lateral]


def principal_rows(rows: np.ndarray, M: np.ndarray, frozen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An orthonormal basis of the span of ``rows`` (k × n), orthogonal to the ``frozen`` rows
    (orthonormal, K × n), on the principal axes of the activity of second moment ``M = E[x xᵀ]``
    (n × n), strongest first.

    ``R = rows − (rows frozenᵀ) frozen`` spans what the task's neurons add to the frozen ones; with
    ``B`` the orthonormal basis of ``R``'s span (its right singular vectors, directions below 1e-8 of
    the largest dropped) and ``B M Bᵀ = Q Λ Qᵀ``, returns ``Qᵀ B`` ordered by decreasing ``λ`` and the
    ``λ`` (the mean ``y_i²`` of each row). Oja's subspace rule converges to orthonormal rows; this
    snaps the learned rows to that fixed point without leaving the subspace they found, so that the
    projection ``a − Hᵀ H a`` removes exactly what it protects, and chooses inside the subspace the
    basis in which rows can be kept (residual growth) or scaled (graded protection).
    """
    rows = np.asarray(rows, dtype=np.float64)
    if frozen is not None and len(frozen):
        rows = rows - (rows @ frozen.T) @ frozen
    if len(rows) == 0:
        return rows.copy(), np.zeros(0)
    _, sigma, vt = np.linalg.svd(rows, full_matrices=False)
    basis = vt[sigma > sigma[0] * 1e-8] if sigma[0] > 0 else vt[:0]
    variances, Q = np.linalg.eigh(basis @ M @ basis.T)
    order = np.argsort(variances)[::-1]
    return Q[:, order].T @ basis, variances[order]


def residual_fraction(H: np.ndarray, M: np.ndarray) -> float:
    """``E‖x − Hᵀ H x‖² / E‖x‖²`` for activity of second moment ``M``: the energy a circuit with rows
    ``H`` leaves in its residual (``x̂ = Hᵀ H x`` as the circuit computes it, rows not assumed orthonormal).
    0 for silent activity."""
    total = float(np.trace(M))
    if total <= 0.0:
        return 0.0
    P = np.eye(M.shape[0]) - H.T @ H
    return float(np.trace(P @ M @ P.T)) / total


def kept_rows(frozen: np.ndarray, rows: np.ndarray, M: np.ndarray, threshold: float) -> int:
    """The fewest leading ``rows`` (a task's rows, strongest first) which, with the ``frozen`` ones, leave
    at most ``threshold`` of the energy of activity ``M`` in the residual (`residual_fraction`); all of
    them if none does (the layer has no more room)."""
    for m in range(len(rows) + 1):
        if residual_fraction(np.vstack([frozen, rows[:m]]), M) <= threshold:
            return m
    return len(rows)


def row_importance(rms: np.ndarray, alpha: float) -> np.ndarray:
    """Graded protection's scale of each frozen row, ``s_i = (α+1) r_i / (α r_i + r_max)`` ∈ [0, 1].

    ``r_i`` is the RMS of the row's activity ``y_i = H_i x`` on the old tasks, ``r_max`` the largest:
    the strongest row is fully protected (``s = 1``), a silent one not at all; ``α`` bends the curve
    towards 1 (``α = 0``: ``s = r / r_max``). No rows, or all silent: all ``s = 1``.

    >>> row_importance(np.array([2.0, 1.0, 0.0]), 1.0)
    array([1.        , 0.66666667, 0.        ])
    """
    rms = np.asarray(rms, dtype=np.float64)
    top = float(rms.max()) if len(rms) else 0.0
    if top <= 0.0:
        return np.ones_like(rms)
    return (alpha + 1.0) * rms / (alpha * rms + top)


class Multitask(Finetune):
    """Joint training on every task seen so far: the upper baseline.

    Task t's supervised run presents the training samples of tasks 0 … t together (shuffled anew
    every epoch), each sample with its own task's label and output head; nothing else differs from
    `Finetune`. ``samples = "all"``: every epoch presents all of them, so task t makes t + 1 times a
    single task's updates; ``"task"``: every epoch presents as many as task t has, drawn without
    replacement from the union anew each epoch — the updates of one task, spread over all seen so far
    (why: the supervised rule's weights grow with the number of updates, docs/results.md §23).

    Parameters
    ----------
    samples : {"all", "task"}
    """

    name = "multitask"

    def __init__(self, samples: str = "all"):
        if samples not in ("all", "task"):
            raise ValueError(f"multitask.samples = {samples!r}; expected 'all' or 'task'")
        self.samples = samples

    def settings(self) -> dict:
        # {} for "all": the run files and fingerprints written before the setting existed stay valid
        return {} if self.samples == "all" else {"samples": self.samples}

    def training_rows(self, tasks, task: int) -> list[tuple[int, np.ndarray | None]]:
        return [(task, None)] + [(earlier, None) for earlier in range(task)]

    def epoch_samples(self, presented: int, own: int) -> int:
        return presented if self.samples == "all" else own


def replay_rows(labels: np.ndarray, per_class: int) -> np.ndarray:
    """A task's replay buffer: the first ``per_class`` training rows of each of its classes (fewer
    if a class has fewer), in increasing row order.

    Which rows is fixed by the data alone (the train/test split has already shuffled them), so a
    resumed run rebuilds the same buffer without stored state or a random draw.

    >>> replay_rows(np.array([3, 1, 3, 3, 1]), 2)
    array([0, 1, 2, 4])
    """
    labels = np.asarray(labels)
    rows = [np.flatnonzero(labels == label)[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)


def _check_per_class(per_class) -> int:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 0:
        raise ValueError(f"replay.per_class = {per_class!r} must be a non-negative integer")
    return int(per_class)


class Replay(Finetune):
    """Experience replay: a small buffer of every earlier task's training samples, per class,
    interleaved with the new task's samples.

    Task t's supervised run presents its own training samples and, for every earlier task j < t,
    ``per_class`` samples of each of task j's classes (`replay_rows`), shuffled together every epoch;
    replayed samples keep their own task's label and head. ``per_class = 0`` is `Finetune`, bit for bit.

    Parameters
    ----------
    per_class : int
        Samples kept per class of every earlier task (``[replay] per_class``).
    """

    name = "replay"

    def __init__(self, per_class: int = 10):
        self.per_class = _check_per_class(per_class)

    def settings(self) -> dict:
        return {"per_class": self.per_class}

    def training_rows(self, tasks, task: int) -> list[tuple[int, np.ndarray | None]]:
        if not self.per_class:
            return [(task, None)]
        return [(task, None)] + [(earlier, replay_rows(tasks[earlier].y_train, self.per_class))
                                 for earlier in range(task)]


class EWC(Finetune):
    """Online elastic weight consolidation (Kirkpatrick et al. 2017; online form: Schwarz et al. 2018).

    Every layer's weights are pulled towards their values ``W*`` at the end of the previous task,
    each weight in proportion to its diagonal Fisher information ``F`` accumulated over the tasks:
    the loss gains ``(λ/2) Σ F ⊙ (W − W*)²``. The Fisher of task t is the mean over the samples of
    its last training epoch of the squared per-sample gradient of the supervised rule,

        F_t = mean_b (B δ_b)² (a_b)²ᵀ       (per layer; δ_b the row of `sim.learning.credit`, which
                                             holds the 1/B of the batch mean; a_b the presynaptic rates)

    and ``F ← decay · F + F_t`` (online EWC), ``W* ←`` the weights at the end of task t. After each
    batch's supervised update the penalty's step is taken in its implicit (proximal) form

        W ← W* + (W − W*) / (1 + η λ F)

    which equals the explicit step ``W −= η λ F ⊙ (W − W*)`` to first order but never overshoots
    ``W*``, whatever ``η λ F`` (an explicit step oscillates once ``η λ F > 2``). With ``strength``
    0 nothing is computed and the run is `Finetune`'s, bit for bit.

    Parameters
    ----------
    strength : float
        ``λ`` (``[ewc] strength``), ≥ 0; the Fisher is in units of (logit scale × rate)², so λ is
        relative to this network's rates.
    decay : float
        ``γ`` in (0, 1] (``[ewc] decay``): how much of the earlier tasks' Fisher is kept at each task.

    Notes
    -----
    The Fisher and ``W*`` are not stored in the run file, so an interrupted ewc run cannot be
    resumed (`begin_task` refuses); start it again.
    """

    name = "ewc"

    @property
    def resumable(self) -> bool:
        """Without a penalty nothing unstored matters: an ewc run of strength 0 resumes."""
        return self.strength == 0.0

    def __init__(self, strength: float = 100.0, decay: float = 1.0):
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength < np.inf:
            raise ValueError(f"ewc.strength = {strength!r} must be a finite number ≥ 0")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
            raise ValueError(f"ewc.decay = {decay!r} must be in (0, 1]")
        self.strength, self.decay = float(strength), float(decay)
        self.fisher: list[np.ndarray] | None = None
        self.anchors: list[np.ndarray] | None = None
        self._sums: list[np.ndarray] = []
        self._count = 0
        self._shrink: tuple[float, list[np.ndarray]] | None = None

    def settings(self) -> dict:
        return {"strength": self.strength, "decay": self.decay}

    def begin_task(self, net, task: int) -> None:
        if self.strength and task > 0 and self.fisher is None:
            raise ValueError(f"an ewc run cannot continue at task {task}: its Fisher information and anchor "
                             "weights are not stored in the run file; start the run again")
        self._sums = [np.zeros_like(w) for w in net.weights]
        self._count = 0

    def after_update(self, net, deltas, rates, keep, lr: float) -> None:
        if not self.strength:
            return
        n = int(np.count_nonzero(keep))
        if n:
            scale = float(len(keep))          # per-sample gradient = B × the credit's row
            for total, delta, rate in zip(self._sums, deltas, rates):
                d, a = delta[keep] * scale, rate[keep]
                total += (d * d).T @ (a * a)
            self._count += n
        if self.fisher is None:
            return
        if self._shrink is None or self._shrink[0] != lr:
            self._shrink = (lr, [1.0 / (1.0 + lr * self.strength * f) for f in self.fisher])
        for weights, anchor, shrink in zip(net.weights, self.anchors, self._shrink[1]):
            weights -= anchor
            weights *= shrink
            weights += anchor

    def end_task(self, net, task: int) -> None:
        if not self.strength:
            return
        current = [total / max(self._count, 1) for total in self._sums]
        self.fisher = current if self.fisher is None else [self.decay * f + c for f, c in zip(self.fisher, current)]
        self.anchors = [w.copy() for w in net.weights]
        self._shrink = None
        self._sums, self._count = [], 0


class GPM(Finetune):
    """Gradient projection memory (Saha et al., ICLR 2021): HLOP's projection with exact subspaces.

    The closed-form reference for HLOP's circuit: no lateral neurons, the same projected update,
    but each layer's protected basis ``B`` (orthonormal rows) grows at the end of every task by
    the top right singular vectors of the residual ``R = A − (A Bᵀ) B`` of that task's presynaptic
    rates ``A`` (samples of the task's last training epoch × inputs). How many: by default as many
    as it takes for the basis to hold the fraction ``threshold`` of ``A``'s energy::

        ‖A Bᵀ‖²_F + Σ_{i ≤ k} σ_i(R)² ≥ threshold · ‖A‖²_F

    or, with ``sizes``, exactly as many as the lateral circuits would grow neurons at that task
    (``[gpm] basis_sizes = "lateral"``): the control that separates what the Hebbian circuit's rows
    cost from what the neuron counts cost.

    Parameters
    ----------
    threshold : float
        Energy fraction in (0, 1], the ``[gpm] threshold`` of the protocol.
    sizes : tuple of (list of int, list of int) or None
        ``(first_task, per_task)``: directions added per layer at task 0 and at every later task
        (``lateral.first_task``, ``lateral.per_task``); None for the energy threshold.
    """

    name = "gpm"
    resumable = False     # its bases are not stored in the run file

    def __init__(self, threshold: float = 0.97, sizes: tuple[list[int], list[int]] | None = None):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"gpm.threshold = {threshold} must be in (0, 1]")
        self.threshold = float(threshold)
        self.sizes = sizes
        self.bases: list[np.ndarray] | None = None
        self._seen: list[list[np.ndarray]] = []

    def settings(self) -> dict:
        return {"threshold": self.threshold, "sizes": None if self.sizes is None else [list(s) for s in self.sizes]}

    def begin_task(self, net, task: int) -> None:
        if self.bases is None:
            self.bases = [np.zeros((0, w.shape[1])) for w in net.weights]
            if self.sizes is not None and not len(self.sizes[0]) == len(self.sizes[1]) == len(net.weights):
                raise ValueError(f"gpm.basis_sizes = 'lateral': lateral.first_task {self.sizes[0]} and "
                                 f"lateral.per_task {self.sizes[1]} must name all {len(net.weights)} weight layers")
        self._seen = [[] for _ in net.weights]

    def observe(self, rates, keep) -> None:
        """Keep the presynaptic rates of the last training epoch's samples."""
        for layer, seen in enumerate(self._seen):
            seen.append(rates[layer][keep])

    def end_task(self, net, task: int) -> None:
        for layer, seen in enumerate(self._seen):
            count = None if self.sizes is None else self.sizes[0 if task == 0 else 1][layer]
            self.bases[layer], _ = grow_basis(self.bases[layer], np.concatenate(seen), self.threshold, count=count)
        self._seen = []

    def projections(self, net) -> list[np.ndarray]:
        return self.bases

    def snapshots(self, net) -> list[tuple[np.ndarray, np.ndarray]]:
        """The bases padded with zero rows to the layer's input width (as a lateral circuit's ``H``)."""
        found = []
        for basis in self.bases:
            padded = np.zeros((basis.shape[1], basis.shape[1]))
            padded[: len(basis)] = basis
            found.append((padded, np.arange(basis.shape[1]) < len(basis)))
        return found


def grow_basis(basis: np.ndarray, A: np.ndarray, threshold: float, count: int | None = None) -> tuple[np.ndarray, int]:
    """GPM's basis update: ``basis`` (K × n, orthonormal rows) extended by the fewest top singular
    vectors of the residual of ``A`` (S × n) that bring the energy of ``A`` it holds to ``threshold``
    — or, if ``count`` is given, by exactly the top ``count`` of them (fewer only where the residual
    has fewer directions or the basis would exceed ``n`` rows).

    Returns the new basis and the number of rows added.
    """
    residual = A - (A @ basis.T) @ basis
    if count is None:
        total = float(np.sum(A * A))
        held = total - float(np.sum(residual * residual))
        if total == 0.0 or held >= threshold * total:
            return basis, 0
    _, sigma, vt = np.linalg.svd(residual, full_matrices=False)
    if count is None:
        needed = threshold * total - held
        k = int(np.searchsorted(np.cumsum(sigma ** 2), needed * (1 - 1e-12)) + 1)
    else:
        k = int(np.count_nonzero(sigma > sigma[0] * 1e-10)) if len(sigma) and sigma[0] > 0 else 0
        k = min(count, k)
    k = min(k, basis.shape[1] - basis.shape[0], len(sigma))
    return np.vstack([basis, vt[:k]]), k


class HLOPReplay(HLOP):
    """HLOP's projected updates and lateral circuits, with `Replay`'s buffer interleaved in the supervised
    run (the circuits also see the replayed samples). Parameters: those of `HLOP`, and ``per_class``."""

    name = "hlop+replay"

    def __init__(self, *args, per_class: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_class = _check_per_class(per_class)

    def settings(self) -> dict:
        return {**super().settings(), "per_class": self.per_class}

    training_rows = Replay.training_rows


METHODS = {cls.name: cls for cls in (Finetune, HLOP, GPM, Multitask, EWC, Replay, HLOPReplay)}
