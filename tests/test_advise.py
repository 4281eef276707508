"""`selfsup advise` on tiny generated data: a ranked report with a recommendation that says how sure it is."""
import json
import shutil

import numpy as np
import pytest
import torch

from selfsup import advise as advise_module
from selfsup.advise import advise, candidates, label_budgets, paired_gap, parse_budget
from selfsup.cli import main
from selfsup.errors import SelfSupError

from conftest import TINY_OPTIONS, synthetic_images

METHODS = ["rotation", "simclr"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("advise")
    data = synthetic_images(n=240, classes=3, size=16)
    np.savez(root / "tiny.npz", images=data.images.numpy(), labels=data.labels.numpy())
    out = root / "advice"
    result = advise(str(root / "tiny.npz"), budget="6s", out=out, methods=METHODS, draws=2,
                    options={m: TINY_OPTIONS[m] for m in METHODS}, budgets=(5, 20),
                    finetune_kwargs={"min_steps": 4, "max_steps": 4, "batch_size": 16})
    return result, out


def test_advise_writes_a_ranked_report(report):
    result, out = report
    saved = json.loads((out / "advice.json").read_text())
    assert saved["ranking"] == result["ranking"] and sorted(saved["ranking"]) == sorted(METHODS)
    assert saved["labels_per_class"] == [5, 20]

    def linear_mean(name):
        means = [r["mean"] for r in saved["results"][name]["summary"] if r["protocol"] == "linear"]
        return sum(means) / len(means)
    assert linear_mean(saved["ranking"][0]) >= linear_mean(saved["ranking"][1])
    for name in METHODS:  # every draw of every budget, for both probes
        rows = saved["results"][name]["rows"]
        assert sorted((r["labels_per_class"], r["seed"], r["protocol"]) for r in rows) == sorted(
            (b, s, p) for b in (5, 20) for s in (0, 1) for p in ("linear", "knn"))
    # the two methods' encoders differ (BatchNorm): each gets its own random-init and supervised rows
    assert len(saved["baselines"]) == 2
    protocols = {r["protocol"] for base in saved["baselines"].values() for r in base["rows"]}
    assert protocols == {"random_init_linear", "random_init_knn", "supervised"}
    md = (out / "advice.md").read_text()
    assert saved["recommendation"]["text"] in md and f"Use **{saved['ranking'][0]}**" in md
    assert "random init (" in md and "supervised (" in md
    assert md.index(f"| 1 | {saved['ranking'][0]} |") < md.index(f"| 2 | {saved['ranking'][1]} |")
    confidence = saved["recommendation"]["confidence"]
    assert confidence.split(":")[0] in ("sure", "fairly sure", "mixed", "not sure")
    verdicts = set(saved["recommendation"]["verdicts"].values())
    assert verdicts <= {"leads", "ties", "tie", "trails"}
    assert (confidence.startswith("mixed")) == ("trails" in verdicts)


def test_pretraining_stays_near_its_share_of_the_budget(report):
    result, _ = report
    share = result["settings"]["seconds_per_method"]
    assert share == pytest.approx(advise_module.PRETRAIN_SHARE * 6 / 2)
    for name in METHODS:
        r = result["results"][name]
        assert r["epochs"] >= 1
        # the epochs were chosen to fit the share: at most one epoch (the minimum) over it
        per_epoch = r["calibration"]["seconds_per_step"] * (result["pool_size"] // r["batch_size"])
        assert r["epochs"] == 1 or r["epochs"] * per_epoch <= share


def test_paired_gap_is_within_noise_only_when_the_draws_say_so():
    def rows(accs):
        return [{"protocol": "linear", "labels_per_class": 10, "seed": s, "acc": a} for s, a in enumerate(accs)]
    clear = paired_gap(rows([0.80, 0.82, 0.81]), rows([0.70, 0.71, 0.72]), "linear", 10)
    assert clear["mean"] == pytest.approx(0.1) and not clear["within_noise"]
    noisy = paired_gap(rows([0.80, 0.70, 0.75]), rows([0.72, 0.78, 0.74]), "linear", 10)
    assert noisy["within_noise"]
    # the same offset on every draw: zero spread, so any gap is beyond noise
    assert not paired_gap(rows([0.71, 0.61]), rows([0.70, 0.60]), "linear", 10)["within_noise"]
    assert paired_gap(rows([0.8]), rows([0.7]), "linear", 10)["within_noise"]  # one draw: no spread known
    # a small test set is noise the draws cannot show: a steady 1-point gap on 20 test items is within it
    small = paired_gap(rows([0.71, 0.61]), rows([0.70, 0.60]), "linear", 10, test_size=20)
    assert small["within_noise"] and small["se"] == pytest.approx(((0.66 * 0.34 + 0.65 * 0.35) / 20) ** 0.5)


def test_budgets_candidates_and_bad_input():
    assert parse_budget("30m") == 1800 and parse_budget("1h30m") == 5400 and parse_budget("90s") == 90
    assert parse_budget("20") == 1200
    for bad in ("soon", "-5m", "0"):
        with pytest.raises(SelfSupError, match="budget"):
            parse_budget(bad)
    assert candidates("image", 500) == ["simclr", "rotation"]
    assert candidates("image", 60_000) == ["mocov2", "rotation", "super-resolution"]
    with pytest.raises(SelfSupError, match="image methods"):
        candidates("text", 1000)
    assert label_budgets(torch.tensor([0] * 30 + [1] * 300)) == [10]
    assert label_budgets(torch.tensor([0] * 6 + [1] * 6)) == [3]
    with pytest.raises(SelfSupError, match="at least 4 per class"):
        label_budgets(torch.tensor([0, 0, 1, 1, 1]))


def test_unlabeled_data_without_labels_is_a_clear_error(tmp_path, capsys):
    np.savez(tmp_path / "unlabeled.npz", images=synthetic_images(n=64, size=16).images.numpy())
    assert main(["advise", "--data", str(tmp_path / "unlabeled.npz"), "--budget", "1m", "--out", str(tmp_path)]) == 2
    assert "--labels" in capsys.readouterr().err


def test_an_earlier_report_is_refused_before_anything_is_trained(report, tmp_path, monkeypatch, capsys):
    _, earlier = report
    out = tmp_path / "advice"
    shutil.copytree(earlier, out)

    class Pretrained(Exception):
        pass

    def pretrain(*args, **kwargs):
        raise Pretrained
    monkeypatch.setattr(advise_module.api, "pretrain", pretrain)
    npz = str(earlier.parent / "tiny.npz")
    with pytest.raises(SelfSupError, match="earlier report .*--overwrite"):
        advise(npz, budget="6s", out=out, methods=METHODS)
    assert main(["advise", "--data", npz, "--budget", "6s", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SelfSupError, match="draws"):  # bad input is refused before the report is replaced
        advise(npz, budget="6s", out=out, methods=METHODS, draws=0, overwrite=True)
    with pytest.raises(SelfSupError, match="missing.npz"):
        advise(str(earlier.parent / "missing.npz"), budget="6s", out=out, methods=METHODS, overwrite=True)
    assert (out / "evaluations").is_dir() and (out / "advice.json").exists()  # nothing lost
    with pytest.raises(Pretrained):  # replaced: the earlier report is gone before the first pretraining
        advise(npz, budget="6s", out=out, methods=METHODS, overwrite=True)
    assert not (out / "evaluations").exists() and not (out / "advice.json").exists()
