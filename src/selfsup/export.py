"""Encoders you can take away: `load_encoder`, `export` and `embed`.

    encoder, preprocess = selfsup.load_encoder("runs/simclr-...")
    features = encoder(preprocess(images))          # images: uint8 (N, C, H, W) at the run's size

The preprocessing is the method's `encoder_input` (uint8 -> what the encoder saw: floats in [0, 1], the L
channel of Lab colour, a per-image normalisation, a low-resolution view...), traced once into TorchScript,
so calling it needs torch only, never selfsup. Text runs give the tokenizer instead (`tokenizers`).

`export` writes a folder that describes itself: config.json (input, output, the run it came from),
README.md with the code that loads it, and the encoder in one format:
  safetensors   encoder.safetensors (plain tensors) + preprocess.pt (TorchScript) or tokenizer.json
  torchscript   encoder.pt: preprocessing and encoder in one graph, uint8 images in, features out
  onnx          encoder.onnx: the same graph for onnxruntime and other ONNX tools
  hf            text runs: the Hugging Face model and tokenizer (config.json, model.safetensors,
                tokenizer.json, tokenizer_config.json) that `transformers.AutoModel.from_pretrained(dir)` and
                `AutoTokenizer.from_pretrained(dir)` load in one call; selfsup's description is selfsup.json
`embed` writes one feature vector per input, with its file name, for retrieval and clustering.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from selfsup.api import own_data, run_data
from selfsup.data.base import DataSource, DataSpec
from selfsup.errors import SelfSupError
from selfsup.evaluate.features import extract_features
from selfsup.methods.base import Method
from selfsup.runs import RunFolder, load_run
from selfsup.text.tokenizer import CLS_ID, PAD_ID, SEP_ID, TOKENIZER_FILE, load_tokenizer
from selfsup.utils import atomic_write, atomic_write_text, publish

FORMATS = ("safetensors", "torchscript", "onnx", "hf")
EMBEDDING_SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
SPECIAL_IDS = {"cls": CLS_ID, "sep": SEP_ID, "pad": PAD_ID}


class TakeAway(NamedTuple):
    """What `load_encoder` returns: the encoder and what turns raw inputs into its input."""

    encoder: nn.Module
    preprocess: Any  # images: a TorchScript module, uint8 (N, C, H, W) -> encoder input; text: a Tokenizer


class EncoderInput(nn.Module):
    """A method's `encoder_input` as a module of its own (the method is held, not registered as a
    submodule, so tracing keeps only the operations it runs, none of the method's weights)."""

    def __init__(self, method: Method):
        super().__init__()
        object.__setattr__(self, "method", method)

    def forward(self, images: Tensor) -> Tensor:
        return self.method.encoder_input(images)


class ImageFeatures(nn.Module):
    """uint8 images (N, C, H, W) -> features (N, D): the method's preprocessing, then its encoder."""

    def __init__(self, method: Method):
        super().__init__()
        self.preprocess, self.encoder = EncoderInput(method), method.encoder

    def forward(self, images: Tensor) -> Tensor:
        return self.encoder(self.preprocess(images))


class TextFeatures(nn.Module):
    """Token ids and attention mask (N, L) -> features (N, D), as the run's probes read them."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.encoder({"input_ids": input_ids, "attention_mask": attention_mask != 0})


def input_shape(spec: DataSpec) -> tuple[int, int, int]:
    """(C, H, W) of one image the encoder takes; video runs are evaluated, and exported, frame by frame."""
    return spec.channels, spec.height, spec.width


def example_images(spec: DataSpec, n: int = 2) -> Tensor:
    return torch.randint(0, 256, (n, *input_shape(spec)), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def example_tokens(spec: DataSpec, n: int = 2) -> tuple[Tensor, Tensor]:
    ids = torch.randint(5, max(6, spec.vocab_size), (n, spec.seq_len), generator=torch.Generator().manual_seed(0))
    return ids, torch.ones_like(ids)


def trace(module: nn.Module, example: Tensor | tuple[Tensor, ...]) -> torch.jit.ScriptModule:
    """TorchScript by tracing, without the deprecation notice: it is the format users asked for."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        with torch.no_grad():
            return torch.jit.trace(module.eval(), example, check_trace=False)


