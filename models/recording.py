"""Which state variables of which neurons to record, in which presentations: a frozen spec.

A run normally keeps spikes only. `StateRecording` asks for membrane potentials, synaptic currents
or conductances, adaptation variables — any variable of a population's simulated model (the neuron
model composed with its synapses' kinetics, `models.synapses.compose`) — of a few neurons during a few
presentations of the chosen phases. `sim.network.SimNetwork` records them with Brian2 ``StateMonitor``s
and the experiment loop writes them to ``/states`` of the run file (`sim.runfile.schema`).

Why "the first N presentations of a run": the network shows ``batch_size`` samples side by side, sample
``s`` of a Brian2 run in copy ``s % batch_size`` of batch ``s // batch_size``; the first N samples are
copies ``0 … min(N, batch_size) − 1`` of the first batches, so a monitor of those few copies holds only
what is kept and nothing is recorded after them.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

#: Phases a run presents, as the run file's segment table names them.
RECORDABLE_PHASES = ("train", "consolidate", "test")


def _int_tuple(values, what: str, minimum: int) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"StateRecording: {what} = {values!r}; expected a sequence of integers >= {minimum}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
            raise ValueError(f"StateRecording: {what} = {list(values)!r}; expected integers >= {minimum}, "
                             f"got {value!r}")
        out.append(int(value))
    return tuple(out)


def _str_tuple(values, what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    if not hasattr(values, "__iter__") or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"StateRecording: {what} = {values!r}; expected a sequence of non-empty names")
    return tuple(values)


@dataclass(frozen=True)
class StateRecording:
    """State variables to record from chosen neurons in chosen presentations.

    Parameters
    ----------
    variables : sequence of str
        Names of variables of the recorded populations' simulated models, e.g. ``"v"`` (membrane),
        ``"I_syn"`` (`ExpCurrent`, volt/second), ``"g_e"``, ``"g_i"`` (`Conductance`, hertz),
        ``"theta_a"`` (`adaptive_lif`'s threshold adaptation), ``"u"`` (`izhikevich`). Each must exist
        in every recorded population; an unknown name is refused when the network is built, naming
        the variables that exist.
    neurons : int or sequence of int
        The first ``neurons`` neurons of each recorded population (an int, capped at the population's
        size), or these neuron indices in each (each below every recorded population's size).
    presentations : int
        Record the first ``presentations`` presentations of every recorded Brian2 run (a task's
        supervised run covers all its epochs; a test run covers consecutive tasks' test sets, the
        first task's first).
    phases : sequence of str
        Which runs to record: ``"train"``, ``"consolidate"`` (lateral-only epochs), ``"test"``.
    stages : sequence of int or None
        Record only after training these tasks (the segment's ``stage``); None: every stage.
    populations : sequence of str or None
        Population names (e.g. ``"hidden_1"``, ``"output"``); None: every hidden and output population.

    Raises
    ------
    ValueError
        One line naming the field, its value and what is expected.

    Notes
    -----
    What is kept: ``presentations × len(neurons) × n_steps`` values per variable and population, at the
    steps ``t = start + k·dt`` (``k = 0 … n_steps − 1``) of each presentation, the value at the start of
    the step (before it is integrated; ``k = 0`` is the state the presentation starts from). Between the
    presentations kept, the monitors hold at most one batch (``isi + presentation``) of the recorded
    copies. With an inter-stimulus interval only the presentation part is kept, as for spikes.
    """

    variables: tuple[str, ...] = ("v",)
    neurons: int | tuple[int, ...] = 5
    presentations: int = 3
    phases: tuple[str, ...] = ("test",)
    stages: tuple[int, ...] | None = None
    populations: tuple[str, ...] | None = None

    def __post_init__(self):
        variables = _str_tuple(self.variables, "variables")
        if not variables:
            raise ValueError("StateRecording: variables is empty; expected at least one name such as 'v'")
        if len(set(variables)) != len(variables):
            raise ValueError(f"StateRecording: variables = {list(variables)} names a variable twice")
        object.__setattr__(self, "variables", variables)
        if isinstance(self.neurons, Integral) and not isinstance(self.neurons, bool):
            if self.neurons < 1:
                raise ValueError(f"StateRecording: neurons = {self.neurons}; expected a count >= 1 or neuron indices")
            object.__setattr__(self, "neurons", int(self.neurons))
        else:
            neurons = _int_tuple(self.neurons, "neurons", 0)
            if not neurons or len(set(neurons)) != len(neurons):
                raise ValueError(f"StateRecording: neurons = {list(neurons)}; expected distinct neuron indices "
                                 "(at least one) or a count")
            object.__setattr__(self, "neurons", neurons)
        if isinstance(self.presentations, bool) or not isinstance(self.presentations, Integral) \
                or self.presentations < 1:
            raise ValueError(f"StateRecording: presentations = {self.presentations!r}; expected an integer >= 1 "
                             "(the first N presentations of each recorded run)")
        object.__setattr__(self, "presentations", int(self.presentations))
        phases = _str_tuple(self.phases, "phases")
        unknown = [p for p in phases if p not in RECORDABLE_PHASES]
        if not phases or unknown:
            raise ValueError(f"StateRecording: phases = {list(phases)}; expected some of "
                             f"{', '.join(RECORDABLE_PHASES)}")
        object.__setattr__(self, "phases", tuple(dict.fromkeys(phases)))
        if self.stages is not None:
            object.__setattr__(self, "stages", _int_tuple(self.stages, "stages", 0))
        if self.populations is not None:
            populations = _str_tuple(self.populations, "populations")
            if not populations:
                raise ValueError("StateRecording: populations is empty; expected names or None (all)")
            object.__setattr__(self, "populations", tuple(dict.fromkeys(populations)))

    def records(self, phase: str, stage: int) -> bool:
        """Whether the runs of ``phase`` after training task ``stage`` are recorded."""
        return phase in self.phases and (self.stages is None or stage in self.stages)

    def plan(self, spec) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
        """What to record in a network: population name → (variables, neuron indices).

        Parameters
        ----------
        spec : NetworkSpec
            With input and output sizes (`NetworkSpec.with_sizes`).

        Raises
        ------
        ValueError
            One line: an unknown population (naming the ones that exist), a variable missing from a
            population's model (naming the variables it has), or a neuron index past its size.
        """
        from brian2 import Equations

        from hlopsim.models.synapses import compose
        names = list(spec.population_names[1:])
        sizes = dict(zip(spec.population_names, spec.layer_sizes))
        chosen = names if self.populations is None else list(self.populations)
        unknown = [p for p in chosen if p not in names]
        if unknown:
            raise ValueError(f"StateRecording: population(s) {unknown} unknown; the network's recordable "
                             f"populations are {', '.join(names)}")
        plan = {}
        for layer, name in enumerate(names):
            if name not in chosen:
                continue
            model = compose(spec.neuron, spec.synapse_for(layer))
            existing = list(Equations(model.equations).names)
            missing = [v for v in self.variables if v not in existing]
            if missing:
                raise ValueError(f"StateRecording: variable {missing[0]!r} does not exist in population {name!r} "
                                 f"(model {model.name!r}); its variables are {', '.join(existing)}")
            size = sizes[name]
            if isinstance(self.neurons, int):
                neurons = tuple(range(min(self.neurons, size)))
            else:
                if max(self.neurons) >= size:
                    raise ValueError(f"StateRecording: neuron {max(self.neurons)} is out of range for population "
                                     f"{name!r} of {size} neurons; expected indices 0 … {size - 1}")
                neurons = self.neurons
            plan[name] = (self.variables, neurons)
        return plan
