"""Claims measured over seeds: resumable items, verdicts computed from the numbers, and their report.

A claim ("RotNet beats supervised on 1,000 labels") is measured as items, one per (variant, seed): a
variant is one side of the comparison (a method, an option, a label budget), a seed one independent
repetition (its own pool, label draw and initialisation). Each item's result is written to
`OUT/claims/CLAIM-VARIANT-seedS.json` as soon as it is done and skipped when that file exists, so a long
measurement can be stopped and resumed. The report (`OUT/claims.md`, `OUT/claims.json`) is rebuilt from
the item files alone.

The verdict of a comparison "A beats B" is computed, never written by hand: "within noise" when the
difference of the means is smaller than the larger of the two standard deviations (sample std over
seeds), else "holds" when A's mean is higher and "does not hold" when it is lower. A claim made of
several comparisons holds when all of them hold and does not hold as soon as one does not.
The experiments themselves live in `benchmarks/claims.py`.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

from selfsup.errors import SelfSupError
from selfsup.evaluate.sweep import mean_and_std
from selfsup.utils import atomic_write_text, load_average

HOLDS, FAILS, NOISE, UNMEASURED = "holds", "does not hold", "within noise", "not measured"
MIN_SEEDS = 3  # fewer seeds than this: the verdict is reported, marked as indicative only

# variant -> seed -> metric -> value (accuracies in [0, 1])
Scores = dict[str, dict[int, dict[str, float]]]


# --- statistics and verdicts -------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (0 for a single value) of one quantity over n seeds."""

    mean: float
    std: float
    n: int

    def text(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f} (n={self.n})"


def stat(values: Iterable[float]) -> Stat:
    values = list(values)
    if not values:
        raise MissingScores("no values")
    return Stat(*mean_and_std(values), len(values))


def verdict(better: Stat, worse: Stat) -> str:
    """Does `better` beat `worse`? 'within noise' when the difference of means is smaller than the larger
    std; otherwise 'holds' if `better`'s mean is higher, 'does not hold' if it is not."""
    difference = better.mean - worse.mean
    if abs(difference) < max(better.std, worse.std):
        return NOISE
    return HOLDS if difference > 0 else FAILS


def combine(verdicts: Iterable[str]) -> str:
    """One verdict for several comparisons: any 'not measured' or 'does not hold' wins (in that order),
    then 'within noise'; 'holds' only when every comparison holds."""
    verdicts = list(verdicts)
    if not verdicts or UNMEASURED in verdicts:
        return UNMEASURED
    if FAILS in verdicts:
        return FAILS
    return NOISE if NOISE in verdicts else HOLDS


@dataclass
class Check:
    """One comparison of a claim: `better` should beat `worse`."""

    text: str
    better: Stat
    worse: Stat
    verdict: str = ""

    def __post_init__(self) -> None:
        self.verdict = self.verdict or verdict(self.better, self.worse)

    def line(self) -> str:
        difference = 100 * (self.better.mean - self.worse.mean)
        noise = 100 * max(self.better.std, self.worse.std)
        return (f"{self.text}: {self.better.text()} vs {self.worse.text()}, difference {difference:+.2f} points, "
                f"larger std {noise:.2f} → **{self.verdict}**")


def shrinking(labels: list[str], stats: list[Stat], what: str = "advantage") -> list[Check]:
    """The monotonic-shrink rule: each quantity must be larger than the next one (labels[i] > labels[i+1]).
    One check per consecutive pair; the claim holds when all hold."""
    return [Check(f"{what} at {a} > {what} at {b}", sa, sb)
            for a, b, sa, sb in zip(labels, labels[1:], stats, stats[1:])]


# --- reading scores ----------------------------------------------------------------------------------
class MissingScores(KeyError):
    """A comparison needs a variant or metric that has no results (yet)."""


def values(scores: Scores, variant: str, metric: str) -> dict[int, float]:
    """{seed: value} of one variant's metric."""
    found = {seed: s[metric] for seed, s in scores.get(variant, {}).items() if metric in s}
    if not found:
        raise MissingScores(f"{variant} / {metric}")
    return found


def stat_of(scores: Scores, variant: str, metric: str) -> Stat:
    return stat(values(scores, variant, metric).values())


def paired_difference(scores: Scores, a: tuple[str, str], b: tuple[str, str]) -> Stat:
    """Mean and std over seeds of (a - b), each seed's a minus the same seed's b (seeds with both)."""
    va, vb = values(scores, *a), values(scores, *b)
    return stat(va[s] - vb[s] for s in sorted(va.keys() & vb.keys()))


