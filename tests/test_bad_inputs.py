"""A corpus of bad inputs a careful user or an operator may give: each ends in a SelfSupError, which the
CLI prints as one line on stderr with exit code 2, naming the input and the fix. None may end in a
traceback, and none may be accepted silently. The files are written here, by the tests.

Most cases fail while the options are checked, before any data is read or any step is run, so the whole
corpus runs in a few seconds; the CLI is called in-process (`main(argv)`). The data cases (`DATA_CASES`) fail
while the data is read or checked against the encoder, before a run folder is written. Text files that
cannot be text (binary, one huge line) are first a counted, named skip; with none left, one line. Sparse
labels are not an error: they are remapped and said (`test_sparse_labels_are_remapped_and_said`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import selfsup.api as api
from selfsup.cli import main
from selfsup.errors import SelfSupError
from selfsup.data.base import DataSpec
from conftest import TINY, TINY_TEXT, synthetic_images

TINY_SET = ["--set", json.dumps(TINY["encoder_kwargs"]).join(["encoder_kwargs=", ""])]


def write(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def tiny_npz(tmp: Path, labels: np.ndarray | None = None, name: str = "tiny.npz") -> str:
    data = synthetic_images(n=128, classes=4)
    path = tmp / name
    np.savez(path, images=data.images.numpy(), labels=data.labels.numpy() if labels is None else labels)
    return str(path)


def config_file(tmp: Path, record) -> str:
    return write(tmp, "config.json", json.dumps(record))


def pretrain(*args: str) -> list[str]:
    return ["pretrain", "rotation", "--no-progress", *args]


# Each case: (id, argv built from a scratch folder, words the one-line error must contain).
CASES = [
    # --- numeric options: range, type, finiteness (--epochs 0 used to mean 10 epochs, -1 never ended) ------
    ("epochs-0", lambda t: pretrain("--epochs", "0"), ["epochs=0", ">= 1"]),
    ("epochs-negative", lambda t: pretrain("--epochs", "-1"), ["epochs=-1", ">= 1"]),
    ("batch-size-0", lambda t: pretrain("--batch-size", "0"), ["batch_size=0", ">= 1"]),
    ("pool-size-negative", lambda t: pretrain("--pool-size", "-5"), ["pool_size=-5", ">= 1"]),
    ("pool-size-0", lambda t: pretrain("--pool-size", "0"), ["pool_size=0", ">= 1"]),
    ("lr-0", lambda t: pretrain("--lr", "0"), ["lr=0.0", "> 0"]),
    ("lr-negative", lambda t: pretrain("--lr", "-0.5"), ["lr=-0.5", "> 0"]),
    ("lr-nan", lambda t: pretrain("--lr", "nan"), ["lr=nan", "finite"]),
    ("lr-inf-set", lambda t: pretrain("--set", "lr=inf"), ["lr=inf", "finite"]),
    ("lr-not-a-number", lambda t: pretrain("--set", "lr=fast"), ["lr='fast'"]),
    ("seed-negative", lambda t: pretrain("--seed", "-1"), ["seed=-1", ">= 0"]),
    ("test-seed-negative", lambda t: pretrain("--test-seed", "-2"), ["test_seed=-2", ">= 0"]),
    ("weight-decay-negative", lambda t: pretrain("--set", "weight_decay=-0.1"), ["weight_decay=-0.1", ">= 0"]),
    ("warmup-nan", lambda t: pretrain("--set", "warmup_epochs=nan"), ["warmup_epochs=nan", "finite"]),
    ("sgd-momentum-1.5", lambda t: pretrain("--set", "momentum=1.5"), ["momentum=1.5", "[0, 1)"]),
    ("temperature-0", lambda t: ["pretrain", "simclr", "--set", "temperature=0"], ["temperature=0.0", "> 0"]),
    ("mask-ratio-1", lambda t: ["pretrain", "mae", "--set", "mask_ratio=1"], ["mask_ratio=1.0", "[0, 1)"]),
    ("projection-dim-0", lambda t: ["pretrain", "simclr", "--set", "projection_dim=0"], ["projection_dim=0", ">= 1"]),
    ("knn-every-negative", lambda t: pretrain("--train-set", "knn_every=-1"), ["knn_every=-1", ">= 0"]),
    ("epochs-as-words", lambda t: pretrain("--train-set", "epochs=two"), ["epochs='two'"]),
    ("bool-not-a-bool", lambda t: ["pretrain", "mae", "--set", "norm_pix_loss=maybe"], ["norm_pix_loss", "true or false"]),
    # --- choices and structured options ------------------------------------------------------------------
    ("betas-one", lambda t: pretrain("--set", "betas=[0.9]"), ["betas", "two numbers in [0, 1)"]),
    ("betas-three", lambda t: pretrain("--set", "betas=[0.9, 0.99, 0.1]"), ["betas", "two numbers"]),
    ("betas-above-1", lambda t: pretrain("--set", "betas=[0.9, 1.5]"), ["betas", "[0, 1)"]),
    ("encoder-kwargs-misspelt", lambda t: pretrain("--set", 'encoder_kwargs={"widht": [8, 8, 8]}'),
     ["widht", "Did you mean 'widths'"]),
    ("encoder-kwargs-not-a-dict", lambda t: pretrain("--set", "encoder_kwargs=[8]"), ["encoder_kwargs", "dict"]),
    ("encoder-unknown", lambda t: pretrain("--encoder", "resnet9000"), ["unknown encoder 'resnet9000'"]),
    ("optimizer-unknown", lambda t: pretrain("--set", "optimizer=adagrad"), ["optimizer='adagrad'", "adam, adamw, sgd"]),
    ("schedule-unknown", lambda t: pretrain("--set", "schedule=linear"), ["schedule='linear'", "cosine, constant"]),
    ("precision-unknown", lambda t: pretrain("--precision", "17"), ["precision='17'", "32-true"]),
    ("devices-0", lambda t: pretrain("--devices", "0"), ["devices=0", "count >= 1"]),
    ("devices-word", lambda t: pretrain("--train-set", "devices=many"), ["devices='many'", '"auto"']),
    ("accelerator-unknown", lambda t: pretrain("--accelerator", "quantum"), ["accelerator='quantum'", "cpu"]),
    ("accelerator-gpu-without-gpu", lambda t: pretrain("--accelerator", "gpu"), ["accelerator='gpu'", "no GPU"]),
    ("set-without-equals", lambda t: pretrain("--set", "lr"), ["KEY=VALUE"]),
    ("method-option-unknown", lambda t: pretrain("--set", "lr_rate=0.1"), ["lr_rate", "Did you mean 'lr'"]),
    ("train-option-unknown", lambda t: pretrain("--train-set", "epoch=1"), ["epoch", "Did you mean 'epochs'"]),
    ("method-unknown", lambda t: ["pretrain", "rotaton"], ["unknown method 'rotaton'", "rotation"]),
    # --- --config files: missing, malformed, wrongly shaped, wrong types, unknown keys ----------------------
    ("config-missing", lambda t: pretrain("--config", str(t / "nope.json")), ["nope.json", "no such file"]),
    ("config-malformed", lambda t: pretrain("--config", write(t, "c.json", '{"train": {"epochs": 2,')),
     ["c.json", "not valid JSON", "line 1"]),
    ("config-binary", lambda t: pretrain("--config", write(t, "c.json", bytes(range(256)) * 4)),
     ["c.json", "not a text file"]),
    ("config-a-list", lambda t: pretrain("--config", config_file(t, [1, 2])), ["JSON object", "not a list"]),
    ("config-section-misspelt", lambda t: pretrain("--config", config_file(t, {"trian": {}})),
     ["trian", "Did you mean 'train'"]),
    ("config-train-not-a-dict", lambda t: pretrain("--config", config_file(t, {"train": [3]})),
     ["train must be a JSON object"]),
    ("config-train-key-unknown", lambda t: pretrain("--config", config_file(t, {"train": {"epoch": 2}})),
     ["epoch", "Did you mean 'epochs'"]),
    ("config-epochs-a-string", lambda t: pretrain("--config", config_file(t, {"train": {"epochs": "3"}})),
     ["epochs='3'", "int"]),
    ("config-epochs-a-bool", lambda t: pretrain("--config", config_file(t, {"train": {"epochs": True}})),
     ["epochs=True", "int"]),
    ("config-lr-a-string", lambda t: pretrain("--config", config_file(t, {"method_config": {"lr": "fast"}})),
     ["lr='fast'", "float"]),
    ("config-encoder-kwargs-misspelt", lambda t: pretrain("--config", config_file(
        t, {"method_config": {"encoder_kwargs": {"widths": [8, 8, 8], "batchnorm": True}}})),
     ["batchnorm", "Did you mean 'batch_norm'"]),
    # --- data and run folders ------------------------------------------------------------------------------
    ("data-missing-npz", lambda t: pretrain("--data", str(t / "none.npz")), ["none.npz", "does not exist"]),
    ("resume-missing", lambda t: ["pretrain", "--resume", str(t / "nothing")], ["nothing", "not a run folder"]),
    ("resume-config-not-json", lambda t: ["pretrain", "--resume", str(run_folder(t, "{not json"))],
     ["config.json", "not valid JSON"]),
    ("resume-config-without-method", lambda t: ["pretrain", "--resume", str(run_folder(t, json.dumps({"spec": {}})))],
     ["config.json", "method"]),
    ("evaluate-config-without-spec", lambda t: ["evaluate", str(run_folder(t, json.dumps(
        {"method": "rotation", "method_config": {}})))], ["config.json", "spec"]),
    ("evaluate-missing-run", lambda t: ["evaluate", str(t / "nowhere")], ["nowhere", "not a run folder"]),
    # --- evaluation budgets -------------------------------------------------------------------------------
    ("labels-per-class-0", lambda t: ["evaluate", str(t), "--labels-per-class", "0"], ["labels_per_class=0", ">= 1"]),
    ("labels-per-class-negative", lambda t: ["evaluate", str(t), "--labels-per-class", "5", "-3"],
     ["labels_per_class=-3", ">= 1"]),
    ("label-fraction-0", lambda t: ["evaluate", str(t), "--label-fraction", "0"], ["label_fraction=0.0", "(0, 1]"]),
    ("label-fraction-above-1", lambda t: ["evaluate", str(t), "--label-fraction", "1.5"], ["label_fraction=1.5", "(0, 1]"]),
    ("label-fraction-nan", lambda t: ["evaluate", str(t), "--label-fraction", "nan"], ["label_fraction=nan", "(0, 1]"]),
    ("seeds-negative", lambda t: ["evaluate", str(t), "--seeds", "-1"], ["seeds=-1", ">= 0"]),
    ("report-missing-run", lambda t: ["report", str(t / "nowhere")], ["nowhere", "not a run folder"]),
]


# --- data that used to be silently wrong or a traceback (issue 12, section 4) --------------------------------
def npz_of(tmp: Path, name: str, **arrays) -> str:
    np.savez(tmp / name, **arrays)
    return str(tmp / name)


def forged_npz(tmp: Path, shape: tuple[int, ...]) -> str:
    """A tiny .npz whose array header declares `shape`: np.load would try to allocate all of it."""
    import io
    import zipfile
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(tmp / "forged.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", header.getvalue() + bytes(1000))
    return str(tmp / "forged.npz")


def image_folder_of(tmp: Path) -> str:
    from PIL import Image
    (tmp / "pics" / "cats").mkdir(parents=True, exist_ok=True)
    for i in range(3):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(tmp / "pics" / "cats" / f"{i}.png")
    return str(tmp / "pics")


def folder_of(tmp: Path, files: dict[str, bytes]) -> str:
    (tmp / "folder").mkdir(exist_ok=True)
    for name, content in files.items():
        write(tmp / "folder", name, content)
    return str(tmp / "folder")


def saved_run(tmp: Path, method: str, spec, **options) -> str:
    """A run folder written by hand (weights and config.json, no training): what `evaluate` reads."""
    from dataclasses import asdict
    from selfsup.methods import build_method
    from selfsup.runs import RunFolder, save_weights
    run = RunFolder(tmp / f"{method}-run")
    m = build_method(method, spec, **options)
    run.path.mkdir(exist_ok=True)
    digest = save_weights(m, run.weights)
    run.write_config({"method": method, "method_config": asdict(m.config), "spec": asdict(spec),
                      "data": {"name": "elsewhere", "source": "elsewhere"}, "weights_sha256": digest})
    return str(run.path)


TEXT_SPEC = DataSpec("text", channels=0, height=0, width=0, vocab_size=64, seq_len=16, extra={"pair_len": 13})
TINY_TEXT_SET = ["--set", 'encoder_kwargs={"dim": 16, "layers": 1, "heads": 2, "ffn_dim": 32}']
IMAGES = synthetic_images(n=64, classes=4)
images, labels = IMAGES.images.numpy(), IMAGES.labels.numpy()


def text(*args: str) -> list[str]:
    return ["pretrain", "mlm", "--no-progress", *TINY_TEXT_SET, *args]


DATA_CASES = [
    # text methods given what is not text: skipped as binary (counted, named), then one line when none is left
    ("text-random-bytes", lambda t: text("--data", write(t, "noise.bin", np.random.default_rng(0).bytes(4096))),
     ["noise.bin", "binary", "Give UTF-8"]),
    ("text-elf-binary", lambda t: text("--data", write(t, "tool", b"\x7fELF\x02\x01\x01" + bytes(200) + b"main")),
     ["tool", "executable (ELF)", "Give UTF-8"]),
    ("text-npz", lambda t: text("--data", tiny_npz(t)), ["tiny.npz", "NumPy arrays", "give a text file"]),
    ("text-npz-renamed", lambda t: text("--data", write(t, "data.txt", (t / "..").joinpath(tiny_npz(t)).read_bytes())),
     ["data.txt", "zip archive", "Give UTF-8"]),
    ("text-image-folder", lambda t: text("--data", image_folder_of(t)), ["pics", "no text files", "text methods"]),
    ("text-one-huge-line", lambda t: text("--data", write(t, "dump.txt", b"word " * 250_000)),
     ["dump.txt", "over 1,000,000 bytes", "split it"]),
    # .npz and other files given to image methods
    ("npz-one-hwc-image", lambda t: pretrain("--data", npz_of(t, "one.npz", images=np.zeros((28, 28, 3), np.uint8))),
     ["one.npz", "(28, 28, 3)", "without the N axis", "x[None]"]),
    ("npz-one-hw-image", lambda t: pretrain("--data", npz_of(t, "one.npz", images=np.zeros((28, 28), np.uint8))),
     ["one.npz", "without the N axis"]),
    ("npz-4x4-images", lambda t: pretrain("--data", npz_of(t, "small.npz", images=images[:, :, :4, :4])),
     ["4x4", "convnet", "give larger images"]),
    ("npz-nan-pixels", lambda t: pretrain("--data", npz_of(t, "nan.npz", images=np.where(
        np.arange(images.size).reshape(images.shape) % 97 == 0, np.nan, images / 255.0))),
     ["nan.npz", "NaN", "nan_to_num"]),
    ("npz-object-array", lambda t: pretrain("--data", npz_of(t, "ragged.npz", images=np.array(
        [np.zeros((28, 28)), np.zeros((14, 14))], dtype=object))), ["ragged.npz", "Python objects", "np.stack"]),
    ("npz-huge-declared-array", lambda t: pretrain("--data", forged_npz(t, (10**6, 1, 1000, 1000))),
     ["forged.npz", "GiB", "limit"]),
    ("npz-not-a-zip", lambda t: pretrain("--data", write(t, "fake.npz", b"not a zip file at all")),
     ["fake.npz", "cannot read", "np.savez"]),
    ("plain-npy", lambda t: pretrain("--data", str(np.save(t / "plain.npy", images) or t / "plain.npy")),
     ["plain.npy", "np.savez", "np.load('plain.npy')"]),
    ("text-file-to-image-method", lambda t: pretrain("--data", write(t, "notes.txt", "some words\n")),
     ["notes.txt", "image methods do not read", "text methods"]),
    # folders of images (how they are read is the subject of the own-data issue; these end in one line)
    ("folder-without-images", lambda t: pretrain("--data", folder_of(t, {"readme.md": b"no pictures"})),
     ["no images found in", "Pillow formats"]),
    ("folder-all-corrupt", lambda t: pretrain("--data", folder_of(t, {"a.png": b"\x89PNG broken", "b.jpg": b"junk"})),
     ["none of the 2 image files", "could be decoded", "a.png", "replace them"]),
    ("folder-image-size-4", lambda t: pretrain("--data", image_folder_of(t), "--image-size", "4"),
     ["4x4", "give larger images", "--image-size"]),
    # evaluating a run on data of the other kind
    ("evaluate-text-run-on-images", lambda t: ["evaluate", saved_run(t, "mlm", TEXT_SPEC, **TINY_TEXT), "--data",
                                               tiny_npz(t)], ["tiny.npz", "NumPy arrays", "takes text"]),
    ("evaluate-on-4x4-images", lambda t: ["evaluate", saved_run(t, "rotation", IMAGES.spec, **TINY), "--data",
                                          npz_of(t, "small.npz", images=images[:, :, :4, :4], labels=labels)],
     ["4x4", "give larger images"]),
    ("evaluate-image-run-on-text", lambda t: ["evaluate", saved_run(t, "rotation", IMAGES.spec, **TINY), "--data",
                                              write(t, "notes.txt", "some words\n")], ["notes.txt", "text methods"]),
]
CASES += DATA_CASES


def run_folder(tmp: Path, config_text: str) -> Path:
    run = tmp / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(config_text)
    return run


@pytest.mark.parametrize("argv, words", [pytest.param(argv, words, id=name) for name, argv, words in CASES])
def test_a_bad_input_ends_in_one_clear_line_and_exit_code_2(argv, words, tmp_path, capsys, monkeypatch):
    if "--accelerator" in argv(tmp_path) and "gpu" in argv(tmp_path) and torch.cuda.is_available():
        pytest.skip("a GPU is visible here, so --accelerator gpu is a good input (counted skip)")
    monkeypatch.chdir(tmp_path)  # a run folder a case might start would land in the scratch folder
    capsys.readouterr()
    code = main(argv(tmp_path))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("selfsup: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert not (tmp_path / "runs").exists()  # it failed before it made a run folder


def test_the_corpus_is_large_and_every_case_is_named_once():
    names = [name for name, _, _ in CASES] + [name for name, _ in API_CASES]
    assert len(DATA_CASES) >= 15
    assert len(names) >= 40 and len(set(names)) == len(names)


# Inputs only the Python API can give (the CLI's parser types them).
API_CASES = [
    ("labels-per-class-none", lambda: api.evaluate("run", labels_per_class=None)),
    ("labels-per-class-empty", lambda: api.evaluate("run", labels_per_class=[])),
    ("seeds-empty", lambda: api.evaluate("run", seeds=[])),
    ("seeds-none", lambda: api.evaluate("run", seeds=None)),
    ("epochs-a-float", lambda: api.pretrain("rotation", epochs=2.5)),
    ("pool-size-a-string", lambda: api.pretrain("rotation", pool_size="all")),
    ("train-not-a-dict-value", lambda: api.pretrain("rotation", train={"batch_size": [64]})),
]


@pytest.mark.parametrize("call", [pytest.param(call, id=name) for name, call in API_CASES])
def test_a_bad_api_argument_raises_a_selfsup_error_before_any_work(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SelfSupError):
        call()
    assert not (tmp_path / "runs").exists()


def test_sparse_labels_are_remapped_and_said(tmp_path):
    """Labels {0, 1000000} used to make a 1,000,001-class head; now 2 classes, named after the values."""
    from selfsup.data.sources import read_npz
    sparse = np.where(labels % 2 == 0, 0, 1_000_000)
    path = npz_of(tmp_path, "sparse.npz", images=images, labels=sparse)
    with pytest.warns(UserWarning, match=r"2 distinct values of 'labels' \(0, 1000000\).*remapped to 0..1"):
        data, reading = read_npz(path)
    assert data.classes == ["0", "1000000"] and data.spec.num_classes == 2
    assert torch.equal(data.labels, torch.from_numpy((sparse > 0).astype(np.int64)))
    assert reading.notes and "remapped" in reading.notes[0]
    dense = read_npz(npz_of(tmp_path, "dense.npz", images=images, labels=labels))[0]
    assert dense.classes == ["0", "1", "2", "3"] and torch.equal(dense.labels, torch.from_numpy(labels))


def test_a_compressed_npz_that_inflates_hugely_is_refused_before_anything_is_decompressed(tmp_path, monkeypatch):
    import selfsup.data.sources as sources
    np.savez_compressed(tmp_path / "bomb.npz", images=np.zeros((64, 1, 256, 256), np.uint8))  # 4 MiB -> ~4 KiB
    monkeypatch.setattr(sources, "MAX_NPZ_RATIO_ABOVE", 1 << 20)  # the 256 MiB floor, scaled down for a fast test
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("decompressed before the check"))
    with pytest.raises(SelfSupError, match=r"bomb.npz: .* would inflate to .*over 100x.*np.savez"):
        sources.read_npz(tmp_path / "bomb.npz")


def test_a_huge_one_line_text_file_is_skipped_without_being_loaded(tmp_path):
    """Streamed: the file is never read whole (it used to cost gigabytes to tokenize a 23 MB line)."""
    import tracemalloc
    from selfsup.data.text import MAX_LINE_BYTES, TextReading
    huge = tmp_path / "dump.txt"
    huge.write_bytes(b"x" * (8 * MAX_LINE_BYTES))
    reading = TextReading(str(tmp_path))
    tracemalloc.start()
    docs = reading.read(huge)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert docs == [] and len(reading.skipped) == 1 and "over 1,000,000 bytes" in reading.skipped[0]
    assert peak < 3 * (1 << 20)  # a block or two, not the 8 MB file
    ok = tmp_path / "ok.txt"
    ok.write_bytes(b"a short line\n" * 10 + b"\n" + b"y" * (MAX_LINE_BYTES - 1) + b"\n\nlast words")
    assert TextReading(str(tmp_path)).read(ok)[0].startswith("a short line")  # under the limit: read as before


def test_the_internal_test_split_is_named_not_called_a_label_budget():
    from selfsup.data.splits import make_splits
    with pytest.raises(SelfSupError, match=r"class 0 has 16 examples, but 100 of every class are held out as the "
                                           r"test set.*lower test_per_class") as e:
        make_splits(IMAGES, None, labels_per_class=5)
    assert "label budget" not in str(e.value)
