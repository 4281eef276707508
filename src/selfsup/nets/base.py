"""Encoders made of named blocks, so transfer can read features from, and freeze up to, any block."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from selfsup.errors import SelfSupError, unknown_name


class BlockEncoder(nn.Module):
    """An encoder whose `blocks` (an ordered ModuleDict) run in sequence, then `pool` makes a vector.

    `forward(x, upto=name)` stops after block `name`: the RotNet protocol reads features from
    intermediate blocks. Input: float images in [0, 1], (N, C, H, W). Output: (N, feature_dim(upto)).
    """

    blocks: nn.ModuleDict
    channels_last = False  # set by `use_channels_last()`: weights and inputs in NHWC memory layout

    def use_channels_last(self, enabled: bool = True) -> None:
        """Keep the conv weights, and convert each input, to the channels-last (NHWC) memory layout
        (or back to the default NCHW layout with `enabled=False`).

        On CPU (oneDNN) and on GPUs with tensor cores, convolutions, BatchNorm and max-pooling run
        faster in NHWC; the values are the same, only the layout differs. Checkpoints are unaffected
        (saved contiguous, copied back into the parameters' layout on load).
        """
        self.channels_last = enabled
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def pool(self, x: Tensor) -> Tensor:
        return x.flatten(1)

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks.keys())

    def check_block(self, name: str | None) -> None:
        if name is not None and name not in self.blocks:
            raise unknown_name("block", name, self.block_names)

    def forward(self, x: Tensor, upto: str | None = None) -> Tensor:
        return self.pool(self.feature_map(x, upto)[0])

    def feature_map(self, x: Tensor, upto: str | None = None) -> tuple[Tensor, str]:
        """The output of block `upto` (default: the last block), before pooling, and that block's name."""
        self.check_block(upto)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        for name, block in self.blocks.items():
            x = block(x)
            if name == upto:
                break
        return x, name

    def feature_dim(self, upto: str | None = None) -> int:
        return self._dims()[upto or self.block_names[-1]]

    def _dims(self) -> dict[str, int]:
        if not hasattr(self, "_dims_cache"):
            was_training = self.training
            self.eval()
            with torch.no_grad():
                x = torch.zeros(2, *self.input_shape)
                dims = {}
                for name, block in self.blocks.items():
                    x = block(x)
                    dims[name] = self.pool(x).shape[1]
            self.train(was_training)
            object.__setattr__(self, "_dims_cache", dims)
        return self._dims_cache


NORMALISATION_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def has_normalisation(module: nn.Module) -> bool:
    """Whether `module` holds a BatchNorm, InstanceNorm, LayerNorm or GroupNorm layer."""
    return any(isinstance(m, NORMALISATION_LAYERS) for m in module.modules())


def choose_memory_layout(model: nn.Module, device_type: str) -> None:
    """Channels-last for every convolutional block encoder in `model` when it trains on a GPU: cuDNN's
    tensor-core convolutions want NHWC (bf16 and tf32 alike). On CPU each keeps the layout it was built
    with (the ConvNet's channels-last is faster there in fp32; the ResNet's NCHW is kept as it was measured).

    Known CPU limitation, not a GPU one: under CPU bf16 autocast, oneDNN's bf16 weight gradient of a strided
    3x3 convolution on 1x1 maps (CPC's and patch location's small patches reach them) is now and then NaN,
    in either layout (torch 2.13); CPU bf16 is for testing, GPUs train in bf16.
    """
    if device_type != "cuda":
        return
    for module in model.modules():
        if isinstance(module, BlockEncoder) and any(isinstance(m, nn.Conv2d) for m in module.modules()):
            module.use_channels_last(True)


def freeze_upto(encoder: nn.Module, block: str | None) -> list[str]:
    """Freeze the parameters of every block up to and including `block`; return the frozen block names.

    Frozen blocks are also put in eval mode by `FrozenAwareTrain` users (BatchNorm statistics stay put).
    """
    if block is None:
        return []
    if not isinstance(encoder, BlockEncoder):
        raise SelfSupError(f"{type(encoder).__name__} has no named blocks to freeze")
    encoder.check_block(block)
    frozen = []
    for name, module in encoder.blocks.items():
        for p in module.parameters():
            p.requires_grad_(False)
        frozen.append(name)
        if name == block:
            break
    return frozen


def set_frozen_eval(encoder: nn.Module) -> None:
    """Put blocks with no trainable parameters in eval mode, so BatchNorm running stats stay frozen too."""
    if isinstance(encoder, BlockEncoder):
        for module in encoder.blocks.values():
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def spatial_maps(encoder: nn.Module, x: Tensor) -> Tensor:
    """The last block's feature map (N, C, h, w) of a block encoder, before its pooling.

    Unlike `BlockEncoder.feature_map` it leaves the input's memory layout alone, as the dense-prediction
    methods (colorization, split-brain) were trained, so that their numbers reproduce.
    """
    for block in encoder.blocks.values():
        x = block(x)
    return x