def load_encoder(run_dir: str | Path) -> TakeAway:
    """The encoder of run `run_dir` as a plain nn.Module (eval mode), and its preprocessing.

    Images: `preprocess` is a TorchScript module from uint8 images (N, C, H, W), at the size the run was
    trained on, to the encoder's input, doing exactly what the method does for evaluation; so
    `encoder(preprocess(images))` are the features the run's probes read. Text: `preprocess` is the run's
    `tokenizers.Tokenizer`, and the encoder takes {"input_ids", "attention_mask"} (N, L) built as
    [CLS] subwords [SEP] [PAD]... (ids 1, ..., 2, 0...).
    """
    method = load_run(run_dir)
    if method.modality == "text":
        return TakeAway(method.encoder, load_tokenizer(run_dir))
    return TakeAway(method.encoder, trace(EncoderInput(method), example_images(method.spec)))


# --- export ------------------------------------------------------------------------------------------------
def describe(method: Method, run: RunFolder, fmt: str, files: dict[str, str]) -> dict:
    """config.json of an export: what goes in, what comes out, and where it came from."""
    from selfsup import __version__  # here: the package imports this module while it initialises
    spec = method.spec
    if method.modality == "text":
        inputs = {"input_ids": ["N", spec.seq_len], "attention_mask": ["N", spec.seq_len], "dtype": "int64",
                  "layout": "[CLS]={cls} subwords [SEP]={sep}, then [PAD]={pad} up to seq_len; attention_mask 1 "
                            "where not [PAD]".format(**SPECIAL_IDS),
                  "tokenizer": TOKENIZER_FILE}
    else:
        inputs = {"images": ["N", *input_shape(spec)], "dtype": "uint8", "range": [0, 255],
                  "preprocessing": " ".join((type(method).encoder_input.__doc__ or "").split("\n\n")[0].split())}
    pool = getattr(method.encoder, "pool_mode", None)
    return {"format": fmt, "files": files, "input": inputs, **({"pool": pool} if pool else {}),
            "output": {"features": ["N", method.feature_dim],
            "dtype": "float32"}, "method": method.name, "modality": method.modality,
            "method_config": json.loads(json.dumps(run.read_config()["method_config"])),
            "spec": run.read_config()["spec"], "run": str(run.path.resolve()), "selfsup_version": __version__}


TOKENIZE = """\
from tokenizers import Tokenizer
tokenizer = Tokenizer.from_file("tokenizer.json")
L = {seq_len}  # [CLS]={cls} subwords [SEP]={sep}, then [PAD]={pad} up to L
ids = [[{cls}] + e.ids[:L - 2] + [{sep}] + [{pad}] * (L - 2 - len(e.ids[:L - 2]))
       for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
"""
REBUILD = """\
# the module these weights fit is built by selfsup (pip install selfsup)
import json
from selfsup import build_method
from selfsup.data.base import DataSpec
config = json.load(open("config.json"))
encoder = build_method(config["method"], DataSpec(**config["spec"]), **config["method_config"]).encoder
encoder.load_state_dict(weights)
encoder.eval()
"""
SNIPPETS = {  # format -> (images, text); run in the export folder, with `images` or `texts` defined
    "hf": ("", """\
import torch
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained(".").eval()
tokenizer = AutoTokenizer.from_pretrained(".")
batch = tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
{pool}"""),
    "torchscript": ("""\
import torch
encoder = torch.jit.load("encoder.pt")
with torch.no_grad():
    features = encoder(images)  # images: torch.uint8 (N, C, H, W) -> (N, D)
""", """\
import torch
{tokenize}encoder = torch.jit.load("encoder.pt")
ids = torch.tensor(ids)
with torch.no_grad():
    features = encoder(ids, (ids != 0).long())
"""),
    "onnx": ("""\
import onnxruntime as ort
session = ort.InferenceSession("encoder.onnx")
features = session.run(None, {{"images": images}})[0]  # images: numpy uint8 (N, C, H, W) -> (N, D)
""", """\
import numpy as np
import onnxruntime as ort
{tokenize}session = ort.InferenceSession("encoder.onnx")
ids = np.array(ids, dtype=np.int64)
features = session.run(None, {{"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}})[0]
"""),
    "safetensors": ("""\
import torch
from safetensors.torch import load_file
weights = load_file("encoder.safetensors")  # plain tensors
preprocess = torch.jit.load("preprocess.pt")  # uint8 (N, C, H, W) -> the encoder's input; needs torch only
{rebuild}with torch.no_grad():
    features = encoder(preprocess(images))
""", """\
import torch
from safetensors.torch import load_file
weights = load_file("encoder.safetensors")  # plain tensors
{tokenize}{rebuild}ids = torch.tensor(ids)
with torch.no_grad():
    features = encoder({{"input_ids": ids, "attention_mask": ids != 0}})
"""),
}


