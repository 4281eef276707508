"""The method table's bookkeeping: one baseline per way of feeding an encoder, equal compute budgets."""
import json

import pytest
import torch

from selfsup import bench
from selfsup.bench import BenchConfig, baseline_key, calibrate, epochs_within, typical_seconds
from selfsup.methods import build_method
from conftest import synthetic_images


def key_of(name, data, cfg=BenchConfig(), **options):
    torch.manual_seed(0)
    return baseline_key(build_method(name, data.spec, **options), data.batch(torch.arange(16)), cfg)


def test_methods_that_feed_the_same_encoder_alike_share_a_baseline():
    data = synthetic_images(n=32)
    assert key_of("simclr", data) == key_of("byol", data) == key_of("simsiam", data) == key_of("mocov2", data)


def test_every_change_to_the_encoder_or_its_input_gets_its_own_baseline():
    data = synthetic_images(n=32)
    rotation = key_of("rotation", data)
    # the same ConvNet, but super-resolution feeds it a down-and-up-sampled image
    assert key_of("super-resolution", data) != rotation
    assert key_of("jigsaw", data) != rotation  # tiles, each normalised per image
    assert key_of("rotation", data, encoder_kwargs={"widths": (64, 32, 32)}) != rotation  # another width
    assert key_of("simclr", data) != rotation  # BatchNorm, wider conv3
    assert key_of("rotation", data, cfg=BenchConfig(budgets=(10,))) != rotation  # other evaluation settings


def test_a_standardised_head_gets_its_own_baseline_and_a_raw_head_keeps_the_earlier_key(monkeypatch):
    data = synthetic_images(n=32)
    # RotNet's ConvNet has no BatchNorm: the default head ("auto") standardises its features; SimCLR's has BatchNorm
    rotation, simclr = key_of("rotation", data), key_of("simclr", data)
    monkeypatch.setattr(bench, "finetune_head", lambda encoder, kwargs: "raw")  # the keys as before head_norm
    assert key_of("rotation", data) != rotation
    assert key_of("simclr", data) == simclr  # so the rows measured before head_norm keep their baselines


def test_colour_methods_feed_the_lightness_channel():
    data = synthetic_images(n=32)
    rgb = data.__class__(data.images.repeat(1, 3, 1, 1), data.labels, data.classes)
    torch.manual_seed(0)
    colorization = build_method("colorization", rgb.spec)
    assert baseline_key(colorization, data.batch(torch.arange(16)), BenchConfig()) != key_of("rotation", data)


def test_equal_budget_epochs():
    # 0.1 s a step, 100 steps an epoch: 10 s an epoch; 90% of 2 minutes is 108 s -> 10 whole epochs
    assert epochs_within(2, 0.1, 100) == 10
    assert epochs_within(0.01, 0.1, 100) == 1  # at least one epoch


def test_calibration_times_the_method_and_its_bare_encoder():
    data = synthetic_images(n=64)
    timing = calibrate("rotation", data, batch_size=16, repeats=1)
    assert timing["seconds_per_step"] > 0 and timing["bare_seconds_per_step"] > 0
    assert timing["images_per_s"] == 16 / timing["seconds_per_step"]


def test_step_timing_ignores_calls_slowed_by_other_jobs(monkeypatch):
    # a fake clock: the step costs 1 s and the bare step 0.5 s, but 3 of 12 rounds are slowed 10x by other jobs
    clock = {"now": 0.0}
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["now"])
    slowdown = iter([10 if r in (3, 7, 11) else 1 for r in range(12) for _ in range(2)])  # one per call, in turn

    def costing(seconds):
        def step():
            clock["now"] += seconds * next(slowdown)
        return step

    step_s, bare_s = typical_seconds([costing(1.0), costing(0.5)], repeats=12, warmup=0)
    assert (step_s, bare_s) == (1.0, 0.5)  # a mean of the calls would say 3.25 s and 1.625 s


def test_later_pretraining_seeds_reuse_the_first_seeds_epochs(tmp_path):
    (tmp_path / "methods").mkdir()
    assert bench.first_seed_epochs(tmp_path, "mocov2", BenchConfig()) is None  # seed 0 has not run
    (tmp_path / "methods" / "mocov2.json").write_text('{"epochs": 37, "minutes_budget": 10.0}')
    assert bench.first_seed_epochs(tmp_path, "mocov2", BenchConfig()) == 37
    assert bench.first_seed_epochs(tmp_path, "mocov2", BenchConfig(minutes=30.0)) is None  # another budget
    assert bench.first_seed_epochs(tmp_path, "simclr", BenchConfig()) is None


