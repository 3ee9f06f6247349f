"""Protocol files: TOML text plus ``--set`` overrides → one validated, typed, frozen `Experiment`.

The language of a continual-learning protocol file is `SCHEMA`: its sections, keys and default values
(the defaults are the bundled ``permuted-digits`` protocol). A file may set any subset; a key it does
not set takes the default. Every key is checked here, once: unknown sections and keys, values of the
wrong type (against the default's type), and — when the `Experiment` is built — values out of range
and quantities with the wrong units (through the specs in `models`). Nothing downstream re-checks.

The resolved configuration (a plain ``{section: {key: value}}`` dict, quantities as text such as
"20 ms") is what run files store, so that ``hlopsim run --resume FILE`` can rebuild the experiment.
The ``subspace-convergence`` protocol (``[protocol] kind = "subspace-convergence"``) has its own keys:
those its bundled file defines.
"""
from __future__ import annotations

import copy
import json
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BUNDLED = ("permuted-digits", "permuted-digits-10", "split-digits", "permuted-mnist-5k", "split-mnist-5k", "subspace-convergence")
ENCODERS = ("regular", "poisson", "random-phase", "refractory-poisson", "latency")
SYNAPSES = ("delta", "exp_current", "conductance")
BUILDERS = ("permuted", "split")
HEADS = ("shared", "per-task")
TARGETS = ("cython", "numpy")
NEURONS = ("lif", "adaptive_lif", "izhikevich", "custom")
BASIS_SIZES = ("threshold", "lateral")
MULTITASK_SAMPLES = ("all", "task")

#: Every section and key of a continual-learning protocol file, with its default value.
SCHEMA: dict[str, dict] = {
    "protocol": {"name": "custom", "kind": "continual", "tasks": 5, "epochs": 3, "seed": 0},
    "data": {"dataset": "digits", "test_size": 450, "split_seed": 0, "encoder": "random-phase", "train_size": 0},
    "tasks": {"builder": "permuted", "identity_first": True, "classes": [], "heads": "shared"},
    "network": {"hidden": [128], "dt": "1 ms", "presentation": "40 ms", "input_max_rate": "500 Hz",
                "batch_size": 64, "init_gain": 1.5, "tau_m": "100 ms", "v_threshold": "20 mV",
                "synapse": "delta", "tau_syn": "5 ms", "tau_e": "5 ms", "tau_i": "10 ms", "E_e": "70 mV",
                "E_i": "-20 mV", "delay": "0 ms", "isi": "0 ms", "reset": True, "input_dead_time": "2 ms"},
    "neuron": {"model": "lif", "name": "", "equations": "", "threshold": "", "reset": "", "refractory": "",
               "spike_cost": "", "method": "", "parameters": {}, "initial": {}},
    "learning": {"lr": 0.1, "logit_scale": 10.0},
    "lateral": {"first_task": [16, 32], "per_task": [10, 20], "hebbian_rate": ["16 Hz", "6 Hz"],
                "spiking_hebbian_rate": ["4 Hz", "1.5 Hz"], "copies": 8, "dt": "5 ms", "window": "20 ms",
                "consolidation_epochs": 6, "neuron": "graded", "decorrelate": False, "decorrelation_floor": 0.3,
                "rate_scale": "200 Hz", "trace_tau": "200 ms", "projection": "closed-form",
                "growth": "fixed", "residual_threshold": 0.05, "protection": "full", "protection_scale": 100.0},
    "gpm": {"threshold": 0.97, "basis_sizes": "threshold"},
    "ewc": {"strength": 100.0, "decay": 1.0},
    "replay": {"per_class": 10},
    "multitask": {"samples": "all"},
    "sim": {"target": "cython", "record_spikes": True, "propagation": "auto", "threads": 1},
    # state variables of a few neurons in a few presentations (`StateRecording`); no variables: none
    "record": {"variables": [], "neurons": [0, 1, 2, 3, 4], "presentations": 3, "phases": ["test"], "stages": [],
               "populations": []},
}


class ConfigError(ValueError):
    """A bad protocol name, file, key or value; the message names it and what is expected."""


# -- reading files ---------------------------------------------------------------------------------
def _read_toml(text: str, source: str) -> dict:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not a valid TOML file ({err})") from None
    for section, keys in raw.items():
        if not isinstance(keys, dict):
            raise ConfigError(f"{source}: {section!r} must be a [section] of keys, not a value")
    return raw


