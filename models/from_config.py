"""Build specs from the plain values of a protocol file or of keyword arguments (units parsed here)."""
from __future__ import annotations

from brian2 import Hz, ms

from hlopsim.models.lateral import LateralSpec
from hlopsim.models.network import NetworkSpec
from hlopsim.models.neurons import NeuronModel, lif
from hlopsim.models.quantities import parse_quantity

# LateralSpec fields given as text with units, and their unit.
_LATERAL_UNITS = {"dt": ms, "window": ms, "rate_scale": Hz, "trace_tau": ms}
_LATERAL_PLAIN = ("copies", "neuron", "projection", "decorrelate", "decorrelation_floor", "subspace_neuron",
                  "growth", "residual_threshold", "protection", "protection_scale")


def lateral_spec(section: dict) -> LateralSpec:
    """A `LateralSpec` from a ``[lateral]`` section (or keyword values): quantities may be text ("5 ms").

    Keys of the section that are not circuit fields (``consolidation_epochs``, ``spiking_hebbian_rate``)
    are read here or by the method. The spiking circuit is stable only at a lower η than the graded
    one, so a section may hold one rate per circuit: ``spiking_hebbian_rate`` is used for
    ``neuron = "spiking"`` if present.
    """
    rate_key = "spiking_hebbian_rate" if section.get("neuron") == "spiking" and "spiking_hebbian_rate" in section \
        else "hebbian_rate"
    values = {"first_task": tuple(section["first_task"]), "per_task": tuple(section["per_task"]),
              "hebbian_rate": tuple(parse_quantity(rate, Hz, name=f"lateral.{rate_key}", positive=True)
                                    for rate in section[rate_key])}
    for key, unit in _LATERAL_UNITS.items():
        if key in section:
            values[key] = parse_quantity(section[key], unit, name=f"lateral.{key}", positive=True)
    for key in _LATERAL_PLAIN:
        if key in section:
            values[key] = section[key]
    unknown = set(section) - set(values) - {"hebbian_rate", "spiking_hebbian_rate", "consolidation_epochs"}
    if unknown:
        raise ValueError(f"unknown lateral setting(s) {sorted(unknown)}; expected among "
                         f"{sorted(['first_task', 'per_task', 'hebbian_rate', *_LATERAL_UNITS, *_LATERAL_PLAIN])}")
    return LateralSpec(**values)


def network_spec(section: dict, input_size: int | None = None, output_size: int | None = None,
                 neuron: NeuronModel | None = None) -> NetworkSpec:
    """A `NetworkSpec` from a ``[network]`` section; ``neuron`` defaults to the built-in `lif` with the
    section's ``tau_m`` and ``v_threshold``."""
    if neuron is None:
        neuron = lif(tau_m=section["tau_m"], v_threshold=section["v_threshold"])
    return NetworkSpec(hidden=tuple(section["hidden"]), neuron=neuron, dt=section["dt"],
                       presentation=section["presentation"], input_max_rate=section["input_max_rate"],
                       batch_size=section["batch_size"], init_gain=section["init_gain"],
                       input_size=input_size, output_size=output_size)
