"""The simulated network: specs in, one explicit Brian2 ``Network`` out, and the handle protocols use.

Many samples share one Brian2 run. The network is instantiated ``batch_size`` times side by side
(shared weights, block-diagonal synapses, see `sim.blocks`), and an epoch — many batches — is a single
``Network.run``. A `network_operation` at every batch boundary (every ``presentation``) reads the
spike counts of the finished batch, hands them to the learning rule, writes the updated weights
into all copies, synchronises the lateral circuits and resets the neurons ("reset dynamics, keep
weights"). This amortises Brian2's per-step overhead over the batch instead of paying one
``run()`` per sample (docs/design.md).
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from brian2 import Network, NetworkOperation, NeuronGroup, SpikeGeneratorGroup, SpikeMonitor, Synapses, second, volt

from hlopsim.data.encoders import SpikeTrains
from hlopsim.models.lateral import LateralSpec
from hlopsim.models.network import NetworkSpec
from hlopsim.sim.blocks import block_diagonal_indices_by_pre
from hlopsim.sim.kernels import segment_spikes
from hlopsim.sim.lateral import GradedLateralCircuit
from hlopsim.sim.transfer import transfer_for


@dataclass
class BatchActivity:
    """What one batch of presentations did, handed to the learning rule at the batch boundary.

    Attributes
    ----------
    batch : int
        Batch number within the run.
    samples : ndarray of int64, shape (B,)
        Which sample of the run each copy presented; -1 for unused copies of a last, partial batch.
    rates : list of ndarray, shape (B, n_l)
        Firing rate of every population (input first) in spikes per time step.
    """

    batch: int
    samples: np.ndarray
    rates: list[np.ndarray]

    @property
    def valid(self) -> np.ndarray:
        """Copies that presented a real sample."""
        return self.samples >= 0


@dataclass
class RunActivity:
    """Everything one ``present`` call produced, per sample in the order given.

    Attributes
    ----------
    counts : list of ndarray of int64, shape (S, n_l)
        Spike counts per population (input first).
    scores : ndarray, shape (S, n_out)
        Output decision variable: spike count plus the membrane potential's change over the
        presentation in units of the spike cost, ``count + (v − v_start) / spike_cost`` with ``v_start``
        the potential every presentation starts from (`NeuronModel.v_start`; 0 V for `lif`), which breaks
        ties between equal counts. For a model that does not declare the integrate-and-fire map the
        voltage term is clipped to [−1, 1]: its potential may swing by many spike costs (e.g. the
        Izhikevich upstroke), and the term must not outweigh the count.
    spikes : dict
        Per population name, ``(sample, step, neuron)`` arrays of every spike when recording
        (step within the presentation), else empty.
    """

    counts: list[np.ndarray]
    scores: np.ndarray
    spikes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


BatchCallback = Callable[[BatchActivity], bool]


class SimNetwork:
    """A spiking network with optional lateral HLOP circuits, simulated in batches.

    Parameters
    ----------
    spec : NetworkSpec
        What to simulate.
    rng : numpy.random.Generator
        Draws the initial weights.
    lateral : LateralSpec or None
        Lateral circuits for every weight layer, or None for none.
    n_tasks : int
        Number of tasks the lateral circuits are sized for.
    record_spikes : bool
        Keep every spike of every population for the run file (otherwise only counts).

    Attributes
    ----------
    weights : list of ndarray, shape (n_post, n_pre)
        The shared weights of every layer in units of the neuron's spike cost (dimensionless);
        ``w = weights[l] * spike_cost`` volts in Brian2. Edit in place inside a batch callback and
        return True from it to have them written into the simulation.
    lateral : list of GradedLateralCircuit
        One per weight layer (empty without a LateralSpec).
    transfer : TransferCurve
        The neurons' rate map the credit assignment should use (`sim.transfer.transfer_for`): the
        analytic integrate-and-fire map for `lif`, otherwise measured once here, before any Brian2
        object of the network exists (a model that cannot carry a rate code fails with a
        `TransferError` before any training).
    net : brian2.Network
        The explicit network holding every object.
    """

    def __init__(self, spec: NetworkSpec, rng: np.random.Generator, lateral: LateralSpec | None = None,
                 n_tasks: int = 1, record_spikes: bool = True):
        # Validate before any Brian2 object exists (an unused object only earns a warning at exit).
        if lateral is not None:
            if len(lateral.first_task) != len(spec.weight_names):
                raise ValueError(f"lateral specs name {len(lateral.first_task)} layers; the network has "
                                 f"{len(spec.weight_names)} weight layers")
            if lateral.copies > spec.batch_size:
                raise ValueError(f"lateral.copies = {lateral.copies} must not exceed network.batch_size = "
                                 f"{spec.batch_size}")
            if lateral.neuron == "spiking":
                from hlopsim.sim.spiking_lateral import check_spiking_settings
                check_spiking_settings(lateral, spec.presentation, spec.dt)
        self.transfer = transfer_for(spec.neuron, spec.dt, spec.n_steps)
        self.spec = spec
        self.record_spikes = record_spikes
        self.n_steps = spec.n_steps
        self._dt = spec.dt
        batch = spec.batch_size
        sizes = spec.layer_sizes
        names = spec.population_names
        model = spec.neuron

        # Every object gets the spec's dt explicitly: nothing depends on Brian2's global defaultclock.
        self.groups = [SpikeGeneratorGroup(batch * sizes[0], np.array([], dtype=int), np.array([]) * second,
                                           dt=spec.dt, name=names[0])]
        for name, size in zip(names[1:], sizes[1:]):
            self.groups.append(NeuronGroup(batch * size, model.equations, threshold=model.threshold,
                                           reset=model.reset, method=model.method, name=name, dt=spec.dt,
                                           refractory=model.refractory if model.refractory is not None else False,
                                           namespace=dict(model.parameters)))
        self.synapses = []
        self.weights = []
        self._weight_views = []
        for layer, name in enumerate(spec.weight_names):
            n_pre, n_post = sizes[layer], sizes[layer + 1]
            syn = Synapses(self.groups[layer], self.groups[layer + 1], "w : volt", on_pre="v_post += w",
                           dt=spec.dt, name=name)
            # (copy, pre, post) order: a spike's synapses are contiguous in memory, which makes propagating
            # the input spikes (the largest part of a run) faster than (copy, post, pre) order, with
            # bit-identical results (docs/benchmarks.md)
            pre, post = block_diagonal_indices_by_pre(batch, n_pre, n_post)
            syn.connect(i=pre, j=post)
            self.synapses.append(syn)
            self.weights.append(rng.normal(0.0, spec.init_gain / np.sqrt(n_pre), size=(n_post, n_pre)))
            # a (batch, n_post, n_pre) view of the synaptic weights, whatever their order in memory
            self._weight_views.append(syn.variables["w"].get_value().reshape(batch, n_pre, n_post).transpose(0, 2, 1))
        self._spike_cost = float(model.spike_cost / volt)
        self._v_start = float(model.v_start / volt)
        self._clip_scores = model.transfer != "integrate-and-fire"
        self.push_weights()

        self.monitors = {}
        for group in self.groups:
            self.monitors[group.name] = self._new_monitor(group)

        self.lateral: list[GradedLateralCircuit] = []
        if lateral is not None:
            if lateral.neuron == "spiking":
                from hlopsim.sim.spiking_lateral import SpikingLateralCircuit as circuit_class
            else:
                circuit_class = GradedLateralCircuit
            for layer, name in enumerate(spec.weight_names):
                sizes_per_task = lateral.neurons_per_task(layer, n_tasks, sizes[layer], layer_name=name)
                self.lateral.append(circuit_class(
                    name=f"lateral_{name}", pre_group=self.groups[layer], n_inputs=sizes[layer],
                    sizes_per_task=sizes_per_task, spec=lateral, hebbian_rate=lateral.hebbian_rate[layer],
                    presentation=spec.presentation,
                    dt=spec.dt, rng=rng))

        self._callback: BatchCallback | None = None
        self._progress = None
        self._batch_op = NetworkOperation(self._on_boundary, dt=spec.presentation, when="start",
                                          name="batch_boundary")
        objects = [*self.groups, *self.synapses, *self.monitors.values(), self._batch_op]
        for circuit in self.lateral:
            objects.extend(circuit.objects)
        self.net = Network(*objects, name="hlopsim_network")
        self.set_lateral_learning(False)

    # -- weights -----------------------------------------------------------------------------
    def push_weights(self) -> None:
        """Write the shared weights (units of spike cost) into every copy's synapses (volt)."""
        for weights, view in zip(self.weights, self._weight_views):
            view[:] = (weights * self._spike_cost)[None]

    def synapse_weights(self, layer: int) -> np.ndarray:
        """The weights as Brian2 holds them, shape (batch, n_post, n_pre), in volt (a copy)."""
        return self._weight_views[layer].copy()

    # -- lateral circuits ------------------------------------------------------------------------
    def set_lateral_learning(self, on: bool) -> None:
        """Simulate (and let learn) the lateral circuits, or switch them off entirely."""
        for circuit in self.lateral:
            circuit.set_active(on)
        self._lateral_on = on and bool(self.lateral)

    # -- running ---------------------------------------------------------------------------------
    def present(self, spikes: SpikeTrains, on_batch: BatchCallback | None = None, progress=None) -> RunActivity:
        """Present every sample of ``spikes`` once, ``batch_size`` at a time, in one Brian2 run.

        Parameters
        ----------
        spikes : SpikeTrains
            Input spikes of ``S`` samples, each ``n_steps`` long.
        on_batch : callable or None
            Called with a `BatchActivity` after every batch; it may change ``self.weights`` in
            place and return True to have them written back before the next batch.
        progress : tqdm or None
            Advanced by one per batch.

        Returns
        -------
        RunActivity
        """
        if spikes.n_neurons != self.spec.input_size or spikes.n_steps != self.n_steps:
            raise ValueError(f"input spikes are {spikes.n_neurons} neurons × {spikes.n_steps} steps; the network "
                             f"expects {self.spec.input_size} × {self.n_steps}")
        batch = self.spec.batch_size
        n_samples = spikes.n_samples
        n_batches = max(1, -(-n_samples // batch))
        start_step = int(round(float(self.net.t / self._dt)))
        flat = (spikes.sample % batch) * self.spec.input_size + spikes.neuron
        step = start_step + (spikes.sample // batch) * self.n_steps + spikes.step
        # Brian2 wants the spikes ordered by time, then index; it would lexsort the float times (1.6 s
        # for the 3.2 M spikes of a consolidation run); one argsort of an integer key does it in 0.5 s.
        order = np.argsort(step * (batch * self.spec.input_size) + flat)
        self.groups[0].set_spikes(flat[order], step[order] * self._dt, sorted=True)

        self._callback = on_batch
        self._progress = progress
        self._run = {"start_step": start_step, "n_samples": n_samples, "batch": 0,
                     "counts": [np.zeros((n_batches * batch, g.N // batch), dtype=np.int64) for g in self.groups],
                     "scores": np.zeros((n_batches * batch, self.spec.output_size)),
                     "last": [np.zeros(g.N, dtype=np.int64) for g in self.groups]}
        # Brian2's run() starts with a full gc.collect(), ~0.2 s in a process holding Brian2, Numba,
        # SciPy and scikit-learn; with the live objects frozen it takes microseconds.
        gc.freeze()
        try:
            self.net.run(n_batches * self.spec.presentation)
            self._finish_batch()
        finally:
            gc.unfreeze()
        self._callback = None
        run = self._run
        activity = RunActivity(counts=[c[:n_samples] for c in run["counts"]],
                               scores=run["scores"][:n_samples], spikes=self._drain_monitors(start_step, n_samples))
        if self.record_spikes:
            activity.spikes[self.groups[0].name] = (spikes.sample, spikes.step, spikes.neuron)
        return activity

    def _on_boundary(self):
        """Batch boundary inside a run: finish the previous batch (if any), then reset dynamics."""
        if int(round(float(self.net.t / self._dt))) > self._run["start_step"]:
            self._finish_batch()
        self._reset_dynamics()

    def _finish_batch(self):
        run = self._run
        batch_size = self.spec.batch_size
        k = run["batch"]
        rows = slice(k * batch_size, (k + 1) * batch_size)
        rates = []
        for layer, group in enumerate(self.groups):
            total = np.asarray(self.monitors[group.name].count[:], dtype=np.int64)
            counts = (total - run["last"][layer]).reshape(batch_size, -1)
            run["last"][layer] = total
            run["counts"][layer][rows] = counts
            rates.append(counts / self.n_steps)
        output = self.groups[-1]
        v_out = np.asarray(output.v_[:]).reshape(batch_size, -1)
        surplus = (v_out - self._v_start) / self._spike_cost
        if self._clip_scores:
            surplus = np.clip(surplus, -1.0, 1.0)
        run["scores"][rows] = run["counts"][-1][rows] + surplus
        samples = np.arange(k * batch_size, (k + 1) * batch_size)
        samples[samples >= run["n_samples"]] = -1
        if self._lateral_on:
            for circuit in self.lateral:
                circuit.check_stable(f"in batch {k} of the run starting at step {run['start_step']}")
        if self._callback is not None:
            if self._callback(BatchActivity(batch=k, samples=samples, rates=rates)):
                self.push_weights()
        if self._progress is not None:
            self._progress.update(1)
        run["batch"] = k + 1

    def _reset_dynamics(self):
        """Restore every neuron's initial state; weights are kept."""
        for group in self.groups[1:]:
            for var, value in self.spec.neuron.initial.items():
                setattr(group, var, value)
        if self._lateral_on:
            for circuit in self.lateral:
                circuit.start_presentation(self.net.t)

    def reset_dynamics(self) -> None:
        """Public form of "reset dynamics, keep weights" (between runs it is done automatically)."""
        self._reset_dynamics()

    # -- spike recording --------------------------------------------------------------------------
    def _new_monitor(self, group):
        # The input's spikes are the SpikeTrains handed to `present`: its monitor only counts.
        record = self.record_spikes and group is not self.groups[0]
        return SpikeMonitor(group, record=record, name=f"spikes_{group.name}")

    def _drain_monitors(self, start_step: int, n_samples: int):
        """Move this run's spikes out of the monitors and replace them with empty ones.

        Brian2 monitors cannot be cleared, so each is removed from the network and a fresh one with
        the same name (hence the same compiled code) takes its place.
        """
        spikes = {}
        batch = self.spec.batch_size
        for group in self.groups:
            old = self.monitors[group.name]
            if old.record:
                # One compiled pass instead of a chain of numpy temporaries (it was 8 % of a run).
                spikes[group.name] = segment_spikes(np.asarray(old.t_[:]), np.asarray(old.i[:]), float(self._dt),
                                                    start_step, self.n_steps, batch, group.N // batch, n_samples)
            self.net.remove(old)
            fresh = self._new_monitor(group)
            self.net.add(fresh)
            self.monitors[group.name] = fresh
        return spikes
