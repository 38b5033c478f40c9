"""Images per second of bench's feature extraction, on one device: Inception (FID/KID features) and
LPIPS between pairs, each twice: the network alone on batches already in memory, and end to end (decode
and clean-fid's resize in DataLoader workers, then the network), through the same loaders and network
classes `drfhq bench` uses. Prints a table; `--json` keeps it with the weights' sha256 and the device.

    .venv/bin/python benchmarks/bench_features.py IMAGES [--device cuda] [--batch 64] [--workers 8] [--json FILE]

IMAGES: a folder of aligned square images of one size (a dataset's images/ folder, for example).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn, repeats: int) -> float:
    """Seconds per call of fn, after one warm-up call (cudnn picks its kernels there)."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=256, help="images read (repeated to fill a batch)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of the network alone")
    parser.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    from drfhq_tools.bench.loading import batches, load_inception_input, load_pair, load_rgb
    from drfhq_tools.dataset.decode import IMAGE_SUFFIXES
    from drfhq_tools.models.inception import InceptionFeatures
    from drfhq_tools.models.lpips_net import LpipsDistance

    paths = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.limit]
    if len(paths) < 2:
        raise SystemExit(f"{args.images}: fewer than two images")
    side = load_rgb(paths[0]).shape[0]
    pairs = list(zip(paths, paths[1:] + paths[:1]))
    fill = lambda items: (items * (args.batch // len(items) + 1))[: args.batch]
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rows = []

    def measure(name: str, network, weights: str, load, compute, items) -> None:
        batch = [load(i) for i in fill(items)]
        alone = _timed(args.device, lambda: compute(batch), args.repeats)
        _sync(args.device)
        t0 = time.perf_counter()
        for chunk in batches(items, load, args.batch, args.workers):
            compute(chunk)
        _sync(args.device)
        end_to_end = time.perf_counter() - t0
        rows.append({"extractor": name, "network": network, "weights_sha256": weights, "input_side": side,
                     "batch": args.batch, "network_images_per_s": args.batch / alone,
                     "end_to_end_images_per_s": len(items) / end_to_end, "images": len(items)})

    inception = InceptionFeatures(args.device)
    measure("inception", inception.name, inception.weights_sha256, load_inception_input, inception.forward_resized, paths)
    del inception
    lpips = LpipsDistance(args.lpips_net, args.device)
    measure("lpips", lpips.name, lpips.weights_sha256, load_pair,
            lambda chunk: lpips([a for a, _ in chunk], [b for _, b in chunk]), pairs)
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"

    print(f"bench feature extraction on {device_name} (torch {torch.__version__}), {side} px inputs, "
          f"batch {args.batch}, {args.workers} decode workers")
    print(f"{'extractor':<10} {'network alone':>15} {'end to end':>13}   weights")
    for r in rows:
        print(f"{r['extractor']:<10} {r['network_images_per_s']:>9.1f} img/s {r['end_to_end_images_per_s']:>7.1f} img/s"
              f"   {r['network']} {r['weights_sha256'][:12]}")
    if peak is not None:
        print(f"peak memory allocated by torch: {peak:.2f} GiB")
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "torch": torch.__version__, "workers": args.workers,
                                         "peak_allocated_gib": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
