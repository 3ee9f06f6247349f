"""The simulated network: specs in, one explicit Brian2 ``Network`` out, and the handle protocols use.

Many samples share one Brian2 run. The network is instantiated ``batch_size`` times side by side
(shared weights, block-diagonal synapses, see `sim.blocks`), and an epoch — many batches — is a single
``Network.run``. A `network_operation` at every batch boundary (every ``presentation``) reads the
spike counts of the finished batch, hands them to the learning rule, writes the updated weights
into all copies, synchronises the lateral circuits and resets the neurons ("reset dynamics, keep
weights"). This amortises Brian2's per-step overhead over the batch instead of paying one
``run()`` per sample (docs/design.md).

Synapses: weight layer ``l`` propagates spikes as the ``on_pre`` statement of ``spec.synapse_for(l)`` says
(``w`` in volt); the population it feeds simulates the neuron model extended by that synapse's kinetics
(`models.synapses.compose`). By default an undelayed `Delta` layer uses one weight matrix shared by all
copies (`sim.propagation.SharedPropagation`, bit-identical to Brian2's synapses); other layers are a Brian2
``Synapses`` with ``w : volt`` per copy and the synapse's delay (``propagation="brian2"`` forces this for all).

Continuous time: with ``spec.isi > 0`` each batch occupies ``isi + presentation`` — silence first (no
input spikes; the neurons run on and their state decays), then the presentation — and the neurons are
reset at a presentation's start only if ``spec.reset`` (always at a run's first step). Spikes in the
silence belong to no presentation: they are left out of the counts the learning rule sees and out of
the recorded spikes, whose steps are on the presentation clock (presentations end to end, each
``n_steps`` long), so run files look exactly as without an ISI.
"""
from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from brian2 import (Network, NetworkOperation, NeuronGroup, SpikeGeneratorGroup, SpikeMonitor, StateMonitor, Synapses,
                    get_unit, second, volt)

