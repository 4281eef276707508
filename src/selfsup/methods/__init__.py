"""Self-supervised methods, one file each; `METHODS.names()` lists them all."""
from selfsup.methods.base import METHODS, Method, MethodConfig, build_method

__all__ = ["METHODS", "Method", "MethodConfig", "build_method"]
