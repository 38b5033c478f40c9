"""`drfhq translate`: renders to realistic portraits with a trained run (G_real, G_render).

Methods (each writes OUT/<method>/<row id>.png at the dataset's image size, one per dataset row):
  transfer      the paper's method: invert the render into G_render's W+, decode with G_real
  project-real  baseline: invert the render straight into G_real's W+ and decode with G_real
  layer-swap    Toonify-style baseline: the G_render inversion decoded by a blend of the two
                generators (G_render below --swap-resolution, G_real from there up)
Nothing stale is ever reused: an inversion is keyed by the sha256 of the generator it inverts into and
by every setting that changes it (`INVERSION_SETTINGS`), and lives in OUT/latents/<g_real|g_render>-<key>/;
an output image carries its own key (inversion key, decoder hashes, method settings, size) in a PNG
text chunk and is redrawn when the key differs. OUT/<method>/provenance.json says which checkpoint and
settings made the folder's images. Each image's random draws come from its own seed (run seed, row
id), so an inversion does not depend on the batch it ran in.
Inversion follows the StyleGAN2 projector (Karras et al. 2020): start at the mean w, Adam with a
ramped learning rate and decaying noise on w, LPIPS (+ pixel MSE, + optional identity) on images
downsampled to --loss-resolution, and, for generators with noise inputs, per-image noise maps with the
projector's multi-scale autocorrelation penalty. Inversions are kept in OUT/latents/<generator>/
(W+ and noise per row), so methods share them and an interrupted run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, PngImagePlugin

from ..dataset.rows import dataset_rows, load_aligned
from ..errors import DrfhqError
from ..io import atomic_write_json, sha256_file
from ..runtime import keep_freed_memory
from . import losses as L
from .networks import layer_swap, load_generator
from .train import check_device, to_uint8

METHODS = ("transfer", "project-real", "layer-swap")
SOURCE = {"transfer": "g_render", "layer-swap": "g_render", "project-real": "g_real"}    # inverted into
# the settings that change an inversion (batch, device and limit do not: each image has its own draws)
INVERSION_SETTINGS = ("steps", "lr", "lpips_net", "w_pixel", "w_identity", "noise_regularize", "loss_resolution", "seed")
KEY_CHUNK = "drfhq:key"


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
        check_device(self.device)


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

    def project(self, targets: torch.Tensor, seeds: list[int] | None = None, progress=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """targets: N x 3 x R x R in [-1, 1] -> (W+ N x num_ws x w_dim, noise maps) minimising the loss.
        seeds: one per image for its noise start and w jitter (default: the run seed + index)."""
        cfg, g = self.cfg, self.g
        n = targets.shape[0]
        gens = [torch.Generator().manual_seed(s) for s in (seeds or [cfg.seed + i for i in range(n)])]
        target = L.resize_area(targets, self.resolution)
        target_id = self.identity.embed(target).detach() if self.identity else None
        ws = self.w_mean.detach().reshape(1, 1, -1).repeat(n, g.num_ws, 1).clone().requires_grad_(True)
        noise = {k: torch.stack([torch.randn(1, *v.shape[-2:], generator=gen) for gen in gens]).to(ws.device).requires_grad_(True)
                 for k, v in g.noise_maps().items()}
        opt = torch.optim.Adam([ws, *noise.values()], lr=cfg.lr, betas=(0.9, 0.999))
        for step in range(cfg.steps):
            t = step / cfg.steps
            w_noise = self.w_std * 0.05 * max(0.0, 1 - t / 0.75) ** 2
            ramp = min(1.0, (1 - t) / 0.25)
            ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / 0.05)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * ramp
            jitter = torch.stack([torch.randn(ws.shape[1:], generator=gen) for gen in gens]).to(ws.device) * w_noise
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


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def generator_sha256(folder: Path) -> str:
    """Content hash of a saved generator's weights (the file its generator.json names)."""
    meta = json.loads((folder / "generator.json").read_text())
    return sha256_file(folder / meta.get("weights", "generator.safetensors"))


def translation_keys(cfg: TranslateConfig, hashes: dict[str, str], size: int, landmarks5: np.ndarray) -> dict:
    """Keys of every inversion (per generator) and every method's outputs for these settings."""
    settings = {f: getattr(cfg, f) for f in INVERSION_SETTINGS}
    if cfg.w_identity > 0:     # the identity term cuts its chips with the dataset's median landmarks
        settings["landmarks5"] = np.round(landmarks5, 3).tolist()
    inversion = {g: _digest({"generator_sha256": hashes[g], **settings}) for g in ("g_real", "g_render")}
    outputs = {}
    for method in METHODS:
        parts = {"method": method, "inversion": inversion[SOURCE[method]], "size": size, "decoder": hashes["g_real"]}
        if method == "layer-swap":
            parts.update(coarse=hashes["g_render"], swap_resolution=cfg.swap_resolution)
        outputs[method] = _digest(parts)
    return {"inversion": inversion, "outputs": outputs, "settings": settings}


def _row_seed(seed: int, row_id: str) -> int:
    return int(hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()[:15], 16)


