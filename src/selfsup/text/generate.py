"""Sampling text from a trained causal language model (the CLM method), for `selfsup generate`.

Autoregressive sampling as in GPT: the prompt's subwords after [CLS], then one token at a time from the
softmax of the last position's logits divided by `temperature`, restricted to the `top_k` most likely
ordinary subwords, until [SEP] or `max_new_tokens`. The context is cropped to the model's last
`seq_len` tokens (its learned positions stop there).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from selfsup.text.tokenizer import CLS_ID, NUM_SPECIAL, SEP_ID, decode, encode


def sample_next(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """(N,) token ids drawn from (N, V) logits; special tokens other than [SEP] are never drawn."""
    end = logits[:, SEP_ID].clone()  # [SEP] ends the text, so it stays drawable
    logits = logits.clone()
    logits[:, :NUM_SPECIAL] = float("-inf")
    logits[:, SEP_ID] = end
    if temperature <= 0:
        return logits.argmax(1)
    logits = logits / temperature
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[1]), dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate_ids(method: Any, prompt_ids: list[int], max_new_tokens: int = 40, temperature: float = 1.0,
                 top_k: int | None = 40, seed: int | None = 0) -> list[int]:
    """Token ids of the prompt plus the sampled continuation (without [CLS]/[SEP])."""
    was_training = method.training
    method.eval()
    device = next(method.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    seq_len = method.spec.seq_len
    ids = torch.tensor([[CLS_ID] + list(prompt_ids)], dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        context = ids[:, -seq_len:]
        logits = method.logits({"input_ids": context, "attention_mask": torch.ones_like(context, dtype=torch.bool)})
        token = sample_next(logits[:, -1], temperature, top_k, generator)
        if token.item() == SEP_ID:
            break
        ids = torch.cat([ids, token[:, None]], 1)
    method.train(was_training)
    return ids[0, 1:].tolist()


def generate(method: Any, tokenizer: Any, prompt: str = "", max_new_tokens: int = 40, temperature: float = 1.0,
             top_k: int | None = 40, seed: int | None = 0) -> str:
    """Text sampled from a CLM `method` (has `logits(x)`), continuing `prompt`, decoded with `tokenizer`."""
    prompt_ids = encode(tokenizer, [prompt])[0] if prompt else []
    return decode(tokenizer, generate_ids(method, prompt_ids, max_new_tokens, temperature, top_k, seed))


def generate_from_run(run_dir: str, prompt: str = "", max_new_tokens: int = 60, samples: int = 3,
                      temperature: float = 0.8, seed: int = 0, top_k: int | None = 40) -> list[str]:
    """`samples` texts from a CLM run folder (its weights and `tokenizer.json`); sample i uses seed + i."""
    from selfsup.errors import SelfSupError
    from selfsup.runs import load_run
    from selfsup.text.tokenizer import load_tokenizer

    method = load_run(run_dir)
    if not hasattr(method, "logits"):
        raise SelfSupError(f"{run_dir} holds a {method.name!r} run; text generation needs a causal LM (clm)")
    tokenizer = load_tokenizer(run_dir)
    return [generate(method, tokenizer, prompt, max_new_tokens, temperature, top_k, seed + i) for i in range(samples)]
