"""One sweep and one summary for every table (images, text, the demo): sample standard deviation."""
import json
import statistics

import pytest

import selfsup.demo as demo
from selfsup.claims import stat
from selfsup.evaluate.sweep import budget_rows, mean_and_std, summarize, sweep
from selfsup.evaluate.text import summarize_rows


def test_summarize_gives_the_sample_std_on_a_hand_example():
    rows = [{"protocol": "linear", "labels_per_class": 10, "seed": s, "acc": a} for s, a in enumerate((0.5, 0.7, 0.9))]
    (s,) = summarize(rows)
    # mean 0.7; squared deviations 0.04 + 0 + 0.04 = 0.08; over n - 1 = 2: 0.04; its square root: 0.2
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.2) and s["n"] == 3
    assert s["std"] == statistics.stdev([0.5, 0.7, 0.9]) != statistics.pstdev([0.5, 0.7, 0.9])


def test_a_single_value_has_std_zero_and_every_summariser_agrees():
    assert mean_and_std([0.25]) == (0.25, 0.0)
    rows = [{"protocol": p, "labels_per_class": b, "seed": s, "acc": 0.1 * s + (b == "all") * 0.3 + (p == "bow") * 0.05}
            for p in ("bow", "linear_cls") for b in (2, "all") for s in (0, 1, 2)]
    shared = {(s["labels_per_class"], s["protocol"]): (s["mean"], s["std"]) for s in summarize(rows)}
    assert summarize_rows(rows) == shared  # the text benchmark's view of the same numbers
    values = [r["acc"] for r in rows if r["protocol"] == "bow" and r["labels_per_class"] == 2]
    claim = stat(values)
    assert (claim.mean, claim.std, claim.n) == (*shared[(2, "bow")], 3)


def test_sweep_runs_groups_then_seeds_and_hands_the_first_choice_on():
    calls = []

    def run_draw(budget, seed, chosen):
        calls.append((budget, seed, chosen))
        return budget_rows(budget, seed, {"linear": 0.5}, {"linear": {"lr": seed}}), {"linear": {"lr": seed}}

    rows = sweep((5, None), (3, 4), run_draw)
    assert calls == [(5, 3, None), (5, 4, {"linear": {"lr": 3}}), (None, 3, None), (None, 4, {"linear": {"lr": 3}})]
    assert [(r["labels_per_class"], r["seed"], r["params"]) for r in rows] == [
        (5, 3, {"lr": 3}), (5, 4, {"lr": 4}), ("all", 3, {"lr": 3}), ("all", 4, {"lr": 4})]
    assert "params" not in budget_rows(None, 0, {"bow": 1.0})[0]


def old_demo_table(runs):
    """The demo's own summariser before it used the shared one (kept here as the reference)."""
    table = []
    for data in dict.fromkeys(r["data"] for r in runs):
        rs = [r for r in runs if r["data"] == data]
        for key, label in demo.ROWS:
            vals = [r["acc"][key] for r in rs]
            table.append({"data": data, "protocol": key, "label": label, "mean": statistics.fmean(vals),
                          "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "seeds": len(vals)})
    return table


def test_demo_runs_settings_and_seeds_in_the_same_order_and_its_table_is_unchanged(monkeypatch, tmp_path):
    calls = []

    def run_setting(s, seed, out, progress, chosen):
        calls.append((s.data, seed, chosen))
        acc = {key: (13 * len(key) + ord(s.data) + 7 * seed) % 100 / 100 for key, _ in demo.ROWS}
        params = {"supervised_no_aug": {"lr": seed}}
        return {"data": s.data, "seed": seed, "pool": 1, "labeled": 1, "test": 1, "epochs": s.epochs,
                "acc": acc, "params": params}, params

    monkeypatch.setattr(demo, "run_setting", run_setting)
    settings = [demo.DemoSetting("a", None, 1, 1), demo.DemoSetting("b", None, 1, 1)]
    result = demo.run_demo(tmp_path, seeds=(0, 1, 2), settings=settings, progress=False)
    first = {"supervised_no_aug": {"lr": 0}}
    assert calls == [("a", 0, None), ("a", 1, first), ("a", 2, first), ("b", 0, None), ("b", 1, first), ("b", 2, first)]
    assert result["table"] == old_demo_table(result["runs"])
    assert [list(t) for t in result["table"]] == [list(t) for t in old_demo_table(result["runs"])]  # key order too
    one = demo.run_demo(tmp_path, seeds=(0,), settings=settings[:1], progress=False)
    assert one["table"] == old_demo_table(one["runs"])
    assert all(t["std"] == 0.0 and t["seeds"] == 1 for t in one["table"])  # one value: std 0.0


def test_demo_setting_runs_again_over_its_own_earlier_run_folders(monkeypatch, tmp_path):
    """A second `make demo` (or one after a stopped run) replaces the demo's run folders instead of refusing."""
    def stub_protocols(m, labeled, test, protocols, **kwargs):
        names = [p if p != "random_init" else "random_init_linear" for p in protocols]
        return {n: 0.5 for n in names}, {n: {"params": {"lr": 1e-3}} for n in names}

    monkeypatch.setattr(demo, "evaluate_protocols", stub_protocols)
    monkeypatch.setattr(demo, "finetune", lambda *a, **k: {"acc": 0.5})
    setting = demo.DemoSetting("mnist5k", 300, 2, 1)
    first, _ = demo.run_setting(setting, 0, tmp_path, False, None)
    folder = tmp_path / "runs" / "mnist5k-seed0"
    stamp = (folder / "config.json").stat().st_mtime_ns
    second, _ = demo.run_setting(setting, 0, tmp_path, False, None)
    assert json.loads((folder / "config.json").read_text())["status"] == "done"
    assert (folder / "config.json").stat().st_mtime_ns != stamp  # pretrained again, not skipped
    assert second["pool"] == first["pool"] == 300
