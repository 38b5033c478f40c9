"""A bench over K slices against running clean-fid once per slice folder, on the same images: time ratio.

clean-fid is run as people run it for sliced numbers: one `compute_fid` and one `compute_kid` per
slice folder against the real folder (every call re-extracts both folders). Ours is one `drfhq bench`
(method `input`, all four metrics) with a fresh feature cache, then a second bench with another
slicing that reuses every feature.

    .venv/bin/python benchmarks/bench_slices.py --dataset DATASET --real REAL_DIR [--limit 120]
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
    args = parser.parse_args()
    rows, _ = dataset_rows(args.dataset, args.limit)
    work = Path(tempfile.mkdtemp(prefix="bench_slices_"))
    slices = {}
    for column in ("gender", "age_group"):
        for r in rows:
            slices.setdefault(f"{column}={r[column]}", []).append(r)
    slices = {k: v for k, v in slices.items() if len(v) >= 2}
    fid = offline_cleanfid()
    kw = dict(mode="clean", device=torch.device("cpu"), num_workers=0, verbose=False, use_dataparallel=False)
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
    base = dict(dataset=str(args.dataset), real=str(args.real), baselines=("input",), cache=str(cache), limit=args.limit)
    t0 = time.perf_counter()
    run_bench(BenchConfig(out=str(work / "run"), slices=("gender", "age_group"), **base), log=lambda *a: None)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_bench(BenchConfig(out=str(work / "run"), slices=("race",), cross=("gender*age_group",), **base), log=lambda *a: None)
    t_again = time.perf_counter() - t0
    print(f"images: {len(rows)}   slices: {len(slices)} ({', '.join(slices)})")
    print(f"clean-fid, FID+KID once per slice folder : {t_clean:7.1f} s")
    print(f"drfhq bench, fresh cache (+identity, LPIPS): {t_ours:7.1f} s   ratio {t_clean / t_ours:5.1f}x")
    print(f"drfhq bench, another slicing, warm cache   : {t_again:7.1f} s   ratio {t_clean / t_again:5.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
