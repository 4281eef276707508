"""Benchmark of CLIP (issue 17, section 1) on colour emoji captioned with their Unicode names.

    .venv/bin/python benchmarks/clip.py            # the full run; writes benchmarks/results/clip.{json,md}
    .venv/bin/python benchmarks/clip.py --quick    # a smoke run (1 epoch, one label draw) into /tmp/clip-quick

Data: the built-in `emoji` source (`selfsup.data.pairs`): every fully-qualified emoji of Unicode 15.0's
emoji-test.txt (Debian unicode-data) except the components, drawn with Noto Color Emoji (Debian
fonts-noto-color-emoji) at 32x32 and captioned "an emoji of {name}, {subgroup}, {group}". Every fifth subgroup
is kept out of training entirely (its emoji are all test items); the other subgroups are split 80/20. Labels
for the probes are the 9 groups.

Pretraining: `selfsup.pretrain("clip", "emoji")` with the method's defaults (ConvNet image encoder, 2-layer
causal text Transformer, 64-d embeddings, AdamW 5e-4, weight decay 0.2, batch 256) for the stated number of
epochs, seed 0. Resumable: a run folder that exists is resumed (`selfsup.resume`) and an evaluation that was
written is reused (`selfsup.evaluate` resumes from its JSON).

Evaluation (`selfsup.evaluate` on the run's own held-out test split, which never entered pretraining):
- zero-shot classification from the prompt "an emoji of {subgroup}", no classifier trained: test images of
  subgroups seen in training among the seen subgroups, and test images of the held-out subgroups among those;
- image->text and text->image retrieval recall@1/5/10 over all held-out pairs;
- linear probe and kNN on the frozen image encoder at 10 and 50 labels per group, against the same encoder
  at random init and trained supervised from random init on the same labels. (100 labels per class, as for
  the other methods, is not possible here: the smallest group, activities, has 52 training emoji.)
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import selfsup
from selfsup.data.pairs import emoji
from selfsup.utils import atomic_write_text, load_average

FULL = {"epochs": 100, "batch_size": 256, "budgets": [10, 50], "seeds": [0, 1, 2],
        "protocols": ["linear", "knn", "supervised", "random_init"], "finetune": {}}
QUICK = {"epochs": 1, "batch_size": 256, "budgets": [10], "seeds": [0],
         "protocols": ["linear", "knn", "supervised", "random_init"],
         "finetune": {"epochs": 1, "min_steps": 5, "max_steps": 5}}
EXAMPLES = 4  # test images shown with their top-5 captions


def pretrain(cfg: dict, run_dir: Path) -> dict:
    t = time.perf_counter()
    if (run_dir / "config.json").exists():
        result = selfsup.resume(run_dir, epochs=cfg["epochs"])
    else:
        result = selfsup.pretrain("clip", "emoji", epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=0,
                                  run_dir=run_dir)
    return {"seconds_this_call": time.perf_counter() - t, "epochs": result.epochs,
            "images_per_s_last_epoch": result.images_per_s, "final": result.final}


def examples(run_dir: Path, test_pairs) -> list[dict]:
    from selfsup.evaluate.zero_shot import top_captions
    method = selfsup.load_run(run_dir)
    pick = torch.randperm(len(test_pairs), generator=torch.Generator().manual_seed(0))[:EXAMPLES]
    rows = top_captions(method, test_pairs, pick)
    return [{"caption": test_pairs.captions[i], "top5": [{"caption": c, "cosine": round(s, 3), "own": own}
                                                         for c, s, own in row]}
            for i, row in zip(pick.tolist(), rows)]


def base_name(caption: str) -> str:
    """The emoji's name without its skin-tone or gender qualifier: "an emoji of kiss: man, man, ..." -> "kiss"."""
    name = caption.removeprefix("an emoji of ")
    return name.split(":")[0] if ":" in name else name.split(",")[0]


@torch.no_grad()
def retrieval_by_novelty(run_dir: Path, splits) -> dict:
    """Image -> text recall@k over the whole held-out pool, reported apart for the test emoji whose base emoji
    has a variant (another skin tone, gender or pairing) among the training pairs and for the wholly new ones:
    the first can be matched by its base shape and colour words learned in training, the second cannot."""
    from selfsup.evaluate.zero_shot import image_embeddings, text_embeddings
    method, test = selfsup.load_run(run_dir), splits.test
    sim = image_embeddings(method, test) @ text_embeddings(method, test.captions).T
    rank = (sim >= sim.diagonal()[:, None]).sum(1) - 1  # ties count against the partner, as in `retrieval`
    trained = {base_name(c) for c in splits.train.captions}
    variant = torch.tensor([base_name(c) in trained for c in test.captions])
    return {part: {"n": int(keep.sum()), **{f"i2t_R@{k}": (rank[keep] < k).float().mean().item() for k in (1, 5, 10)}}
            for part, keep in (("variant of a training emoji", variant), ("new emoji", ~variant))}


