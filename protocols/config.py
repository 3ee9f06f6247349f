"""Protocol configuration: bundled TOML files, ``--set key=value`` overrides, validation.

A configuration is a two-level dict ``{section: {key: value}}``. The bundled protocol file defines
every key that exists and the type of its value; an override must name an existing key and give a
value of that type. Values with units stay text here ("20 ms") and are parsed by ``models``.
"""
from __future__ import annotations

import copy
import json
import tomllib
from importlib import resources

PROTOCOLS = ("permuted-digits", "subspace-convergence")


class ConfigError(ValueError):
    """A bad protocol name, key or value; the message names it and what is expected."""


def load_protocol(name: str) -> dict:
    """The bundled configuration of protocol ``name``."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; expected one of {', '.join(PROTOCOLS)}")
    text = resources.files("protocols.bundled").joinpath(f"{name}.toml").read_text()
    config = tomllib.loads(text)
    config["protocol"]["name"] = name
    return config


def _parse_value(text: str):
    """A TOML value (number, bool, list, quoted string) or, failing that, the bare text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _same_kind(old, new) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, (int, float))
    if isinstance(old, list):
        return isinstance(new, list) and all(_same_kind(old[0], v) for v in new) if old else isinstance(new, list)
    return isinstance(new, type(old))


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """Return a copy of ``config`` with ``section.key=value`` overrides applied.

    Raises
    ------
    ConfigError
        For a malformed override, an unknown key, or a value of the wrong type.
    """
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r} is not of the form section.key=value")
        if section not in config or name not in config[section] or section == "protocol" and name == "name":
            known = sorted(f"{s}.{k}" for s, keys in config.items() for k in keys if (s, k) != ("protocol", "name"))
            raise ConfigError(f"--set: unknown key {key.strip()!r}; known keys: {', '.join(known)}")
        old, new = config[section][name], _parse_value(text.strip())
        if not _same_kind(old, new):
            raise ConfigError(f"--set {key.strip()}={text.strip()!r}: expected a value like {json.dumps(old)}")
        config[section][name] = float(new) if isinstance(old, float) else new
    return config


def to_text(config: dict) -> str:
    """The resolved configuration as JSON text, stored in run files."""
    return json.dumps(config, indent=1, sort_keys=True)
