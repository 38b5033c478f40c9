"""Inversion speed and quality, ours against NVIDIA's projector, on the same generator and targets.

NVIDIA's `projector.project` (../shared/peers/stylegan2-ada-pytorch, imported, never copied) runs through a
thin adapter: our generator seen with NVIDIA's interface (`mapping(z, c)` -> ws, `synthesis(ws,
noise_mode='const')`, its `noise_const` buffers), and, for the VGG16 file it would download, our LPIPS VGG
(real lpips weights) exposed as NVIDIA's feature detector (`vgg16(img, resize_images=False,
return_lpips=True)`: channel-weighted, normalised features whose squared distance is LPIPS). NVIDIA runs
`--steps`; ours runs at most a third of them with its defaults (`--start bank` to start from the nearest
bank latent), stopping each face once it reaches the LPIPS NVIDIA reached on that face. Printed per face
and on average: LPIPS (VGG, measured the same way on each method's own output), the steps run (ours: every
start counted), whether the output is degenerate by translate's collapse rule (a dark image on a dark
render can score a low LPIPS), seconds per face, and the ratios. The goal is met when every face reaches
NVIDIA's LPIPS in at most a third of its steps.

    python benchmarks/bench_translate.py [--generator ../shared/checkpoints/nvidia-ada-64-p4.pkl] [--faces 4]
        [--steps 300] [--device cpu] [--targets DIR] [--json OUT.json]
Targets are the generator's own samples from held-out seeds (what any projector can reach), or `--targets`.
On a slow device, `--only nvidia` runs the peer alone (its outputs go to OUT.nvidia.pt beside --json) and
`--nvidia-from OUT.json` later reuses them, so that each setting of ours costs only its own run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
    parser.add_argument("--bank-cache", default=None, help="a folder keeping the bank between runs (made once per generator)")
    parser.add_argument("--space", default=None, help="ours: w | w+ | w+reg (default: translate's)")
    parser.add_argument("--lr", type=float, default=None, help="ours: Adam's rate (default: translate's for the space)")
    parser.add_argument("--w-first", type=float, default=None, help="ours: fraction of the steps in one w first (default: translate's)")
    parser.add_argument("--targets", default=None, help="a folder of aligned images (e.g. DATASET/images) instead of the generator's own samples")
    parser.add_argument("--loss-resolution", type=int, default=256)
    parser.add_argument("--json", default=None, help="also write the figures here (and a sheet beside it)")
    parser.add_argument("--only", default="both", choices=("both", "nvidia"), help="nvidia: run the peer alone (needs --json)")
    parser.add_argument("--nvidia-from", default=None, help="reuse the peer's figures and outputs from an earlier --json")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.only == "nvidia" and not args.json:
        parser.error("--only nvidia keeps its outputs beside --json: give one")

    from drfhq_tools.gan.networks import load_generator, load_official
    from drfhq_tools.gan.translate import Projector, TranslateConfig, bank_file, degenerate, face_statistics
    from drfhq_tools.io import sha256_file
    from drfhq_tools.models.lpips_net import LpipsDistance

    path = Path(args.generator)
    g = (load_generator(path) if path.is_dir() else load_official(path)).to(args.device).eval().requires_grad_(False)
    weights = next((p for p in (path / "generator.safetensors", path / "generator.pt") if p.is_file()), None) if path.is_dir() else path
    generator_sha = sha256_file(weights) if weights else None
    if args.targets:
        from drfhq_tools.dataset.rows import load_aligned

        files = sorted((p for p in Path(args.targets).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")),
                       key=lambda p: p.name)[:args.faces]
        if not files:
            parser.error(f"--targets {args.targets}: no PNG or JPEG images")
        targets = torch.stack([load_aligned(f, g.img_resolution).float() / 127.5 - 1 for f in files]).to(args.device)
        names = [f.name for f in files]
        source = f"{len(files)} aligned images from {args.targets}"
    else:
        with torch.no_grad():
            z = torch.randn(args.faces, g.z_dim, generator=torch.Generator().manual_seed(2024)).to(args.device)
            targets = g.synthesize(g.map(z)).clamp(-1, 1)
        names = [f"seed2024-{i}" for i in range(args.faces)]
        source = f"{args.faces} targets from held-out seeds"
    n = len(names)
    lpips_model = LpipsDistance("vgg", args.device).model.requires_grad_(False)

    def small(images):
        size = min(256, images.shape[-1])
        return torch.nn.functional.interpolate(images, size=size, mode="area") if images.shape[-1] > size else images

    def measure(images):
        with torch.no_grad():
            return lpips_model(small(images).clamp(-1, 1), small(targets)).flatten().cpu()

    target_stats = face_statistics(small(targets).cpu())

    def degenerate_flags(images):
        return degenerate(small(images).clamp(-1, 1).cpu(), target_stats).tolist()

    identity = {"generator_sha256": generator_sha, "targets": names, "steps": args.steps}
    if args.nvidia_from:
        earlier = json.loads(Path(args.nvidia_from).read_text())
        mismatch = {k: (earlier.get("nvidia", {}).get(k), v) for k, v in identity.items() if earlier.get("nvidia", {}).get(k) != v}
        if mismatch:
            raise SystemExit(f"--nvidia-from {args.nvidia_from}: made for another setting ({mismatch})")
        nv = earlier["nvidia"]
        nv_images = torch.load(Path(args.nvidia_from).with_suffix(".nvidia.pt"), weights_only=True).float().div(127.5).sub(1).to(args.device)
        nv_s = nv["seconds_per_face"]
        nv_lpips = torch.tensor(nv["per_face_lpips"])       # measured on its float outputs; the saved ones are 8-bit
    else:
        projector = nvidia_projector(lpips_model)
        view = NvidiaView(g)
        start = time.perf_counter()
        outputs = []
        for i in range(n):
            w = projector.project(view, ((targets[i] + 1) * 127.5).clamp(0, 255), num_steps=args.steps, w_avg_samples=10000,
                                  device=torch.device(args.device))
            with torch.no_grad():       # what NVIDIA's script saves: the last w, the generator's own noise
                outputs.append(view.synthesis(w[-1:], noise_mode="const"))
        nv_s = (time.perf_counter() - start) / n
        nv_images = torch.cat(outputs)
        nv_lpips = measure(nv_images)
    nvidia = identity | {"lpips_vgg": float(nv_lpips.mean()), "per_face_lpips": nv_lpips.tolist(), "seconds_per_face": nv_s,
                         "degenerate": degenerate_flags(nv_images), "device": args.device}
    report = {"generator": str(path), "resolution": g.img_resolution, "targets": source, "device": args.device,
              "torch": torch.__version__, "nvidia": nvidia}
    print(f"generator {path.name} ({g.img_resolution} px), {source}, device {args.device}")
    if args.only == "nvidia":
        torch.save(((nv_images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu(), Path(args.json).with_suffix(".nvidia.pt"))
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"NVIDIA projector: LPIPS {float(nv_lpips.mean()):.4f} per face {[round(v, 4) for v in nv_lpips.tolist()]}, "
              f"{nv_s:.2f} s/face; kept for --nvidia-from {args.json}")
        return

    ours_steps = max(1, args.steps // 3)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TranslateConfig(dataset="unused", ckpt="unused", out=tmp, steps=ours_steps, lpips_net="vgg", start=args.start,
                              bank_size=args.bank_size, loss_resolution=args.loss_resolution, device=args.device,
                              **({"space": args.space} if args.space else {}), **({"lr": args.lr} if args.lr else {}),
                              **({"w_first": args.w_first} if args.w_first is not None else {}))
        ours = Projector(g, cfg, None, bank_file(Path(args.bank_cache or tmp), generator_sha, cfg))
        if args.start == "bank":
            ours.bank()                          # built once per generator and cached: not part of a face's cost
        start = time.perf_counter()
        inv = ours.project(targets, lpips_targets=nv_lpips)       # each face stops at NVIDIA's LPIPS on that face
        ours_s = (time.perf_counter() - start) / n
        with torch.no_grad():
            ours_images = g.synthesize(inv.ws, noise=inv.noise or None) if inv.noise else g.synthesize(inv.ws)
    ours_lpips = measure(ours_images)
    run = inv.steps_run.tolist()
    reached = [bool(o <= v + 1e-4) and s <= args.steps / 3 for o, v, s in zip(ours_lpips.tolist(), nv_lpips.tolist(), run)]
    ours_bad = degenerate_flags(ours_images)
    print(f"{'face':22} {'NVIDIA LPIPS':>12} {'steps':>6} {'ours LPIPS':>11} {'steps run':>10} {'reached':>8}  degenerate (NVIDIA, ours)")
    for i, name in enumerate(names):
        print(f"{name[:22]:22} {float(nv_lpips[i]):12.4f} {args.steps:6d} {float(ours_lpips[i]):11.4f} {run[i]:10d} "
              f"{'yes' if reached[i] else 'no':>8}  {nvidia['degenerate'][i]!s:5} {ours_bad[i]!s:5}")
    label = f"ours ({cfg.space}, {args.start} start)"
    print(f"{'NVIDIA projector':22} {float(nv_lpips.mean()):12.4f} {args.steps:6d} {'':>11} {'':>10} {'':>8}  {nv_s:.2f} s/face")
    print(f"{label:22} {'':>12} {'':>6} {float(ours_lpips.mean()):11.4f} {sum(run) / n:10.1f} {sum(reached):>5}/{n}  {ours_s:.2f} s/face")
    print(f"ours: restarts {inv.restarts.tolist()}, still collapsed {inv.collapsed.tolist()}")
    ratio = sum(run) / n / args.steps
    print(f"steps ours / NVIDIA: {ratio:.3f}; faces at NVIDIA's LPIPS in <= a third of its steps: {sum(reached)}/{n} "
          f"(goal: all); LPIPS ours - NVIDIA: {float(ours_lpips.mean() - nv_lpips.mean()):+.4f}; speed-up per face {nv_s / ours_s:.2f}x")
    if args.json:
        report["ours"] = {"max_steps": ours_steps, "steps_run": run, "steps_used": sum(run) / n, "lpips_vgg": float(ours_lpips.mean()),
                          "per_face_lpips": ours_lpips.tolist(), "reached": reached, "degenerate": ours_bad,
                          "seconds_per_face": ours_s, "restarts": inv.restarts.tolist(), "collapsed": inv.collapsed.tolist(),
                          "settings": {k: getattr(cfg, k) for k in ("start", "space", "w_first", "w_noise", "w_pixel", "loss_resolution")}
                          | {"lr": cfg.learning_rate, "lpips_target": "NVIDIA's per face"}}
        report["steps_ratio"], report["goal_met"] = ratio, all(reached)
        Path(args.json).write_text(json.dumps(report, indent=2))
        from drfhq_tools.gan.train import grid_image

        picture = Path(args.json).with_suffix(".jpg")       # a low LPIPS can be a dark image on a dark render: look
        grid_image([torch.stack([targets[i], nv_images[i], ours_images[i]]).float().cpu() for i in range(n)], 192).save(picture, quality=90)
        print(f"targets | NVIDIA | ours: {picture}")


if __name__ == "__main__":
    main()