def snippet(fmt: str, config: dict) -> str:
    """Python that loads export format `fmt` and computes features, run in the export folder."""
    images, text = SNIPPETS[fmt]
    template = text if config["modality"] == "text" else images
    tokenize = TOKENIZE.format(seq_len=config["spec"]["seq_len"], **SPECIAL_IDS) if config["modality"] == "text" else ""
    return template.format(tokenize=tokenize, rebuild=REBUILD, pool=POOL_SNIPPETS.get(config.get("pool", ""), ""))


POOL_SNIPPETS = {  # how the run's probes pool the token states into features
    "cls": "features = hidden[:, 0]  # the [CLS] state, as the run's probes read it\n",
    "mean": "mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
            "features = (hidden * mask).sum(1) / mask.sum(1)  # mean over non-pad tokens, as the run's probes\n",
    "last": "last = batch[\"attention_mask\"].sum(1) - 1\n"
            "features = hidden[torch.arange(len(hidden)), last]  # the last real token, as the run's probes\n",
}


def readme(fmt: str, config: dict) -> str:
    """The README of an export: what goes in and out, and the snippet that loads it."""
    text = config["modality"] == "text"
    shape = ", ".join(str(s) for s in config["input"]["input_ids" if text else "images"])
    return (f"# {config['method']} encoder ({fmt})\n\nExported by selfsup {config['selfsup_version']} from "
            f"{config['run']}.\nInput: {'token ids and attention mask' if text else 'uint8 images'} ({shape}); "
            f"output: features ({', '.join(map(str, config['output']['features']))}), float32. "
            f"{'selfsup.json' if fmt == 'hf' else 'config.json'} says the rest.\n\n```python\n{snippet(fmt, config)}```\n")


def graph(method: Method) -> tuple[nn.Module, tuple[Tensor, ...], list[str]]:
    """The module an export traces, an example input for it, and its input names."""
    if method.modality == "text":
        return TextFeatures(method.encoder), example_tokens(method.spec), ["input_ids", "attention_mask"]
    return ImageFeatures(method), (example_images(method.spec),), ["images"]


