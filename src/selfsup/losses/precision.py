"""Float32 islands inside mixed-precision training.

Under `--precision bf16-mixed` (torch.autocast) matrix products run in bfloat16, which keeps about three
significant digits. That is plenty for convolutions, but not for logits divided by a small temperature
(an error of 0.004 in a cosine becomes 0.04 in a logit at t = 0.1, and more at DINO's 0.04), Sinkhorn's
exp(score / 0.05), or the statistics over the batch of Barlow Twins and VICReg. The functions decorated with
`float32` run with autocast off and their floating-point tensor arguments cast up to float32, so they compute
what they compute in full precision, whatever the precision of the network around them.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable[..., Any])
_LOW = (torch.float16, torch.bfloat16)


def to_float32(value: Any) -> Any:
    """A half or bfloat16 tensor as float32 (through lists and tuples of tensors); anything else unchanged."""
    if isinstance(value, Tensor):
        return value.float() if value.dtype in _LOW else value
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value


def _device_type(args: tuple, kwargs: dict) -> str:
    for value in (*args, *kwargs.values()):
        if isinstance(value, (list, tuple)) and value:
            value = value[0]
        if isinstance(value, Tensor):
            return value.device.type
    return "cpu"


def float32(fn: F) -> F:
    """Run `fn` with autocast off and its half/bfloat16 tensor arguments cast to float32 (a no-op in fp32)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(_device_type(args, kwargs), enabled=False):
            return fn(*to_float32(args), **{key: to_float32(value) for key, value in kwargs.items()})
    return wrapper  # type: ignore[return-value]