def best_metric(scores: Scores, variant: str, metrics: Iterable[str]) -> str:
    """The metric (protocol) with the highest mean for `variant`, among those measured."""
    measured = {}
    for m in metrics:
        try:
            measured[m] = stat_of(scores, variant, m).mean
        except MissingScores:
            pass
    if not measured:
        raise MissingScores(f"{variant} / any of {list(metrics)}")
    return max(measured, key=measured.get)


def beats(scores: Scores, better: tuple[str, str], worse: tuple[str, str], text: str | None = None) -> Check:
    """Check that (variant, metric) `better` beats `worse`."""
    text = text or f"{better[0]} ({better[1]}) > {worse[0]} ({worse[1]})"
    return Check(text, stat_of(scores, *better), stat_of(scores, *worse))


# --- claims and their items ----------------------------------------------------------------------------
@dataclass
class Claim:
    """A claim and how to measure it.

    `run(variant, seed)` measures one item and returns {"scores": {metric: value}, ...any details};
    `judge(scores)` returns the comparisons that decide the claim.
    """

    key: str
    statement: str
    setting: str
    variants: list[str]
    run: Callable[[str, int], dict]
    judge: Callable[[Scores], list[Check]]
    metrics: list[str] = field(default_factory=list)  # the table's columns, in order (default: as found)


def item_path(out: Path, claim: str, variant: str, seed: int) -> Path:
    return Path(out) / "claims" / f"{claim}-{variant}-seed{seed}.json"


def measure_item(claim: Claim, variant: str, seed: int, quick: bool) -> dict:
    """Run one item and wrap its result with what identifies it, its wall time and the load around it."""
    load_before, t0 = load_average(), time.perf_counter()
    result = claim.run(variant, seed)
    return {"claim": claim.key, "variant": variant, "seed": seed, "quick": quick,
            "seconds": time.perf_counter() - t0, "load_average_before": load_before,
            "load_average_after": load_average(), "threads": torch.get_num_threads()} | result


def run_items(claims: Iterable[Claim], seeds: Iterable[int], out: Path, quick: bool = False,
              log: Callable[[str], None] = print) -> list[Path]:
    """Measure every (claim, seed, variant) whose item file is missing; return the files written.

    Items are run seed by seed, so every variant of a seed is done before the next seed starts and the
    comparisons fill in evenly. An item that fails with a SelfSupError (a problem the user can fix, such as a
    missing option) is reported and left unwritten; the others go on. An existing item made in the other
    mode (quick or not) is an error: the two must not be mixed in one report.
    """
    written = []
    for claim in claims:
        for seed in seeds:
            for variant in claim.variants:
                path = item_path(out, claim.key, variant, seed)
                if path.exists():
                    check_mode(path, quick)
                    log(f"({claim.key}) {variant}, seed {seed}: done already ({path})")
                    continue
                log(f"({claim.key}) {variant}, seed {seed}: measuring ...")
                try:
                    record = measure_item(claim, variant, seed, quick)
                except SelfSupError as e:  # e.g. an option the method does not have yet: the others go on
                    log(f"({claim.key}) {variant}, seed {seed}: could not be measured: {e}")
                    continue
                atomic_write_text(path, json.dumps(record, indent=2) + "\n")
                log(f"({claim.key}) {variant}, seed {seed}: {scores_text(record['scores'])} "
                    f"in {record['seconds']:.0f} s (load {record['load_average_before'][0]})")
                written.append(path)
    return written


def check_mode(path: Path, quick: bool) -> None:
    if json.loads(path.read_text()).get("quick", False) != quick:
        raise SelfSupError(f"{path} was made {'without' if quick else 'with'} --quick; quick and full results "
                           f"must not share a report: use another --out")


def scores_text(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.2f}" for k, v in scores.items())


def load_items(out: Path, quick: bool | None = None) -> list[dict]:
    """Every item file under OUT/claims (only those of the given mode when `quick` is not None)."""
    items = [json.loads(p.read_text()) for p in sorted((Path(out) / "claims").glob("*.json"))]
    return [i for i in items if quick is None or i.get("quick", False) == quick]


def scores_of(items: Iterable[dict], claim: str) -> Scores:
    scores: Scores = {}
    for item in items:
        if item["claim"] == claim:
            scores.setdefault(item["variant"], {})[item["seed"]] = item["scores"]
    return scores


