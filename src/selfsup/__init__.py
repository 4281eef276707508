"""selfsup: self-supervised pretraining and the evaluation protocols of the field.

Quick start:
    import selfsup
    result = selfsup.pretrain("rotation", data="fashion-mnist", epochs=5)
    report = selfsup.evaluate(result.method, data="fashion-mnist", labels_per_class=[10, 100])
    encoder, preprocess = selfsup.load_encoder(result.run_dir)   # take the encoder away

Lightning is imported only when training starts, so `import selfsup` and worker processes stay light.
"""
from selfsup.api import evaluate, load_run, pretrain, resume
from selfsup.errors import SelfSupError
from selfsup.export import embed, export, load_encoder
from selfsup.methods.base import METHODS, Method, MethodConfig, build_method

__version__ = "0.1.0"
__all__ = ["METHODS", "Method", "MethodConfig", "SelfSupError", "build_method", "embed", "evaluate", "export",
           "load_encoder", "load_run", "pretrain", "resume"]
