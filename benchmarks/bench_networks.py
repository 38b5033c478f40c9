"""Our torch ports against their originals, in one run:
- dlib's face descriptor: torch (batched) vs dlib's compute_face_descriptor, chips per second;
- MobileStyleGAN: torch (IR interpreter) vs OpenVINO f32, images per second, forward and forward+backward.

    .venv/bin/python benchmarks/bench_networks.py [--chips 64] [--images 2] [--device cpu|cuda]
"""

import argparse
import time

import dlib
import numpy as np
import torch

from drfhq_tools.gan.mobilestylegan import MobileStyleGAN
from drfhq_tools.models.dlib_resnet import DlibFaceResNet
from drfhq_tools.models.weights import resolve
from drfhq_tools.render.sample_real import MobileStyleGanOpenVino
from drfhq_tools.runtime import keep_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chips", type=int, default=64)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, size=(args.chips, 150, 150, 3), dtype=np.uint8)
    path = resolve("dlib-face-descriptor").path
    native = dlib.face_recognition_model_v1(str(path))
    t0 = time.perf_counter()
    ref = np.asarray(native.compute_face_descriptor(list(chips)))
    t_native = time.perf_counter() - t0
    net = DlibFaceResNet.from_dlib_file(path).to(args.device)
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().to(args.device)
    with torch.no_grad():
        net(x[:2])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ours = net(x)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t_ours = time.perf_counter() - t0
    print(f"dlib descriptor, {args.chips} chips: dlib {args.chips / t_native:8.1f} chips/s | torch ({args.device}) "
          f"{args.chips / t_ours:8.1f} chips/s | ratio {t_native / t_ours:5.2f}x | max abs diff {np.abs(ours.cpu().numpy() - ref).max():.2e}")

    ov = MobileStyleGanOpenVino()
    g = MobileStyleGAN().to(args.device)
    z = rng.standard_normal((args.images, 512)).astype(np.float32)
    w = ov.map(z)
    t0 = time.perf_counter()
    for i in range(args.images):
        ov.synthesize(w[i])
    t_ov = time.perf_counter() - t0
    wt = torch.from_numpy(w).to(args.device)
    keep_freed_memory()    # as train and translate do: without it glibc re-maps every activation
    with torch.no_grad():
        g.synthesize(wt)   # warm-up at the timed batch size
        t0 = time.perf_counter()
        g.synthesize(wt)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t_fwd = time.perf_counter() - t0
    wg = wt.clone().requires_grad_(True)
    g.synthesize(wg).square().mean().backward()
    t0 = time.perf_counter()
    g.synthesize(wg).square().mean().backward()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_bwd = time.perf_counter() - t0
    print(f"MobileStyleGAN 1024px, {args.images} images: OpenVINO f32 {args.images / t_ov:6.2f} img/s | torch ({args.device}) "
          f"forward {args.images / t_fwd:6.2f} img/s ({t_ov / t_fwd:5.2f}x), forward+backward {args.images / t_bwd:6.2f} img/s")


if __name__ == "__main__":
    main()