def load_protocol(name_or_path) -> dict:
    """The resolved configuration of a bundled protocol (by name) or of a protocol file (by path).

    Raises
    ------
    ConfigError
        Unknown name, unreadable or invalid file, unknown key, or a value of the wrong type.
    """
    text_name = str(name_or_path)
    if text_name in BUNDLED:
        text = resources.files("hlopsim.protocols.bundled").joinpath(f"{text_name}.toml").read_text()
        raw, name = _read_toml(text, text_name), text_name
    else:
        path = Path(text_name)
        if not path.is_file():
            raise ConfigError(f"unknown protocol {text_name!r}; expected one of {', '.join(BUNDLED)} "
                              "or the path of a protocol file (.toml)")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"protocol file {text_name!r} cannot be read: {err}") from None
        raw = _read_toml(text, text_name)
        name = raw.get("protocol", {}).get("name", path.stem)
    config = resolve(raw, source=text_name)
    config["protocol"]["name"] = name
    return config


def resolve(raw: dict, source: str = "configuration") -> dict:
    """``raw`` checked against `SCHEMA` and completed with its defaults (a new dict).

    A ``subspace-convergence`` configuration is returned as given (its keys are its bundled file's).
    """
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"{source}: a configuration is a set of [sections] of keys")
    if raw.get("protocol", {}).get("kind", "continual") == "subspace-convergence":
        return copy.deepcopy(raw)
    config = copy.deepcopy(SCHEMA)
    for section, keys in raw.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]; expected one of {', '.join(SCHEMA)}")
        for key, value in keys.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"{source}: unknown key {section}.{key}; known keys of [{section}]: "
                                  f"{', '.join(SCHEMA[section])}")
            config[section][key] = _checked_value(section, key, value, SCHEMA[section][key], source)
    return config


#: ``[network]`` keys that take one value for every weight layer or a list of one per weight layer.
PER_LAYER_KEYS = ("synapse", "tau_syn", "tau_e", "tau_i", "E_e", "E_i", "delay")

#: ``[lateral]`` keys with one entry per weight layer (input layer first). A list shorter than the
#: network's weight layers repeats its last entry (the value of the hidden layers), so a deeper network
#: runs with the protocol's lists as they are.
LATERAL_PER_LAYER_KEYS = ("first_task", "per_task", "hebbian_rate", "spiking_hebbian_rate")


def _lateral_lists_per_layer(config: dict) -> dict:
    """``config`` (resolved, changed in place and returned) with every `LATERAL_PER_LAYER_KEYS` list shorter
    than ``len(network.hidden) + 1`` extended by repeating its last entry; longer lists stay (and are refused
    where the method meets the network). Applied once the overrides are in (`Experiment.from_config`), so
    the run file stores the lists the run used."""
    hidden = config.get("network", {}).get("hidden")
    if not isinstance(hidden, list) or "lateral" not in config:
        return config
    layers = len(hidden) + 1
    for key in LATERAL_PER_LAYER_KEYS:
        value = config["lateral"].get(key)
        if isinstance(value, list) and 0 < len(value) < layers:
            config["lateral"][key] = value + [value[-1]] * (layers - len(value))
    return config


def _accepts(section: str, key: str, default, value) -> bool:
    """Whether ``value`` may replace ``default`` (same kind; a per-layer key also takes a list of that kind)."""
    if section == "network" and key in PER_LAYER_KEYS and isinstance(value, list):
        return bool(value) and all(_same_kind(default, v) for v in value)
    return _same_kind(default, value)


def _per_layer_hint(section: str, key: str) -> str:
    return " or a list of one per weight layer" if section == "network" and key in PER_LAYER_KEYS else ""


def _same_kind(old, new) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, (int, float))
    if isinstance(old, list):
        return isinstance(new, list) and (all(_same_kind(old[0], v) for v in new) if old else True)
    return isinstance(new, type(old))


def _checked_value(section: str, key: str, value, default, source: str):
    if not _accepts(section, key, default, value):
        raise ConfigError(f"{source}: {section}.{key} = {json.dumps(value, default=str)}: expected a value like "
                          f"{json.dumps(default)}{_per_layer_hint(section, key)}")
    return float(value) if isinstance(default, float) else value


