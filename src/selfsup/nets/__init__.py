"""Encoders (named blocks, registry) and heads."""
from selfsup.nets.base import BlockEncoder, freeze_upto, set_frozen_eval
from selfsup.nets.heads import mlp
from selfsup.nets.registry import ENCODERS, build_encoder

__all__ = ["BlockEncoder", "ENCODERS", "build_encoder", "freeze_upto", "mlp", "set_frozen_eval"]
