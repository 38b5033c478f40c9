"""Seconds per image of our FFHQ alignment against the literal NVlabs procedure, on the same images
and landmarks, in one run; prints the time ratio and the PSNR between the two outputs.

    .venv/bin/python benchmarks/bench_align.py [--size 1024] [--fixtures ../shared/fixtures] [--n 24]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from drfhq_tools.dataset.align import align_face  # noqa: E402
from drfhq_tools.dataset.decode import decode_image  # noqa: E402
from drfhq_tools.models import faces  # noqa: E402
from reference_ffhq import psnr, reference_align  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures")
    parser.add_argument("--n", type=int, default=24, help="images to use (real photos and renders)")
    args = parser.parse_args()
    paths = sorted((args.fixtures / "real").rglob("*.jpg"))[: args.n // 2] + sorted((args.fixtures / "render").rglob("*.png"))[: args.n - args.n // 2]
    samples = []
    for path in paths:
        rgb = decode_image(path).rgb
        found = faces.detect_faces(rgb, "hog")
        if found:
            samples.append((path, rgb, faces.landmarks(rgb, max(found, key=lambda f: f.area).box)))
    ours_t, ref_t, scores = 0.0, 0.0, []
    for _, rgb, lm in samples:
        t0 = time.perf_counter()
        ours = align_face(rgb, lm, args.size).image
        t1 = time.perf_counter()
        ref = reference_align(rgb, lm, args.size)
        t2 = time.perf_counter()
        ours_t += t1 - t0
        ref_t += t2 - t1
        scores.append(psnr(ours, ref))
    n = len(samples)
    print(f"images: {n}   output: {args.size}px")
    print(f"ours      : {ours_t / n * 1000:8.1f} ms/image")
    print(f"reference : {ref_t / n * 1000:8.1f} ms/image  (NVlabs procedure, 4096-px intermediate)")
    print(f"speed-up  : {ref_t / ours_t:8.2f}x")
    print(f"PSNR ours vs reference: mean {np.mean(scores):.2f} dB, min {np.min(scores):.2f} dB")


if __name__ == "__main__":
    main()
