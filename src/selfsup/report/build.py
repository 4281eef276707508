"""The report builder: a static HTML page with a run's curves, what its pretext task sees, its evaluations
(label-efficiency curves against the baselines), its embeddings (PCA beside UMAP or t-SNE) and nearest
neighbours; and an index page that compares every run in a folder (`make_index`).

Every picture is a PNG beside the page, with a caption in the page's own text (readable at 100% zoom);
every link points at a file that exists. Pages are written atomically.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import torch

from selfsup.api import FEATURES_FOLDER, evaluation_split, random_subset, run_data
from selfsup.errors import SelfSupError
from selfsup.evaluate.budgets import frozen_features
from selfsup.evaluate.features import FeatureCache
from selfsup.evaluate.sweep import summarize
from selfsup.report.plots import (BASELINES, budget_order, plot_curves, plot_embeddings, plot_examples,
                                  plot_label_efficiency, plot_neighbours, plot_retrieved_captions,
                                  plot_confusion, plot_runs, read_metrics)
from selfsup.runs import RunFolder, load_run
from selfsup.utils import atomic_write_text
from selfsup.views.basic import to_float

STYLE = ("<style>body{font-family:sans-serif;font-size:16px;line-height:1.45;max-width:1150px;margin:2em auto;"
         "padding:0 1em}img{max-width:100%}figure{margin:1em 0}figcaption{font-size:15px;color:#333;margin-top:.3em}"
         "pre{background:#f4f4f4;padding:1em;overflow:auto;font-size:14px}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child,th:first-child"
         "{text-align:left}</style>")


def figure(src: str, alt: str, caption: str) -> str:
    """An image with its caption as page text (not baked into the picture), escaped."""
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def page(title: str, body: list[str]) -> str:
    return "\n".join(["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
                      "<link rel='icon' href='data:,'>",  # no favicon request, so no 404 in the console
                      f"<title>{html.escape(title)}</title>", STYLE, "</head><body>",
                      f"<h1>{html.escape(title)}</h1>", *body, "</body></html>"])


def default_projection() -> str:
    """"umap" when umap-learn imports, else "tsne" when scikit-learn does, else "none" (the PCA alone)."""
    for name, module in (("umap", "umap"), ("tsne", "sklearn.manifold")):
        try:
            __import__(module)
            return name
        except Exception:  # not installed, or (umap) numba broken on this machine
            continue
    return "none"


# --- evaluations -------------------------------------------------------------------------------------
def read_evaluations(run: Path) -> list[tuple[Path, dict]]:
    """(path, contents) of each evaluation file in RUN/evaluations/ that holds rows, oldest first."""
    found = []
    for path in sorted((run / "evaluations").glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # not an evaluation file (or a damaged one): the report says nothing about it
        if isinstance(record, dict) and record.get("rows"):
            found.append((path, record))
    return found


def evaluation_summary(record: dict) -> list[dict]:
    return record.get("summary") or summarize(record["rows"])


def label_efficiency_sections(run: Path) -> list[tuple[str, str]]:
    """For each evaluation of the run: its label-efficiency plot and table, captioned with the data, the
    test set, the number of seeds and what is missing (an unfinished evaluation, an absent baseline)."""
    sections = []
    for i, (path, record) in enumerate(read_evaluations(run)):
        summary = evaluation_summary(record)
        data = record.get("data") or record["settings"].get("data", "?")
        test = (f"{record['test_size']} held-out test items ({record.get('test_rule', '')})" if "test_size" in record
                else "the held-out test set")
        name = f"label_efficiency_{i}.png"
        plot_label_efficiency(summary, run / name, f"{Path(str(data)).name}: test accuracy against labels per class")
        protocols = {s["protocol"] for s in summary}
        text = any(p.startswith("linear_") or p in ("scratch", "bow") for p in protocols)
        missing = [b for b in (("scratch",) if text else ("supervised", "random_init_linear")) if b not in protocols]
        seeds = sorted({r["seed"] for r in record["rows"]})
        caption = (f"Accuracy on {test} of {data}, by labels per class drawn from the rest. Solid: the pretrained "
                   f"encoder; dashed: baselines (same architecture from random init trained on the same labels, "
                   f"and probes on the untrained encoder). Error bars: ± one sample standard deviation over "
                   f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}); with one seed there is no spread to show.")
        if missing:
            caption += f" Not run in this evaluation: {', '.join(missing)}."
        if not record.get("finished"):
            caption += " Unfinished: these are the draws written so far (run the same evaluate again to finish it)."
        rows = "".join(f"<tr><td>{html.escape(s['protocol'])}{' (baseline)' if s['protocol'] in BASELINES else ''}</td>"
                       f"<td>{html.escape(str(s['labels_per_class']))}</td><td>{100 * s['mean']:.2f}</td>"
                       f"<td>{'± %.2f' % (100 * s['std']) if s['n'] > 1 else '(1 seed)'}</td><td>{s['n']}</td></tr>"
                       for s in sorted(summary, key=lambda s: (budget_order(s["labels_per_class"]), s["protocol"])))
        table = ("<table><tr><th>protocol</th><th>labels/class</th><th>accuracy %</th><th>spread</th><th>seeds</th>"
                 f"</tr>{rows}</table><p>Rows: <code>{html.escape(str(path.relative_to(run)))}</code></p>")
        sections.append((f"Label efficiency ({html.escape(Path(str(data)).name)})",
                         figure(name, "label-efficiency curves", caption) + table))
    return sections


# --- embeddings --------------------------------------------------------------------------------------
def embedding_sections(method, splits, record: dict, run: RunFolder, n_embed: int,
                       projection: str | None = None) -> list[tuple[str, str]]:
    """The embeddings (PCA beside UMAP or t-SNE, coloured by class) of the run's held-out test set and their
    nearest neighbours; for unlabeled data, the neighbours among pool items and a sentence that says why
    there is no coloured embedding."""
    source = record["data"].get("source", record["data"]["name"])
    held = evaluation_split(splits, source, run)
    if held.test is not None and getattr(held.test, "labels", None) is not None:
        sample, where = random_subset(held.test, n_embed, 0), f"the held-out test set ({held.rule})"
    else:
        sample, where = random_subset(held.rest, n_embed, 0), "pretraining items (the data has no test set)"
    features = frozen_features(method, sample, cache=FeatureCache(run.path / FEATURES_FOLDER))
    projection = projection or default_projection()
    sections = []
    if getattr(sample, "labels", None) is not None:
        shown = ("pca",) if projection == "none" or len(sample) < 8 else ("pca", projection)
        plot_embeddings(features, sample.labels, getattr(sample, "classes", []), run.path / "embedding.png",
                        f"{len(sample)} items of {where}")
        caption = (f"The encoder's features of {len(sample)} items of {where}, coloured by class: left the first two "
                   f"principal components (linear, distances kept at large scale)"
                   + ("" if len(shown) == 1 else f"; right {projection.upper() if projection == 'umap' else 't-SNE'} "
                      "(non-linear, neighbourhoods kept, distances between clusters not meaningful)") + ".")
        sections.append(("Embeddings", figure("embedding.png", "embeddings, PCA and " + "/".join(shown), caption)))
    else:
        sections.append(("Embeddings", "<p>Not shown: the data has no labels to colour the embeddings by and no "
                         "held-out test set. Pretrain on labeled data (a folder with one subfolder per class, or an "
                         ".npz with labels) to see them; the nearest neighbours below need no labels.</p>"))
    if hasattr(sample, "images"):
        plot_neighbours(to_float(sample.images), features, run.path / "neighbours.png")
        sections.append(("Nearest neighbours in feature space",
                         f"<p>Among {len(sample)} items of {html.escape(where)}.</p>"
                         + figure("neighbours.png", "nearest neighbours",
                                  "Each row: a query (left), then its six nearest neighbours by cosine similarity of "
                                  "the encoder's features, nearest first.")))
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


def make_report(run_dir: str | Path, n_embed: int = 2000, projection: str | None = None) -> Path:
    """Write report.html (and its PNGs) into the run folder; return its path.

    `projection` beside the PCA: "umap", "tsne" or "none" (default: UMAP when umap-learn imports, else t-SNE).
    """
    run = RunFolder(run_dir)
    record = run.read_config()
    method = load_run(run.path)
    sections: list[tuple[str, str]] = []
    if plot_curves(read_metrics(run.metrics), run.path / "curves.png"):
        sections.append(("Training curves", figure("curves.png", "training curves",
                                                   "Logged metrics against the training step (metrics.csv).")))
    splits = run_data(record["data"].get("source", record["data"]["name"]), run.path, method.modality, method.spec)
    pool = random_subset(splits.train, 256, 0)
    batch = pool.batch(torch.arange(min(len(pool), 64)))
    with torch.no_grad():
        examples = method.examples(batch)
    text = {k: v for k, v in examples.items() if isinstance(v, (str, list))}
    if plot_examples(examples, run.path / "examples.png"):
        sections.append(("What the pretext task sees and predicts",
                         figure("examples.png", "pretext task examples",
                                f"Rows: what {record['method']} builds from a batch of pretraining items (its inputs, "
                                "targets and predictions); captions under the last row: the pseudo-labels and what "
                                "the network predicted.")))
    for name, value in text.items():
        body = value if isinstance(value, str) else "\n\n".join(map(str, value))
        sections.append((html.escape(name), f"<pre>{html.escape(body)}</pre>"))
    if hasattr(method, "logits") and (run.path / "tokenizer.json").exists():  # a causal LM: show samples
        from selfsup.text.generate import generate_from_run
        samples = generate_from_run(run.path, samples=4)
        sections.append(("Generated samples (temperature 0.8, top-k 40)",
                         "".join(f"<pre>{html.escape(t)}</pre>" for t in samples)))
    evaluations = label_efficiency_sections(run.path)
    sections += evaluations or [("Label efficiency", "<p>No evaluation yet: run <code>selfsup evaluate "
                                 f"{html.escape(str(run.path))}</code> (add <code>--labels-per-class 10 100 "
                                 "--seeds 0 1 2</code> for curves with spread), then this report again.</p>")]
    sections += embedding_sections(method, splits, record, run, n_embed, projection)
    sections += language_image_sections(method, splits, record, run)
    body = []
    final = record.get("final_metrics", {})
    if final:
        body.append("<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
                                        for k, v in sorted(final.items())) + "</table>")
    body += [f"<h2>{title}</h2>{content}" for title, content in sections]
    body.append(f"<h2>Configuration</h2><pre>{html.escape(json.dumps(record, indent=2))}</pre>")
    out = run.path / "report.html"
    atomic_write_text(out, page(f"{record['method']} — {run.path.name}", body))
    return out


# --- the index of a folder of runs ----------------------------------------------------------------------
def run_row(path: Path) -> dict:
    """What the index shows of one run folder (values None where not measured)."""
    record = json.loads((path / "config.json").read_text())
    final = record.get("final_metrics", {})
    row = {"name": path.name, "method": record.get("method", "?"),
           "data": Path(str(record.get("data", {}).get("name", "?"))).name,
           "epochs": record.get("epochs_done"), "status": record.get("status", "unknown"),
           "monitor_knn": final.get("monitor/knn_acc"), "monitor_linear": final.get("monitor/linear_acc"),
           "eval_linear": None, "eval_knn": None, "evaluation": "", "report": (path / "report.html").exists()}
    evaluations = read_evaluations(path)
    if evaluations:
        _, latest = evaluations[-1]
        summary = evaluation_summary(latest)
        largest = max((s["labels_per_class"] for s in summary), key=budget_order)
        at = {s["protocol"]: s for s in summary if s["labels_per_class"] == largest}
        row["eval_linear"] = (at.get("linear") or at.get("linear_mean") or at.get("linear_cls") or {}).get("mean")
        row["eval_knn"] = at.get("knn", {}).get("mean")
        row["evaluation"] = f"{largest} labels/class: " + ", ".join(
            f"{p} {100 * s['mean']:.1f}" + (f" ± {100 * s['std']:.1f}" if s["n"] > 1 else "") for p, s in at.items())
        if not latest.get("finished"):
            row["evaluation"] += " (unfinished)"
    return row


def make_index(folder: str | Path) -> Path:
    """Write FOLDER/index.html: one table row per run folder inside (method, data, epochs, monitored kNN and
    linear accuracy, the latest evaluation at its largest budget, status) and one comparison plot."""
    folder = Path(folder)
    runs = sorted(p for p in folder.iterdir() if (p / "config.json").is_file())
    if not runs:
        raise SelfSupError(f"{folder} holds no run folders (folders with a config.json): name a run folder, or the "
                           f"folder that holds them (e.g. runs/)")
    rows = []
    for path in runs:
        try:
            rows.append(run_row(path))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            rows.append({"name": path.name, "method": "?", "data": "?", "epochs": None, "evaluation": "",
                         "status": f"unreadable config.json ({type(e).__name__})", "report": False})
    pct = lambda v: "" if v is None else f"{100 * v:.1f}"
    table = ["<table><tr><th>run</th><th>method</th><th>data</th><th>epochs</th><th>monitor kNN %</th>"
             "<th>monitor linear %</th><th>evaluation (accuracy %, largest budget)</th><th>status</th></tr>"]
    for r in rows:
        name = html.escape(r["name"])
        link = f'<a href="{html.escape(r["name"])}/report.html">{name}</a>' if r["report"] else name
        table.append(f"<tr><td>{link}</td><td>{html.escape(r['method'])}</td><td>{html.escape(r['data'])}</td>"
                     f"<td>{'' if r['epochs'] is None else r['epochs']}</td><td>{pct(r.get('monitor_knn'))}</td>"
                     f"<td>{pct(r.get('monitor_linear'))}</td><td>{html.escape(r['evaluation'])}</td>"
                     f"<td>{html.escape(str(r['status']))}</td></tr>")
    table.append("</table>")
    body = [f"<p>{len(rows)} run(s) in <code>{html.escape(str(folder))}</code>. Monitor: the online kNN and linear "
            "probe watched during pretraining (on non-test items); evaluation: the latest <code>selfsup evaluate"
            "</code> of the run, on its held-out test set. Runs with a report link to it; "
            "<code>selfsup report RUN</code> makes one.</p>", "".join(table)]
    if plot_runs([r for r in rows if "monitor_knn" in r], folder / "index.png"):
        body.append(figure("index.png", "comparison of the runs",
                           "Accuracy of each run: the monitored kNN and linear probe at the end of pretraining, and "
                           "the evaluated probes at the largest label budget where an evaluation exists."))
    out = folder / "index.html"
    atomic_write_text(out, page(f"selfsup runs in {folder.name or folder}", body))
    return out