# --- the report -------------------------------------------------------------------------------------------
def claim_report(claim: Claim, items: list[dict]) -> dict:
    """Table, comparisons and verdict of one claim, from its items."""
    own = [i for i in items if i["claim"] == claim.key]
    scores = scores_of(own, claim.key)
    metrics = claim.metrics or list(dict.fromkeys(m for i in own for m in i["scores"]))
    table = [{"variant": v, "metric": m} | asdict(stat_of(scores, v, m))
             for v in claim.variants if v in scores for m in metrics
             if any(m in s for s in scores[v].values())]
    try:
        checks, missing = claim.judge(scores), ""
    except MissingScores as e:
        checks, missing = [], (f"no results for {e.args[0]}" if own else f"no items yet (--claims {claim.key})")
    result = combine(c.verdict for c in checks) if checks else UNMEASURED
    seeds = sorted({i["seed"] for i in own})
    fewest = min((row["n"] for row in table), default=0)
    return {"key": claim.key, "statement": claim.statement, "setting": claim.setting, "variants": claim.variants,
            "metrics": metrics, "table": table, "checks": [asdict(c) | {"line": c.line()} for c in checks],
            "verdict": result, "missing": missing, "seeds": seeds, "fewest_seeds": fewest,
            "seconds": [round(i["seconds"], 1) for i in own],
            "load_average_before": [i["load_average_before"][0] for i in own]}


def table_markdown(report: dict) -> str:
    metrics = report["metrics"]
    cells = {(r["variant"], r["metric"]): Stat(r["mean"], r["std"], r["n"]).text() for r in report["table"]}
    lines = ["| variant | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for v in report["variants"]:
        if any((v, m) in cells for m in metrics):
            lines.append(f"| {v} | " + " | ".join(cells.get((v, m), "—") for m in metrics) + " |")
    return "\n".join(lines)


def verdict_line(report: dict) -> str:
    if report["verdict"] == UNMEASURED:
        why = f" ({report['missing']})" if report["missing"] else ""
        return f"**Verdict: {UNMEASURED}**{why}"
    caveat = (f" (only {report['fewest_seeds']} seed(s) for some variant; the claims need at least {MIN_SEEDS}: "
              f"indicative only)") if report["fewest_seeds"] < MIN_SEEDS else ""
    n = len(report["checks"])
    held = sum(c["verdict"] == HOLDS for c in report["checks"])
    return f"**Verdict: {report['verdict']}** ({held} of {n} comparisons hold){caveat}"


def section_markdown(report: dict) -> str:
    lines = [f"## ({report['key']}) {report['statement']}", "", f"Setting: {report['setting']}", ""]
    if report["table"]:
        lines += ["Test accuracy (%), mean ± sample std over seeds:", "", table_markdown(report), ""]
    lines += [f"- {c['line']}" for c in report["checks"]]
    lines += ["", verdict_line(report), ""]
    if report["seconds"]:
        loads = report["load_average_before"]
        lines += [f"Items: {len(report['seconds'])} (seeds {', '.join(map(str, report['seeds']))}); wall per item "
                  f"{min(report['seconds']):.0f}–{max(report['seconds']):.0f} s; 1-minute load average before "
                  f"each item {min(loads):.2f}–{max(loads):.2f}.", ""]
    return "\n".join(lines)


RULE = ("Each verdict is computed from the numbers: a comparison \"A beats B\" **holds** when A's mean is higher "
        "by at least the larger of the two standard deviations, is **within noise** when the difference of means "
        "is smaller than that, and **does not hold** when A's mean is lower by at least that much. A claim "
        "holds when all its comparisons hold, and does not hold as soon as one does not.")


def build_report(claims: Iterable[Claim], out: Path, quick: bool = False, command: str = "") -> dict:
    """Rebuild OUT/claims.md and OUT/claims.json from the item files of every claim."""
    out = Path(out)
    items = load_items(out, quick)
    reports = [claim_report(c, items) for c in claims]
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "quick": quick, "items": len(items), "command": command}
    head = ("# The lecture notes' claims, measured\n\n"
            + (f"Made by `{command}`. " if command else "")
            + f"{meta['cpus']} CPUs, torch {meta['torch']}"
            + (", QUICK SMOKE RUN: tiny budgets, not evidence. " if quick else ". ")
            + "Each seed is an independent repetition: its own pretraining pool draw, initialisation and label draw. "
            + RULE + "\n\n| claim | verdict |\n|---|---|\n"
            + "".join(f"| ({r['key']}) {r['statement']} | {r['verdict']} |\n" for r in reports) + "\n")
    text = head + "\n".join(section_markdown(r) for r in reports)
    atomic_write_text(out / "claims.md", text)
    atomic_write_text(out / "claims.json", json.dumps({"meta": meta, "claims": reports}, indent=2) + "\n")
    return {"reports": reports, "markdown": text}
