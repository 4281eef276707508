"""Encoders you can take away: load_encoder, export (safetensors, torchscript, onnx) and embed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

import selfsup
from selfsup.cli import main
from selfsup.data.folder import image_folder
from selfsup.errors import SelfSupError
from selfsup.export import export, load_encoder
from selfsup.methods.base import build_method
from selfsup.runs import RunFolder, save_weights

from conftest import COLOUR_SPEC, GRAY_SPEC, TINY_OPTIONS, tiny_text

# One method per kind of preprocessing: x / 255 (rotation), the Lab L channel resized to the run's size
# (colorization), per-image normalisation (jigsaw), and a ViT whose class token must follow the batch size (mae).
IMAGE_METHODS = {"rotation": GRAY_SPEC, "colorization": COLOUR_SPEC, "jigsaw": GRAY_SPEC, "mae": GRAY_SPEC}


def saved_run(tmp_path, name, spec, text_data=None):
    """A run folder as `pretrain` leaves it (config.json + weights), with weights moved off their init."""
    torch.manual_seed(0)
    method = build_method(name, spec, **TINY_OPTIONS[name])
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    run = RunFolder(tmp_path / f"run-{name}")
    run.path.mkdir()
    run.write_config({"method": name, "method_config": asdict(method.config), "spec": asdict(spec),
                      "data": {"name": "tiny", "source": "tiny"}})
    save_weights(method, run.weights)
    if text_data is not None:
        text_data.save_to(run.path)
    return run.path, method.eval()


def images_for(spec, n=5, seed=1):
    return torch.randint(0, 256, (n, spec.channels, spec.height, spec.width), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(IMAGE_METHODS))
def test_load_encoder_reproduces_the_runs_features(tmp_path, name):
    spec = IMAGE_METHODS[name]
    run, method = saved_run(tmp_path, name, spec)
    encoder, preprocess = load_encoder(run)
    assert isinstance(encoder, torch.nn.Module) and isinstance(preprocess, torch.jit.ScriptModule)
    assert not encoder.training
    images = images_for(spec)  # 5 images: the preprocessing was traced on 2, the batch size stays free
    with torch.no_grad():
        assert torch.equal(encoder(preprocess(images)), method.features(images))
        assert torch.equal(preprocess(images), method.encoder_input(images))


@pytest.mark.parametrize("name", list(IMAGE_METHODS))
def test_every_export_format_reproduces_the_runs_features(tmp_path, name):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'selfsup[export]')")
    spec = IMAGE_METHODS[name]
    run, method = saved_run(tmp_path, name, spec)
    images = images_for(spec)
    expected = method.features(images)

    out = export(run, "torchscript", tmp_path / "ts")
    scripted = torch.jit.load(str(out / "encoder.pt"))
    assert torch.allclose(scripted(images), expected, atol=1e-6, rtol=0)

    out = export(run, "onnx", tmp_path / "onnx")
    session = ort.InferenceSession(str(out / "encoder.onnx"))
    got = session.run(None, {"images": images.numpy()})[0]
    assert np.abs(got - expected.numpy()).max() <= 1e-4

    out = export(run, "safetensors", tmp_path / "st")
    from safetensors.torch import load_file
    config = json.loads((out / "config.json").read_text())
    encoder = build_method(config["method"], method.spec, **config["method_config"]).encoder.eval()
    encoder.load_state_dict(load_file(str(out / "encoder.safetensors")))
    preprocess = torch.jit.load(str(out / "preprocess.pt"))
    with torch.no_grad():
        assert torch.equal(encoder(preprocess(images)), expected)


def test_export_describes_itself(tmp_path):
    run, method = saved_run(tmp_path, "colorization", COLOUR_SPEC)
    out = export(run, "torchscript")  # default folder: RUN/export-FORMAT
    assert out == run / "export-torchscript"
    config = json.loads((out / "config.json").read_text())
    assert config["input"]["images"] == ["N", 3, 32, 32] and config["input"]["dtype"] == "uint8"
    assert config["output"]["features"] == ["N", method.feature_dim]
    assert config["files"] == {"model": "encoder.pt"} and config["method"] == "colorization"
    assert "L channel of Lab" in config["input"]["preprocessing"]  # the method's own words for what it does
    assert 'torch.jit.load("encoder.pt")' in readme_code(out) and "selfsup" not in readme_code(out)


def readme_code(folder) -> str:
    return (folder / "README.md").read_text().split("```python\n")[1].split("```")[0]


def test_exported_encoders_load_without_selfsup(tmp_path):
    """A fresh process with torch, safetensors and onnxruntime only runs the READMEs' snippets."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'selfsup[export]')")
    run, method = saved_run(tmp_path, "colorization", COLOUR_SPEC)
    for fmt in ("torchscript", "onnx", "safetensors"):
        export(run, fmt, tmp_path / fmt)
    images = images_for(COLOUR_SPEC, n=3)
    np.save(tmp_path / "images.npy", images.numpy())
    np.save(tmp_path / "expected.npy", method.features(images).numpy())
    script = textwrap.dedent(f"""
        import os, sys, numpy as np, torch
        from safetensors.torch import load_file
        root = {str(tmp_path)!r}
        expected = np.load(root + "/expected.npy")
        def features(fmt, images):
            os.chdir(os.path.join(root, fmt))
            scope = {{"images": images}}
            exec(open("README.md").read().split("```python\\n")[1].split("```")[0], scope)
            return np.asarray(scope["features"])
        scripted = features("torchscript", torch.from_numpy(np.load(root + "/images.npy")))
        onnx = features("onnx", np.load(root + "/images.npy"))
        preprocessed = torch.jit.load(root + "/safetensors/preprocess.pt")(torch.from_numpy(np.load(root + "/images.npy")))
        weights = load_file(root + "/safetensors/encoder.safetensors")
        assert scripted.shape == onnx.shape == expected.shape, (scripted.shape, onnx.shape, expected.shape)
        assert np.abs(scripted - expected).max() <= 1e-6 and np.abs(onnx - expected).max() <= 1e-4
        assert preprocessed.shape == (3, 1, 32, 32) and len(weights) > 0
        assert not [m for m in sys.modules if m.split(".")[0] == "selfsup"]
        print("ok", scripted.shape)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ok (3, {method.feature_dim})"


def test_the_safetensors_readme_rebuilds_the_encoder(tmp_path, monkeypatch):
    run, method = saved_run(tmp_path, "jigsaw", GRAY_SPEC)
    out = export(run, "safetensors", tmp_path / "st")
    images = images_for(GRAY_SPEC)
    monkeypatch.chdir(out)
    scope = {"images": images}
    exec(readme_code(out), scope)
    assert torch.equal(scope["features"], method.features(images))


def test_text_runs_give_the_encoder_and_the_tokenizer(tmp_path, monkeypatch):
    data = tiny_text()
    run, method = saved_run(tmp_path, "mlm", data.spec, text_data=data)
    encoder, tokenizer = load_encoder(run)
    assert tokenizer.to_str() == data.tokenizer.to_str()
    batch = data.batch(torch.arange(6))
    with torch.no_grad():
        assert torch.equal(encoder({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}),
                           method.features(batch))
    out = export(run, "torchscript", tmp_path / "ts")
    assert (out / "tokenizer.json").read_text() == (run / "tokenizer.json").read_text()
    scripted = torch.jit.load(str(out / "encoder.pt"))
    ids = batch["input_ids"]
    assert torch.allclose(scripted(ids, (ids != 0).long()), method.features(batch), atol=1e-6, rtol=0)
    scope = {"texts": data.texts[:6]}  # the README tokenizes raw text as the run's data did
    monkeypatch.chdir(out)
    exec(readme_code(out), scope)
    assert torch.allclose(scope["features"], method.features(batch), atol=1e-6, rtol=0)


def test_text_onnx_export_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'selfsup[export]')")
    data = tiny_text()
    run, method = saved_run(tmp_path, "mlm", data.spec, text_data=data)
    out = export(run, "onnx", tmp_path / "onnx")
    batch = data.batch(torch.arange(7))
    ids = batch["input_ids"].numpy()
    got = ort.InferenceSession(str(out / "encoder.onnx")).run(
        None, {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)})[0]
    assert np.abs(got - method.features(batch).numpy()).max() <= 1e-4


@pytest.mark.parametrize("name", ["mlm", "clm", "nsp"])  # BERT mean-pooled, GPT-2, BERT [CLS] with token types
def test_hf_export_loads_with_automodel_and_gives_the_runs_features(tmp_path, monkeypatch, name):
    """`--format hf`: AutoModel and AutoTokenizer load the folder in one call each; from raw text they give
    the same token ids and, pooled as the run pools, the same features as selfsup."""
    from transformers import AutoModel, AutoTokenizer

    data = tiny_text()
    run, method = saved_run(tmp_path, name, data.spec, text_data=data)
    out = export(run, "hf", tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["model_type"] == ("gpt2" if name == "clm" else "bert")
    assert json.loads((out / "selfsup.json").read_text())["pool"] == method.encoder.pool_mode
    assert not [p for p in out.iterdir() if p.name.startswith(".hf-")]  # the temporary folder is gone
    model, tokenizer = AutoModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    assert type(model) is type(method.encoder.model)
    texts = data.texts[:6]
    batch = tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], data.input_ids[:6])  # [CLS] subwords [SEP] [PAD]..., as the run's data
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        ours = method.features(data.batch(torch.arange(6)))
    assert torch.allclose(method.encoder.pool_states(hidden, batch["attention_mask"]), ours, atol=1e-5, rtol=0)
    scope = {"texts": texts}  # the README's snippet does the same from the folder alone
    monkeypatch.chdir(out)
    exec(readme_code(out), scope)
    assert torch.allclose(scope["features"], ours, atol=1e-5, rtol=0)


def test_hf_export_refuses_image_runs(tmp_path):
    run, _ = saved_run(tmp_path, "rotation", GRAY_SPEC)
    with pytest.raises(SelfSupError, match="needs a text run"):
        export(run, "hf", tmp_path / "hf")


def test_unknown_export_format_says_which_exist(tmp_path):
    run, _ = saved_run(tmp_path, "rotation", GRAY_SPEC)
    with pytest.raises(SelfSupError, match="safetensors, torchscript, onnx"):
        export(run, "pickle")


# --- embed -------------------------------------------------------------------------------------------------
@pytest.fixture
def image_dir(tmp_path):
    """Six 28x28 grey images in two class folders, and one file that is not an image."""
    root = tmp_path / "images"
    g = torch.Generator().manual_seed(3)
    for i in range(6):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (28, 28), dtype=torch.uint8, generator=g).numpy()
        Image.fromarray(pixels, mode="L").save(folder / f"img{i}.png")
    (root / "dogs" / "broken.png").write_bytes(b"not a png")
    return root


def test_embed_writes_one_row_per_image_with_its_file_name(tmp_path, image_dir):
    run, method = saved_run(tmp_path, "rotation", GRAY_SPEC)
    with pytest.warns(UserWarning, match="broken.png"):
        files = selfsup.embed(run, data=str(image_dir), out=tmp_path / "emb.npy", batch_size=4)
    assert files == [tmp_path / "emb.npy", tmp_path / "emb.names.json"]
    vectors, names = np.load(files[0]), json.loads(files[1].read_text())
    assert names == [f"cats/img{i}.png" for i in (1, 3, 5)] + [f"dogs/img{i}.png" for i in (0, 2, 4)]
    assert vectors.shape == (6, method.feature_dim)
    for name, row in zip(names, vectors):
        image = torch.from_numpy(np.array(Image.open(image_dir / name)))[None, None]
        assert np.allclose(row, method.features(image)[0].numpy(), atol=1e-6)


@pytest.mark.filterwarnings("ignore:skipped")
def test_embed_formats_carry_the_same_rows(tmp_path, image_dir):
    run, _ = saved_run(tmp_path, "rotation", GRAY_SPEC)
    reference = selfsup.embed(run, data=str(image_dir), out=tmp_path / "emb.npy")
    vectors, names = np.load(reference[0]), json.loads(reference[1].read_text())
    npz = np.load(selfsup.embed(run, data=str(image_dir), out=tmp_path / "emb.npz")[0])
    assert np.array_equal(npz["embeddings"], vectors) and npz["names"].tolist() == names
    lines = selfsup.embed(run, data=str(image_dir), out=tmp_path / "emb.csv")[0].read_text().splitlines()
    assert lines[0].split(",")[:2] == ["name", "f0"] and len(lines) == 1 + len(names)
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == names
    assert np.array_equal(np.array([[float(x) for x in r[1:]] for r in rows], dtype=np.float32), vectors)


@pytest.mark.filterwarnings("ignore:skipped")
def test_embed_writes_parquet_rows_with_their_names(tmp_path, image_dir):
    pq = pytest.importorskip("pyarrow.parquet")  # the `parquet` extra; `dev` includes it
    run, _ = saved_run(tmp_path, "rotation", GRAY_SPEC)
    reference = selfsup.embed(run, data=str(image_dir), out=tmp_path / "emb.npy")
    vectors, names = np.load(reference[0]), json.loads(reference[1].read_text())
    assert selfsup.embed(run, data=str(image_dir), out=tmp_path / "emb.parquet") == [tmp_path / "emb.parquet"]
    table = pq.read_table(tmp_path / "emb.parquet")
    assert table.column_names == ["name", "embedding"] and table.num_rows == len(names)
    assert table.column("name").to_pylist() == names
    assert np.array_equal(np.array(table.column("embedding").to_pylist(), dtype=np.float32), vectors)


@pytest.mark.filterwarnings("ignore:skipped")
def test_embed_without_pyarrow_names_the_formats_it_can_write(tmp_path, image_dir, monkeypatch):
    run, _ = saved_run(tmp_path, "rotation", GRAY_SPEC)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed: importing it fails
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SelfSupError, match="pyarrow.*npy.*npz.*csv"):
        selfsup.embed(run, data=str(image_dir), out=tmp_path / "emb.parquet")
    assert not (tmp_path / "emb.parquet").exists()


def test_embed_and_export_from_the_command_line(tmp_path, image_dir, capsys):
    run, method = saved_run(tmp_path, "rotation", GRAY_SPEC)
    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "ts")]) == 0
    assert (tmp_path / "ts" / "encoder.pt").exists() and "exported torchscript" in capsys.readouterr().out
    with pytest.warns(UserWarning):
        assert main(["embed", str(run), "--data", str(image_dir), "--out", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (6, method.feature_dim)
    assert main(["embed", str(run), "--data", str(image_dir), "--out", str(tmp_path / "e.txt")]) == 2
    assert ".npy, .npz, .csv, .parquet" in capsys.readouterr().err


def test_image_folder_names_follow_subsets(image_dir):
    with pytest.warns(UserWarning):
        data = image_folder(image_dir)
    assert data.subset(torch.tensor([4, 0])).names == [data.names[4], data.names[0]]
    assert data.subset(data.labels == 0).names == [n for n in data.names if n.startswith("cats/")]


def test_embed_names_items_without_files_by_position(tmp_path):
    run, method = saved_run(tmp_path, "rotation", GRAY_SPEC)
    images = images_for(GRAY_SPEC, n=4)[:, 0].numpy()  # (N, H, W): a grey .npz
    np.savez(tmp_path / "x.npz", images=images)
    files = selfsup.embed(run, data=str(tmp_path / "x.npz"), out=tmp_path / "e.npz")
    saved = np.load(files[0])
    assert saved["names"].tolist() == ["train/0", "train/1", "train/2", "train/3"]
    assert np.allclose(saved["embeddings"], method.features(torch.from_numpy(images)[:, None]).numpy(), atol=1e-6)
