"""How a configuration field is declared: once, with its default, its line of help, its allowed values and its role.

`Config` (config.py) and `SupervisedConfig` (supervised.py) are plain dataclasses whose fields are made by `knob`.
Everything that used to be written next to a field a second time is read from here: the command line's help and
choices, the range `validate_knobs` checks, and the role, which says what changing the field does to a run. The
rules that decide whether two configs describe "the same run" are derived from the roles (`changed_fields`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, Field
from typing import Any

# The roles a field can play. What a run's weights depend on cannot change once it has started; the rest can.
TRAINED = "trained"  # what the weights are trained from: data, model, objective, optimisation, views, seed, budget
LENGTH = "length"  # how many epochs or steps: a finished run continued for longer is the same run, extended
MACHINE = "machine"  # where and how the arithmetic runs: device, precision, workers, compilation, read-backs
MONITOR = "monitor"  # what is measured and saved along the way: evaluations, the online k-NN, checkpoints
PROBE = "probe"  # the linear probe that reads the trained encoder afterwards
ROLES = (TRAINED, LENGTH, MACHINE, MONITOR, PROBE)


def knob(default: Any, help: str, role: str = TRAINED, choices: tuple[str, ...] = (),
         at_least: float | None = None, above: float | None = None, at_most: float | None = None,
         below: float | None = None) -> Any:
    """A dataclass field with its help, role, allowed values (`choices`) and range: `at_least` or `above` a lower
    bound, `at_most` or `below` an upper one."""
    assert role in ROLES, role
    return dataclasses.field(default=default, metadata=dict(help=help, role=role, choices=choices, at_least=at_least,
                                                            above=above, at_most=at_most, below=below))


def shared(source: Field, default: Any = MISSING, help: str | None = None) -> Any:
    """The knob `source` (a field of another config) with another default or help: one declaration, two configs."""
    meta = dict(source.metadata)
    return dataclasses.field(default=source.default if default is MISSING else default,
                             metadata={**meta, "help": help or meta["help"]})


def knob_fields(config_class: type) -> dict[str, Field]:
    return {field.name: field for field in dataclasses.fields(config_class)}


def one_of(values: tuple[str, ...]) -> str:
    quoted = [repr(value) for value in values]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _range_error(value: float, meta: dict[str, Any]) -> str:
    """'' when `value` lies in the field's range, else what the range is."""
    low, high = meta.get("at_least"), meta.get("at_most")
    low_open, high_open = meta.get("above"), meta.get("below")
    inside = ((low is None or value >= low) and (low_open is None or value > low_open)
              and (high is None or value <= high) and (high_open is None or value < high_open))
    if inside:
        return ""
    lower = f"[{low:g}" if low is not None else f"({low_open:g}" if low_open is not None else ""
    upper = f"{high:g}]" if high is not None else f"{high_open:g})" if high_open is not None else ""
    if lower and upper:
        return f"must lie in {lower}, {upper}"
    if low == 0:
        return "must not be negative"
    if lower:
        return f"must be at least {low:g}" if low is not None else f"must be > {low_open:g}"
    return f"must be at most {high:g}" if high is not None else f"must be below {high_open:g}"


def validate_knobs(config: Any, what: str = "config") -> None:
    """Raise ValueError naming the first field outside its declared choices or range."""
    for field in dataclasses.fields(config):
        value, meta = getattr(config, field.name), field.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"{what} field {field.name}={value!r}: use {one_of(meta['choices'])}")
        if isinstance(value, (int, float)) and (problem := _range_error(value, meta)):
            raise ValueError(f"{what} field {field.name}={value!r} {problem}")


def names_with_role(config_class: type, *roles: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(config_class) if f.metadata["role"] in roles)


def changed_fields(config_class: type, saved: dict[str, Any], wanted: dict[str, Any],
                   may_change: frozenset[str]) -> list[str]:
    """The fields whose values differ between two configs of `config_class`, except those whose role is in
    `may_change`. A field that `saved` lacks (added since it was stored) counts with its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    saved = {**defaults, **saved}
    return [f.name for f in dataclasses.fields(config_class)
            if f.metadata["role"] not in may_change and saved.get(f.name) != wanted.get(f.name)]


def describe_changes(saved: dict[str, Any], wanted: dict[str, Any], names: list[str]) -> str:
    """'it was trained with width=8, this run asks for width=16' for the fields `names`."""
    was = ", ".join(f"{name}={saved.get(name)!r}" for name in names)
    now = ", ".join(f"{name}={wanted.get(name)!r}" for name in names)
    return f"it was trained with {was}, this run asks for {now}"