def _parse_value(text: str):
    """A TOML value (number, bool, list, quoted string, inline table) or, failing that, the bare text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """A copy of ``config`` with ``section.key=value`` overrides applied (each checked like a file's key)."""
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r} is not of the form section.key=value")
        if section not in config or name not in config[section] or (section, name) in (("protocol", "name"),
                                                                                        ("protocol", "kind")):
            known = sorted(f"{s}.{k}" for s, keys in config.items() for k in keys
                           if (s, k) not in (("protocol", "name"), ("protocol", "kind")))
            raise ConfigError(f"--set: unknown key {key.strip()!r}; known keys: {', '.join(known)}")
        old, new = config[section][name], _parse_value(text.strip())
        if section == "network" and name in PER_LAYER_KEYS and config["protocol"].get("kind") != "subspace-convergence":
            old = SCHEMA[section][name]          # one value or one per layer, whatever the file gave
        if not _accepts(section, name, old, new):
            raise ConfigError(f"--set {key.strip()}={text.strip()!r}: expected a value like {json.dumps(old)}"
                              f"{_per_layer_hint(section, name)}")
        config[section][name] = float(new) if isinstance(old, float) else new
    return config


def to_text(config: dict) -> str:
    """The resolved configuration as JSON text, stored in run files."""
    return json.dumps(config, indent=1, sort_keys=True)


# -- the typed experiment ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSettings:
    """``[data]``: which data set, how it is split and cut, and how it becomes spikes."""

    dataset: str
    test_size: int
    split_seed: int
    train_size: int
    encoder: str


@dataclass(frozen=True)
class TaskSettings:
    """``[tasks]``: how the data set becomes a task sequence."""

    builder: str
    identity_first: bool
    classes: tuple[tuple[int, ...], ...]
    heads: str