def run(cfg: dict, out: Path, name: str) -> dict:
    t0 = time.perf_counter()
    load_before = load_average()
    run_dir = out / "clip_runs" / "runs" / name  # ignored by git (benchmarks/results/**/runs/)
    results = {"config": cfg, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "machine": platform.processor() or platform.machine(), "load_average_start": load_before}
    results["pretrain"] = pretrain(cfg, run_dir)
    earlier = out / f"{name}.json"
    if results["pretrain"]["images_per_s_last_epoch"] == 0 and earlier.exists():
        # nothing was left to train: keep the timing of the call that trained (this call only reloaded)
        results["pretrain"] = json.loads(earlier.read_text())["pretrain"] | {"reloaded": True}
    t = time.perf_counter()
    evaluation = selfsup.evaluate(run_dir, protocols=cfg["protocols"], labels_per_class=cfg["budgets"],
                                  seeds=cfg["seeds"], finetune_kwargs=cfg["finetune"] or None,
                                  progress=lambda line: print(line, flush=True))
    results["evaluate_seconds_this_call"] = time.perf_counter() - t
    results["summary"] = evaluation["summary"]
    results["language_image"] = evaluation["language_image"]
    results["test_size"] = evaluation["test_size"]
    splits = emoji()
    test = splits.test
    results["retrieval_by_novelty"] = retrieval_by_novelty(run_dir, splits)
    counts = torch.bincount(test.labels, minlength=len(test.classes))
    results["test_groups"] = dict(zip(test.classes, counts.tolist()))
    results["majority_rate"] = counts.max().item() / len(test)
    results["mode"] = name
    results["examples"] = examples(run_dir, test)
    results["load_average_end"] = load_average()
    results["wall_seconds_this_call"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out / f"{name}.md", markdown(results))
    return results


def markdown(r: dict) -> str:
    cfg, li, p = r["config"], r["language_image"], r["pretrain"]
    lines = [
        "# CLIP on colour emoji captioned with their Unicode names",
        "",
        *(["**Quick mode: a smoke run of the script (1 epoch, 5 supervised steps); its numbers say nothing about "
           "CLIP.**", ""] if r.get("mode") == "clip_quick" else []),
        f"Pretraining: {p['epochs']} epochs of batch {cfg['batch_size']} on the emoji training pairs (seed 0); "
        f"{p['images_per_s_last_epoch']:.0f} pairs/s in the last epoch. Test set: {r['test_size']} held-out pairs. "
        f"torch {r['torch']}, {r['threads']} threads; load average (1, 5, 15 min) {r['load_average_start']} at the "
        f"start, {r['load_average_end']} at the end (a busy machine runs slower; accuracies do not depend on it). "
        f"Wall time of this call: {r['wall_seconds_this_call']:.0f} s (pretraining {p['seconds_this_call']:.0f} s, "
        f"evaluation {r['evaluate_seconds_this_call']:.0f} s; a resumed call counts only what it ran).",
        "",
        "## Zero-shot classification (prompt \"an emoji of {subgroup}\", no classifier trained)",
        "",
        "| categories | test images | classes | accuracy | chance |",
        "|---|---|---|---|---|",
    ]
    for part, z in li["zero_shot"].items():
        lines.append(f"| {part} | {z['n']} | {len(z['classes'])} | {100 * z['acc']:.1f} % | {100 * z['chance']:.1f} % |")
    ret = li["retrieval"]
    lines += ["", f"## Retrieval over the {ret['n']} held-out pairs (recall in %)", "",
              "| direction | R@1 | R@5 | R@10 |", "|---|---|---|---|",
              "| image → text | " + " | ".join(f"{100 * ret[f'i2t_R@{k}']:.1f}" for k in (1, 5, 10)) + " |",
              "| text → image | " + " | ".join(f"{100 * ret[f't2i_R@{k}']:.1f}" for k in (1, 5, 10)) + " |",
              "", f"Chance R@1 is {100 / ret['n']:.2f} %. Image → text over the same pool, split by whether the "
              "test emoji's base emoji (its name before any skin-tone or gender qualifier) has a variant among the "
              "training pairs:", "", "| test emoji | n | R@1 | R@5 | R@10 |", "|---|---|---|---|---|",
              *(f"| {part} | {v['n']} | " + " | ".join(f"{100 * v[f'i2t_R@{k}']:.1f}" for k in (1, 5, 10)) + " |"
                for part, v in r["retrieval_by_novelty"].items()), "",
              "## Probes of the image encoder (9 emoji groups; accuracy in %, mean ± std over seeds "
              f"{cfg['seeds']})", "",
              f"The test set is unbalanced ({', '.join(f'{k} {v}' for k, v in r['test_groups'].items())}: skin-tone "
              f"variants make people & body the largest group), so always answering the largest group scores "
              f"{100 * r['majority_rate']:.1f} %; the label budgets are balanced.", "",
              "| protocol | labels/class | accuracy | n |", "|---|---|---|---|"]
    for row in r["summary"]:
        spread = f"± {100 * row['std']:.1f}" if row["n"] > 1 else "(1 seed)"
        lines.append(f"| {row['protocol']} | {row['labels_per_class']} | {100 * row['mean']:.1f} {spread} | {row['n']} |")
    lines += ["", "`random_init_*`: the same encoder untrained; `supervised`: the same encoder trained from random "
              "init on the same labels (tuned on a validation split of them).", "",
              "## Held-out images and their top-5 captions (✓ = the image's own caption)", ""]
    for e in r["examples"]:
        lines.append(f"- **{e['caption']}**")
        lines += [f"  {j + 1}. {'✓ ' if c['own'] else ''}{c['caption']} ({c['cosine']:+.2f})" for j, c in enumerate(e["top5"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch and one label draw, to check the script runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or (Path("/tmp/clip-quick") if args.quick else Path(__file__).parent / "results")
    name = "clip_quick" if args.quick else "clip"
    results = run(QUICK if args.quick else FULL, out, name)
    print(f"wrote {out}/{name}.json and {name}.md in {results['wall_seconds_this_call']:.0f} s")


if __name__ == "__main__":
    main()
