"""benchmarks/claims.py and selfsup.claims: verdicts from numbers, resumable items, the report from item files.
No pretraining here: item runners are replaced by fakes."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from selfsup.claims import (FAILS, HOLDS, NOISE, UNMEASURED, Check, Claim, Stat, beats, build_report, combine,
                            item_path, load_items, paired_difference, run_items, shrinking, stat, verdict)
from selfsup.errors import SelfSupError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    """benchmarks/claims.py, imported by path."""
    spec = importlib.util.spec_from_file_location("claims_script", ROOT / "benchmarks" / "claims.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


# --- verdicts ------------------------------------------------------------------------------------------
def test_stat_is_mean_and_sample_std():
    s = stat([0.80, 0.82, 0.84])
    assert s.mean == pytest.approx(0.82) and s.std == pytest.approx(0.02) and s.n == 3
    assert stat([0.5]) == Stat(0.5, 0.0, 1)


@pytest.mark.parametrize("better, worse, expected", [
    (Stat(0.85, 0.01, 3), Stat(0.80, 0.02, 3), HOLDS),  # +5 points, noise 2
    (Stat(0.80, 0.01, 3), Stat(0.85, 0.02, 3), FAILS),  # -5 points
    (Stat(0.81, 0.03, 3), Stat(0.80, 0.01, 3), NOISE),  # +1 point, larger std 3
    (Stat(0.79, 0.01, 3), Stat(0.80, 0.03, 3), NOISE),  # -1 point, larger std (the other side's) 3
    (Stat(0.75, 0.25, 3), Stat(0.50, 0.00, 3), HOLDS),  # a difference equal to the larger std is not noise
    (Stat(0.80, 0.00, 1), Stat(0.80, 0.00, 1), FAILS),  # a tie does not beat
])
def test_verdict_from_difference_of_means_and_larger_std(better, worse, expected):
    assert verdict(better, worse) == expected


def test_combined_verdict_needs_every_comparison_to_hold():
    assert combine([HOLDS, HOLDS]) == HOLDS
    assert combine([HOLDS, NOISE]) == NOISE
    assert combine([NOISE, FAILS, HOLDS]) == FAILS
    assert combine([]) == UNMEASURED


def test_monotonic_shrink_rule():
    a10, a100, a1000 = Stat(0.10, 0.01, 3), Stat(0.05, 0.01, 3), Stat(0.01, 0.01, 3)
    checks = shrinking(["10", "100", "1000"], [a10, a100, a1000])
    assert [c.verdict for c in checks] == [HOLDS, HOLDS] and combine(c.verdict for c in checks) == HOLDS
    grows = shrinking(["10", "100", "1000"], [a10, Stat(0.15, 0.01, 3), a1000])
    assert [c.verdict for c in grows] == [FAILS, HOLDS] and combine(c.verdict for c in grows) == FAILS
    flat = shrinking(["10", "100", "1000"], [a10, Stat(0.09, 0.02, 3), Stat(0.00, 0.01, 3)])
    assert combine(c.verdict for c in flat) == NOISE
    assert "advantage at 10 > advantage at 100" in checks[0].text


def test_paired_difference_pairs_seeds():
    scores = {"v": {0: {"a": 0.9, "b": 0.8}, 1: {"a": 0.7, "b": 0.6}, 2: {"a": 0.8}}}
    d = paired_difference(scores, ("v", "a"), ("v", "b"))  # seed 2 has no b: left out
    assert d.mean == pytest.approx(0.1) and d.std == pytest.approx(0.0) and d.n == 2


def shrink_scores(advantages: dict[str, list[float]]) -> dict:
    """Scores for claim (b): supervised 0.70 at every seed, fine-tuning better by the given advantage,
    the linear probe always below fine-tuning."""
    return {budget: {s: {"supervised": 0.70, "finetune": 0.70 + a, "linear": 0.60} for s, a in enumerate(adv)}
            for budget, adv in advantages.items()}


def test_claim_b_judges_the_paired_advantage_of_the_best_protocol(script, tmp_path):
    claim = script.make_claims(tmp_path)["b"]
    assert claim.variants == ["10", "100", "1000"]
    last = [0.0, 0.01, -0.01]
    shrinks = claim.judge(shrink_scores({"10": [0.10, 0.12, 0.11], "100": [0.05, 0.06, 0.04], "1000": last}))
    assert [c.verdict for c in shrinks] == [HOLDS, HOLDS]
    assert "finetune − supervised" in shrinks[0].text
    grows = claim.judge(shrink_scores({"10": [0.02, 0.03, 0.01], "100": [0.05, 0.06, 0.04], "1000": last}))
    assert combine(c.verdict for c in grows) == FAILS


def test_claim_a_compares_the_best_protocol_and_the_notebook_row_with_supervised(script, tmp_path):
    claim = script.make_claims(tmp_path)["a"]
    row = lambda nb, lin, ft, sup: {"notebook": nb, "linear": lin, "finetune": ft, "supervised": sup}
    scores = {"fashion-mnist": {s: row(0.78, 0.80 + e, 0.84 + e, 0.82 + e) for s, e in enumerate((0, 0.002, -0.002))},
              "mnist5k": {s: row(0.95, 0.90, 0.96, 0.94 + e) for s, e in enumerate((0, 0.001, -0.001))}}
    checks = {c.text: c.verdict for c in claim.judge(scores)}
    assert checks == {"fashion-mnist: best RotNet protocol (finetune) > supervised": HOLDS,
                      "fashion-mnist: notebook row > supervised": FAILS,
                      "mnist5k: best RotNet protocol (finetune) > supervised": HOLDS,
                      "mnist5k: notebook row > supervised": HOLDS}


# --- items and resume ----------------------------------------------------------------------------------
def fake_claim(calls: list, key: str = "x", fail: str | None = None) -> Claim:
    """Variant "good" scores 0.9 + seed/100, "bad" 0.5; variant `fail` raises a SelfSupError."""
    def run(variant: str, seed: int) -> dict:
        calls.append((variant, seed))
        if variant == fail:
            raise SelfSupError("no such option yet")
        return {"scores": {"linear": (0.9 + seed / 100) if variant == "good" else 0.5}, "details": {"seed": seed}}

    return Claim(key, "good beats bad", "a fake setting", ["good", "bad"], run,
                 lambda scores: [beats(scores, ("good", "linear"), ("bad", "linear"))])


def test_items_are_written_one_file_each_and_existing_ones_are_not_recomputed(tmp_path):
    calls = []
    claim = fake_claim(calls)
    written = run_items([claim], [0, 1], tmp_path, log=lambda _: None)
    assert calls == [("good", 0), ("bad", 0), ("good", 1), ("bad", 1)]  # seed by seed
    assert [p.name for p in written] == [f"x-{v}-seed{s}.json" for s in (0, 1) for v in ("good", "bad")]
    item = json.loads(item_path(tmp_path, "x", "good", 1).read_text())
    assert item["scores"] == {"linear": pytest.approx(0.91)} and item["seed"] == 1 and item["variant"] == "good"
    assert item["seconds"] >= 0 and len(item["load_average_before"]) == 3 and len(item["load_average_after"]) == 3
    calls.clear()
    run_items([claim], [0, 1, 2], tmp_path, log=lambda _: None)
    assert calls == [("good", 2), ("bad", 2)]  # only the missing seed


def test_a_file_present_before_the_run_is_kept_as_it_is(tmp_path):
    path = item_path(tmp_path, "x", "good", 0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"claim": "x", "variant": "good", "seed": 0, "quick": False, "scores": {"linear": 0.1},
                                "seconds": 1.0, "load_average_before": [0, 0, 0], "load_average_after": [0, 0, 0]}))
    calls = []
    run_items([fake_claim(calls)], [0], tmp_path, log=lambda _: None)
    assert calls == [("bad", 0)]
    assert json.loads(path.read_text())["scores"] == {"linear": 0.1}


def test_a_user_error_skips_that_item_only(tmp_path):
    calls, messages = [], []
    run_items([fake_claim(calls, fail="good")], [0], tmp_path, log=messages.append)
    assert not item_path(tmp_path, "x", "good", 0).exists() and item_path(tmp_path, "x", "bad", 0).exists()
    assert any("could not be measured: no such option yet" in m for m in messages)


def test_quick_and_full_items_do_not_mix(tmp_path):
    run_items([fake_claim([])], [0], tmp_path, quick=True, log=lambda _: None)
    with pytest.raises(SelfSupError, match="--quick"):
        run_items([fake_claim([])], [0], tmp_path, quick=False, log=lambda _: None)


# --- the report ------------------------------------------------------------------------------------------
def test_markdown_and_json_are_built_from_the_item_files(tmp_path):
    claim = fake_claim([])
    run_items([claim], [0, 1, 2], tmp_path, log=lambda _: None)
    report = build_report([claim, fake_claim([], key="y")], tmp_path, command="python benchmarks/claims.py")
    text = (tmp_path / "claims.md").read_text()
    assert text == report["markdown"]
    assert "| good | 91.00 ± 1.00 (n=3) |" in text and "| bad | 50.00 ± 0.00 (n=3) |" in text
    assert "**Verdict: holds** (1 of 1 comparisons hold)" in text
    assert "## (y) good beats bad" in text and f"**Verdict: {UNMEASURED}**" in text  # no items for y
    assert "| (x) good beats bad | holds |" in text
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert [c["verdict"] for c in saved["claims"]] == [HOLDS, UNMEASURED]
    assert len(saved["claims"][0]["seconds"]) == 6

    # the report follows the files: make "bad" better in its item files and rebuild
    for seed in range(3):
        path = item_path(tmp_path, "x", "bad", seed)
        item = json.loads(path.read_text())
        path.write_text(json.dumps(item | {"scores": {"linear": 0.99}}))
    rebuilt = build_report([claim], tmp_path)
    assert rebuilt["reports"][0]["verdict"] == FAILS
    assert "| bad | 99.00 ± 0.00 (n=3) |" in rebuilt["markdown"]


def test_fewer_than_three_seeds_is_flagged(tmp_path):
    run_items([fake_claim([])], [0], tmp_path, log=lambda _: None)
    text = build_report([fake_claim([])], tmp_path)["markdown"]
    assert "only 1 seed(s)" in text and "indicative only" in text


def test_check_line_states_both_sides_and_the_verdict():
    line = Check("a > b", Stat(0.85, 0.01, 3), Stat(0.80, 0.02, 3)).line()
    assert line == ("a > b: 85.00 ± 1.00 (n=3) vs 80.00 ± 2.00 (n=3), difference +5.00 points, larger std 2.00 "
                    "→ **holds**")


# --- the script, end to end with a fake pretraining ------------------------------------------------------
def test_script_runs_claim_e_with_fake_items_and_resumes(script, tmp_path, monkeypatch):
    calls = []

    def fake(method, seed, run_dir, b, epochs, data, protocols, upto=None, options=None):
        calls.append((method, seed, options["rotations"], upto, epochs))
        acc = {2: 0.70, 4: 0.80, 8: 0.75}[options["rotations"]] + seed / 1000
        return {"scores": {"linear": acc}, "details": {}}

    monkeypatch.setattr(script, "pretrain_and_probe", fake)
    monkeypatch.setattr(script, "fashion", lambda quick: (None, None))
    report = script.main(["--claims", "e", "--seeds", "0", "1", "2", "--out", str(tmp_path), "--quick"])
    assert sorted(p.name for p in (tmp_path / "claims").glob("*.json")) == sorted(
        f"e-rot{r}-seed{s}.json" for r in (2, 4, 8) for s in range(3))
    assert {c[2] for c in calls} == {2, 4, 8} and all(c[3] == "conv2" and c[4] == 1 for c in calls)
    by_key = {r["key"]: r for r in report["reports"]}
    assert by_key["e"]["verdict"] == HOLDS and by_key["a"]["verdict"] == UNMEASURED
    assert len(load_items(tmp_path)) == 9
    calls.clear()
    script.main(["--claims", "e", "--seeds", "0", "1", "2", "--out", str(tmp_path), "--quick"])
    assert calls == []  # all done already


def test_every_claim_has_a_statement_setting_and_three_seeds_by_default(script, tmp_path):
    claims = script.make_claims(tmp_path)
    assert list(claims) == ["a", "b", "c", "d", "e", "f"]
    for claim in claims.values():
        assert claim.statement and claim.setting and len(claim.variants) >= 2
    assert claims["d"].variants == ["mlp", "linear", "none"]
    assert claims["b"].variants == ["10", "100", "1000"]