@dataclass(frozen=True)
class Experiment:
    """A continual-learning protocol, validated and typed; build it with `Experiment.from_config`.

    Attributes
    ----------
    name : str
    n_tasks, epochs, seed : int
    data : DataSettings
    tasks : TaskSettings
    network : NetworkSpec
        Without input/output sizes (they come from the tasks).
    lr, logit_scale : float
    target : str
        Brian2 code generation target.
    record_spikes : bool
    propagation : str
        ``sim.propagation``: weight layers and lateral circuits on one shared matrix (``"shared"``), as
        Brian2 synapses in every copy (``"brian2"``) or each where supported (``"auto"``); `SimNetwork`.
    threads : int
        ``sim.threads``: threads for one run's hot kernels (`sim.threaded`; results do not depend on it).
    record_states : StateRecording or None
        ``[record]``: state variables to record (None when ``record.variables`` is empty).
    config : dict
        The resolved configuration it was built from (stored in run files).
    """

    name: str
    n_tasks: int
    epochs: int
    seed: int
    data: DataSettings
    tasks: TaskSettings
    network: object
    lr: float
    logit_scale: float
    target: str
    record_spikes: bool
    config: dict
    record_states: object = None
    propagation: str = "auto"
    threads: int = 1

    @classmethod
    def from_config(cls, config: dict) -> "Experiment":
        """Check every value of a resolved configuration (see `resolve`) and build the specs.

        Raises
        ------
        ConfigError
            Naming the key, the value and what is expected.
        """
        config = _lateral_lists_per_layer(resolve(config))
        proto, data, tasks, learn, sim = (config[s] for s in ("protocol", "data", "tasks", "learning", "sim"))
        for key in ("tasks", "epochs"):
            if proto[key] < 1:
                raise ConfigError(f"protocol.{key} = {proto[key]} must be at least 1")
        if not 0 <= proto["seed"] < 2 ** 64:
            raise ConfigError(f"protocol.seed = {proto['seed']} must be between 0 and 2**64 - 1")
        for key in ("lr", "logit_scale"):
            if not (math.isfinite(learn[key]) and learn[key] > 0):
                raise ConfigError(f"learning.{key} = {learn[key]} must be a finite positive number")
        _one_of("sim.target", sim["target"], TARGETS)
        from hlopsim.sim.propagation import PROPAGATIONS, choose_propagation
        _one_of("sim.propagation", sim["propagation"], PROPAGATIONS)
        if sim["threads"] < 1:
            raise ConfigError(f"sim.threads = {sim['threads']} must be at least 1")
        _one_of("data.encoder", data["encoder"], ENCODERS)
        synapses = config["network"]["synapse"]
        for kind in synapses if isinstance(synapses, list) else [synapses]:
            _one_of("network.synapse", kind, SYNAPSES)
        _one_of("tasks.builder", tasks["builder"], BUILDERS)
        _one_of("tasks.heads", tasks["heads"], HEADS)
        _one_of("neuron.model", config["neuron"]["model"], NEURONS)
        _one_of("gpm.basis_sizes", config["gpm"]["basis_sizes"], BASIS_SIZES)
        _one_of("multitask.samples", config["multitask"]["samples"], MULTITASK_SAMPLES)
        if not 0.0 < config["gpm"]["threshold"] <= 1.0:
            raise ConfigError(f"gpm.threshold = {config['gpm']['threshold']} must be in (0, 1]")
        if data["train_size"] < 0:
            raise ConfigError(f"data.train_size = {data['train_size']} must be 0 (all) or positive")
        if data["test_size"] < 1:
            raise ConfigError(f"data.test_size = {data['test_size']} must be positive")
        classes = tasks["classes"]
        if not all(isinstance(group, list) and group and all(isinstance(c, int) and not isinstance(c, bool)
                                                             for c in group) for group in classes):
            raise ConfigError(f"tasks.classes = {classes}: expected a list of class groups like [[0, 1], [2, 3]]")
        if classes and tasks["builder"] != "split":
            raise ConfigError(f"tasks.classes = {classes} needs tasks.builder = 'split'")
        if classes and len(classes) != proto["tasks"]:
            raise ConfigError(f"tasks.classes names {len(classes)} tasks but protocol.tasks = {proto['tasks']}")
        if tasks["heads"] == "per-task" and tasks["builder"] != "split":
            raise ConfigError("tasks.heads = 'per-task' needs tasks.builder = 'split'")
        try:
            from hlopsim.models.from_config import lateral_spec, network_spec
            network = network_spec(config["network"], neuron=neuron_model(config))
            network = _with_kinetics(network, config["network"], data["encoder"])
            for layer in range(len(network.hidden) + 1):   # "shared" only for synapse models it simulates
                choose_propagation(sim["propagation"], network.synapse_for(layer), f"w_{layer + 1}")
            lateral = lateral_spec(_lateral_fields(config["lateral"]))
            _consolidation(config["lateral"])
            # A circuit needs a step of its clock in every presentation, and (graded) one in its plasticity window.
            section = config["lateral"]
            if lateral.dt > network.presentation:
                raise ConfigError(f"lateral.dt = {section['dt']!r} is longer than network.presentation = "
                                  f"{config['network']['presentation']!r}; expected at most one presentation")
            if lateral.neuron == "graded" and lateral.window < lateral.dt:
                raise ConfigError(f"lateral.window = {section['window']!r} is shorter than lateral.dt = "
                                  f"{section['dt']!r}: no plasticity step would fall in it; expected at least one "
                                  "lateral step")
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:
            raise ConfigError(str(err)) from None
        return cls(name=proto["name"], n_tasks=proto["tasks"], epochs=proto["epochs"], seed=proto["seed"],
                   data=DataSettings(data["dataset"], data["test_size"], data["split_seed"], data["train_size"],
                                     data["encoder"]),
                   tasks=TaskSettings(tasks["builder"], tasks["identity_first"],
                                      tuple(tuple(g) for g in classes), tasks["heads"]),
                   network=network, lr=float(learn["lr"]), logit_scale=float(learn["logit_scale"]),
                   target=sim["target"], record_spikes=sim["record_spikes"], config=config,
                   record_states=_record_states(config["record"]), propagation=sim["propagation"],
                   threads=sim["threads"])

    def method(self, name: str):
        """A fresh method object by name, with this protocol's settings."""
        from hlopsim.protocols.experiment.methods import (EWC, GPM, HLOP, METHODS, Finetune, HLOPReplay, Multitask,
                                                          Replay)
        if name not in METHODS:
            raise ConfigError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
        n_layers = len(self.network.hidden) + 1
        lateral = self.config["lateral"]
        per_class = self.config.get("replay", SCHEMA["replay"])["per_class"]
        if name in ("replay", "hlop+replay") and per_class < 0:
            raise ConfigError(f"replay.per_class = {per_class} must be a non-negative integer")
        if name == "ewc":
            ewc = self.config.get("ewc", SCHEMA["ewc"])
            if not (math.isfinite(ewc["strength"]) and ewc["strength"] >= 0):
                raise ConfigError(f"ewc.strength = {ewc['strength']} must be a finite number ≥ 0")
            if not 0.0 < ewc["decay"] <= 1.0:
                raise ConfigError(f"ewc.decay = {ewc['decay']} must be in (0, 1]")
            return EWC(strength=ewc["strength"], decay=ewc["decay"])
        if name == "replay":
            return Replay(per_class=per_class)
        if name == "multitask":
            return Multitask(samples=self.config.get("multitask", SCHEMA["multitask"])["samples"])
        if name in ("hlop", "hlop+replay"):
            if len(lateral["first_task"]) != n_layers:
                raise ConfigError(f"lateral.first_task = {lateral['first_task']} (and per_task, hebbian_rate) must "
                                  f"have one entry per weight layer: {n_layers} for network.hidden = "
                                  f"{list(self.network.hidden)}")
            if lateral["copies"] > self.network.batch_size:
                raise ConfigError(f"lateral.copies = {lateral['copies']} must not exceed network.batch_size = "
                                  f"{self.network.batch_size}")
            from hlopsim.models.from_config import lateral_spec
            try:
                spec = lateral_spec(_lateral_fields(lateral))
                if spec.neuron == "spiking":
                    from hlopsim.sim.spiking_lateral import check_spiking_settings
                    check_spiking_settings(spec, self.network.presentation, self.network.dt)
                from hlopsim.sim.shared_lateral import choose_lateral
                choose_lateral(self.propagation, spec)
            except ConfigError:
                raise
            except ValueError as err:
                raise ConfigError(str(err)) from None
            if name == "hlop+replay":
                return HLOPReplay(lateral=spec, consolidation_epochs=_consolidation(lateral), per_class=per_class)
            return HLOP(lateral=spec, consolidation_epochs=_consolidation(lateral))
        if name == "gpm":
            gpm, sizes = self.config["gpm"], None
            if gpm["basis_sizes"] == "lateral":
                sizes = (list(lateral["first_task"]), list(lateral["per_task"]))
                if not len(sizes[0]) == len(sizes[1]) == n_layers:
                    raise ConfigError(f"gpm.basis_sizes = 'lateral': lateral.first_task {sizes[0]} and "
                                      f"lateral.per_task {sizes[1]} must name all {n_layers} weight layers")
            return GPM(gpm["threshold"], sizes)
        return Finetune()

    def make_tasks(self, rng) -> list:
        """Load the data set and build the task sequence (``rng`` draws the permutations)."""
        from dataclasses import replace

        from hlopsim.data import load_dataset, permuted_tasks, split_tasks
        data = self.data
        try:
            # The named data sets are split here; IDX folders and .npz files keep their own split.
            options = {"test_size": data.test_size, "split_seed": data.split_seed} \
                if data.dataset in ("digits", "mnist-5k") else {}
            dataset = load_dataset(data.dataset, **options)
        except (ValueError, OSError) as err:
            raise ConfigError(f"data.dataset = {data.dataset!r}: {err}") from None
        if data.train_size > len(dataset.y_train):
            raise ConfigError(f"data.train_size = {data.train_size} must be between 0 (all) and "
                              f"{len(dataset.y_train)}")
        if data.train_size:
            dataset = replace(dataset, x_train=dataset.x_train[:data.train_size],
                              y_train=dataset.y_train[:data.train_size])
        if self.tasks.builder == "permuted":
            return permuted_tasks(dataset, self.n_tasks, rng, identity_first=self.tasks.identity_first)
        try:
            if self.tasks.classes:
                return split_tasks(dataset, classes=[list(g) for g in self.tasks.classes], heads=self.tasks.heads)
            return split_tasks(dataset, n_tasks=self.n_tasks, heads=self.tasks.heads)
        except ValueError as err:
            raise ConfigError(f"tasks: {err}") from None