def _output_key(path: Path) -> str | None:
    try:
        with Image.open(path) as img:
            return img.text.get(KEY_CHUNK)
    except OSError:
        return None


def _save(image: torch.Tensor, path: Path, size: int, key: str) -> None:
    """Atomic PNG with its key in a text chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_text(KEY_CHUNK, key)
    picture = Image.fromarray(to_uint8(image[None])[0]).resize((size, size), Image.LANCZOS, reducing_gap=3.0)
    tmp = path.with_name(f".{path.name}.tmp")       # no image suffix: never taken for an output
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(tmp, format="PNG", pnginfo=info)
    tmp.replace(path)


def translate(cfg: TranslateConfig, progress=None, log=print) -> dict[str, dict[str, Path]]:
    """Write every method's output for every usable dataset row; returns {method: {row id: path}}."""
    cfg.validate()
    rows, size = dataset_rows(Path(cfg.dataset), cfg.limit)
    keep_freed_memory()
    out, ckpt = Path(cfg.out), Path(cfg.ckpt)
    device = torch.device(cfg.device)
    hashes = {g: generator_sha256(ckpt / g) for g in ("g_real", "g_render")}
    landmarks5 = np.median(np.stack([r["aligned_lm5"] for r in rows]), axis=0)
    keys = translation_keys(cfg, hashes, size, landmarks5)
    # what is already there under these exact settings
    todo = {m: [r for r in rows if _output_key(out / m / f"{r['id']}.png") != keys["outputs"][m]] for m in cfg.methods}
    generators = {}

    def generator(name):
        if name not in generators:
            g = load_generator(ckpt / name).to(device)
            for p in g.parameters():
                p.requires_grad_(False)
            generators[name] = g
        return generators[name]

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "translate.json", {"config": asdict(cfg), "checkpoint_sha256": hashes, **keys})
    results: dict[str, dict[str, Path]] = {m: {} for m in cfg.methods}
    todo_total = sum(len({r["id"] for m in cfg.methods if SOURCE[m] == src for r in todo[m]}) for src in ("g_render", "g_real")) * cfg.steps
    done = 0
    for src in ("g_render", "g_real"):
        methods = [m for m in cfg.methods if SOURCE[m] == src]
        if not methods:
            continue
        pending_ids = {r["id"] for m in methods for r in todo[m]}
        pending_rows = [r for r in rows if r["id"] in pending_ids]
        latent_dir = out / "latents" / f"{src}-{keys['inversion'][src]}"
        decoders = {}
        for start in range(0, len(pending_rows), cfg.batch):
            chunk = pending_rows[start:start + cfg.batch]
            missing = [r for r in chunk if not (latent_dir / f"{r['id']}.pt").is_file()]
            if missing:
                projector = generators.get(f"projector-{src}")
                if projector is None:
                    g = generator(src)
                    projector = generators[f"projector-{src}"] = Projector(g, cfg, landmarks5 * min(cfg.loss_resolution, g.img_resolution) / size)
                targets = torch.stack([load_aligned(r["image_file"], projector.resolution).float() / 127.5 - 1 for r in missing]).to(device)

                def tick(step, base=done, count=len(missing)):
                    if progress:
                        progress(base + step * count, todo_total)
                ws, noise = projector.project(targets, [_row_seed(cfg.seed, r["id"]) for r in missing], tick)
                latent_dir.mkdir(parents=True, exist_ok=True)
                for i, r in enumerate(missing):
                    tmp = latent_dir / f".{r['id']}.pt.tmp"
                    torch.save({"ws": ws[i].cpu(), "noise": {k: v[i].cpu() for k, v in noise.items()}, "key": keys["inversion"][src]}, tmp)
                    tmp.replace(latent_dir / f"{r['id']}.pt")
            done += len(chunk) * cfg.steps
            if progress:
                progress(done, todo_total)
            for r in chunk:
                saved = torch.load(latent_dir / f"{r['id']}.pt", map_location=device, weights_only=True)
                ws = saved["ws"][None]
                noise = {k: v[None] for k, v in saved["noise"].items()} or None
                for method in methods:
                    if r["id"] not in {t["id"] for t in todo[method]}:
                        continue
                    if method not in decoders:
                        decoders[method] = (layer_swap(generator("g_render"), generator("g_real"), cfg.swap_resolution)
                                            if method == "layer-swap" else generator("g_real"))
                    with torch.no_grad():
                        _save(decoders[method].synthesize(ws, noise=noise)[0], out / method / f"{r['id']}.png", size, keys["outputs"][method])
    for method in cfg.methods:
        results[method] = {r["id"]: out / method / f"{r['id']}.png" for r in rows}
        atomic_write_json(out / method / "provenance.json", {
            "method": method, "checkpoint": str(ckpt), "checkpoint_sha256": hashes, "key": keys["outputs"][method],
            "inversion_key": keys["inversion"][SOURCE[method]], "settings": keys["settings"],
            "swap_resolution": cfg.swap_resolution if method == "layer-swap" else None, "size": size,
            "rows": len(rows), "redrawn": len(todo[method])})
        log(f"{method}: {len(rows)} images in {out / method} ({len(todo[method])} new, {len(rows) - len(todo[method])} reused)")
    return results
