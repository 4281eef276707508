"""`selfsup evaluate RUN` without --data evaluates on the run's own data (images and text), says what it
evaluated on, shows progress, writes every finished draw and resumes an interrupted evaluation."""
import importlib
import json

import numpy as np
import pytest

import selfsup.api as api
budgets = importlib.import_module("selfsup.evaluate.budgets")  # selfsup.evaluate is also the function
from selfsup.cli import main
from selfsup.errors import SelfSupError
from conftest import TINY_TEXT

QUIET = ["--train-set", "knn_every=0", "--no-progress"]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A rotation run pretrained on an .npz of 3 classes x 40 images (one class-specific bright column)."""
    root = tmp_path_factory.mktemp("image-run")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    images = rng.integers(0, 60, (len(labels), 28, 28), dtype=np.uint8)
    images[np.arange(len(labels)), :, 4 + 8 * labels] = 250
    np.savez(root / "mine.npz", images=images, labels=labels)
    run = root / "run"
    assert main(["pretrain", "rotation", "--data", str(root / "mine.npz"), "--epochs", "1", "--batch-size", "32",
                 "--run-dir", str(run), "--set", 'encoder_kwargs={"widths": [4, 4, 4]}', *QUIET]) == 0
    return run, root / "mine.npz"


def test_evaluate_without_data_uses_the_runs_own_images_and_says_so(image_run, capsys):
    run, data = image_run
    capsys.readouterr()
    assert main(["evaluate", str(run), "--protocol", "knn", "--labels-per-class", "2"]) == 0
    out = capsys.readouterr().out
    record = json.loads((run / "config.json").read_text())["data"]["test"]
    assert f"data: {data} (the run's own data)" in out
    assert f"test set: {record['size']} items (carved from the train part" in out and record["size"] == 24
    assert "supervised: the convnet encoder (" in out and "trained from random init on the same labels" in out
    assert "[2 labels/class, seed 0] running knn (draw 1 of 1)" in out  # progress: budget, seed, protocols
    assert "(1 seed)" in out and "± 0.00" not in out
    written = json.loads(next((run / "evaluations").glob("mine-*.json")).read_text())
    assert written["finished"] and written["data"] == str(data) and written["test_size"] == 24


def test_an_interrupted_evaluation_resumes_from_its_written_rows(image_run, tmp_path, monkeypatch):
    run, _ = image_run
    out = tmp_path / "eval.json"
    real = budgets.evaluate_protocols
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[6])  # the seed
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second draw
        return real(*args, **kwargs)

    monkeypatch.setattr(budgets, "evaluate_protocols", interrupted)
    ask = dict(protocols=["knn", "linear"], labels_per_class=[2], seeds=[0, 1], out=out)
    with pytest.raises(KeyboardInterrupt):
        api.evaluate(run, **ask)
    first = json.loads(out.read_text())
    assert first["finished"] is False and [(r["seed"], r["protocol"]) for r in first["rows"]] == [(0, "knn"), (0, "linear")]

    monkeypatch.setattr(budgets, "evaluate_protocols", lambda *a, **k: calls.append(a[6]) or real(*a, **k))
    lines = []
    result = api.evaluate(run, **ask, progress=lines.append)
    assert calls == [0, 1, 1]  # the finished draw (seed 0) was not run again
    assert result["rows"][:2] == first["rows"] and [r["seed"] for r in result["rows"]] == [0, 0, 1, 1]
    assert result["resumed_rows"] == 2 and json.loads(out.read_text())["finished"] is True
    assert lines[0] == "[2 labels/class, seed 1] running knn, linear (draw 2 of 2)"
    with pytest.raises(SelfSupError, match="holds another evaluation"):
        api.evaluate(run, protocols=["knn"], labels_per_class=[3], seeds=[0], out=out)


def test_a_log_written_under_other_protocols_is_not_resumed(image_run, tmp_path, monkeypatch):
    run, _ = image_run
    out = tmp_path / "eval.json"
    api.evaluate(run, protocols=["knn"], labels_per_class=[2], seeds=[0], out=out)
    api.evaluate(run, protocols=["knn"], labels_per_class=[2], seeds=[0], out=out)  # the same protocols: resumed
    recorded = json.loads(out.read_text())["settings"]
    assert recorded["finetune_head"] == "batchnorm"  # the fixture's ConvNet has no BatchNorm
    # as if the file had been written before fine-tuning heads were standardised: refused, not mixed in
    monkeypatch.setattr(api, "protocol_settings", lambda method, kwargs: {"grids": recorded["grids"],
                                                                         "finetune_head": "raw"})
    with pytest.raises(SelfSupError, match="holds another evaluation"):
        api.evaluate(run, protocols=["knn"], labels_per_class=[2], seeds=[0], out=out)


def test_the_cli_passes_the_fine_tuning_head_choice(image_run, tmp_path):
    run, _ = image_run
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--protocol", "knn", "--labels-per-class", "2", "--head-norm", "none",
                 "--out", str(out)]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert settings["finetune_kwargs"] == {"head_norm": "none"} and settings["finetune_head"] == "raw"


def test_a_text_protocol_on_an_image_run_is_refused(image_run):
    with pytest.raises(SelfSupError, match="bow do not apply to image data"):
        api.evaluate(image_run[0], protocols=["bow"], labels_per_class=[2])


def test_evaluate_without_data_uses_the_runs_own_text_with_the_bag_of_words(tmp_path, capsys):
    words = {"cats": "whiskers purr meow kitten tabby", "dogs": "bark fetch puppy leash kennel"}
    for name, vocab in words.items():
        (tmp_path / "corpus" / name).mkdir(parents=True)
        rng = np.random.default_rng(len(name))
        paragraphs = [" ".join(rng.choice(vocab.split(), 8)) for _ in range(20)]
        (tmp_path / "corpus" / name / "notes.txt").write_text("\n\n".join(paragraphs))
    run = tmp_path / "run"
    assert main(["pretrain", "mlm", "--data", str(tmp_path / "corpus"), "--epochs", "1", "--batch-size", "8",
                 "--run-dir", str(run), "--seq-len", "16", "--set", f"encoder_kwargs={json.dumps(TINY_TEXT['encoder_kwargs'])}",
                 *QUIET]) == 0
    assert json.loads((run / "config.json").read_text())["spec"]["seq_len"] == 16
    capsys.readouterr()
    assert main(["evaluate", str(run), "--protocol", "bow", "linear", "--labels-per-class", "3"]) == 0
    out = capsys.readouterr().out
    assert f"data: {tmp_path / 'corpus'} (the run's own data)" in out and "test set: 8 items" in out
    assert "scratch: the text_encoder encoder (" in out
    rows = {line.split()[0] for line in out.splitlines() if line.split() and line.split()[-1] in ("seed)",)}
    assert {"bow", "linear_cls", "linear_mean"} <= rows


def test_the_cli_tunes_by_k_fold_and_refuses_more_folds_than_labels_per_class(image_run, tmp_path, capsys):
    run, _ = image_run
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--protocol", "knn", "--labels-per-class", "4", "--folds", "2",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["folds"] == 2
    plain = tmp_path / "plain.json"
    assert main(["evaluate", str(run), "--protocol", "knn", "--labels-per-class", "4", "--out", str(plain)]) == 0
    assert "folds" not in json.loads(plain.read_text())["settings"]  # logs from before --folds still resume
    capsys.readouterr()
    assert main(["evaluate", str(run), "--protocol", "knn", "--labels-per-class", "2", "--folds", "3"]) == 2
    assert "folds=3 needs at least 3 labels per class, but a budget has 2" in capsys.readouterr().err
