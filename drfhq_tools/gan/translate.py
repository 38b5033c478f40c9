"""`drfhq translate`: renders to realistic portraits with a trained run (G_real, G_render).

Methods (each writes OUT/<method>/<row id>.png at the dataset's image size, one per dataset row):
  transfer      the paper's method: invert the render into G_render's W+, decode with G_real
  project-real  baseline: invert the render straight into G_real's W+ and decode with G_real
  layer-swap    Toonify-style baseline: the G_render inversion decoded by a blend of the two
                generators (G_render below --swap-resolution, G_real from there up)
Inversion follows the StyleGAN2 projector (Karras et al. 2020): start at the mean w, Adam with a
ramped learning rate and decaying noise on w, LPIPS (+ pixel MSE, + optional identity) on images
downsampled to --loss-resolution, and, for generators with noise inputs, per-image noise maps with the
projector's multi-scale autocorrelation penalty. Inversions are kept in OUT/latents/<generator>/
(W+ and noise per row), so methods share them and an interrupted run continues where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import DrfhqError
from ..runtime import keep_freed_memory
from ..io import atomic_save_image, atomic_write_json
from . import losses as L
from .networks import layer_swap, load_generator

METHODS = ("transfer", "project-real", "layer-swap")


@dataclass(frozen=True)
class TranslateConfig:
    dataset: str
    ckpt: str                              # a `drfhq train` run folder (g_real/, g_render/)
    out: str
    methods: tuple[str, ...] = ("transfer",)
    steps: int = 300                       # optimisation steps per inversion
    lr: float = 0.1
    lpips_net: str = "vgg"                 # vgg (the StyleGAN2 projector's) | alex (cheaper)
    w_pixel: float = 0.1                   # MSE on [-1, 1] images, beside LPIPS
    w_identity: float = 0.0                # optional identity term (dlib in torch)
    noise_regularize: float = 1e5
    swap_resolution: int = 32              # layer-swap: G_render's layers below this resolution
    loss_resolution: int = 256
    batch: int = 4
    device: str = "cpu"
    limit: int | None = None
    seed: int = 0

    def validate(self) -> None:
        if not (Path(self.dataset) / "manifest.parquet").is_file():
            raise DrfhqError(f"{self.dataset}: not a dataset (no manifest.parquet)")
        for part in ("g_real", "g_render"):
            if not (Path(self.ckpt) / part / "generator.json").is_file():
                raise DrfhqError(f"--ckpt {self.ckpt}: not a `drfhq train` run (no {part}/generator.json)")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise DrfhqError(f"--method {','.join(bad) or '(none)'}: choose from {', '.join(METHODS)}")
        if self.steps < 1 or self.batch < 1 or self.lr <= 0:
            raise DrfhqError("--steps and --batch must be >= 1, --lr > 0")
        if self.lpips_net not in ("alex", "vgg"):
            raise DrfhqError(f"--lpips-net {self.lpips_net}: alex or vgg")
        if min(self.w_pixel, self.w_identity, self.noise_regularize) < 0:
            raise DrfhqError("loss weights must be >= 0")
        if self.swap_resolution < 4 or self.swap_resolution & (self.swap_resolution - 1):
            raise DrfhqError(f"--swap-resolution {self.swap_resolution}: a power of two >= 4")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise DrfhqError(f"--device {self.device}: cpu or cuda")


def w_statistics(generator, n: int = 4096, seed: int = 123) -> tuple[torch.Tensor, float]:
    """Mean w and the RMS distance of w from it (the projector's start and noise scale)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    with torch.no_grad():
        w = torch.cat([generator.map(torch.randn(min(512, n - s), generator.z_dim, generator=gen).to(device))
                       for s in range(0, n, 512)])
    mean = w.mean(0)
    return mean, float((w - mean).square().sum(1).mean().sqrt())


def noise_penalty(noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """The StyleGAN2 projector's regulariser: autocorrelation of each noise map at every scale."""
    total = 0.0
    for n in noise.values():
        x = n
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean(dim=[1, 2, 3]).square() \
                + (x * torch.roll(x, 1, dims=2)).mean(dim=[1, 2, 3]).square()
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


class Projector:
    def __init__(self, generator, cfg: TranslateConfig, landmarks5: np.ndarray | None):
        from ..models.lpips_net import LpipsDistance

        self.g, self.cfg = generator, cfg
        self.w_mean, self.w_std = w_statistics(generator, seed=cfg.seed + 123)
        self.lpips = LpipsDistance(cfg.lpips_net, cfg.device).model
        for p in self.lpips.parameters():
            p.requires_grad_(False)
        self.resolution = min(cfg.loss_resolution, generator.img_resolution)
        self.identity = (L.IdentityLoss(landmarks5, self.resolution, cfg.device)
                         if cfg.w_identity > 0 and landmarks5 is not None else None)

    def project(self, targets: torch.Tensor, progress=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """targets: N x 3 x R x R in [-1, 1] -> (W+ N x num_ws x w_dim, noise maps) minimising the loss."""
        cfg, g = self.cfg, self.g
        n = targets.shape[0]
        target = L.resize_area(targets, self.resolution)
        target_id = self.identity.embed(target).detach() if self.identity else None
        ws = self.w_mean.detach().reshape(1, 1, -1).repeat(n, g.num_ws, 1).clone().requires_grad_(True)
        gen = torch.Generator().manual_seed(cfg.seed)
        noise = {k: torch.randn(n, 1, *v.shape[-2:], generator=gen).to(ws.device).requires_grad_(True)
                 for k, v in g.noise_maps().items()}
        opt = torch.optim.Adam([ws, *noise.values()], lr=cfg.lr, betas=(0.9, 0.999))
        for step in range(cfg.steps):
            t = step / cfg.steps
            w_noise = self.w_std * 0.05 * max(0.0, 1 - t / 0.75) ** 2
            ramp = min(1.0, (1 - t) / 0.25)
            ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / 0.05)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * ramp
            jitter = torch.randn(ws.shape, generator=gen).to(ws.device) * w_noise
            image = L.resize_area(g.synthesize(ws + jitter, noise=noise or None), self.resolution)
            loss = self.lpips(image, target).reshape(n) + cfg.w_pixel * (image - target).square().mean(dim=[1, 2, 3])
            if self.identity is not None:
                loss = loss + cfg.w_identity * self.identity(image, target_id)
            if noise:
                loss = loss + cfg.noise_regularize * noise_penalty(noise)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()      # per-image losses: each image's latents get their own gradient
            opt.step()
            with torch.no_grad():      # the projector keeps noise maps unit-variance
                for v in noise.values():
                    v.sub_(v.mean(dim=[1, 2, 3], keepdim=True)).div_(v.square().mean(dim=[1, 2, 3], keepdim=True).sqrt())
            if progress:
                progress(step + 1)
        return ws.detach(), {k: v.detach() for k, v in noise.items()}


def _load_target(path: str, size: int) -> torch.Tensor:
    from .train import load_aligned

    return load_aligned(path, size).float() / 127.5 - 1


def _save(image: torch.Tensor, path: Path, size: int) -> None:
    from .train import to_uint8

    atomic_save_image(path, Image.fromarray(to_uint8(image[None])[0]).resize((size, size), Image.LANCZOS, reducing_gap=3.0))


def translate(cfg: TranslateConfig, progress=None, log=print) -> dict[str, dict[str, Path]]:
    """Write every method's output for every usable dataset row; returns {method: {row id: path}}."""
    from ..bench.run import dataset_rows

    cfg.validate()
    rows, size = dataset_rows(Path(cfg.dataset), cfg.limit)
    keep_freed_memory()
    out = Path(cfg.out)
    device = torch.device(cfg.device)
    g_real = load_generator(Path(cfg.ckpt) / "g_real").to(device)
    g_render = load_generator(Path(cfg.ckpt) / "g_render").to(device)
    for g in (g_real, g_render):
        for p in g.parameters():
            p.requires_grad_(False)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "translate.json", asdict(cfg))
    landmarks5 = np.median(np.stack([r["aligned_lm5"] for r in rows]), axis=0)
    needs = {"render": any(m in ("transfer", "layer-swap") for m in cfg.methods), "real": "project-real" in cfg.methods}
    generators = {"render": g_render, "real": g_real}
    decoders = {"transfer": g_real, "project-real": g_real}
    if "layer-swap" in cfg.methods:
        decoders["layer-swap"] = layer_swap(g_render, g_real, cfg.swap_resolution)
    source = {"transfer": "render", "layer-swap": "render", "project-real": "real"}
    results: dict[str, dict[str, Path]] = {m: {} for m in cfg.methods}
    todo_total = sum(len(rows) for k, v in needs.items() if v) * cfg.steps
    done = 0
    for key, wanted in needs.items():
        if not wanted:
            continue
        projector = None
        latent_dir = out / "latents" / f"g_{key}"
        latent_dir.mkdir(parents=True, exist_ok=True)
        methods = [m for m in cfg.methods if source[m] == key]
        for start in range(0, len(rows), cfg.batch):
            chunk = rows[start:start + cfg.batch]
            pending = [r for r in chunk if not (latent_dir / f"{r['id']}.pt").is_file()]
            if pending:
                projector = projector or Projector(generators[key], cfg, landmarks5 * min(cfg.loss_resolution, generators[key].img_resolution) / size)
                targets = torch.stack([_load_target(r["image_file"], projector.resolution) for r in pending]).to(device)
                base = done

                def tick(step, base=base):
                    if progress:
                        progress(base + step * len(pending), todo_total)
                ws, noise = projector.project(targets, tick)
                for i, r in enumerate(pending):
                    tmp = latent_dir / f".{r['id']}.pt.tmp"
                    torch.save({"ws": ws[i].cpu(), "noise": {k: v[i].cpu() for k, v in noise.items()}}, tmp)
                    tmp.replace(latent_dir / f"{r['id']}.pt")
            done += len(chunk) * cfg.steps
            if progress:
                progress(done, todo_total)
            for r in chunk:
                saved = torch.load(latent_dir / f"{r['id']}.pt", map_location=device, weights_only=True)
                ws = saved["ws"][None]
                noise = {k: v[None] for k, v in saved["noise"].items()} or None
                for method in methods:
                    target = out / method / f"{r['id']}.png"
                    if not target.is_file():
                        with torch.no_grad():
                            _save(decoders[method].synthesize(ws, noise=noise)[0], target, size)
                    results[method][r["id"]] = target
    for method in cfg.methods:
        log(f"{method}: {len(results[method])} images in {out / method}")
    return results
