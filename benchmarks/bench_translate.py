"""Inversion speed and quality, ours against NVIDIA's projector, on the same generator and targets.

NVIDIA's `projector.project` (../shared/peers/stylegan2-ada-pytorch, imported, never copied) runs through a
thin adapter: our generator seen with NVIDIA's interface (`mapping(z, c)` -> ws, `synthesis(ws,
noise_mode='const')`, its `noise_const` buffers), and, for the VGG16 file it would download, our LPIPS VGG
(real lpips weights) exposed as NVIDIA's feature detector (`vgg16(img, resize_images=False,
return_lpips=True)`: channel-weighted, normalised features whose squared distance is LPIPS). NVIDIA runs
`--steps`; ours runs at most a third of them with its defaults (`--start bank` to start from the nearest
bank latent), stopping each image at the LPIPS NVIDIA reached. Printed per method: mean LPIPS (VGG, both measured the same way on each method's own
output), steps, seconds per face, and the ratios.

    python benchmarks/bench_translate.py [--generator ../shared/checkpoints/nvidia-ada-64-p4.pkl] [--faces 4]
        [--steps 300] [--device cpu]
Targets are the generator's own samples from held-out seeds (what any projector can reach).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from torch import nn

PEER = Path(os.environ.get("DRFHQ_PEER") or Path(__file__).resolve().parents[2] / "shared" / "peers" / "stylegan2-ada-pytorch")


class NvidiaFeatures(nn.Module):
    """Our LPIPS network behind NVIDIA's vgg16.pt interface (images in [0, 255])."""

    def __init__(self, lpips_model):
        super().__init__()
        self.m = lpips_model

    def forward(self, img, resize_images=False, return_lpips=True):
        import lpips

        feats = self.m.net.forward(self.m.scaling_layer(img / 127.5 - 1))
        out = []
        for layer, f in enumerate(feats):
            weight = self.m.lins[layer].model[-1].weight.reshape(1, -1, 1, 1)      # non-negative channel weights
            out.append((lpips.normalize_tensor(f) * weight.sqrt()).flatten(1) / math.sqrt(f.shape[2] * f.shape[3]))
        return torch.cat(out, dim=1)


