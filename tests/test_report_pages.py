"""The run report's label-efficiency section, the index page of a folder of runs, the feature cache that
evaluation and report share, and both pages checked in a real (headless Chromium) browser."""
import json
import statistics

import numpy as np
import pytest
import torch

import selfsup.api as api
from selfsup.cli import main
from selfsup.errors import SelfSupError
from selfsup.report import make_index, make_report
from selfsup.report.build import label_efficiency_sections
from browser import Browser, find_browser, missing_link_targets
from conftest import TINY, synthetic_images

ACCS = {("linear", 5): (0.50, 0.70), ("supervised", 5): (0.40, 0.44), ("linear", "all"): (0.80, 0.90)}


def fake_evaluation(run, finished=True, name="mine-abc.json"):
    rows = [{"labels_per_class": b, "seed": s, "protocol": p, "acc": accs[s]}
            for (p, b), accs in ACCS.items() for s in (0, 1)]
    record = {"settings": {"data": "/data/mine.npz", "protocols": ["linear", "supervised"]}, "rows": rows,
              "finished": finished}
    if finished:
        record |= {"data": "/data/mine.npz", "test_size": 24, "test_rule": "carved from the train part"}
    (run / "evaluations").mkdir(parents=True, exist_ok=True)
    (run / "evaluations" / name).write_text(json.dumps(record))


def test_label_efficiency_section_shows_mean_and_sample_std_over_seeds_and_what_is_missing(tmp_path):
    fake_evaluation(tmp_path)
    [(title, body)] = label_efficiency_sections(tmp_path)
    assert title == "Label efficiency (mine.npz)" and (tmp_path / "label_efficiency_0.png").stat().st_size > 0
    std = 100 * statistics.stdev([0.50, 0.70])
    assert f"<td>linear</td><td>5</td><td>60.00</td><td>± {std:.2f}</td><td>2</td>" in body
    assert "<td>supervised (baseline)</td><td>5</td><td>42.00</td>" in body
    assert body.index("<td>5</td>") < body.index("<td>all</td>")  # budgets in order, "all" last
    assert "24 held-out test items" in body and "2 seed(s) (0, 1)" in body
    assert "Not run in this evaluation: random_init_linear." in body and "Unfinished" not in body


def test_an_unfinished_evaluation_is_drawn_from_its_rows_and_says_so(tmp_path):
    fake_evaluation(tmp_path, finished=False)
    (tmp_path / "evaluations" / "broken.json").write_text("{not json")  # ignored, not a crash
    [(_, body)] = label_efficiency_sections(tmp_path)
    assert "Unfinished: these are the draws written so far" in body and "<td>85.00</td>" in body


def write_run(folder, method="rotation", status="done", final=None):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": method, "status": status, "epochs_done": 3,
                                                    "data": {"name": "/data/mine.npz"}, "final_metrics": final or {}}))


def test_index_compares_every_run_in_one_table_and_links_only_existing_reports(tmp_path, capsys):
    write_run(tmp_path / "a-rotation", final={"monitor/knn_acc": 0.812, "monitor/linear_acc": 0.75})
    fake_evaluation(tmp_path / "a-rotation")
    (tmp_path / "a-rotation" / "report.html").write_text("<html></html>")
    write_run(tmp_path / "b-simclr", method="simclr", status="failed")
    (tmp_path / "not-a-run").mkdir()
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"index: {tmp_path / 'index.html'}"
    page = (tmp_path / "index.html").read_text()
    assert page.count("<tr><td>") == 2 and "not-a-run" not in page
    assert ('<tr><td><a href="a-rotation/report.html">a-rotation</a></td><td>rotation</td><td>mine.npz</td>'
            "<td>3</td><td>81.2</td><td>75.0</td><td>all labels/class: linear 85.0 ± 7.1</td><td>done</td></tr>") in page
    assert "<tr><td>b-simclr</td><td>simclr</td><td>mine.npz</td><td>3</td><td></td><td></td><td></td><td>failed" in page
    assert (tmp_path / "index.png").stat().st_size > 0 and 'src="index.png"' in page


def test_index_of_a_folder_without_runs_says_what_to_name(tmp_path):
    with pytest.raises(SelfSupError, match="holds no run folders"):
        make_index(tmp_path)


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """A tiny labeled rotation run, evaluated (kNN and the random-init floor, 2 budgets x 2 seeds), reported."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    images = rng.integers(0, 60, (len(labels), 28, 28), dtype=np.uint8)
    images[np.arange(len(labels)), :, 4 + 8 * labels] = 250
    np.savez(root / "mine.npz", images=images, labels=labels)
    run = root / "runs" / "rotation-tiny"
    api.pretrain("rotation", str(root / "mine.npz"), epochs=1, batch_size=32, run_dir=run, options=TINY,
                 train={"knn_every": 0, "progress_bar": False})
    result = api.evaluate(run, protocols=["knn", "random_init"], labels_per_class=[2, 5], seeds=[0, 1])
    return run, result


def test_evaluation_extracts_features_once_and_a_second_evaluation_reads_them(evaluated_run, monkeypatch):
    run, result = evaluated_run
    assert result["feature_cache"] == {"hits": 0, "misses": 4}  # pool and test set, trained and untrained encoder
    budgets = __import__("importlib").import_module("selfsup.evaluate.budgets")
    monkeypatch.setattr(budgets, "extract_features", lambda *a, **k: pytest.fail("features extracted again"))
    # the same draws (features are extracted only of drawn items, so other budgets draw other items)
    again = api.evaluate(run, protocols=["knn"], labels_per_class=[2, 5], seeds=[0, 1])
    assert again["feature_cache"] == {"hits": 2, "misses": 0}


def test_report_and_index_load_in_a_real_browser(evaluated_run):
    run, _ = evaluated_run
    report = make_report(run, projection="tsne")
    index = make_index(run.parent)
    text = report.read_text()
    assert "Label efficiency (mine.npz)" in text and "2 seed(s) (0, 1)" in text and "t-SNE" in text
    assert "random_init_knn (baseline)" in text
    binary = find_browser()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make test` installs it)")
    with Browser(binary) as browser:
        pages = {path: browser.check_page(path) for path in (report, index)}
    for path, seen in pages.items():
        assert seen["images"] and all(loaded for _, loaded in seen["images"]), seen["images"]
        assert missing_link_targets(seen["links"]) == [] and seen["errors"] == [], seen
    shown = {src.rsplit("/", 1)[1] for src, _ in pages[report]["images"]}
    assert {"curves.png", "examples.png", "label_efficiency_0.png", "embedding.png", "neighbours.png"} <= shown
    assert [src.rsplit("/", 1)[1] for src, _ in pages[index]["images"]] == ["index.png"]
    assert any(link.endswith("/runs/rotation-tiny/report.html") for link in pages[index]["links"])


def test_the_browser_check_notices_a_missing_image_and_a_broken_link(tmp_path):
    binary = find_browser()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make test` installs it)")
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><link rel='icon' href='data:,'><img src='nowhere.png'>"
                    "<a href='gone.html'>x</a><script>console.error('boom')</script>")
    with Browser(binary) as browser:
        seen = browser.check_page(page)
    assert seen["images"] == [((tmp_path / "nowhere.png").as_uri(), False)]
    assert missing_link_targets(seen["links"]) == [(tmp_path / "gone.html").as_uri()]
    assert any("boom" in e for e in seen["errors"]) and any("request failed" in e for e in seen["errors"])