def _record_states(section: dict):
    """``[record]`` as a `StateRecording`, or None when ``variables`` is empty (nothing recorded).

    ``stages`` and ``populations`` empty mean every stage and every hidden and output population.
    Variable names, populations and neuron indices are checked against the network when it is built
    (`StateRecording.plan`, before any file is written).
    """
    from hlopsim.models.recording import StateRecording
    if not section["variables"]:
        return None
    try:
        return StateRecording(variables=tuple(section["variables"]), neurons=tuple(section["neurons"]),
                              presentations=section["presentations"], phases=tuple(section["phases"]),
                              stages=tuple(section["stages"]) or None,
                              populations=tuple(section["populations"]) or None)
    except ValueError as err:
        raise ConfigError(str(err).replace("StateRecording: ", "record.", 1)) from None


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is unknown; expected one of {', '.join(map(repr, allowed))}")


def _lateral_fields(section: dict) -> dict:
    return {k: v for k, v in section.items() if k != "consolidation_epochs"}


def _consolidation(section: dict) -> int:
    value = section["consolidation_epochs"]
    if value < 0:
        raise ConfigError(f"lateral.consolidation_epochs = {value} must be a non-negative integer")
    return value


def _with_kinetics(network, section: dict, encoder: str):
    """``network`` with the ``[network]`` section's synapse models, ISI, reset and input dead time.

    ``synapse`` picks the model (`hlopsim.models.synapses`): ``"delta"`` takes ``delay``;
    ``"exp_current"`` also ``tau_syn``; ``"conductance"`` also ``tau_e``, ``tau_i``, ``E_e``, ``E_i``;
    the other models' keys are ignored. Each of these keys is one value for every weight layer or a
    list of one per weight layer (input → first hidden layer first), e.g. ``synapse = ["conductance",
    "conductance", "delta"]``. ``"refractory-poisson"`` input needs ``input_max_rate · input_dead_time ≤ 1``.
    """
    from dataclasses import fields, replace

    from brian2 import Hz, ms

    from hlopsim.models.quantities import parse_quantity
    from hlopsim.models.synapses import SYNAPSE_MODELS, compose, synapse_model
    n_layers = len(network.hidden) + 1
    lists = {key: section[key] for key in PER_LAYER_KEYS if isinstance(section[key], list)}
    for key, values in lists.items():
        if len(values) != n_layers:
            raise ConfigError(f"network.{key} = {json.dumps(values)} names {len(values)} layers; the network has "
                              f"{n_layers} weight layers (give one value, or one per weight layer)")

    def layer_value(key, layer):
        return section[key][layer] if key in lists else section[key]

    models = []
    for layer in range(n_layers):
        kind = layer_value("synapse", layer)   # the model's own fields say which keys it takes
        keys = [f.name for f in fields(SYNAPSE_MODELS[kind])]
        models.append(synapse_model(kind, **{key: layer_value(key, layer) for key in keys}))
    synapse = models[0] if not lists else tuple(models)
    network = replace(network, synapse=synapse, isi=section["isi"], reset=section["reset"],
                      input_dead_time=section["input_dead_time"])
    for model in models:   # a neuron a synapse cannot drive fails here, not at build time
        compose(network.neuron, model)
    if encoder == "refractory-poisson":
        rate = parse_quantity(section["input_max_rate"], Hz, name="network.input_max_rate")
        dead = parse_quantity(section["input_dead_time"], ms, name="network.input_dead_time")
        if float(rate * dead) > 1 + 1e-12:
            raise ConfigError(f"network.input_dead_time = {section['input_dead_time']!r} with network.input_max_rate = "
                              f"{section['input_max_rate']!r}: the refractory-poisson encoder needs rate × dead time ≤ 1")
    return network


def neuron_model(config: dict):
    """The `NeuronModel` of a resolved configuration's ``[neuron]`` section (``lif`` takes ``tau_m`` and
    ``v_threshold`` from ``[network]``)."""
    from hlopsim.models.neurons import NEURON_MODELS, NeuronModel, lif
    section = config["neuron"]
    model = section["model"]
    if model == "lif":
        return lif(**{"tau_m": config["network"]["tau_m"], "v_threshold": config["network"]["v_threshold"],
                      **section["parameters"]})
    if model != "custom":
        return NEURON_MODELS[model](**section["parameters"])
    missing = [k for k in ("equations", "threshold", "reset", "spike_cost") if not section[k]]
    if missing:
        raise ConfigError(f"neuron.model = 'custom' needs neuron.{', neuron.'.join(missing)}")
    options = {k: section[k] for k in ("refractory", "method") if section[k]}
    return NeuronModel(name=section["name"] or "custom", equations=section["equations"],
                       threshold=section["threshold"], reset=section["reset"], parameters=section["parameters"],
                       spike_cost=section["spike_cost"], initial=section["initial"], **options)