def write_onnx(method: Method, path: Path) -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as e:
        raise SelfSupError("ONNX export needs the onnx package: pip install 'selfsup[export]' (or onnx)") from e
    module, example, names = graph(method)
    axes = {name: {0: "N"} for name in names} | {"features": {0: "N"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atomic_write(path, lambda tmp: torch.onnx.export(
            module.eval(), example, str(tmp), dynamo=False, input_names=names, output_names=["features"],
            dynamic_axes=axes))  # dynamo=False: the TorchScript exporter, which needs no onnxscript


def write_format(method: Method, run: RunFolder, fmt: str, out: Path) -> dict[str, str]:
    """Write the encoder in format `fmt` into `out`; returns {role: file name}."""
    text = method.modality == "text"
    if fmt == "hf":
        return write_hf(method, run, out)
    files = {"tokenizer": TOKENIZER_FILE} if text else {}
    if text:
        shutil.copyfile(run.path / TOKENIZER_FILE, out / TOKENIZER_FILE)
    if fmt == "safetensors":
        from safetensors.torch import save_file
        state = {k: v.detach().contiguous().clone() for k, v in method.encoder.state_dict().items()}
        atomic_write(out / "encoder.safetensors", lambda tmp: save_file(state, str(tmp)))
        files["weights"] = "encoder.safetensors"
        if not text:
            preprocess = trace(EncoderInput(method), example_images(method.spec))
            atomic_write(out / "preprocess.pt", lambda tmp: torch.jit.save(preprocess, str(tmp)))
            files["preprocess"] = "preprocess.pt"
    elif fmt == "torchscript":
        module, example, _ = graph(method)
        scripted = trace(module, example)
        atomic_write(out / "encoder.pt", lambda tmp: torch.jit.save(scripted, str(tmp)))
        files["model"] = "encoder.pt"
    else:
        write_onnx(method, out / "encoder.onnx")
        files["model"] = "encoder.onnx"
    return files


def write_hf(method: Method, run: RunFolder, out: Path) -> dict[str, str]:
    """The Hugging Face model (BertModel / GPT2Model) and its tokenizer, saved into a temporary folder beside
    `out` and moved in file by file (each `publish` is one atomic rename)."""
    from selfsup.text.tokenizer import hf_tokenizer

    model = getattr(method.encoder, "model", None)
    if method.modality != "text" or model is None or not hasattr(model, "save_pretrained"):
        raise SelfSupError(f"--format hf needs a text run (its encoder is a Hugging Face model); {run.path} is a "
                           f"{method.modality} run of {method.name}: use safetensors, torchscript or onnx")
    tokenizer = hf_tokenizer(load_tokenizer(run.path), method.spec.seq_len)
    with tempfile.TemporaryDirectory(dir=out, prefix=".hf-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        names = sorted(p.name for p in Path(tmp).iterdir() if p.is_file())
        for name in names:
            publish(Path(tmp) / name, out / name)
    return {"model": "model.safetensors", "model_config": "config.json", "tokenizer": "tokenizer.json",
            "files": names}


def export(run_dir: str | Path, fmt: str = "safetensors", out: str | Path | None = None) -> Path:
    """Write run `run_dir`'s encoder to folder `out` (default RUN/export-FORMAT) in format `fmt`
    (safetensors, torchscript or onnx), with config.json and a README.md that loads it. Returns `out`."""
    if fmt not in FORMATS:
        raise SelfSupError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run = RunFolder(run_dir)
    method = load_run(run_dir)
    out = Path(out) if out is not None else run.path / f"export-{fmt}"
    out.mkdir(parents=True, exist_ok=True)
    config = describe(method, run, fmt, write_format(method, run, fmt, out))
    # hf: config.json is the Hugging Face model's own; selfsup's description goes beside it
    atomic_write_text(out / ("selfsup.json" if fmt == "hf" else "config.json"), json.dumps(config, indent=2) + "\n")
    atomic_write_text(out / "README.md", readme(fmt, config))
    return out


# --- embed -------------------------------------------------------------------------------------------------
def item_names(data: DataSource, part: str) -> list[str]:
    """File names where the data has them (a folder of images), else PART/POSITION."""
    names = getattr(data, "names", None)
    return list(names) if names is not None else [f"{part}/{i}" for i in range(len(data))]


def save_numpy(path: Path, save: Callable[[Any], None]) -> None:
    """Atomically write what `save(file)` writes (numpy appends .npy to a bare name, so pass it a file)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            save(f)
    atomic_write(path, write)


def write_embeddings(path: Path, vectors: np.ndarray, names: list[str]) -> list[Path]:
    """Write `vectors` (N, D) and their `names` in the format of `path`'s suffix; returns the files written."""
    suffix = path.suffix
    if suffix == ".npy":
        sidecar = path.with_suffix(".names.json")
        save_numpy(path, lambda f: np.save(f, vectors))
        atomic_write_text(sidecar, json.dumps(names, ensure_ascii=False) + "\n")
        return [path, sidecar]
    if suffix == ".npz":
        save_numpy(path, lambda f: np.savez(f, embeddings=vectors, names=np.array(names)))
    elif suffix == ".csv":
        import csv
        import io
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["name"] + [f"f{j}" for j in range(vectors.shape[1])])
        writer.writerows([name, *map(repr, row.tolist())] for name, row in zip(names, vectors))
        atomic_write_text(path, buffer.getvalue())
    elif suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise SelfSupError("writing .parquet needs pyarrow (pip install pyarrow); or write .npy (with a "
                               ".names.json beside it), .npz or .csv") from e
        table = pa.table({"name": names, "embedding": list(vectors)})
        atomic_write(path, lambda tmp: pq.write_table(table, str(tmp)))
    else:
        raise SelfSupError(f"cannot write embeddings to {path.name}: end the file name in one of "
                           f"{', '.join(EMBEDDING_SUFFIXES)}")
    return [path]


def embed(run_dir: str | Path, data: str | None = None, out: str | Path = "embeddings.npy",
          batch_size: int = 256, progress: Callable[[str], None] | None = None) -> list[Path]:
    """One feature vector per item of `data` (default: the run's own data), with its name, written to `out`.

    `data` is a folder of images (names are the files' paths inside it; unreadable files are skipped with a
    warning), an .npz file, a text file or folder, or a registered dataset (names train/i and test/i). The
    file's suffix picks the format: .npy (+ OUT.names.json), .npz (embeddings, names), .csv (name, f0, ...)
    or .parquet (name, embedding; needs pyarrow). Returns the files written.
    """
    out = Path(out)
    if out.suffix not in EMBEDDING_SUFFIXES:
        raise SelfSupError(f"cannot write embeddings to {out.name}: end the file name in one of "
                           f"{', '.join(EMBEDDING_SUFFIXES)}")
    run = RunFolder(run_dir)
    method = load_run(run_dir)
    data = data or own_data(run)
    splits = run_data(data, run.path, method.modality, method.spec)
    parts = [("train", splits.train)] + ([("test", splits.test)] if splits.test is not None else [])
    vectors, names = [], []
    for part, source in parts:
        if progress:
            progress(f"embedding {len(source)} items of {data} ({part})")
        vectors.append(extract_features(method, source, batch_size=batch_size))
        names += item_names(source, part)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_embeddings(out, torch.cat(vectors).numpy(), names)
