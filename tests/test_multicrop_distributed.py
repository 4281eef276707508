"""Two CPU processes (gloo), each with half of a global batch, equal one process on the whole batch: DINO's
centre and SwAV's Sinkhorn codes use global-batch statistics (all_reduce), alone and inside the methods.

As in test_distributed.py, BatchNorm is replaced by Identity (per-process statistics legitimately differ and
SyncBatchNorm has no CPU kernel) and the crops are fixed tensors, so both runs see the same inputs. One
spawn runs all checks.
"""
from __future__ import annotations

from pathlib import Path

import torch

from conftest import GRAY_SPEC as SPEC, results_per_process, without_batchnorm
from selfsup.losses.clustering import sinkhorn_knopp
from selfsup.losses.distillation import updated_center
from selfsup.methods.base import build_method

WORLD = 2
GLOBAL_BATCH = 6
TINY = {"encoder_kwargs": {"widths": (4, 4, 4), "batch_norm": False}, "local_crops": 1}


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {"teacher": torch.randn(GLOBAL_BATCH, 5, generator=g), "scores": torch.randn(GLOBAL_BATCH, 4, generator=g).tanh(),
            "global": torch.rand(2, GLOBAL_BATCH, 1, 28, 28, generator=g),
            "local": torch.rand(GLOBAL_BATCH, 1, 12, 12, generator=g)}


def _run_all(shard: slice) -> dict:
    x = _inputs()
    crops = [x["global"][0][shard], x["global"][1][shard], x["local"][shard]]
    results = {"center": updated_center(torch.ones(1, 5), x["teacher"][shard], 0.9),
               "codes": sinkhorn_knopp(x["scores"][shard])}
    torch.manual_seed(0)
    dino = without_batchnorm(build_method("dino", SPEC, **TINY, hidden_dim=8, bottleneck_dim=4, out_dim=6))
    results["dino_loss"] = dino.loss_from_crops(crops)[0].detach()
    results["dino_center"] = dino.center.clone()
    torch.manual_seed(0)
    swav = without_batchnorm(build_method("swav", SPEC, **TINY, hidden_dim=8, dim=4, prototypes=3, queue_length=0))
    results["swav_loss"] = swav.loss_from_crops(crops)[0].detach()
    return results


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path: Path) -> None:
    ranks = results_per_process(_run_all, tmp_path, GLOBAL_BATCH, WORLD)
    single = _run_all(slice(0, GLOBAL_BATCH))
    per_rank = GLOBAL_BATCH // WORLD

    for r, result in enumerate(ranks):
        torch.testing.assert_close(result["center"], single["center"])  # the mean over both processes' rows
        torch.testing.assert_close(result["dino_center"], single["dino_center"])
        torch.testing.assert_close(result["codes"], single["codes"][r * per_rank:(r + 1) * per_rank])
    # Each rank's loss averages its own images; with codes and centre from the global batch, the mean over
    # ranks is the one-process loss (it would differ with per-process Sinkhorn sums).
    for name in ("dino_loss", "swav_loss"):
        torch.testing.assert_close(sum(r[name] for r in ranks) / WORLD, single[name], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(sinkhorn_knopp(_inputs()["scores"][:per_rank]), single["codes"][:per_rank])
