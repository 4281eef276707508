"""The report builder: a static HTML page with a run's curves, examples, embeddings and neighbours."""
from __future__ import annotations

import html
import json
from pathlib import Path

import torch

from selfsup.api import random_subset, run_data
from selfsup.evaluate.features import extract_features
from selfsup.report.plots import plot_curves, plot_embedding, plot_examples, plot_neighbours, read_metrics
from selfsup.runs import RunFolder, load_run
from selfsup.utils import atomic_write_text
from selfsup.views.basic import to_float


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
    evaluation = splits.test if splits.test is not None else splits.train
    if getattr(evaluation, "labels", None) is not None:
        sample = random_subset(evaluation, n_embed, 0)
        features = extract_features(method, sample)
        plot_embedding(features, sample.labels, getattr(sample, "classes", []), run.path / "embedding.png")
        sections.append(("Embeddings", '<img src="embedding.png">'))
        if hasattr(sample, "images"):
            plot_neighbours(to_float(sample.images), features, run.path / "neighbours.png")
            sections.append(("Nearest neighbours in feature space", '<img src="neighbours.png">'))
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
