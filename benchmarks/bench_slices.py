"""A bench over K slices against running clean-fid once per slice folder, on the same images: time ratio.

clean-fid is run as people run it for sliced numbers: one `compute_fid` and one `compute_kid` per
slice folder against the real folder (every call re-extracts both folders). Ours is one `drfhq bench`
(method `input`, every metric) with a fresh feature cache, then a second bench with another
slicing that reuses every feature. Throughput: images per second of the whole bench (fresh cache:
Inception, landmarks found again, identity, LPIPS, skin colour, every slice) against clean-fid's FID
on the same dataset folder and real folder, both counting the images each decodes.

    .venv/bin/python benchmarks/bench_slices.py --dataset DATASET --real REAL_DIR [--limit 120] [--device cuda] [--workers 4]
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from drfhq_tools.bench.cleanfid_reference import offline_cleanfid
from drfhq_tools.bench.config import BenchConfig
from drfhq_tools.bench.run import dataset_rows, run_bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--real", type=Path, required=True, help="a folder of aligned real images")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows, _ = dataset_rows(args.dataset, args.limit)
    work = Path(tempfile.mkdtemp(prefix="bench_slices_"))
    slices = {}
    for column in ("gender", "age_group"):
        for r in rows:
            slices.setdefault(f"{column}={r[column]}", []).append(r)
    slices = {k: v for k, v in slices.items() if len(v) >= 2}
    fid = offline_cleanfid()
    kw = dict(mode="clean", device=torch.device(args.device), num_workers=args.workers, verbose=False, use_dataparallel=False)
    whole = work / "whole"
    whole.mkdir()
    for r in rows:
        os.symlink(r["image_file"], whole / Path(r["image_file"]).name)
    n_real = sum(1 for p in args.real.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    t0 = time.perf_counter()
    fid.compute_fid(str(whole), str(args.real), **kw)
    t_fid_once = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, members in slices.items():
        folder = work / name.replace("=", "_")
        folder.mkdir()
        for r in members:
            os.symlink(r["image_file"], folder / Path(r["image_file"]).name)
        fid.compute_fid(str(folder), str(args.real), **kw)
        np.random.seed(0)
        fid.compute_kid(str(folder), str(args.real), **kw)
    t_clean = time.perf_counter() - t0
    cache = work / "cache.sqlite"
    base = dict(dataset=str(args.dataset), real=str(args.real), baselines=("input",), cache=str(cache), limit=args.limit,
                device=args.device, workers=args.workers)
    t0 = time.perf_counter()
    run_bench(BenchConfig(out=str(work / "run"), slices=("gender", "age_group"), **base), log=lambda *a: None)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_bench(BenchConfig(out=str(work / "run"), slices=("race",), cross=("gender*age_group",), **base), log=lambda *a: None)
    t_again = time.perf_counter() - t0
    print(f"images: {len(rows)}   slices: {len(slices)} ({', '.join(slices)})")
    print(f"clean-fid, FID+KID once per slice folder : {t_clean:7.1f} s")
    print(f"drfhq bench, fresh cache, every metric    : {t_ours:7.1f} s   ratio {t_clean / t_ours:5.1f}x")
    print(f"drfhq bench, another slicing, warm cache   : {t_again:7.1f} s   ratio {t_clean / t_again:5.1f}x")
    images = len(rows) + n_real
    print(f"throughput ({images} images decoded: {len(rows)} dataset + {n_real} real; device {args.device}, {args.workers} workers):")
    print(f"  clean-fid compute_fid (FID only)        : {images / t_fid_once:7.2f} images/s")
    print(f"  drfhq bench, fresh cache, every metric  : {images / t_ours:7.2f} images/s   ratio {t_fid_once / t_ours:5.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