from hlopsim.data.encoders import SpikeTrains
from hlopsim.data.lazy_input import LazyInput
from hlopsim.models.lateral import LateralSpec
from hlopsim.models.network import NetworkSpec
from hlopsim.models.recording import StateRecording
from hlopsim.models.synapses import compose
from hlopsim.sim.blocks import block_diagonal_indices_by_pre
from hlopsim.sim.kernels import segment_spikes
from hlopsim.sim.lateral import GradedLateralCircuit
from hlopsim.sim.propagation import SharedPropagation, choose_propagation
from hlopsim.sim.resources import samples_per_run
from hlopsim.sim.shared_lateral import SharedGradedLateralCircuit, choose_lateral
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
    states : dict
        Recorded state variables (`SimNetwork.present` with ``record_states``), else empty:
        ``states[population][variable]`` is a float64 array of shape ``(P, n_neurons, n_steps)`` in SI
        units (`SimNetwork.state_units`) for samples ``0 … P − 1`` of the run, neurons
        ``SimNetwork.state_neurons[population]``, at steps ``0 … n_steps − 1`` of each presentation
        (the value at the start of the step; step 0 is the state the presentation starts from).
    """

    counts: list[np.ndarray]
    scores: np.ndarray
    spikes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


BatchCallback = Callable[[BatchActivity], bool]
RunCallback = Callable[[int, "RunActivity"], None]


def _shifted(on_batch: BatchCallback | None, first: int, batches: int) -> BatchCallback | None:
    """``on_batch`` for a run that presents a call's samples from ``first`` on (its ``batches``-th batch
    first): the callback sees the call's sample and batch numbers."""
    if on_batch is None or first == 0:
        return on_batch

    def shifted(batch: BatchActivity) -> bool:
        samples = np.where(batch.samples >= 0, batch.samples + first, -1)
        return on_batch(BatchActivity(batch=batch.batch + batches, samples=samples, rates=batch.rates))
    return shifted


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
    record_states : StateRecording or None
        State variables to record (`models.recording.StateRecording`); its variables, populations
        and neurons are checked here, before any Brian2 object exists. Which runs record is chosen
        per `present` call.
    propagation : {"auto", "shared", "brian2"}
        How weight layers propagate spikes (`sim.propagation`) and lateral circuits hold ``H``
        (`sim.shared_lateral`): ``"shared"`` one matrix for all copies (undelayed built-in synapse models;
        the graded circuit without decorrelation), ``"brian2"`` Brian2 ``Synapses`` holding every copy's
        weights, ``"auto"`` shared for undelayed `Delta` layers and graded circuits without decorrelation,
        Brian2 for the others.

    Attributes
    ----------
    synapses : list
        The Brian2 object propagating each weight layer's spikes: a ``Synapses`` or the ``NetworkOperation``
        of a `SharedPropagation`.
    propagators : list of SharedPropagation or None
        Each layer's shared propagation, None where it is a Brian2 ``Synapses``.
    weights : list of ndarray, shape (n_post, n_pre)
        The shared weights of every layer in units of the neuron's spike cost (dimensionless);
        ``w = weights[l] * spike_cost`` volts in Brian2. Edit in place inside a batch callback and
        return True from it to have them written into the simulation.
    lateral : list of SharedGradedLateralCircuit, GradedLateralCircuit or SpikingLateralCircuit
        One per weight layer (empty without a LateralSpec).
    transfers : list of TransferCurve
        One rate map per non-input population (hidden layers first, output last), each for the neuron
        model with the synapse model of the weight layer that feeds it (`sim.transfer.transfer_for`):
        the analytic integrate-and-fire map for `lif` with undelayed `Delta` synapses, otherwise
        measured once here, before any Brian2 object of the network exists (a model that cannot carry
        a rate code fails with a `TransferError` before any training). The credit assignment uses
        the hidden layers' ``transfers[:-1]``.
    transfer : TransferCurve
        ``transfers[0]``: the first hidden layer's map (the output's without hidden layers).
    models : list of NeuronModel
        What each non-input population simulates: the neuron model with the kinetics of the synapses
        it receives (`models.synapses.compose`; the neuron model itself for `Delta`).
    period : Quantity
        Time from one presentation's start to the next: ``isi + presentation``.
    max_run_samples : int
        Most presentations in one Brian2 run (`sim.resources.samples_per_run`, a whole number of
        batches); `present` splits longer calls into consecutive runs. Lower it to bound memory further.
    net : brian2.Network
        The explicit network holding every object.
    state_monitors : dict of str to brian2.StateMonitor
        One per recorded population, named ``state_<population>`` (empty without ``record_states``).
    state_neurons : dict of str to tuple of int
        Recorded neuron indices of each recorded population.
    state_units : dict of str to dict of str to str
        SI unit of each recorded variable, e.g. ``{"hidden_1": {"v": "V"}}`` (``"1"``: dimensionless).
    """

    def __init__(self, spec: NetworkSpec, rng: np.random.Generator, lateral: LateralSpec | None = None,
                 n_tasks: int = 1, record_spikes: bool = True, record_states: StateRecording | None = None,
                 propagation: str = "auto"):
        # Validate before any Brian2 object exists (an unused object only earns a warning at exit).
        if record_states is not None and not isinstance(record_states, StateRecording):
            raise ValueError(f"record_states = {record_states!r}; expected a StateRecording or None")
        state_plan = record_states.plan(spec) if record_states is not None else {}
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
            if spec.isi_steps and abs(float(spec.isi / lateral.dt) - round(float(spec.isi / lateral.dt))) > 1e-9:
                raise ValueError(f"network.isi = {spec.isi} must be a whole number of lateral.dt = {lateral.dt} "
                                 "(the circuits' clock must keep its phase within every presentation)")
        n_layers = len(spec.hidden) + 1
        # Weight layer l feeds population l + 1, which simulates the neuron with that layer's synaptic kinetics.
        self.models = [compose(spec.neuron, spec.synapse_for(layer)) for layer in range(n_layers)]
        self.transfers = [transfer_for(spec.neuron, spec.dt, spec.n_steps, synapse=spec.synapse_for(layer))
                          for layer in range(n_layers)]
        self.transfer = self.transfers[0]
        self.spec = spec
        self.record_spikes = record_spikes
        self.n_steps = spec.n_steps
        self._dt = spec.dt
        self._isi_steps = spec.isi_steps
        self._period_steps = spec.period_steps
        self.period = spec.presentation if spec.isi_steps == 0 else spec.period_steps * spec.dt
        # the most samples one Brian2 run holds (`present` splits longer calls; `sim.resources`)
        self.max_run_samples = samples_per_run(spec, record_spikes)
        batch = spec.batch_size
        sizes = spec.layer_sizes
        names = spec.population_names
        model = spec.neuron

        # Checked before any Brian2 object exists.
        propagations = [choose_propagation(propagation, spec.synapse_for(layer), name)
                        for layer, name in enumerate(spec.weight_names)]
        lateral_path = choose_lateral(propagation, lateral) if lateral is not None else None
        # Every object gets the spec's dt explicitly: nothing depends on Brian2's global defaultclock.
        self.groups = [SpikeGeneratorGroup(batch * sizes[0], np.array([], dtype=int), np.array([]) * second,
                                           dt=spec.dt, name=names[0])]
        for name, size, full in zip(names[1:], sizes[1:], self.models):
            self.groups.append(NeuronGroup(batch * size, full.equations, threshold=full.threshold,
                                           reset=full.reset, method=full.method, name=name, dt=spec.dt,
                                           refractory=full.refractory if full.refractory is not None else False,
                                           namespace=dict(full.parameters)))
        self.synapses = []
        self.propagators: list[SharedPropagation | None] = []
        self.weights = []
        self._weight_views = []
        for layer, name in enumerate(spec.weight_names):
            n_pre, n_post = sizes[layer], sizes[layer + 1]
            kinetics = spec.synapse_for(layer)
            self.weights.append(rng.normal(0.0, spec.init_gain / np.sqrt(n_pre), size=(n_post, n_pre)))
            if propagations[layer] == "shared":
                shared = SharedPropagation(self.groups[layer], self.groups[layer + 1], batch, n_pre, n_post, kinetics,
                                           model, dt=spec.dt, name=name)
                self.synapses.append(shared.operation)
                self.propagators.append(shared)
                self._weight_views.append(None)
                continue
            options = {"delay": kinetics.delay} if kinetics.delay is not None else {}
            namespace = kinetics.synapse_namespace(model)
            if namespace:
                options["namespace"] = namespace
            # `Delta`: on_pre "v_post += w"; w = weight · spike_cost (volt) for every synapse model
            syn = Synapses(self.groups[layer], self.groups[layer + 1], "w : volt", on_pre=kinetics.on_pre,
                           dt=spec.dt, name=name, **options)
            # (copy, pre, post) order: a spike's synapses are contiguous in memory, which makes propagating
            # the input spikes (the largest part of a run) faster than (copy, post, pre) order, with
            # bit-identical results (docs/benchmarks.md)
            pre, post = block_diagonal_indices_by_pre(batch, n_pre, n_post)
            syn.connect(i=pre, j=post)
            self.synapses.append(syn)
            self.propagators.append(None)
            # a (batch, n_post, n_pre) view of the synaptic weights, whatever their order in memory
            self._weight_views.append(syn.variables["w"].get_value().reshape(batch, n_pre, n_post).transpose(0, 2, 1))
        self._spike_cost = float(model.spike_cost / volt)
        self._v_start = float(model.v_start / volt)
        self._clip_scores = self.models[-1].transfer != "integrate-and-fire"
        self.push_weights()

        self.monitors = {}
        for group in self.groups:
            self.monitors[group.name] = self._new_monitor(group)

        self.lateral: list = []
        if lateral is not None:
            shared_circuits = lateral_path == "shared"
            if lateral.neuron == "spiking":
                from hlopsim.sim.spiking_lateral import SpikingLateralCircuit as circuit_class
            else:
                circuit_class = SharedGradedLateralCircuit if shared_circuits else GradedLateralCircuit
            for layer, name in enumerate(spec.weight_names):
                sizes_per_task = lateral.neurons_per_task(layer, n_tasks, sizes[layer], layer_name=name)
                # the shared circuit reads its input from the spike counts of the layer's monitor (replaced every run)
                source = {"spike_counts": self._count_reader(self.groups[layer].name)} if shared_circuits else {}
                self.lateral.append(circuit_class(
                    name=f"lateral_{name}", pre_group=self.groups[layer], n_inputs=sizes[layer],
                    sizes_per_task=sizes_per_task, spec=lateral, hebbian_rate=lateral.hebbian_rate[layer],
                    presentation=spec.presentation, dt=spec.dt, rng=rng, **source))

        self._callback: BatchCallback | None = None
        self._progress = None
        # Without an ISI one call per presentation; with one, a call at every multiple of
        # gcd(isi, presentation) so that both the end of a presentation and the end of the silence are met.
        boundary_dt = spec.presentation if spec.isi_steps == 0 else math.gcd(spec.isi_steps, spec.n_steps) * spec.dt
        self._batch_op = NetworkOperation(self._on_boundary, dt=boundary_dt, when="start", name="batch_boundary")
        self._build_state_monitors(record_states, state_plan)
        objects = [*self.groups, *self.synapses, *self.monitors.values(), self._batch_op,
                   *self.state_monitors.values()]
        for circuit in self.lateral:
            objects.extend(circuit.objects)
        self.net = Network(*objects, name="hlopsim_network")
        self.set_lateral_learning(False)

    # -- weights -----------------------------------------------------------------------------
    def push_weights(self) -> None:
        """Write the shared weights (units of spike cost) into the simulation (volt): into each shared
        propagation's one matrix, or into every copy's synapses of a Brian2 ``Synapses`` layer."""
        for weights, view, shared in zip(self.weights, self._weight_views, self.propagators):
            if shared is not None:
                shared.set_weights(weights, self._spike_cost)
            else:
                view[:] = (weights * self._spike_cost)[None]

    def synapse_weights(self, layer: int) -> np.ndarray:
        """The weights every copy simulates, shape (batch, n_post, n_pre), in volt (a copy)."""
        if self.propagators[layer] is not None:
            return self.propagators[layer].weights_per_copy()
        return self._weight_views[layer].copy()

    # -- lateral circuits ------------------------------------------------------------------------
    def set_lateral_learning(self, on: bool) -> None:
        """Simulate (and let learn) the lateral circuits, or switch them off entirely."""
        for circuit in self.lateral:
            circuit.set_active(on)
        self._lateral_on = on and bool(self.lateral)

    # -- running ---------------------------------------------------------------------------------
    def present(self, spikes: SpikeTrains | LazyInput, on_batch: BatchCallback | None = None, progress=None,
                record_states: bool = False, on_run: RunCallback | None = None) -> RunActivity:
        """Present every sample of ``spikes`` once, ``batch_size`` at a time.

        One Brian2 run, or (more than `max_run_samples` samples) consecutive runs of that many
        samples, each continuing the last one's state: the neurons are reset only where one run
        would reset them, so the result is the same; the split bounds the memory a run holds
        (input spikes, monitors). Arguments and result as `present_run`; ``on_batch`` sees sample
        and batch numbers of the whole call; states are recorded in the first run only (they are the
        call's first presentations).

        Parameters
        ----------
        spikes : SpikeTrains or LazyInput
            The input. A `LazyInput` is encoded a run at a time (`LazyInput.trains` of the run's
            samples, in order, just before the run starts), so the call's input is never held whole.
        on_run : callable, optional
            ``on_run(first, activity)`` after every run, with the `RunActivity` of the run's samples
            ``first, first + 1, …`` (numbered from 0 within the run). With it, each run's counts and
            spikes go to ``on_run`` only — the result holds the call's scores and the first run's states,
            no counts and no spikes — so that the memory of a call follows `max_run_samples`, not its
            length (e.g. ``on_run`` writes the run's spikes to the run file).
        """
        n_samples, chunk = spikes.n_samples, self.max_run_samples
        lazy = not isinstance(spikes, SpikeTrains)
        if n_samples <= chunk and on_run is None:
            return self.present_run(spikes.trains(0, n_samples) if lazy else spikes, on_batch, progress,
                                    record_states)
        parts, scores, states, firsts = [], [], {}, range(0, max(1, n_samples), chunk)
        bounds = None if lazy else np.searchsorted(spikes.sample, [*firsts, n_samples])   # sorted by sample
        for index, first in enumerate(firsts):
            stop = min(n_samples, first + chunk)
            if lazy:
                part = spikes.trains(first, stop)
            else:
                lo, hi = bounds[index], bounds[index + 1]
                part = SpikeTrains(sample=spikes.sample[lo:hi] - first, step=spikes.step[lo:hi],
                                   neuron=spikes.neuron[lo:hi], n_samples=stop - first,
                                   n_neurons=spikes.n_neurons, n_steps=spikes.n_steps)
            activity = self.present_run(part, _shifted(on_batch, first, first // self.spec.batch_size), progress,
                                        record_states and index == 0, continued=index > 0)
            del part
            if on_run is None:
                parts.append(activity)
                continue
            scores.append(activity.scores)
            states = states or activity.states
            on_run(first, activity)
            del activity
        if on_run is not None:
            return RunActivity(counts=[], scores=np.concatenate(scores), states=states)
        spikes_out = {name: tuple(np.concatenate([part.spikes[name][k] + (first if k == 0 else 0)
                                                  for part, first in zip(parts, firsts)]) for k in range(3))
                      for name in parts[0].spikes}
        return RunActivity(counts=[np.concatenate(c) for c in zip(*(part.counts for part in parts))],
                           scores=np.concatenate([part.scores for part in parts]), spikes=spikes_out,
                           states=parts[0].states)

    def present_run(self, spikes: SpikeTrains, on_batch: BatchCallback | None = None, progress=None,
                    record_states: bool = False, continued: bool = False) -> RunActivity:
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
        record_states : bool
            Record the state variables of the network's `StateRecording` in the first
            ``presentations`` samples of this run (`RunActivity.states`); ignored without one.
        continued : bool
            This run continues the previous one (`present` splitting a long call): its first step
            does not reset the neurons unless ``spec.reset`` does.

        Returns
        -------
        RunActivity
        """
        if spikes.n_neurons != self.spec.input_size or spikes.n_steps != self.n_steps:
            raise ValueError(f"input spikes are {spikes.n_neurons} neurons × {spikes.n_steps} steps; the network "
                             f"expects {self.spec.input_size} × {self.n_steps}")
        if getattr(self, "_interrupted", False):
            raise RuntimeError("this network's last run was interrupted mid-presentation; build a new SimNetwork "
                               "(a run file is continued with run_tasks, which starts from its last finished task)")
        batch = self.spec.batch_size
        n_samples = spikes.n_samples
        n_batches = max(1, -(-n_samples // batch))
        start_step = int(round(float(self.net.t / self._dt)))
        flat = (spikes.sample % batch) * self.spec.input_size + spikes.neuron
        step = self._input_steps(spikes, start_step)
        # Brian2 wants the spikes ordered by time, then index; it would lexsort the float times (1.6 s
        # for the 3.2 M spikes of a consolidation run); one argsort of an integer key does it in 0.5 s.
        order = np.argsort(step * (batch * self.spec.input_size) + flat)
        self.groups[0].set_spikes(flat[order], step[order] * self._dt, sorted=True)

        self._callback = on_batch
        self._progress = progress
        self._run = {"start_step": start_step, "n_samples": n_samples, "batch": 0, "continued": continued,
                     "counts": [np.zeros((n_batches * batch, g.N // batch), dtype=np.int64) for g in self.groups],
                     "scores": np.zeros((n_batches * batch, self.spec.output_size)),
                     "last": [np.zeros(g.N, dtype=np.int64) for g in self.groups],
                     "states": self._start_state_recording(record_states, n_samples)}
        # Ctrl-C inside the run. Brian2's own SIGINT handler turns it into Network.stop(): run() then
        # returns early as if it had finished, and the unfinished batch would be scored. Here Ctrl-C
        # stops the run at the end of the current time step (Brian2's state stays consistent) and then
        # raises KeyboardInterrupt; a second Ctrl-C raises at once. A run that ends before its last
        # step for any other reason (brian2.stop(), a device time limit) raises too: it is never scored.
        import signal
        import threading

        interrupted = []

        def stop_run(signum, frame):
            if interrupted:
                raise KeyboardInterrupt
            interrupted.append(signum)
            self.net.stop()

        run_duration = n_batches * self.period   # presentation plus any inter-stimulus silence
        end_step = start_step + int(round(float(run_duration / self._dt)))   # where an uninterrupted run ends
        in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there
        previous = signal.signal(signal.SIGINT, stop_run) if in_main_thread else None
        # Brian2's run() starts with a full gc.collect(), ~0.2 s in a process holding Brian2, Numba,
        # SciPy and scikit-learn; with the live objects frozen it takes microseconds.
        gc.freeze()
        try:
            self.net.run(run_duration)
        finally:
            gc.unfreeze()
            if in_main_thread:
                signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        reached = int(round(float(self.net.t / self._dt)))
        if interrupted or reached != end_step:
            self._callback = None
            self._interrupted = True   # its clock stopped mid-presentation: later runs would be misaligned
            raise KeyboardInterrupt(f"the Brian2 run was stopped at step {reached}, before its end at step "
                                    f"{end_step}; its presentations are not scored")
        self._finish_batch()
        self._callback = None
        run = self._run
        activity = RunActivity(counts=[c[:n_samples] for c in run["counts"]],
                               scores=run["scores"][:n_samples], spikes=self._drain_monitors(start_step, n_samples),
                               states=run["states"] or {})
        if self.record_spikes:
            activity.spikes[self.groups[0].name] = (spikes.sample, spikes.step, spikes.neuron)
        return activity

    def _input_steps(self, spikes: SpikeTrains, start_step: int) -> np.ndarray:
        """Network time step of every input spike of a run that starts at ``start_step``.

        Sample ``s`` is shown by copy ``s % batch_size`` in batch ``s // batch_size``; each batch
        occupies ``period_steps`` steps, the silence (``isi_steps``) first, then the presentation::

            step = start_step + (sample // batch_size) · period_steps + isi_steps + step_in_presentation
        """
        return start_step + (spikes.sample // self.spec.batch_size) * self._period_steps + self._isi_steps \
            + spikes.step

    def _on_boundary(self):
        """Batch boundaries inside a run.

        Without an ISI (called once per presentation): finish the previous batch (if any), then start
        the next presentation, resetting the neurons if ``spec.reset`` or at the run's first step.

        With an ISI a batch's period is [silence | presentation] and this is called every
        gcd(isi, presentation). At the period's start (the end of a presentation) it finishes the
        previous batch, resets the neurons at the run's first step, and closes the lateral circuits'
        plasticity until the presentation begins (their integrators are cleared and their timer set
        to the presentation's start); the neurons run on through the silence. At the end of the
        silence it takes the spike counts so far as the baseline (spikes of the silence belong to no
        presentation), resets the neurons if ``spec.reset``, and starts the lateral circuits'
        presentation.
        """
        step = int(round(float(self.net.t / self._dt)))
        start = self._run["start_step"]
        if self._isi_steps == 0:
            if step > start:
                self._finish_batch()
            self._start_presentation(reset=self.spec.reset or (step == start and not self._run["continued"]))
            return
        phase = (step - start) % self._period_steps
        if phase == 0:
            if step > start:
                self._finish_batch()
            elif not self._run["continued"]:
                self._reset_neurons()
            if self._lateral_on:
                for circuit in self.lateral:
                    circuit.start_presentation(self.net.t + self.spec.isi)
        elif phase == self._isi_steps:
            last = self._run["last"]
            for layer, group in enumerate(self.groups):
                last[layer] = np.asarray(self.monitors[group.name].count[:], dtype=np.int64)
            self._start_presentation(reset=self.spec.reset)

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
        if run["states"] is not None:
            self._keep_states(k)
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

    def _reset_neurons(self):
        """Restore every neuron's initial state, synaptic variables included (`NeuronModel.initial` of
        `models`); weights are kept. Spikes still in transit on delayed synapses are not removed."""
        for group, full in zip(self.groups[1:], self.models):
            for var, value in full.initial.items():
                setattr(group, var, value)
            if "lastspike" in group.variables:
                # Refractoriness is state too: no neuron starts a presentation refractory from the last one
                # (otherwise a resumed run, whose network starts fresh, would differ from an uninterrupted one).
                group.variables["lastspike"].set_value(-1e4 * second)
                group.variables["not_refractory"].set_value(True)

    def _start_presentation(self, reset: bool):
        """A presentation starts now: reset the neurons if ``reset``; start the lateral circuits' presentation."""
        if reset:
            self._reset_neurons()
        if self._lateral_on:
            for circuit in self.lateral:
                circuit.start_presentation(self.net.t)

    def _reset_dynamics(self):
        """Restore every neuron's initial state and start the lateral circuits' presentation; weights are kept."""
        self._start_presentation(reset=True)

    def reset_dynamics(self) -> None:
        """Public form of "reset dynamics, keep weights" (between runs it is done automatically)."""
        self._reset_dynamics()

    # -- state recording --------------------------------------------------------------------------
    def _build_state_monitors(self, recording: StateRecording | None, plan: dict) -> None:
        """One Brian2 ``StateMonitor`` per recorded population, inactive until a run asks for it.

        It records the chosen neurons of copies ``0 … min(presentations, batch_size) − 1`` (flat index
        ``copy · n + neuron``) at every step, in the ``start`` slot after the batch boundary
        (``order=1``): the value at the start of a step, after a presentation's reset. Brian2 fixes a
        run's active objects when the run starts, so a monitor runs through a whole recorded run;
        `_keep_states` empties it at every batch boundary, so it never holds more than one batch
        period of the recorded copies.
        """
        self._state_recording = recording
        self.state_monitors, self.state_neurons, self.state_units = {}, {}, {}
        if recording is None:
            return
        copies = min(recording.presentations, self.spec.batch_size)
        for group in self.groups[1:]:
            if group.name not in plan:
                continue
            variables, neurons = plan[group.name]
            n = group.N // self.spec.batch_size
            record = (np.arange(copies)[:, None] * n + np.asarray(neurons)[None, :]).ravel()
            monitor = StateMonitor(group, list(variables), record=record, dt=self.spec.dt, when="start", order=1,
                                   name=f"state_{group.name}")
            monitor.active = False
            self.state_monitors[group.name] = monitor
            self.state_neurons[group.name] = tuple(int(i) for i in neurons)
            self.state_units[group.name] = {var: _unit_text(group.variables[var].dim) for var in variables}

    def _start_state_recording(self, record: bool, n_samples: int):
        """Switch the state monitors on for this run (or off) and allocate what it keeps."""
        on = bool(record) and bool(self.state_monitors)
        for monitor in self.state_monitors.values():
            monitor.active = on
            monitor.resize(0)
        if not on:
            return None
        n_keep = min(self._state_recording.presentations, n_samples)
        return {pop: {var: np.zeros((n_keep, len(self.state_neurons[pop]), self.n_steps))
                      for var in monitor.record_variables}
                for pop, monitor in self.state_monitors.items()}

    def _keep_states(self, k: int) -> None:
        """At the end of batch ``k``: keep the recorded presentation part of its chosen samples, then
        empty the monitors (`StateMonitor.resize`), so memory stays one batch period at most."""
        states = self._run["states"]
        batch = self.spec.batch_size
        for pop, monitor in self.state_monitors.items():
            n_keep = next(iter(states[pop].values())).shape[0]
            copies = min(self._state_recording.presentations, batch)
            take = np.arange(k * batch, k * batch + copies)
            use = take < n_keep
            n_rec = len(self.state_neurons[pop])
            for var, out in states[pop].items():
                values = np.asarray(monitor.variables[var].get_value())
                if values.shape[0] != self._period_steps:
                    raise RuntimeError(f"state monitor {monitor.name} holds {values.shape[0]} steps at the end of batch "
                                       f"{k}; expected {self._period_steps}")
                if use.any():
                    part = values[self._isi_steps:].reshape(self.n_steps, copies, n_rec)   # presentation part
                    out[take[use]] = part.transpose(1, 2, 0)[use]
            monitor.resize(0)

    # -- spike recording --------------------------------------------------------------------------
    def _count_reader(self, name: str) -> Callable[[], np.ndarray]:
        """A function returning the live spike-count array of population ``name``'s current monitor."""
        return lambda: self.monitors[name].variables["count"].get_value()

    def _new_monitor(self, group):
        # The input's spikes are the SpikeTrains handed to `present`: its monitor only counts.
        record = self.record_spikes and group is not self.groups[0]
        return SpikeMonitor(group, record=record, name=f"spikes_{group.name}")

    def _presentation_clock(self, t: np.ndarray, i: np.ndarray, start_step: int):
        """Monitor spikes of a run with an ISI on the presentation clock: silences removed.

        A spike at run step ``s = round(t / dt) − start_step`` with ``phase = s % period_steps`` is
        dropped if ``phase < isi_steps`` (in the silence) and otherwise moved to step
        ``(s // period_steps) · n_steps + phase − isi_steps``, so presentations lie end to end as the
        run file expects (segments of ``n_steps``). Order (time, then index) is kept.

        Returns
        -------
        t : ndarray of float64 (second), i : ndarray
        """
        dt = float(self._dt)
        s = np.rint(t / dt).astype(np.int64) - start_step
        phase = s % self._period_steps
        keep = phase >= self._isi_steps
        moved = (s[keep] // self._period_steps) * self.n_steps + phase[keep] - self._isi_steps
        return (start_step + moved) * dt, i[keep]

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
                t, i = np.asarray(old.t_[:]), np.asarray(old.i[:])
                if self._isi_steps:
                    t, i = self._presentation_clock(t, i, start_step)
                # One compiled pass instead of a chain of numpy temporaries (it was 8 % of a run).
                spikes[group.name] = segment_spikes(t, i, float(self._dt), start_step, self.n_steps, batch,
                                                    group.N // batch, n_samples)
            self.net.remove(old)
            fresh = self._new_monitor(group)
            self.net.add(fresh)
            self.monitors[group.name] = fresh
        return spikes


def _unit_text(dim) -> str:
    """SI unit of a Brian2 dimension as text, e.g. ``"V"``, ``"V/s"``, ``"Hz"``; ``"1"`` if dimensionless."""
    from brian2.units.fundamentalunits import DIMENSIONLESS
    return "1" if dim is DIMENSIONLESS or dim == DIMENSIONLESS else str(get_unit(dim))