def test_a_rerun_can_reuse_its_rows_epochs_instead_of_a_new_calibration(tmp_path, monkeypatch):
    class PretrainCalled(Exception):
        pass

    def pretrain(*args, epochs, overwrite, **kwargs):
        assert overwrite  # a rerun replaces the run folder its interrupted or forced item left
        raise PretrainCalled(epochs)

    monkeypatch.setattr(bench, "load_dataset", lambda *a, **k: None)
    monkeypatch.setattr(bench, "held_out_test", lambda data: type("Split", (), {"rest": list(range(2560))})())
    monkeypatch.setattr(bench, "calibrate", lambda *a, **k: {"seconds_per_step": 1.0})
    monkeypatch.setattr(bench, "pretrain", pretrain)
    (tmp_path / "methods").mkdir()

    def epochs_run(**kwargs) -> int:
        with pytest.raises(PretrainCalled) as called:
            bench.bench_method("mocov2", tmp_path, BenchConfig(), {}, **kwargs)
        return called.value.args[0]

    with pytest.raises(ValueError, match="no row at 10 minutes"):
        bench.bench_method("mocov2", tmp_path, BenchConfig(), {}, reuse_epochs=True)
    calibrated = epochs_within(10.0, 1.0, 2560 // 256)
    assert epochs_run() == calibrated
    (tmp_path / "methods" / "mocov2.json").write_text('{"epochs": 37, "minutes_budget": 10.0}')
    assert calibrated != 37 and epochs_run(reuse_epochs=True) == 37
    assert epochs_run() == calibrated  # without the flag a rerun calibrates


def test_reevaluating_keeps_the_rows_pretraining_and_replaces_its_evaluation(tmp_path, monkeypatch):
    (tmp_path / "methods").mkdir()
    run_dir = tmp_path / "runs" / "mocov2-seed0"
    run_dir.mkdir(parents=True)
    earlier = {"method": "mocov2", "epochs": 39, "pretrain_seconds": 969.0, "calibration": {"seconds_per_step": 0.1},
               "rows": ["old"], "transfer_rows": ["old"], "baseline_key": "old", "eval_seconds": 482.0}
    (tmp_path / "methods" / "mocov2.json").write_text(json.dumps(earlier))
    loaded = []
    monkeypatch.setattr(bench, "load_run", lambda path: loaded.append(path) or "the pretrained method")
    monkeypatch.setattr(bench, "evaluate_pretrained", lambda method, out, cfg, data: {
        "rows": [method], "transfer_rows": [], "baseline_key": "new", "eval_seconds": 1.0, "grids": "now"})

    def config(status="done", epochs=39, seed=0):
        (run_dir / "config.json").write_text(json.dumps({
            "status": status, "epochs_done": epochs, "train": {"seed": seed},
            "final_metrics": {"train/loss": 2.5, "train/loss_step": 2.4, "monitor/knn_acc": 0.6}}))

    config()
    with pytest.raises(SystemExit, match="run folder"):  # no weights
        bench.reevaluate_method("mocov2", tmp_path, BenchConfig(), {})
    (run_dir / "method.safetensors").write_bytes(b"")
    result = bench.reevaluate_method("mocov2", tmp_path, BenchConfig(), {})
    assert loaded == [run_dir]
    assert result["rows"] == ["the pretrained method"] and result["baseline_key"] == "new" and result["reevaluated"]
    assert (result["epochs"], result["pretrain_seconds"], result["calibration"]) == (39, 969.0, {"seconds_per_step": 0.1})
    # the curve and pretext metrics are the run folder's, which describe the weights evaluated
    assert result["pretext"] == {"train/loss": 2.5} and result["monitor"] == []
    (run_dir / "metrics.csv").write_text("epoch,monitor/knn_acc,monitor/linear_acc\n3,0.5,0.7\n")
    assert bench.reevaluate_method("mocov2", tmp_path, BenchConfig(), {})["monitor"] == [
        {"epoch": 3, "knn": 0.5, "linear": 0.7}]
    for wrong in ({"status": "running"}, {"epochs": 38}, {"seed": 1}):  # not the finished run behind the row
        config(**wrong)
        with pytest.raises(SystemExit, match="not the finished run"):
            bench.reevaluate_method("mocov2", tmp_path, BenchConfig(), {})
    with pytest.raises(SystemExit, match="needs its result"):
        bench.reevaluate_method("simclr", tmp_path, BenchConfig(), {})


def test_the_table_says_which_fine_tuning_grid_each_baseline_group_used():
    from selfsup.evaluate.tuning import GRIDS
    assert bench.finetune_lrs({"grids": GRIDS}) == "fine-tune lr 0.0003–0.03"
    assert bench.finetune_lrs({}) == "fine-tune lr 0.0003–0.003"  # groups made before grids were recorded


def test_seeds_evaluated_with_other_settings_are_never_averaged_together():
    rows = lambda acc: [{"labels_per_class": 10, "seed": 0, "protocol": "linear", "acc": acc}]
    results = [{"method": "mocov2", "baseline_key": "new", "rows": rows(0.8)},
               {"method": "mocov2", "baseline_key": "old", "rows": rows(0.6)},
               {"method": "mocov2", "baseline_key": "old", "rows": rows(0.7)}]
    grouped = bench.by_method(results)
    assert {k: [r["rows"][0]["acc"] for r in runs] for k, runs in grouped.items()} == {
        ("mocov2", "new"): [0.8], ("mocov2", "old"): [0.6, 0.7]}
    baselines = {k: {"encoder": "convnet", "encoder_kwargs": {}, "fed_as": "x", "rows": []}
                 for k in ("new", "old", "orphan")}
    table = bench.markdown_tables(results, baselines)
    assert "| mocov2 | new " in table and "| mocov2 (2 seeds) | old " in table
    # a group whose every method was evaluated again under other settings leaves the table
    assert "orphan" not in table
    assert "orphan" not in bench.transfer_table([r | {"transfer_rows": []} for r in results], baselines)


def test_a_baseline_cut_short_resumes_from_its_last_finished_draw(tmp_path, monkeypatch):
    from selfsup.evaluate.sweep import sweep
    data = synthetic_images(n=32)
    torch.manual_seed(0)
    method = build_method("rotation", data.spec)
    cfg = BenchConfig(budgets=(10, None), seeds=(0, 1), transfer_budgets=(10,))
    ran = []

    def fake_sweep(method, train, test, budgets, seeds, protocols, done=None, on_draw=None, **kwargs):
        def run_draw(budget, seed, chosen):
            if len(ran) == 2 and "cut" not in ran:  # the sitting ends during the third draw
                ran.append("cut")
                raise KeyboardInterrupt
            ran.append((protocols, budget, seed))
            label = "all" if budget is None else budget
            return [{"labels_per_class": label, "seed": seed, "protocol": p, "acc": 0.5, "params": {}}
                    for p in protocols], None
        return sweep(budgets, seeds, run_draw, lambda b, s: (done(b, s), None) if done(b, s) else None, on_draw)

    monkeypatch.setattr(bench, "label_sweep", fake_sweep)
    parts = {"eval": (data, data), "transfer": (data, data)}
    with pytest.raises(KeyboardInterrupt):
        bench.baseline_rows(method, parts, cfg, tmp_path)
    assert ran == [(("random_init", "supervised"), 10, 0), (("random_init", "supervised"), 10, 1), "cut"]
    assert not (tmp_path / "methods" / "_baselines.json").exists()

    key, baseline = bench.baseline_rows(method, parts, cfg, tmp_path)
    # the two finished draws are read back, not run again; the rest run once
    assert ran[3:] == [(("random_init", "supervised"), None, 0), (("random_init", "supervised"), None, 1),
                       (("random_init",), 10, 0), (("random_init",), 10, 1)]
    assert [(r["labels_per_class"], r["seed"]) for r in baseline["rows"]][::2] == [(10, 0), (10, 1), ("all", 0),
                                                                                    ("all", 1)]
    assert key in json.loads((tmp_path / "methods" / "_baselines.json").read_text())
    assert not list((tmp_path / "methods" / bench.PARTIAL_BASELINES).iterdir())  # the partial logs are gone
