"""Weighted k-nearest-neighbour classification on frozen features.

Wu, Xiong, Yu & Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", 2018:
cosine similarity, the k most similar training features vote for their class with weight
exp(similarity / temperature). The protocol of InstDisc, MoCo, SimCLR-style kNN monitors (k=200, T=0.07).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def knn_predict(train_x: Tensor, train_y: Tensor, test_x: Tensor, k: int = 200, temperature: float = 0.07,
                num_classes: int | None = None, chunk: int = 1024) -> Tensor:
    """Predicted class for each row of `test_x` (N_test,) by temperature-weighted kNN voting."""
    num_classes = num_classes or int(train_y.max()) + 1
    k = min(k, len(train_x))
    bank = F.normalize(train_x.float(), dim=1)
    predictions = []
    for queries in test_x.float().split(chunk):
        sim = F.normalize(queries, dim=1) @ bank.T  # (n, N_train) cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)  # (n, k)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(queries), num_classes, device=queries.device)
        votes.scatter_add_(1, train_y[top_idx], weights)  # sum the weights per class
        predictions.append(votes.argmax(1))
    return torch.cat(predictions)


def knn_classify(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int = 200,
                 temperature: float = 0.07) -> dict[str, float]:
    """kNN accuracy on (test_x, test_y) with (train_x, train_y) as the memory bank."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    predicted = knn_predict(train_x, train_y, test_x, k, temperature, num_classes)
    return {"acc": (predicted == test_y).float().mean().item(), "k": min(k, len(train_x))}
