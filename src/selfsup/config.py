"""Config dataclasses from the user's overrides: the one path that the CLI and the API share.

The CLI gives overrides as text (`--set lr=0.01`, `--train-set epochs=3`), the API as keyword values
(`build_method(name, spec, lr=0.01)`, `pretrain(..., train={"epochs": 3})`). Both check the names here,
so a misspelt option raises the same SelfSupError, naming the config and suggesting the nearest fields.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, TypeVar

from selfsup.errors import SelfSupError, unknown_name

C = TypeVar("C")


def check_option_names(config_cls: type, names: Iterable[str]) -> None:
    """Raise for the first (in sorted order) of `names` that is not a field of the dataclass `config_cls`."""
    known = sorted(f.name for f in dataclasses.fields(config_cls))
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise unknown_name(f"option of {config_cls.__qualname__}", unknown[0], known)


def make_config(config_cls: type[C], overrides: dict[str, Any]) -> C:
    """`config_cls(**overrides)` after checking that every override names one of its fields."""
    check_option_names(config_cls, overrides)
    return config_cls(**overrides)


def parse_overrides(pairs: Iterable[str], config_cls: type) -> dict[str, Any]:
    """`["lr=0.01", "encoder=resnet18"]` -> typed values for fields of `config_cls` (`-` in a key reads as `_`)."""
    texts = dict(split_pair(pair) for pair in pairs)
    check_option_names(config_cls, texts)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    return {key: parse_value(fields[key], text, config_cls.__qualname__) for key, text in texts.items()}


def split_pair(pair: str) -> tuple[str, str]:
    if "=" not in pair:
        raise SelfSupError(f"--set takes KEY=VALUE, got {pair!r}")
    key, value = pair.split("=", 1)
    return key.replace("-", "_"), value


def parse_value(field: dataclasses.Field, text: str, owner: str) -> Any:
    """Convert `text` to the type of a dataclass field (int, float, bool, str, tuple, dict via JSON)."""
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            return text.lower() in ("true", "1", "yes")
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
        if kind.startswith(("tuple", "list", "dict")) or text[:1] in "[{":
            value = json.loads(text)
            return tuple(value) if kind.startswith("tuple") else value
        return text
    except (ValueError, json.JSONDecodeError) as e:
        raise SelfSupError(f"option {field.name}={text!r} of {owner}: {e}") from e
