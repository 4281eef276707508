"""Noise-contrastive estimation: learn an unnormalised density by telling data from known noise.

Gutmann & Hyvarinen, "Noise-contrastive estimation: A new estimation principle for unnormalized
statistical models", AISTATS 2010. With T_d data points x, T_n noise points y drawn from a noise
density p_n, nu = T_n / T_d, and the model's log-density log p_m (its normaliser a learned parameter):

    G(u) = log p_m(u) - log p_n(u),        h(u) = sigmoid(G(u) - log nu)
    J = -1/T_d [ sum_t log h(x_t) + sum_t log(1 - h(y_t)) ]

Minimising J makes p_m match the data density, normaliser included.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError


def nce_loss(model_log_prob_data: Tensor, noise_log_prob_data: Tensor, model_log_prob_noise: Tensor,
             noise_log_prob_noise: Tensor) -> Tensor:
    """NCE objective J from log-densities at the data points (T_d,) and at the noise points.

    The noise tensors may be (T_n,) or (T_d, K) (K noise samples per data point, as in word2vec-style
    use); nu = T_n / T_d is read from their sizes.
    """
    if model_log_prob_data.shape != noise_log_prob_data.shape or model_log_prob_data.dim() != 1:
        raise SelfSupError("model and noise log-probabilities of the data must both be (T_d,), got "
                           f"{tuple(model_log_prob_data.shape)} and {tuple(noise_log_prob_data.shape)}")
    if model_log_prob_noise.shape != noise_log_prob_noise.shape or model_log_prob_noise.numel() == 0:
        raise SelfSupError("model and noise log-probabilities of the noise samples must have the same "
                           f"non-empty shape, got {tuple(model_log_prob_noise.shape)} and "
                           f"{tuple(noise_log_prob_noise.shape)}")
    log_nu = math.log(model_log_prob_noise.numel() / model_log_prob_data.numel())
    data_logit = model_log_prob_data - noise_log_prob_data - log_nu
    noise_logit = model_log_prob_noise - noise_log_prob_noise - log_nu
    # log h = logsigmoid(logit), log(1 - h) = logsigmoid(-logit): stable for large |logit|.
    total = F.logsigmoid(data_logit).sum() + F.logsigmoid(-noise_logit).sum()
    return -total / model_log_prob_data.numel()
