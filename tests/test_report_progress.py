"""Reports and progress a user can read: an unlabeled run's report says why it has no PCA, the collapse
warning needs more than a small spread, and training outside a terminal prints one line per epoch."""
import numpy as np

import selfsup.api as api
from selfsup.report import make_report
from selfsup.train import looks_collapsed
from conftest import TINY


def test_collapse_needs_bunched_embeddings_and_a_monitor_near_chance():
    assert not looks_collapsed(0.05, 0.81, 10)  # the healthy rotation run that used to warn
    assert looks_collapsed(0.02, 0.12, 10)
    assert not looks_collapsed(0.5, 0.10, 10)


def test_unlabeled_run_report_says_why_and_training_off_a_terminal_prints_epoch_lines(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 255, (96, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "plain.npz", images=images)
    run = tmp_path / "run"
    api.pretrain("rotation", str(tmp_path / "plain.npz"), epochs=2, batch_size=32, run_dir=run, options=TINY,
                 train={"knn_every": 0})  # progress_bar stays on: stderr is not a terminal under pytest
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "loss_epoch" in lines[0] and "items/s" in lines[0] and "it/s" not in err  # no redrawn bar
    page = make_report(run).read_text()
    assert "Not shown: the data has no labels" in page and "Among 96 items of pretraining items" in page
    assert (run / "neighbours.png").exists() and not (run / "embedding.png").exists()
