"""benchmarks/sequences.py: resumable per (method, seed) unit, and tables of mean ± sample std over seeds x draws."""
import importlib.util
import json
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    """benchmarks/sequences.py, imported by path."""
    spec = importlib.util.spec_from_file_location("sequences_script", ROOT / "benchmarks" / "sequences.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_rows(base: float, cfg: dict, protocols=("linear", "knn")) -> list[dict]:
    return [{"labels_per_class": b, "seed": d, "protocol": p, "acc": base + 0.01 * d}
            for b in cfg["budgets"] for d in range(cfg["draws"]) for p in protocols]


def fake_unit(name: str, seed: int, cfg: dict) -> dict:
    unit = {"pretrain": {"seconds": 1.0, "steps": 5, "batch_size": 16, "load_average": [0.1, 0.1, 0.1]},
            "rows": fake_rows(0.5 + 0.1 * seed, cfg), "random_init_rows": fake_rows(0.4, cfg)}
    if name == "temporal-order":
        unit["pretext"] = {"prior": 0.75, "acc": 0.8, "balanced_acc": 0.6}
    if name == "tracking-colorization":
        iou = {"iou": 0.5, "copy_first_iou": 0.3}
        unit |= {"tracking": {"previous": iou, "first": iou}, "tracking_random_init": iou}
    return unit


@pytest.fixture
def fake_work(bench, monkeypatch):
    """The benchmark with data, training and evaluation replaced by records of what was asked for."""
    calls = []
    monkeypatch.setattr(bench, "sprite_data", lambda cfg: {k: (None, None) for k in ("frames", "fashion")}
                        | {k: type("D", (), {"spec": None})() for k in ("gray_train", "color_train", "ego_train")})
    monkeypatch.setattr(bench, "pretrain_unit", lambda name, seed, data, cfg, weights:
                        calls.append((name, seed)) or fake_unit(name, seed, cfg))
    monkeypatch.setattr(bench, "block_unit", lambda name, seed, data, cfg, weights: calls.append(("blocks", name, seed))
                        or {"rows": [r | {"block": "conv2"} for r in fake_rows(0.55, cfg)],
                            "random_init_rows": [r | {"block": "conv1"} for r in fake_rows(0.45, cfg)]})
    monkeypatch.setattr(bench, "build_method", lambda name, spec: name)
    monkeypatch.setattr(bench, "supervised_rows", lambda method, pool, test, cfg: calls.append(("supervised", method))
                        or fake_rows(0.6, cfg, ("supervised",)))
    monkeypatch.setattr(bench, "seed0_figure", lambda data, weights, path: None)
    return calls


def test_a_rerun_skips_finished_units_and_fresh_starts_over(bench, fake_work, tmp_path):
    cfg = bench.QUICK
    bench.run(cfg, tmp_path, 1, fresh=False)
    units = len(bench.SEQUENCE_METHODS + bench.EGO_METHODS) * cfg["seeds"]
    assert sum(isinstance(c[1], int) for c in fake_work) == units
    results = json.loads((tmp_path / "sequences.json").read_text())
    del results["units"]["cpc-sequence/seed1"]  # as if cut off before this unit was written
    (tmp_path / "sequences.json").write_text(json.dumps(results))
    fake_work.clear()
    bench.run(cfg, tmp_path, 1, fresh=False)
    assert fake_work == [("cpc-sequence", 1)]
    fake_work.clear()
    bench.run(cfg, tmp_path, 1, fresh=True)
    assert sum(isinstance(c[1], int) for c in fake_work) == units


def test_a_result_of_another_configuration_is_not_resumed(bench, fake_work, tmp_path):
    bench.run(bench.QUICK, tmp_path, 1, fresh=False)
    with pytest.raises(SystemExit, match="--fresh"):
        bench.run(bench.QUICK | {"seeds": 3}, tmp_path, 1, fresh=False)


def test_tables_give_mean_and_sample_std_over_seeds_and_draws(bench, fake_work, tmp_path):
    cfg = bench.QUICK
    bench.run(cfg, tmp_path, 1, fresh=False)
    table = (tmp_path / "sequences.md").read_text()
    # temporal-order's linear@10 rows: seed s, draw d -> 0.5 + 0.1 s + 0.01 d
    values = [0.5 + 0.1 * s + 0.01 * d for s in range(cfg["seeds"]) for d in range(cfg["draws"])]
    expected = f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
    assert f"| temporal-order | {expected} |" in table
    assert f"n = {cfg['seeds'] * cfg['draws']}" in table
    # the block-chosen table: the same rows per seed (0.55 + 0.01 d), and how often each block was chosen
    values = [0.55 + 0.01 * d for s in range(cfg["seeds"]) for d in range(cfg["draws"])]
    per_protocol = cfg["seeds"] * cfg["draws"] * len(cfg["budgets"])
    assert (f"| temporal-order | {statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f} |" in table.split(
        "probing the block that does best on validation")[1])
    assert f"knn conv2 {per_protocol}, linear conv2 {per_protocol} |" in table