class _Mapping(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g, self.num_ws = g, g.num_ws

    def forward(self, z, c):
        return self.g.map(z.float())[:, None].repeat(1, self.num_ws, 1)


class _Synthesis(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = g           # a child module: its noise_const buffers are what NVIDIA's projector fits

    def forward(self, ws, noise_mode="const"):
        return self.g.synthesize(ws, noise_mode=noise_mode) if hasattr(self.g, "noise_maps") and self.g.noise_maps() else self.g.synthesize(ws)


class NvidiaView(nn.Module):
    """Our generator as NVIDIA's projector expects a G."""

    def __init__(self, g):
        super().__init__()
        self.z_dim, self.img_resolution, self.img_channels = g.z_dim, g.img_resolution, 3
        self.mapping, self.synthesis = _Mapping(g), _Synthesis(g)


def nvidia_projector(lpips_model):
    """NVIDIA's projector module, with the download of its VGG file answered by our LPIPS VGG."""
    sys.path.insert(0, str(PEER))
    sys.modules.setdefault("imageio", types.ModuleType("imageio"))       # video writing only
    if "click" not in sys.modules:       # its command-line decorators only (the peer README says to stub it)
        click = types.ModuleType("click")
        click.__getattr__ = lambda name: (lambda *a, **k: (lambda f: f))
        sys.modules["click"] = click
    import dnnlib
    import projector

    dnnlib.util.open_url = lambda url, *a, **k: contextlib.nullcontext(url)
    features = NvidiaFeatures(lpips_model)
    real_load = torch.jit.load
    projector.torch.jit.load = lambda f, *a, **k: features if isinstance(f, str) and "vgg16" in f else real_load(f, *a, **k)
    return projector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default=str(PEER.parents[1] / "checkpoints" / "nvidia-ada-64-p4.pkl"))
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--bank-size", type=int, default=1024)
    parser.add_argument("--start", default="mean", help="ours: mean | bank")
    parser.add_argument("--targets", default=None, help="a folder of aligned images (e.g. DATASET/images) instead of the generator's own samples")
    parser.add_argument("--loss-resolution", type=int, default=256)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from drfhq_tools.gan.networks import load_generator, load_official
    from drfhq_tools.gan.translate import Projector, TranslateConfig
    from drfhq_tools.models.lpips_net import LpipsDistance

    path = Path(args.generator)
    g = (load_generator(path) if path.is_dir() else load_official(path)).to(args.device).eval().requires_grad_(False)
    if args.targets:
        from drfhq_tools.dataset.rows import load_aligned

        files = sorted(p for p in Path(args.targets).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:args.faces]
        targets = torch.stack([load_aligned(f, g.img_resolution).float() / 127.5 - 1 for f in files]).to(args.device)
        source = f"{len(files)} aligned images from {args.targets}"
    else:
        with torch.no_grad():
            z = torch.randn(args.faces, g.z_dim, generator=torch.Generator().manual_seed(2024)).to(args.device)
            targets = g.synthesize(g.map(z)).clamp(-1, 1)
        source = f"{args.faces} targets from held-out seeds"
    lpips_model = LpipsDistance("vgg", args.device).model.requires_grad_(False)

    def measure(images):
        size = min(256, images.shape[-1])
        a = torch.nn.functional.interpolate(images, size=size, mode="area") if images.shape[-1] > size else images
        b = torch.nn.functional.interpolate(targets, size=size, mode="area") if targets.shape[-1] > size else targets
        with torch.no_grad():
            return lpips_model(a.clamp(-1, 1), b).flatten()

    projector = nvidia_projector(lpips_model)
    view = NvidiaView(g)
    start = time.perf_counter()
    nv_images = []
    for i in range(args.faces):
        w = projector.project(view, ((targets[i] + 1) * 127.5).clamp(0, 255), num_steps=args.steps, w_avg_samples=10000,
                              device=torch.device(args.device))
        with torch.no_grad():       # what NVIDIA's script saves: the last w, the generator's own noise
            nv_images.append(view.synthesis(w[-1:], noise_mode="const"))
    nv_s = (time.perf_counter() - start) / args.faces
    nv_lpips = measure(torch.cat(nv_images))

    ours_steps = max(1, args.steps // 3)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TranslateConfig(dataset="unused", ckpt="unused", out=tmp, steps=ours_steps, lpips_net="vgg", start=args.start,
                              bank_size=args.bank_size, lpips_target=float(nv_lpips.mean()), loss_resolution=args.loss_resolution,
                              device=args.device)
        ours = Projector(g, cfg, None, Path(tmp) / "bank.pt")
        if args.start == "bank":
            ours.bank()                          # built once per generator and cached: not part of a face's cost
        start = time.perf_counter()
        inv = ours.project(targets)
        ours_s = (time.perf_counter() - start) / args.faces
        with torch.no_grad():
            ours_images = g.synthesize(inv.ws, noise=inv.noise or None) if inv.noise else g.synthesize(inv.ws)
            ours_lpips = measure(ours_images)
    print(f"generator {path.name} ({g.img_resolution} px), {source}, device {args.device}")
    print(f"{'method':24} {'LPIPS vgg':>10} {'steps':>7} {'s/face':>8}")
    print(f"{'NVIDIA projector':24} {float(nv_lpips.mean()):10.4f} {args.steps:7d} {nv_s:8.2f}")
    label = f"ours ({args.start}, early stop)"
    print(f"{label:24} {float(ours_lpips.mean()):10.4f} {float(inv.steps.float().mean()):7.1f} {ours_s:8.2f}")
    print(f"ours: restarts {inv.restarts.tolist()}, still collapsed {inv.collapsed.tolist()} (restarts cost time per face)")
    print(f"steps ours / NVIDIA: {float(inv.steps.float().mean()) / args.steps:.3f} (goal <= 0.333 at equal LPIPS); "
          f"LPIPS ours - NVIDIA: {float(ours_lpips.mean() - nv_lpips.mean()):+.4f}; speed-up per face {nv_s / ours_s:.2f}x")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({
            "generator": str(path), "resolution": g.img_resolution, "targets": source, "device": args.device, "torch": torch.__version__,
            "nvidia": {"steps": args.steps, "lpips_vgg": float(nv_lpips.mean()), "seconds_per_face": nv_s},
            "ours": {"max_steps": ours_steps, "steps_used": float(inv.steps.float().mean()), "lpips_vgg": float(ours_lpips.mean()),
                     "seconds_per_face": ours_s, "restarts": inv.restarts.tolist(), "collapsed": inv.collapsed.tolist(),
                     "settings": {k: getattr(cfg, k) for k in ("start", "space", "w_noise", "w_pixel", "loss_resolution", "lpips_target")}
                     | {"lr": cfg.learning_rate}},
            "steps_ratio": float(inv.steps.float().mean()) / args.steps}, indent=2))
        from drfhq_tools.gan.train import grid_image

        picture = Path(args.json).with_suffix(".jpg")       # a low LPIPS can be a dark image on a dark render: look
        nv = torch.cat(nv_images)
        grid_image([torch.stack([targets[i], nv[i], ours_images[i]]).float().cpu() for i in range(args.faces)], 192).save(picture, quality=90)
        print(f"targets | NVIDIA | ours: {picture}")


if __name__ == "__main__":
    main()
