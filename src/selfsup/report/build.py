"""The report builder: a static HTML page with a run's curves, examples, embeddings and neighbours."""
from __future__ import annotations

import html
import json
from pathlib import Path

import torch

from selfsup.api import evaluation_split, random_subset, run_data
from selfsup.evaluate.features import extract_features
from selfsup.report.plots import (plot_confusion, plot_curves, plot_embedding, plot_examples, plot_neighbours,
                                  plot_retrieved_captions, read_metrics)
from selfsup.runs import RunFolder, load_run
from selfsup.utils import atomic_write_text
from selfsup.views.basic import to_float


def embedding_sections(method, splits, record: dict, run: RunFolder, n_embed: int) -> list[tuple[str, str]]:
    """The embeddings (PCA, coloured by class) of the run's held-out test set and their nearest neighbours;
    for unlabeled data, the neighbours among pool items and a sentence that says why there is no PCA."""
    source = record["data"].get("source", record["data"]["name"])
    held = evaluation_split(splits, source, run)
    if held.test is not None and getattr(held.test, "labels", None) is not None:
        sample, where = random_subset(held.test, n_embed, 0), f"the held-out test set ({held.rule})"
    else:
        sample, where = random_subset(held.rest, n_embed, 0), "pretraining items (the data has no test set)"
    features = extract_features(method, sample)
    sections = []
    if getattr(sample, "labels", None) is not None:
        plot_embedding(features, sample.labels, getattr(sample, "classes", []), run.path / "embedding.png",
                       title=f"{len(sample)} items of {where}: first two principal components")
        sections.append(("Embeddings", '<img src="embedding.png" alt="PCA of the embeddings">'))
    else:
        sections.append(("Embeddings", "<p>Not shown: the data has no labels to colour the embeddings by and no "
                         "held-out test set. Pretrain on labeled data (a folder with one subfolder per class, or an "
                         ".npz with labels) to see them; the nearest neighbours below need no labels.</p>"))
    if hasattr(sample, "images"):
        plot_neighbours(to_float(sample.images), features, run.path / "neighbours.png")
        sections.append(("Nearest neighbours in feature space",
                         f"<p>Among {len(sample)} items of {html.escape(where)}.</p>"
                         '<img src="neighbours.png" alt="nearest neighbours">'))
    return sections


def language_image_sections(method, splits, record: dict, run: RunFolder, queries: int = 8) -> list[tuple[str, str]]:
    """For a language-image run (CLIP): held-out images with their top-5 captions, and the zero-shot
    confusion matrices of the seen and the unseen categories."""
    from selfsup.evaluate.zero_shot import is_language_image, language_image_evaluation, top_captions
    held = evaluation_split(splits, record["data"].get("source", record["data"]["name"]), run)
    test = held.test if held.test is not None else held.rest
    if not is_language_image(method) or getattr(test, "captions", None) is None:
        return []
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:queries]
    plot_retrieved_captions(to_float(test.images[pick]), top_captions(method, test, pick), run.path / "retrieval.png")
    result = language_image_evaluation(method, test)
    r = result["retrieval"]
    sections = [("Retrieval: held-out images and their top-5 captions",
                 f"<p>Among the {r['n']} captions of {html.escape(held.rule if held.test is not None else 'the pool')}; "
                 f"the image's own caption is green. Recall: " + ", ".join(
                     f"{k} {100 * v:.1f}%" for k, v in r.items() if k != "n") + "</p>"
                 '<img src="retrieval.png" alt="images with their top-5 captions">')]
    for part, z in result["zero_shot"].items():
        name = f"zero_shot_{part}.png"
        plot_confusion(z["confusion"], z["classes"], run.path / name,
                       f"zero-shot, {part} categories: {100 * z['acc']:.1f}% on {z['n']} images "
                       f"(chance {100 * z['chance']:.1f}%)")
        sections.append((f"Zero-shot classification, {part} categories",
                         f'<img src="{name}" alt="zero-shot confusion matrix ({part})">'))
    return sections


def make_report(run_dir: str | Path, n_embed: int = 2000) -> Path:
    """Write report.html (and its PNGs) into the run folder; return its path."""
    run = RunFolder(run_dir)
    record = run.read_config()
    method = load_run(run.path)
    sections: list[tuple[str, str]] = []
    if plot_curves(read_metrics(run.metrics), run.path / "curves.png"):
        sections.append(("Training curves", '<img src="curves.png">'))
    splits = run_data(record["data"].get("source", record["data"]["name"]), run.path, method.modality, method.spec)
    pool = random_subset(splits.train, 256, 0)
    batch = pool.batch(torch.arange(min(len(pool), 64)))
    with torch.no_grad():
        examples = method.examples(batch)
    text = {k: v for k, v in examples.items() if isinstance(v, (str, list))}
    if plot_examples(examples, run.path / "examples.png"):
        sections.append(("What the pretext task sees and predicts", '<img src="examples.png">'))
    for name, value in text.items():
        body = value if isinstance(value, str) else "\n\n".join(map(str, value))
        sections.append((name, f"<pre>{html.escape(body)}</pre>"))
    if hasattr(method, "logits") and (run.path / "tokenizer.json").exists():  # a causal LM: show samples
        from selfsup.text.generate import generate_from_run
        samples = generate_from_run(run.path, samples=4)
        sections.append(("Generated samples (temperature 0.8, top-k 40)",
                         "".join(f"<pre>{html.escape(t)}</pre>" for t in samples)))
    sections += embedding_sections(method, splits, record, run, n_embed)
    sections += language_image_sections(method, splits, record, run)
    config = html.escape(json.dumps(record, indent=2))
    page = ["<!doctype html><meta charset='utf-8'>", f"<title>selfsup run {html.escape(run.path.name)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
            "pre{background:#f4f4f4;padding:1em;overflow:auto}</style>",
            f"<h1>{html.escape(record['method'])} — {html.escape(run.path.name)}</h1>"]
    final = record.get("final_metrics", {})
    if final:
        page.append("<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
                                        for k, v in sorted(final.items())) + "</table>")
    page += [f"<h2>{html.escape(title)}</h2>{body}" for title, body in sections]
    page.append(f"<h2>Configuration</h2><pre>{config}</pre>")
    out = run.path / "report.html"
    atomic_write_text(out, "\n".join(page))
    return out
