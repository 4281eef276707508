"""Batched tensor transforms that make views and pseudo-labels on the batch's device."""
from selfsup.views.basic import to_float
from selfsup.views.geometry import four_rotations

__all__ = ["four_rotations", "to_float"]
