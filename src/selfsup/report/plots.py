"""Matplotlib pictures for run reports: curves, example grids, embeddings, nearest neighbours."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
from torch import Tensor


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def read_metrics(path: Path) -> dict[str, list[tuple[float, float]]]:
    """metrics.csv -> {name: [(step, value), ...]} for every non-empty cell."""
    series: dict[str, list[tuple[float, float]]] = {}
    if not path.exists():
        return series
    with open(path) as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if name not in ("epoch", "step") and value not in ("", None):
                    series.setdefault(name, []).append((float(row["step"]), float(value)))
    return series


def plot_curves(series: dict[str, list[tuple[float, float]]], path: Path) -> bool:
    names = [n for n in series if not n.endswith("_step") and n != "train/lr"]
    if not names:
        return False
    plt = _plt()
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps, values = zip(*series[name])
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _show(ax, image: Tensor) -> None:
    image = image.detach().float().clamp(0, 1).cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image[:3].permute(1, 2, 0))
    ax.set_xticks([])
    ax.set_yticks([])


def plot_examples(examples: dict[str, Tensor], path: Path, max_columns: int = 16) -> bool:
    """4-D tensors become rows of pictures; 1-D tensors captions under each column."""
    rows = {k: v for k, v in examples.items() if isinstance(v, Tensor) and v.dim() == 4}
    captions = {k: v for k, v in examples.items() if isinstance(v, Tensor) and v.dim() == 1}
    if not rows:
        return False
    plt = _plt()
    n = min(max_columns, max(len(v) for v in rows.values()))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.35 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            if c < len(images):
                _show(ax, images[c])
                if r == len(rows) - 1 and captions:
                    ax.set_xlabel("\n".join(f"{k[:10]}={v[c].item():g}" for k, v in captions.items() if c < len(v)),
                                  fontsize=5)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(name, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def pca_2d(features: Tensor) -> Tensor:
    x = features.float() - features.float().mean(0)
    _, _, v = torch.pca_lowrank(x, q=min(2, x.shape[1]), center=False)
    return x @ v[:, :2]


def plot_embedding(features: Tensor, labels: Tensor | None, classes: list[str], path: Path,
                   title: str = "embeddings, first two principal components") -> None:
    plt = _plt()
    xy = pca_2d(features)
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=None if labels is None else labels, cmap="tab10", s=4)
    if labels is not None and classes:
        handles = [plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=c) for i, c in enumerate(classes)]
        ax.legend(handles=handles, fontsize=6, loc="best")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_neighbours(images: Tensor, features: Tensor, path: Path, queries: int = 8, k: int = 6) -> None:
    """Each row: a query image, then its k nearest neighbours (cosine) among the other images."""
    plt = _plt()
    z = torch.nn.functional.normalize(features.float(), dim=1)
    sim = z[:queries] @ z.T
    sim[torch.arange(queries), torch.arange(queries)] = -2  # not itself
    neighbours = sim.topk(k, dim=1).indices
    fig, axes = plt.subplots(queries, k + 1, figsize=(1.1 * (k + 1), 1.1 * queries), squeeze=False)
    for q in range(queries):
        _show(axes[q][0], images[q])
        for j in range(k):
            _show(axes[q][j + 1], images[neighbours[q, j]])
    axes[0][0].set_title("query", fontsize=7)
    axes[0][1].set_title("nearest neighbours →", fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_retrieved_captions(images: Tensor, captions: list[list[tuple[str, float, bool]]], path: Path) -> None:
    """Each row: an image, then its top captions by cosine (its own caption marked with a check and in green)."""
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(9, 1.05 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 8]})
    for r in range(n):
        _show(axes[r][0], images[r])
        ax = axes[r][1]
        ax.axis("off")
        for j, (text, score, own) in enumerate(captions[r]):
            ax.text(0, 1 - (j + 0.5) / max(len(captions[r]), 1), f"{j + 1}. {score:+.2f}  {'✓ ' if own else ''}{text}",
                    fontsize=6.5, va="center", color="green" if own else "black", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    """A confusion matrix (rows: true class, columns: predicted), each row normalised to sum to 1."""
    plt = _plt()
    m = torch.tensor(matrix, dtype=torch.float32)
    m = m / m.sum(1, keepdim=True).clamp(min=1)
    size = min(14.0, 2.5 + 0.16 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    font = max(3.0, min(8.0, 300 / max(len(classes), 1)))
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=font)
    ax.set_yticks(range(len(classes)), classes, fontsize=font)
    ax.set_xlabel("predicted (zero-shot)")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- evaluation and comparison pictures --------------------------------------------------------------
BASELINES = ("supervised", "scratch", "random_init_linear", "random_init_knn", "bow")  # not the encoder


def budget_order(value) -> float:
    """Labels per class as a number for the x axis ("all" after every count)."""
    return float("inf") if value == "all" else float(value)


def plot_label_efficiency(summary: list[dict], path: Path, title: str) -> bool:
    """Accuracy against labels per class, one line per protocol with error bars of ± one sample std over
    seeds; the encoder's protocols solid, the baselines (supervised, random init, bag of words) dashed.
    "all" labels is drawn one step right of the largest budget. Returns False when there is nothing to draw."""
    if not summary:
        return False
    plt = _plt()
    budgets = sorted({s["labels_per_class"] for s in summary}, key=budget_order)
    x_of = {b: i for i, b in enumerate(budgets)}
    fig, ax = plt.subplots(figsize=(10, 4.6))
    for protocol in dict.fromkeys(s["protocol"] for s in summary):
        points = sorted((s for s in summary if s["protocol"] == protocol), key=lambda s: budget_order(s["labels_per_class"]))
        n = sorted({s["n"] for s in points})
        baseline = protocol in BASELINES
        ax.errorbar([x_of[s["labels_per_class"]] for s in points], [100 * s["mean"] for s in points],
                    yerr=[100 * s["std"] for s in points], marker="s" if baseline else "o", capsize=4,
                    ls="--" if baseline else "-", lw=1.6,
                    label=f"{protocol} ({'baseline' if baseline else 'encoder'}, n={'/'.join(map(str, n))} seeds)")
    ax.set_xticks(range(len(budgets)), [str(b) for b in budgets], fontsize=11)
    ax.set_xlabel("labels per class", fontsize=12)
    ax.set_ylabel("test accuracy (%)", fontsize=12)
    ax.tick_params(labelsize=11)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=12)
    ax.legend(fontsize=10, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the plot, never over a line
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def project_2d(features: Tensor, how: str, seed: int = 0) -> Tensor:
    """2-D coordinates of `features`: "pca" (torch), "umap" (umap-learn) or "tsne" (scikit-learn)."""
    if how == "pca":
        return pca_2d(features)
    x = features.float().numpy()
    if how == "umap":
        import umap
        reducer = umap.UMAP(n_neighbors=min(15, len(x) - 1), min_dist=0.1, random_state=seed, n_jobs=1)
    else:
        from sklearn.manifold import TSNE
        reducer = TSNE(perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed)
    return torch.as_tensor(reducer.fit_transform(x)).float()


def plot_embeddings(features: Tensor, labels: Tensor | None, classes: list[str], path: Path, what: str,
                    projections: tuple[str, ...] = ("pca", "umap")) -> None:
    """Side-by-side panels of the same items, one per projection, coloured by class when labels are known."""
    plt = _plt()
    names = {"pca": "PCA: first two principal components", "umap": "UMAP (umap-learn, 15 neighbours)",
             "tsne": "t-SNE (scikit-learn)"}
    fig, axes = plt.subplots(1, len(projections), figsize=(6.2 * len(projections), 5.6), squeeze=False)
    for ax, how in zip(axes[0], projections):
        xy = project_2d(features, how)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=None if labels is None else labels, cmap="tab10", s=6)
        ax.set_title(names[how], fontsize=12)
        ax.set_xticks([])
        ax.set_yticks([])
    if labels is not None and classes:
        handles = [plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=c) for i, c in enumerate(classes)]
        axes[0][-1].legend(handles=handles, fontsize=10, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(what, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_runs(rows: list[dict], path: Path) -> bool:
    """One horizontal bar group per run: monitored kNN and linear accuracy and the evaluated linear probe."""
    keys = [("monitor kNN", "monitor_knn"), ("monitor linear", "monitor_linear"), ("evaluated linear probe", "eval_linear"),
            ("evaluated kNN", "eval_knn")]
    keys = [(label, k) for label, k in keys if any(r.get(k) is not None for r in rows)]
    if not rows or not keys:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.45 * len(rows) * len(keys)))
    height = 0.8 / len(keys)
    for j, (label, key) in enumerate(keys):
        ax.barh([i + j * height for i in range(len(rows))], [100 * (r.get(key) or 0) for r in rows], height=height,
                label=label)
    ax.set_yticks([i + height * (len(keys) - 1) / 2 for i in range(len(rows))], [r["name"] for r in rows], fontsize=11)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (%)", fontsize=12)
    ax.tick_params(axis="x", labelsize=11)
    ax.legend(fontsize=10, loc="lower right")
    ax.set_title("runs in this folder (missing bars: not measured)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
