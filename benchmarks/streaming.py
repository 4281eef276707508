"""Streaming a folder larger than memory (selfsup.data.stream): the first-pass cache build rate, epoch
throughput from the cache against the in-memory path, and peak memory (which must stay under 2 GiB).

    python benchmarks/streaming.py                 # 200,000 JPEGs at 96x96 (about 5.5 GB decoded); the full run
    python benchmarks/streaming.py --count 5000    # a quick check

1. Generate `--count` synthetic colour JPEGs at 96x96 (smooth random gradients, shapes and noise: the point is
   the I/O path, not the content) in `--workdir`, in class folders; kept for the next run.
2. Build the LitData cache (`build_cache`: decode every JPEG once, write uint8 chunks): images/s.
3. One epoch from the cache (`stream_batches`, shuffled, batch 256): images/s for the batches alone and with
   SimCLR's augmentation of each batch (`views.augment`, as a method's `loss` does on the device; here the CPU).
   Peak RSS of this process (and of the build's worker processes) is read after this phase.
4. The in-memory path on the first `--memory-count` images (all of them when they fit in `--memory-count`):
   read from the cache into one uint8 tensor, then batches cut at a seeded permutation (`train.InMemoryBatches`
   does exactly this), with and without the same augmentation. Its RSS comes after the streaming numbers.

Each timed phase stops after `--max-seconds` (the epoch is then partial, and the table says so). Not part of
`make test`. Results: benchmarks/results/streaming-COUNT.{json,md} (with the settings and the load average).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from selfsup.data.stream import StreamedImages, batches_per_epoch, build_cache, stream_batches
from selfsup.utils import atomic_write_text, load_average
from selfsup.views.augment import augment, simclr_views

CLASSES = 10
SIZE = 96


def _write_images(args: tuple[str, int, int, int]) -> int:
    from PIL import Image
    root, start, stop, seed = args
    rng = np.random.default_rng(seed + start)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    for i in range(start, stop):
        c = rng.uniform(0, 255, (3, 3)).astype(np.float32)
        img = c[:, 0, None, None] + c[:, 1, None, None] * xx + c[:, 2, None, None] * yy  # a colour gradient
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.3)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[:, disc] = rng.uniform(0, 255, (3, 1))
        img += rng.normal(0, 12, img.shape)
        pixels = np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        folder = Path(root) / f"class{i % CLASSES}"
        Image.fromarray(pixels).save(folder / f"{i:07d}.jpg", quality=90)
    return stop - start


def generate(root: Path, count: int, workers: int) -> float:
    """Write the JPEG folder (reused when it holds `count` images already); seconds spent (0 when reused)."""
    marker = root / f".complete-{count}"
    if marker.exists():
        return 0.0
    shutil.rmtree(root, ignore_errors=True)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True)
    start, step = time.perf_counter(), 2000
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_images, [(str(root), s, min(count, s + step), 0) for s in range(0, count, step)]))
    marker.write_text("")
    return time.perf_counter() - start


def peak_rss_mib() -> dict:
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def timed(batches, max_seconds: float, total: int, views: bool) -> dict:
    """Images/s over `batches` (stopping after `max_seconds`), optionally augmenting each batch."""
    config, g = simclr_views(), torch.Generator().manual_seed(0)
    n, start = 0, time.perf_counter()
    for batch in batches:
        if views:
            augment(batch, config, generator=g)
        n += len(batch)
        if time.perf_counter() - start > max_seconds:
            break
    seconds = time.perf_counter() - start
    return {"images": n, "seconds": seconds, "images_per_s": n / seconds, "whole_epoch": n >= total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--memory-count", type=int, default=20_000, help="images the in-memory path holds (default "
                   "20,000: 550 MB at 96x96x3, which fits beside the 2 GiB the streaming path is held to)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-seconds", type=float, default=120.0, help="per timed phase")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes that generate and decode")
    p.add_argument("--workdir", default="/tmp/selfsup-streaming-bench")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    work = Path(args.workdir)
    folder, cache_root = work / f"jpegs-{args.count}", work / "cache"
    load_start = load_average()

    generated = generate(folder, args.count, args.workers)
    print(f"generated {args.count} JPEGs in {generated:.0f} s" if generated else f"reusing {folder}", flush=True)
    shutil.rmtree(cache_root, ignore_errors=True)  # time the first pass
    start = time.perf_counter()
    cache = build_cache(folder, size=SIZE, channels=3, cache_root=cache_root, workers=args.workers)
    build_s = time.perf_counter() - start
    data = StreamedImages(cache)
    disk = sum(f.stat().st_size for f in cache.iterdir())
    print(f"cache: {len(data)} images in {build_s:.1f} s ({len(data) / build_s:,.0f} images/s), {disk / 2**30:.2f} GiB",
          flush=True)
    start = time.perf_counter()
    again = build_cache(folder, size=SIZE, channels=3, cache_root=cache_root)
    reuse_s = time.perf_counter() - start
    assert again == cache

    rows = {}
    for views in (False, True):
        key = "stream" + ("+views" if views else "")
        rows[key] = timed(stream_batches(data, args.batch_size, seed=0, epoch=int(views)), args.max_seconds,
                          batches_per_epoch(data, args.batch_size) * args.batch_size, views)
        print(key, rows[key], flush=True)
    rss_stream = peak_rss_mib()

    start = time.perf_counter()  # whole batches of 1,024 (the ragged rest is dropped)
    wanted = -(-min(args.memory_count, len(data)) // 1024)
    images = torch.cat([b for b, _ in zip(stream_batches(data, 1024, 0, 0, shuffle=False), range(wanted))])
    images = images[:args.memory_count].clone()
    n_mem = len(images)
    load_mem_s = time.perf_counter() - start
    for views in (False, True):
        order = torch.randperm(n_mem, generator=torch.Generator().manual_seed(int(views)))
        batches = (images[order[i:i + args.batch_size]] for i in range(0, n_mem - args.batch_size + 1, args.batch_size))
        key = "memory" + ("+views" if views else "")
        rows[key] = timed(batches, args.max_seconds, n_mem // args.batch_size * args.batch_size, views)
        print(key, rows[key], flush=True)
    rss_all = peak_rss_mib()

    report = {
        "settings": vars(args) | {"image_size": SIZE, "threads": torch.get_num_threads()},
        "machine": platform.platform(), "torch": torch.__version__, "python": sys.version.split()[0],
        "images": len(data), "generate_seconds": generated, "build_seconds": build_s,
        "build_images_per_s": len(data) / build_s, "cache_gib": disk / 2**30, "reuse_seconds": reuse_s,
        "memory_images": n_mem, "memory_load_seconds": load_mem_s, "throughput": rows,
        "peak_rss_mib_streaming": rss_stream, "peak_rss_mib_after_memory_path": rss_all,
        "rss_under_2_gib": rss_stream["self"] < 2048 and rss_stream["children"] < 2048,
        "load_average": {"start": load_start, "end": load_average()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    out = Path(args.out)
    report["command"] = "python benchmarks/streaming.py " + " ".join(sys.argv[1:])
    atomic_write_text(out / f"streaming-{args.count}.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / f"streaming-{args.count}.md", markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    s = r["settings"]
    lines = [f"Made by `{r['command']}` on {r['date']} ({r['machine']}, "
             f"{s['threads']} threads, torch {r['torch']}); load average {r['load_average']['start']} at the start, "
             f"{r['load_average']['end']} at the end.", "",
             f"- Cache build (first pass: decode {r['images']:,} JPEGs at {s['image_size']}x{s['image_size']}, "
             f"{s['workers']} workers): {r['build_seconds']:.1f} s, **{r['build_images_per_s']:,.0f} images/s**; "
             f"{r['cache_gib']:.2f} GiB on disk; found again on a second run in {r['reuse_seconds']:.2f} s.",
             f"- Peak RSS while building and streaming: {r['peak_rss_mib_streaming']['self']:,.0f} MiB in the main "
             f"process, {r['peak_rss_mib_streaming']['children']:,.0f} MiB in the largest worker "
             f"({'under' if r['rss_under_2_gib'] else 'OVER'} 2 GiB; it includes the SimCLR augmentation's working memory "
             f"for one batch of {s['batch_size']}).", "",
             f"| path | batches of {s['batch_size']} | images | seconds | images/s | whole epoch |", "|---|---|---|---|---|---|"]
    names = {"stream": ("streamed from the cache", "uint8 only"), "stream+views": ("streamed from the cache", "+ SimCLR views"),
             "memory": (f"in memory ({r['memory_images']:,} images)", "uint8 only"),
             "memory+views": (f"in memory ({r['memory_images']:,} images)", "+ SimCLR views")}
    for key, row in r["throughput"].items():
        path, what = names[key]
        lines.append(f"| {path} | {what} | {row['images']:,} | {row['seconds']:.1f} | {row['images_per_s']:,.0f} | "
                     f"{'yes' if row['whole_epoch'] else 'no (time bound)'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
