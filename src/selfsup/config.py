"""Config dataclasses from the user's overrides: the one path that the CLI, the API and config files share.

The CLI gives overrides as text (`--set lr=0.01`, `--train-set epochs=3`), the API as keyword values
(`build_method(name, spec, lr=0.01)`, `pretrain(..., train={"epochs": 3})`), a `--config` file as JSON.
All of them pass `make_config`, which checks the names (a misspelt option raises the same SelfSupError,
naming the config and suggesting the nearest fields), the types (from the field annotations) and the
values (finite, in the range `RANGES` gives, one of `CHOICES`), before any data is read or any step run.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, TypeVar

from selfsup.errors import SelfSupError, unknown_name

C = TypeVar("C")


def check_option_names(config_cls: type, names: Iterable[str]) -> None:
    """Raise for the first (in sorted order) of `names` that is not a field of the dataclass `config_cls`."""
    known = sorted(f.name for f in dataclasses.fields(config_cls))
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise unknown_name(f"option of {config_cls.__qualname__}", unknown[0], known)


def make_config(config_cls: type[C], overrides: dict[str, Any]) -> C:
    """`config_cls(**overrides)` after checking every override's name, type and value (see `check_config`)."""
    check_option_names(config_cls, overrides)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    owner = config_cls.__qualname__
    config = config_cls(**{k: typed_value(fields[k], v, owner) for k, v in overrides.items()})
    check_config(config)
    return config


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
            return int(text) if "str" not in kind or text.lstrip("-").isdigit() else text  # devices: 2 or "auto"
        if kind.startswith("float"):
            return float(text)
        if kind.startswith(("tuple", "list", "dict")) or text[:1] in "[{":
            value = json.loads(text)
            return tuple(value) if kind.startswith("tuple") else value
        return text
    except (ValueError, json.JSONDecodeError) as e:
        raise SelfSupError(f"option {field.name}={text!r} of {owner}: {e}") from e


# --- values: types from the annotations, ranges and choices by field name -------------------------------------
class Rule(NamedTuple):
    ok: Callable[[float], bool]
    text: str


AT_LEAST_1 = Rule(lambda v: v >= 1, ">= 1")
POSITIVE = Rule(lambda v: v > 0, "> 0")
NON_NEGATIVE = Rule(lambda v: v >= 0, ">= 0")  # every number without a rule of its own
FRACTION = Rule(lambda v: 0 <= v <= 1, "in [0, 1]")
BELOW_1 = Rule(lambda v: 0 <= v < 1, "in [0, 1)")

RANGES: dict[str, Rule] = {
    **dict.fromkeys(["epochs", "batch_size", "num_nodes", "log_every_n_steps", "dim", "hidden", "hidden_dim",
                     "embed_dim", "projection_dim", "predictor_dim", "code_dim", "context_dim", "context_layers",
                     "decoder_dim", "decoder_depth", "decoder_heads", "decoder_width", "discriminator_width",
                     "tile_features", "patch", "patch_size", "patch_stride", "block_size", "block_count",
                     "permutations", "scale", "steps", "prediction_steps", "lightness_bins",
                     "neighbours", "output_stride", "max_gap"], AT_LEAST_1),
    **dict.fromkeys(["lr", "temperature", "sigma", "grid_size", "checkpoint_every_minutes"], POSITIVE),
    **dict.fromkeys(["base_tau", "key_momentum", "mask_prob", "mask_token_frac", "random_token_frac",
                     "central_fraction", "positive_fraction", "region_fraction", "rebalance", "dark_threshold",
                     "fill"], FRACTION),
    **dict.fromkeys(["momentum", "mask_ratio"], BELOW_1),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "adamw", "sgd"),
    "schedule": ("cosine", "constant"),
    "accelerator": ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "precision": ("32-true", "32", "64-true", "64", "16-mixed", "16-true", "16", "bf16-mixed", "bf16-true", "bf16",
                  "transformer-engine", "transformer-engine-float16"),
}
DEVICES = re.compile(r"^(auto|-1|\d+(,\d+)*,?)$")  # a count, "auto", -1 (all), or a list of device ids "0,1"


def bad_value(name: str, value: Any, owner: str, allowed: str) -> SelfSupError:
    return SelfSupError(f"option {name}={value!r} of {owner} is out of range: it must be {allowed}")


def typed_value(field: dataclasses.Field, value: Any, owner: str) -> Any:
    """`value` checked against the field's annotation (int, float, bool, str, tuple, dict, `| None`), with
    the conversions JSON needs (an int for a float, a list for a tuple); anything else raises."""
    kinds = [k.strip() for k in str(field.type).split("|")]
    if value is None:
        if "None" in kinds or field.name == "encoder_kwargs":  # MethodConfig reads None as "no extra arguments"
            return None
        raise bad_value(field.name, value, owner, f"a value of type {field.type}, not null")
    for kind in kinds:
        base = kind.split("[")[0]
        if base == "bool" and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue  # True is an int to Python, never to a user
        if base == "int" and isinstance(value, int):
            return value
        if base == "float" and isinstance(value, (int, float)):
            return float(value)
        if base == "str" and isinstance(value, str):
            return value
        if base == "dict" and isinstance(value, dict):
            return value
        if base in ("tuple", "list") and isinstance(value, (list, tuple)):
            return tuple(value) if base == "tuple" else list(value)
    raise bad_value(field.name, value, owner, f"of type {field.type}")


