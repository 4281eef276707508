"""The method contract: a plain nn.Module that turns a raw batch into a loss, usable in any loop.

A method
- builds its own views or pseudo-labels from the raw batch, on the batch's device, in `loss(batch)`;
- exposes `encoder`, the part that transfers downstream: float images in [0, 1] (N, C, H, W) -> (N, D)
  (text and video methods document their own input), with `feature_dim`;
- may update momentum encoders or queues in `after_step(progress)`, progress in [0, 1];
- may show what its task sees and predicts in `examples(batch)`: named image tensors in [0, 1];
- may train several players in turn (GANs): set `phases` and implement `phase_parameters(phase)` and
  `phase_loss(batch, phase)`; the trainer then keeps one optimizer per phase and steps them in order.

No Lightning, file I/O or argument parsing here. Register with `@METHODS.register("name")`.

Method files import only this module and the shared layers (`nets`, `views`, `losses`, `data.base`), never
each other (tests/test_layering.py checks it). What several methods share as a whole is here, once:
- `TextMethod` (and `TextConfig`): a text Transformer encoder that sees whole documents downstream;
- `SentencePairMethod`, `MaskedSentencePairMethod`: BERT's pair classification (NSP, SOP), alone or with
  the masked LM on the same pair input;
- `AdversarialMethod`: a generator (encoder + decoder) and a discriminator trained in turn.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, Iterable

import torch
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError, unknown_name
from selfsup.losses.adversarial import discriminator_loss
from selfsup.losses.classification import cross_entropy_and_accuracy, masked_lm_loss
from selfsup.nets.heads import MLMHead, PairClassifier
from selfsup.nets.registry import build_encoder
from selfsup.nets.text_transformer import build_text_encoder
from selfsup.registry import Registry
from selfsup.views.basic import to_float
from selfsup.views.text import mask_tokens, single_text

METHODS: Registry = Registry("method", "selfsup.methods")


@dataclass
class MethodConfig:
    """Options every method shares; a method's own Config subclasses this and may change defaults."""

    encoder: str = "convnet"
    encoder_kwargs: dict = None  # extra keyword arguments for the encoder, e.g. {"batch_norm": True}
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD momentum
    betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW
    schedule: str = "cosine"  # cosine | constant (after linear warm-up)
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.encoder_kwargs is None:
            self.encoder_kwargs = {}


