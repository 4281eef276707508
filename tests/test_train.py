import json
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.api import evaluate, load_run, pretrain
from selfsup.cli import main
from selfsup.errors import SelfSupError
from selfsup.methods.base import Method, MethodConfig
from selfsup.nets import build_encoder
from selfsup.runs import load_checkpoint, save_checkpoint
from selfsup.train import TrainConfig
from selfsup.train import pretrain as fit
from conftest import TINY, synthetic_images

QUIET = {"progress_bar": False, "knn_every": 0}


def tiny_npz(tmp_path: Path, n: int = 256) -> str:
    data = synthetic_images(n=n, classes=4)
    path = tmp_path / "tiny.npz"
    np.savez(path, images=data.images.numpy(), labels=data.labels.numpy())
    return str(path)


def test_tiny_pretrain_then_evaluate_end_to_end(tmp_path):
    data = tiny_npz(tmp_path, n=480)
    result = pretrain("rotation", data=data, epochs=2, batch_size=64, run_dir=tmp_path / "run", options=TINY,
                      train=QUIET)
    assert result.epochs == 2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["status"] == "done" and config["method"] == "rotation" and config["train"]["epochs"] == 2
    assert (tmp_path / "run" / "metrics.csv").exists() and (tmp_path / "run" / "method.safetensors").exists()
    method = load_run(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(method.state_dict().values(), result.method.state_dict().values()))
    out = evaluate(tmp_path / "run", data=data, protocols=["linear", "knn"], labels_per_class=[10], seeds=[0, 1])
    # test carved before pretraining: min(100, 20% of the 120 per class) = 24 per class; 2 seeds x 2 protocols
    assert out["test_size"] == 96 and len(out["rows"]) == 4
    assert all(0.0 <= r["acc"] <= 1.0 for r in out["rows"])


def epochs_completed(checkpoint: dict) -> int:
    return checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]  # saved at epoch end


def _fit(data, run_dir, epochs, resume=False, crash_at_call=None):
    torch.manual_seed(0)
    from selfsup.methods import build_method
    method = build_method("rotation", data.spec, **TINY)
    if crash_at_call is not None:  # simulate a crash (power cut, OOM kill) in the middle of training
        real_loss, calls = method.loss, []

        def crashing_loss(batch):
            calls.append(1)
            if len(calls) == crash_at_call:
                raise RuntimeError("simulated crash")
            return real_loss(batch)

        method.loss = crashing_loss
    return fit(method, data, TrainConfig(epochs=epochs, batch_size=64, seed=0, **QUIET), run_dir, resume=resume)


def test_resume_continues_with_the_right_step_count_and_the_same_result(tmp_path):
    data = synthetic_images(n=256, classes=4)  # 4 steps per epoch at batch 64
    straight = _fit(data, tmp_path / "straight", epochs=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(data, tmp_path / "resumed", epochs=3, crash_at_call=7)  # crashes in the middle of epoch 1
    first = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert epochs_completed(first) == 1 and first["global_step"] == 4
    resumed = _fit(data, tmp_path / "resumed", epochs=3, resume=True)
    last = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["last.ckpt"]
    assert last["global_step"] == 12 and epochs_completed(last) == 3 and resumed.epochs == 3
    for (name, a), b in zip(straight.method.state_dict().items(), resumed.method.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


class ExplodingConfig(MethodConfig):
    pass


class Exploding(Method):
    """Loss turns NaN at the 6th step (in epoch 1 with 4 steps per epoch)."""
    name = "exploding"

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.encoder = build_encoder("convnet", in_channels=1, image_size=28, widths=(4, 4, 4))
        self.calls = 0

    def loss(self, batch):
        self.calls += 1
        out = self.encoder(batch.float() / 255).pow(2).mean()
        return (out * float("nan") if self.calls >= 6 else out), {}


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = synthetic_images(n=256, classes=4)
    method = Exploding(MethodConfig(), data.spec)
    with pytest.raises(SelfSupError, match=r"loss became nan at epoch 1.*last good checkpoint is .*last.ckpt"):
        fit(method, data, TrainConfig(epochs=3, batch_size=64, **QUIET), tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert epochs_completed(state) == 1 and state["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())


def test_checkpoints_are_atomic_and_never_unpickled(tmp_path):
    path = tmp_path / "c.ckpt"
    save_checkpoint({"w": torch.ones(3), "step": 7}, path)

    class Unstorable:
        pass

    with pytest.raises(TypeError, match="cannot store Unstorable"):
        save_checkpoint({"w": torch.zeros(3), "bad": Unstorable()}, path)
    assert load_checkpoint(path)["step"] == 7 and torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]  # no temporary file left behind
    torch.save({"w": torch.ones(3)}, tmp_path / "pickled.ckpt")
    with pytest.raises(SelfSupError, match="corrupt or not a selfsup checkpoint"):
        load_checkpoint(tmp_path / "pickled.ckpt")


def test_batch_larger_than_data_is_a_clear_error(tmp_path):
    data = synthetic_images(n=32, classes=4)
    from selfsup.methods import build_method
    with pytest.raises(SelfSupError, match="fewer than one batch"):
        fit(build_method("rotation", data.spec, **TINY), data, TrainConfig(batch_size=64, **QUIET), tmp_path / "r")


def test_cli_pretrain_evaluate_report_and_errors(tmp_path, capsys):
    data = tiny_npz(tmp_path, n=480)
    run = tmp_path / "cli-run"
    assert main(["pretrain", "rotation", "--data", data, "--epochs", "1", "--batch-size", "64", "--run-dir", str(run),
                 "--set", 'encoder_kwargs={"widths": [8, 8, 8]}', "--train-set", "knn_every=0", "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["method_config"]["encoder_kwargs"] == {"widths": [8, 8, 8]}
    assert main(["evaluate", str(run), "--data", data, "--protocol", "knn", "--labels-per-class", "5",
                 "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["summary"][0]["protocol"] == "knn"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", data, "--protocol", "random_init", "--labels-per-class", "5"]) == 0
    assert "random_init_linear" in capsys.readouterr().out  # the floor a method must beat
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    for section in ("Training curves", "What the pretext task sees and predicts", "Embeddings", "Nearest neighbours"):
        assert section in page
    assert all((run / f).stat().st_size > 1000 for f in ("curves.png", "examples.png", "embedding.png", "neighbours.png"))
    assert main(["pretrain", "rotaton"]) == 2
    assert "Did you mean 'rotation'" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--data", data, "--labels-per-class", "1000"]) == 2
    assert "larger than" in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
