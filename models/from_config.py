"""Build specs from the text values of a protocol configuration (units parsed here)."""
from __future__ import annotations

from brian2 import Hz, ms, mV

from models.lateral import LateralSpec
from models.network import NetworkSpec
from models.neurons import lif
from models.quantities import parse_quantity


def network_spec(section: dict, input_size: int, output_size: int) -> NetworkSpec:
    """A `NetworkSpec` from the ``[network]`` section of a protocol configuration."""
    neuron = lif(tau_m=section["tau_m"], v_threshold=section["v_threshold"])
    return NetworkSpec(
        input_size=input_size,
        hidden_sizes=tuple(section["hidden"]),
        output_size=output_size,
        neuron=neuron,
        dt=parse_quantity(section["dt"], ms, name="network.dt", positive=True),
        presentation=parse_quantity(section["presentation"], ms, name="network.presentation", positive=True),
        input_max_rate=parse_quantity(section["input_max_rate"], Hz, name="network.input_max_rate", positive=True),
        batch_size=section["batch_size"],
        init_gain=float(section["init_gain"]),
    )


def lateral_spec(section: dict) -> LateralSpec:
    """A `LateralSpec` from the ``[lateral]`` section of a protocol configuration."""
    # Keys added after the first run files were written; absent there (spec defaults).
    optional = {"projection": section["projection"]} if "projection" in section else {}
    if "rate_scale" in section:
        optional["rate_scale"] = parse_quantity(section["rate_scale"], Hz, name="lateral.rate_scale", positive=True)
    for key in ("decorrelate", "decorrelation_floor"):
        if key in section:
            optional[key] = section[key]
    if "trace_tau" in section:
        optional["trace_tau"] = parse_quantity(section["trace_tau"], ms, name="lateral.trace_tau", positive=True)
    # The spiking circuit is stable only at a lower η than the graded one (README), so a protocol
    # may hold one rate per circuit; "spiking_hebbian_rate" is used for neuron = "spiking" if present.
    rate_key = "spiking_hebbian_rate" if section.get("neuron") == "spiking" and "spiking_hebbian_rate" in section \
        else "hebbian_rate"
    return LateralSpec(
        first_task=tuple(section["first_task"]),
        per_task=tuple(section["per_task"]),
        hebbian_rate=tuple(parse_quantity(rate, Hz, name=f"lateral.{rate_key}", positive=True)
                           for rate in section[rate_key]),
        copies=section["copies"],
        dt=parse_quantity(section["dt"], ms, name="lateral.dt", positive=True),
        window=parse_quantity(section["window"], ms, name="lateral.window", positive=True),
        neuron=section["neuron"],
        **optional,
    )