class Method(nn.Module):
    name: ClassVar[str] = "method"
    modality: ClassVar[str] = "image"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    phases: ClassVar[tuple[str, ...] | None] = None
    # What `selfsup pretrain NAME` and the benchmarks use when the user says nothing (scaled for 2 CPU cores).
    default_data: ClassVar[str] = "fashion-mnist"
    default_epochs: ClassVar[int] = 10
    default_batch_size: ClassVar[int] = 256

    encoder: nn.Module

    def __init__(self, config: MethodConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec

    # --- the contract -------------------------------------------------------------------------
    def loss(self, batch: Any) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """Called after each optimizer step; `progress` is the fraction of training done."""

    def examples(self, batch: Any) -> dict[str, Tensor]:
        return {}

    def phase_parameters(self, phase: str) -> Iterable[nn.Parameter]:
        raise NotImplementedError

    def phase_loss(self, batch: Any, phase: str) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError

    # --- shared helpers -----------------------------------------------------------------------
    def configured_encoder(self, in_channels: int | None = None) -> nn.Module:
        """The encoder named in the config, for this data's channels (or `in_channels`) and image size."""
        return build_encoder(self.config.encoder, in_channels=in_channels or self.spec.channels,
                             image_size=self.spec.height, **self.config.encoder_kwargs)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the single optimizer trains: parameters that require grad (momentum copies do not)."""
        return [p for p in self.parameters() if p.requires_grad]

    def encoder_input(self, batch: Any) -> Any:
        """What `encoder` takes, from a raw downstream batch (uint8 images -> floats in [0, 1]).

        Override when the encoder sees a transformed input (e.g. the L channel of Lab colour), so that
        linear probes, kNN and fine-tuning all feed the encoder the way pretraining did.
        """
        return to_float(batch)

    @torch.no_grad()
    def features(self, batch: Any, upto: str | None = None) -> Tensor:
        """Frozen features for evaluation from a raw batch."""
        x = self.encoder_input(batch)
        return self.encoder(x, upto=upto) if upto else self.encoder(x)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim()


def build_method(name: str, spec: DataSpec, **overrides: Any) -> Method:
    """Build a registered method for data described by `spec`, overriding config fields by name."""
    cls = METHODS.get(name)
    config = make_config(cls.Config, overrides)
    if cls.modality != spec.modality:
        raise SelfSupError(f"method {name!r} works on {cls.modality} data, but the data is {spec.modality}")
    return cls(config, spec)


def make_config(config_cls: type, overrides: dict[str, Any]) -> Any:
    known = {f.name for f in fields(config_cls)}
    unknown = set(overrides) - known
    if unknown:
        raise unknown_name(f"option for {config_cls.__qualname__}", sorted(unknown)[0], sorted(known))
    return config_cls(**overrides)


# --- text methods ----------------------------------------------------------------------------------
@dataclass
class TextConfig(MethodConfig):
    encoder: str = "text_encoder"  # bidirectional (BERT); the causal LM uses "text_decoder"
    optimizer: str = "adamw"
    lr: float = 1e-3  # BERT 1e-4 (110M parameters), GPT 2.5e-4 (117M); a ~0.4M-parameter model takes a larger step
    weight_decay: float = 0.01  # BERT and GPT
    warmup_epochs: float = 1.0  # BERT warms up for 10k of 1M steps, GPT for 2k; one short epoch here


@dataclass
class MaskedLMConfig(TextConfig):
    mask_prob: float = 0.15  # fraction of tokens chosen for prediction (BERT)
    mask_token_frac: float = 0.8  # of the chosen: replaced by [MASK]
    random_token_frac: float = 0.1  # of the chosen: replaced by a random subword (the rest stay unchanged)


class TextMethod(Method):
    """A method on tokenized text: the configured text Transformer, which sees whole documents downstream."""

    modality = "text"
    Config = TextConfig
    default_data = "fortunes"
    default_epochs = 20  # ~2k steps of 64 documents of 64 tokens (BERT: 1M steps of 256 x 512)
    default_batch_size = 64

    def __init__(self, config: TextConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = build_text_encoder(config.encoder, spec.vocab_size, spec.seq_len, **config.encoder_kwargs)

    def encoder_input(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return single_text(batch)


class SentencePairMethod(TextMethod):
    """Classify "[CLS] A [SEP] B [SEP]" pairs made from each document's two segments by `pair_task`
    (`views.text.nsp_pairs` or `sop_pairs`), with BERT's pooler and a 2-way classifier on [CLS]."""

    pair_task: ClassVar[Callable[..., tuple[dict[str, Tensor], Tensor]]]  # (segments, lengths, generator)

    def __init__(self, config: TextConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.pair_head = PairClassifier(self.encoder.dim)

    def make_pairs(self, batch: dict[str, Tensor],
                   generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
        return self.pair_task(batch["segments"], batch["segment_lengths"], generator)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        pairs, labels = self.make_pairs(batch)
        loss, accuracy = cross_entropy_and_accuracy(self.pair_head(self.encoder.hidden_states(pairs)), labels)
        return loss, {"pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """First 8 documents: the true pair label and the predicted one."""
        small = {k: v[:8] for k, v in batch.items()}
        pairs, labels = self.make_pairs(small)
        return {"pair_label": labels, "predicted": self.pair_head(self.encoder.hidden_states(pairs)).argmax(1)}


class MaskedSentencePairMethod(SentencePairMethod):
    """The pair task plus BERT's masked LM on the pair input itself (never on [CLS]/[SEP]/[PAD]): one
    forward pass feeds both heads, and the loss is the plain sum of the two cross-entropies."""

    Config = MaskedLMConfig

    def __init__(self, config: MaskedLMConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.mlm_head = MLMHead(self.encoder.dim, self.encoder.blocks["embed"].token)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        pairs, pair_labels = self.make_pairs(batch)
        c = self.config
        corrupted, token_labels = mask_tokens(pairs["input_ids"], self.spec.vocab_size, c.mask_prob,
                                              c.mask_token_frac, c.random_token_frac)
        hidden = self.encoder.hidden_states({**pairs, "input_ids": corrupted})
        mlm, mlm_acc = masked_lm_loss(self.mlm_head, hidden, token_labels)
        pair, pair_acc = cross_entropy_and_accuracy(self.pair_head(hidden), pair_labels)
        return mlm + pair, {"mlm_loss": mlm.detach(), "pair_loss": pair.detach(), "mlm_acc": mlm_acc,
                            "pretext_acc": pair_acc}


# --- adversarial methods ---------------------------------------------------------------------------
class AdversarialMethod(Method):
    """A generator (`encoder` + `decoder`, the encoder transfers) and a `discriminator`, trained in turn
    with one optimizer each, each phase updating only its own player's parameters.

    A subclass builds the three nets and gives `fakes(images)`, the generated images the discriminator
    judges, and `generator_loss(images)`, the generator's objective (its adversarial term through
    `losses.adversarial.fooling_loss`).
    """

    phases = ("discriminator", "generator")
    decoder: nn.Module
    discriminator: nn.Module

    def fakes(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def phase_parameters(self, phase: str) -> Iterable[nn.Parameter]:
        """Each player's own parameters: the discriminator's, or the generator's (encoder + decoder)."""
        if phase == "discriminator":
            return list(self.discriminator.parameters())
        if phase == "generator":
            return list(self.encoder.parameters()) + list(self.decoder.parameters())
        raise unknown_name("phase", phase, list(self.phases))

    def phase_loss(self, batch: Tensor, phase: str) -> tuple[Tensor, dict[str, Tensor]]:
        images = to_float(batch)
        if phase == "discriminator":
            with torch.no_grad():  # the generator's turn is later: no graph, no gradients for it
                fakes = self.fakes(images)
            loss = discriminator_loss(self.discriminator, images, fakes)
            return loss, {"d_loss": loss.detach()}
        if phase == "generator":
            return self.generator_loss(images)
        raise unknown_name("phase", phase, list(self.phases))

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The generator's objective (the part that trains the encoder); trainers that know `phases`
        call `phase_loss` instead, so that the discriminator learns too."""
        return self.generator_loss(to_float(batch))