def check_number(name: str, value: Any, owner: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_value(name, value, owner, f"a finite number {RANGES.get(name, NON_NEGATIVE).text}")
    rule = RANGES.get(name, NON_NEGATIVE)
    if not rule.ok(value):
        raise bad_value(name, value, owner, rule.text)


def check_config(config: Any) -> None:
    """Raise for the first field of dataclass `config` whose value is out of range (see `RANGES`, `CHOICES`)."""
    owner = type(config).__qualname__
    for f in dataclasses.fields(config):
        name, value = f.name, getattr(config, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "devices":
            check_number(name, value, owner)
        elif name in CHOICES and value not in CHOICES[name]:
            raise bad_value(name, value, owner, f"one of {', '.join(CHOICES[name])}")
    if hasattr(config, "betas"):
        check_betas(config.betas, owner)
    if hasattr(config, "devices"):
        check_devices(config, owner)
    if hasattr(config, "encoder") and hasattr(config, "encoder_kwargs"):
        check_encoder_kwargs(config.encoder, config.encoder_kwargs or {}, owner)


def check_betas(betas: Any, owner: str) -> None:
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                  for b in betas):
        raise bad_value("betas", list(betas), owner, "two numbers in [0, 1), e.g. [0.9, 0.999]")


def check_devices(config: Any, owner: str) -> None:
    """Devices: a count >= 1, "auto" or a list of ids; a GPU accelerator needs a visible GPU."""
    devices = config.devices
    if isinstance(devices, int) and devices < 1 and devices != -1 or isinstance(devices, str) and not DEVICES.match(devices):
        raise bad_value("devices", devices, owner, 'a count >= 1, -1 (all), "auto" or a list of ids like "0,1"')
    if config.accelerator in ("gpu", "cuda"):
        import torch
        if not torch.cuda.is_available():
            raise SelfSupError(f"option accelerator={config.accelerator!r} of {owner}: no GPU is visible on this "
                               f"machine; use --accelerator cpu (or auto)")


def check_encoder_kwargs(encoder: str, kwargs: dict, owner: str) -> None:
    """Every key of `encoder_kwargs` must be an argument of the encoder (a misspelt one would be a TypeError
    deep inside the build, or silently ignored)."""
    from selfsup.nets.registry import ENCODERS
    cls = ENCODERS.get(encoder)  # an unknown encoder name raises here, with the known names
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = sorted(set(params) - {"self", "in_channels", "image_size"})
    for key in sorted(kwargs):
        if key not in known:
            raise unknown_name(f"encoder_kwargs key of encoder {encoder!r} ({owner})", key, known)


# --- the other checked inputs: config files and the arguments of pretrain and evaluate ---------------------------
CONFIG_FILE_KEYS = ("method", "method_config", "train", "spec", "data", "status", "epochs_done", "final_metrics",
                    "failure", "weights_sha256")


def read_config_file(path: str | Path) -> dict:
    """A `--config` JSON file (the shape of a run's config.json): a dict whose `method_config` and `train`
    sections are dicts; their keys and values are checked later by `make_config`."""
    path = Path(path)
    if not path.is_file():
        raise SelfSupError(f"--config {path}: no such file; give the path of a JSON file with method_config "
                           f"and train sections")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SelfSupError(f"--config {path} is not a text file ({e.reason}); give a JSON file") from e
    except json.JSONDecodeError as e:
        raise SelfSupError(f"--config {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from e
    if not isinstance(record, dict):
        raise SelfSupError(f"--config {path} must hold a JSON object with method_config and train sections, "
                           f"not a {type(record).__name__}")
    for key in record:
        if key not in CONFIG_FILE_KEYS:
            raise unknown_name(f"section of --config {path}", key, list(CONFIG_FILE_KEYS))
    for section in ("method_config", "train"):
        if not isinstance(record.get(section, {}), dict):
            raise SelfSupError(f"--config {path}: {section} must be a JSON object of option names and values, "
                               f"not a {type(record[section]).__name__}")
    return record


def check_count(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    """An integer argument (not an option of a Config): `value >= minimum`, or None where allowed."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SelfSupError(f"{name}={value!r} is out of range: it must be an integer >= {minimum}"
                           f"{' (or left out)' if allow_none else ''}")


def check_budgets(labels_per_class: Any, label_fraction: Any, seeds: Any) -> None:
    """Evaluation's label budgets and seeds: at least one budget and one seed, each in range."""
    if label_fraction is not None:
        if isinstance(label_fraction, bool) or not isinstance(label_fraction, (int, float)) \
                or not math.isfinite(label_fraction) or not 0 < label_fraction <= 1:
            raise SelfSupError(f"label_fraction={label_fraction!r} is out of range: it must be a number in (0, 1], "
                               f"e.g. 0.1 for 10% of the smallest class")
    else:
        if labels_per_class is None or isinstance(labels_per_class, (str, bytes)) or not list(labels_per_class):
            raise SelfSupError(f"labels_per_class={labels_per_class!r}: give at least one budget, e.g. [10, 100] "
                               f"(or a label_fraction)")
        for budget in labels_per_class:
            check_count("labels_per_class", budget, 1)
    if seeds is None or isinstance(seeds, (str, bytes)) or not list(seeds):
        raise SelfSupError(f"seeds={seeds!r}: give at least one seed, e.g. [0] or [0, 1, 2]")
    for seed in seeds:
        check_count("seeds", seed, 0)
