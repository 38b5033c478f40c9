"""`drfhq train`: fine-tune G_render (a copy of the pretrained G_real) on a rendered dataset so that one
latent code w gives the same person in both generators (Wang et al. 2023).

The recipe by default (the paper's, on NVIDIA's StyleGAN2 training loop):
- train at the base generator's own resolution (`--resolution` to change it);
- the discriminator starts from the base file's D when it has one (NVIDIA pickles and rosinality
  files carry it), otherwise fresh; the run's configuration says which; `--freeze-d N` freezes its
  first N blocks (FreezeD, Mo et al. 2020);
- random noise inputs, the same draw for G_real and G_render of a step;
- non-saturating logistic loss, lazy R1 every `r1_interval` steps on the un-augmented reals (the
  gradient is taken through DiffAugment, as NVIDIA and DiffAugment do). R1 rides along the D step
  it falls on instead of being a separate optimiser step, so no lazy-regularisation Adam correction
  applies;
- consistency of G_render(w) with G_real(w): identity, colour and geometry, weighted in the config;
- EMA of G_render's trained weights; the mapping (W shared) and layers below `--freeze-below` frozen.

One step, for a batch of z drawn from a per-step seed (so a resumed or a distributed run draws the same):
  w = G_real.map(z)                              shared latent (the mapping is frozen by default)
  G phase: adversarial(D(aug(G_render(w))))  + consistency(G_render(w), G_real(w))
  D phase: logistic loss on augmented reals and the detached fakes (+ R1)
Under torchrun process r of W takes images r, r + W, ... of the batch (so NVIDIA's minibatch-std groups
fall within one process and are those of the whole batch); its gradients are flattened into one
buffer and summed across processes in one all-reduce per phase (each local loss is scaled by its share
of the batch), so N processes compute what one does.

Run folder: train-config.json, g_real/ (the base, frozen), g_render/ (EMA weights, our format, with
the config inside), checkpoint.pt (everything `--resume` needs), losses.csv, losses.png,
snapshots/grid-KIMG.png (fixed seeds: G_real(w) row over G_render(w) row).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import itertools
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from ..dataset.rows import AlignedImages, dataset_rows, median_landmarks5
from ..errors import DrfhqError
from ..io import FolderLock, atomic_save_image, atomic_write_json, atomic_write_text
from ..runtime import keep_freed_memory
from . import losses as L
from .networks import load_base, load_generator, save_generator, set_trainable, trainable_names
from .stylegan2 import CONFIGS, Discriminator, Generator, StyleGAN2Config

AUGMENT_POLICIES = ("color", "translation", "cutout")
IDENTITY_NETWORKS = ("dlib-torch", "none")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check_device(device: str) -> None:
    """The --device rule of train and translate: cpu, cuda or cuda:N, and CUDA must be there."""
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise DrfhqError(f"--device {device}: cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DrfhqError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__}, "
                         f"built {'with' if torch.version.cuda else 'without'} CUDA); use --device cpu")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str                          # a build-dataset folder (its status-ok aligned images)
    out: str                              # run folder
    base: str = "none"                    # none | mobilestylegan-ffhq | stylegan2-ffhq | .pkl | .pt | run/g_* folder
    network: str | None = None            # StyleGAN2 preset (tiny|cpu256|256|1024): G for --base none (default
                                          # tiny); channels of a fresh D (default: the base G's, else config-f)
    resolution: int | None = None         # training resolution (D and losses); default the generator's own
    kimg: float = 1.0                     # thousands of generated images to train on
    max_minutes: float | None = None      # also stop (with a snapshot) once training has run this long
    batch: int = 4
    lr_g: float = 0.002
    lr_d: float = 0.002
    r1_gamma: float = 1.0
    r1_interval: int = 16
    ema_kimg: float = 0.5                 # EMA half-life in thousands of images
    mbstd_group: int = 4                  # minibatch-std group (must divide the per-process batch)
    w_adversarial: float = 1.0
    w_identity: float = 1.0
    w_colour: float = 1.0
    w_geometry: float = 0.5
    identity: str = "dlib-torch"          # dlib-torch | none (ArcFace in torch is not shipped)
    freeze_mapping: bool = True           # keep W shared: translate decodes G_render's w with G_real
    freeze_below: int = 0                 # freeze synthesis layers below this resolution (e.g. 16)
    freeze_d: int = 0                     # FreezeD: freeze the discriminator's first N blocks (from the input)
    augment: tuple[str, ...] = ("color", "translation", "cutout")
    precision: str = "auto"               # fp32 | bf16 | fp16 for the layers NVIDIA runs in fp16; auto: bf16 on CUDA, fp32 on CPU
    workers: int = 2                      # DataLoader processes decoding the real images
    compile: bool = False                 # torch.compile G_render's synthesis and D (CUDA; long first step)
    snapshot_kimg: float = 0.25
    grid: int = 6                         # fixed seeds in the snapshot grid
    seed: int = 0
    device: str = "cpu"
    limit: int | None = None              # first N dataset rows only

    def validate(self) -> None:
        if not (Path(self.dataset) / "manifest.parquet").is_file():
            raise DrfhqError(f"{self.dataset}: not a dataset (no manifest.parquet); make one with `drfhq build-dataset`")
        if self.network is not None and self.network not in CONFIGS:
            raise DrfhqError(f"--network {self.network}: choose one of {', '.join(CONFIGS)}")
        if self.resolution is not None and (self.resolution < 32 or self.resolution & (self.resolution - 1)):
            raise DrfhqError(f"--resolution {self.resolution}: a power of two, at least 32")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise DrfhqError(f"--max-minutes {self.max_minutes}: must be > 0")
        if self.kimg <= 0 or self.batch < 1 or self.snapshot_kimg <= 0 or self.r1_interval < 1 or self.grid < 1:
            raise DrfhqError("--kimg, --snapshot-kimg must be > 0; --batch, --r1-interval, --grid >= 1")
        if min(self.lr_g, self.lr_d) <= 0 or self.ema_kimg < 0:
            raise DrfhqError("learning rates must be > 0 and --ema-kimg >= 0")
        if min(self.w_adversarial, self.w_identity, self.w_colour, self.w_geometry) < 0:
            raise DrfhqError("loss weights must be >= 0")
        if self.freeze_d < 0 or self.workers < 0:
            raise DrfhqError("--freeze-d and --workers must be >= 0")
        if self.identity not in IDENTITY_NETWORKS:
            raise DrfhqError(f"--identity {self.identity}: choose one of {', '.join(IDENTITY_NETWORKS)}")
        if self.precision not in PRECISIONS:
            raise DrfhqError(f"--precision {self.precision}: choose one of {', '.join(PRECISIONS)}")
        bad = [a for a in self.augment if a not in AUGMENT_POLICIES]
        if bad:
            raise DrfhqError(f"--augment {','.join(bad)}: choose from {', '.join(AUGMENT_POLICIES)} (or none)")
        check_device(self.device)

    def comparable(self) -> dict:
        """Fields that must match for --resume (the length of the run and how it runs may change)."""
        return {k: v for k, v in asdict(self).items() if k not in ("kimg", "max_minutes", "snapshot_kimg", "device", "workers", "compile")}


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _step_generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W in [-1, 1] -> N x H x W x 3 uint8."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid_image(rows: list[torch.Tensor], tile: int) -> Image.Image:
    """Rows of image batches in [-1, 1] -> one picture, each image resized to tile x tile."""
    tiles = [[Image.fromarray(a).resize((tile, tile), Image.LANCZOS) for a in to_uint8(r)] for r in rows]
    canvas = Image.new("RGB", (tile * len(tiles[0]), tile * len(tiles)), "white")
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            canvas.paste(t, (j * tile, i * tile))
    return canvas


class _StepBatches:
    """Batch sampler: for step s, this process's slice of the reals drawn from the (seed, s) generator,
    from step `start` on, without end. The same draw whatever the number of processes or loader workers."""

    def __init__(self, n_images: int, seed: int, batch: int, start: int, rank: int, world: int):
        self.n, self.seed, self.batch, self.start, self.rank, self.world = n_images, seed, batch, start, rank, world

    def __iter__(self):
        for step in itertools.count(self.start):
            gen = _step_generator(self.seed, step)
            yield torch.randint(self.n, (self.batch,), generator=gen)[self.rank::self.world].tolist()


def _reduced_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Trainer:
    """The whole training state; `step()` does one G and one D update of the global batch."""

    LOSS_COLUMNS = ("adversarial", "identity", "colour", "geometry", "d_loss", "r1")

    def __init__(self, cfg: TrainConfig, g_real: torch.nn.Module | None = None, base_info: dict | None = None,
                 base_d: Discriminator | None = None, d_config: dict | None = None):
        """`base_d`: the base file's discriminator (used when it fits the training resolution);
        `d_config`: a saved discriminator architecture to rebuild (resume)."""
        self.cfg = cfg
        self.rank, self.world = _world()
        if cfg.batch % self.world:
            raise DrfhqError(f"--batch {cfg.batch} does not split over {self.world} processes")
        self.local = cfg.batch // self.world
        if self.local % min(cfg.mbstd_group, self.local):
            raise DrfhqError(f"--mbstd-group {cfg.mbstd_group} must divide the per-process batch {self.local}")
        if cfg.device.startswith("cuda") and self.world > 1:     # one GPU per process, by its rank on this node
            self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', self.rank % max(torch.cuda.device_count(), 1)))}")
        else:
            self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        if g_real is None:
            base = load_base(cfg.base, cfg.network or "tiny", cfg.seed)
            g_real, base_info, base_d = base.generator, base.info, base.discriminator
        self.base_info = base_info or {}
        self.g_real = g_real.to(self.device).eval()
        for p in self.g_real.parameters():
            p.requires_grad_(False)
        self.g_render = copy.deepcopy(self.g_real).train()
        self.train_names = trainable_names(self.g_render, cfg.freeze_mapping, cfg.freeze_below)
        if not self.train_names:
            raise DrfhqError("nothing to train: --freeze-below and --freeze-mapping freeze every layer")
        self.g_params = set_trainable(self.g_render, self.train_names)
        self.g_ema = copy.deepcopy(self.g_render).eval()
        for p in self.g_ema.parameters():
            p.requires_grad_(False)
        self.resolution = cfg.resolution or self.g_real.img_resolution
        if self.resolution > self.g_real.img_resolution:
            raise DrfhqError(f"--resolution {self.resolution} is above the generator's {self.g_real.img_resolution}")
        self.d, self.d_source = self._discriminator(base_d, d_config)
        self.d = self.d.to(self.device)
        frozen = set(self.d.block_names()[:cfg.freeze_d])
        if cfg.freeze_d > len(self.d.block_names()) - 1:
            raise DrfhqError(f"--freeze-d {cfg.freeze_d}: D has {len(self.d.block_names())} blocks; leave at least the last one trainable")
        self.d_params = [p for name, p in self.d.named_parameters() if name.split(".")[0] not in frozen]
        for name, p in self.d.named_parameters():
            p.requires_grad_(name.split(".")[0] not in frozen)
        reduced = _reduced_dtype(cfg.precision, self.device)
        self.precision = "fp32" if reduced is None else str(reduced).replace("torch.", "")
        for module in (self.g_real, self.g_render, self.g_ema, self.d):
            if hasattr(module, "set_mixed_precision"):
                module.set_mixed_precision(reduced)
        self.opt_g = torch.optim.Adam(self._g_param_groups(), lr=cfg.lr_g, betas=(0.0, 0.99), eps=1e-8)
        # R1 shares the D step it falls on (no separate regularisation step): no lazy Adam correction
        self.opt_d = torch.optim.Adam(self.d_params, lr=cfg.lr_d, betas=(0.0, 0.99), eps=1e-8)
        self._synthesize = self.g_render.synthesize
        self._discriminate = self.d
        if cfg.compile:
            self._synthesize = torch.compile(self.g_render.synthesize)
            self._discriminate = torch.compile(self.d)
        rows, size = dataset_rows(Path(cfg.dataset), cfg.limit)
        self.images = AlignedImages([r["image_file"] for r in rows], self.resolution)
        self.landmarks5 = median_landmarks5(rows, size, self.resolution)
        self.identity = L.IdentityLoss(self.landmarks5, self.resolution, str(self.device)) if cfg.identity != "none" else None
        self.noise_shapes = {k: tuple(v.shape[-2:]) for k, v in self.g_real.noise_maps().items()}
        self.step_index = 0
        self.history: list[dict] = []
        self._batches = None

    def _discriminator(self, base_d: Discriminator | None, d_config: dict | None) -> tuple[Discriminator, str]:
        cfg = self.cfg
        if d_config is not None:          # resume: the architecture the run started with (weights follow)
            arch = StyleGAN2Config(**d_config["config"])
            return Discriminator(arch, mbstd_group=cfg.mbstd_group), d_config["source"]
        source = "fresh"
        if base_d is not None and base_d.cfg.resolution == self.resolution:
            d = copy.deepcopy(base_d).train()
            d.b4.mbstd_group = cfg.mbstd_group
            return d, f"{self.base_info.get('file') or self.base_info.get('base', 'the base file')} (D)"
        if base_d is not None:
            source = f"fresh (the base file's D is {base_d.cfg.resolution} px; training at {self.resolution} px)"
        if isinstance(self.g_real, Generator) and cfg.network is None:
            channels = self.g_real.cfg
        else:
            channels = CONFIGS[cfg.network or "1024"]
        torch.manual_seed(cfg.seed + 1)
        arch = StyleGAN2Config(resolution=self.resolution, channel_base=channels.channel_base, channel_max=channels.channel_max,
                               conv_clamp=channels.conv_clamp, num_fp16_res=channels.num_fp16_res)
        return Discriminator(arch, mbstd_group=cfg.mbstd_group), source

    def d_config(self) -> dict:
        return {"config": asdict(self.d.cfg), "source": self.d_source}

    def _g_param_groups(self) -> list[dict]:
        """StyleGAN2 stores weights at unit scale and multiplies by the equalised-LR gain, so one Adam
        rate suits every layer. A generator with the gains folded into its weights (MobileStyleGAN's IR)
        gets each tensor's rate scaled by its RMS, which gives the same relative step."""
        if not getattr(self.g_render, "weights_prescaled", False):
            return [{"params": self.g_params}]
        with torch.no_grad():
            return [{"params": [p], "lr": self.cfg.lr_g * max(float(p.square().mean().sqrt()), 1e-4)} for p in self.g_params]

    # ---------------------------------------------------------------- one step
    def _draw(self) -> dict:
        gen = _step_generator(self.cfg.seed, self.step_index)
        n = self.cfg.batch
        torch.randint(len(self.images), (n,), generator=gen)      # the reals' draw (the batch sampler repeats it)
        draw = {"z": torch.randn(n, self.g_real.z_dim, generator=gen),
                "aug_fake": L.draw_augment(n, gen), "aug_real": L.draw_augment(n, gen)}
        mine = slice(self.rank, None, self.world)
        noise_gen = _step_generator(self.cfg.seed + 1, self.step_index, self.device)
        noise = {k: torch.randn(n, 1, *shape, generator=noise_gen, device=self.device)[mine] for k, shape in self.noise_shapes.items()}
        return {"z": draw["z"][mine].to(self.device), "noise": noise or None,
                "aug_fake": L.slice_augment(draw["aug_fake"], self.rank, None, self.world),
                "aug_real": L.slice_augment(draw["aug_real"], self.rank, None, self.world)}

    def _reals(self) -> torch.Tensor:
        """This step's real images, streamed by a DataLoader that reads ahead of the training loop."""
        if self._batches is None:
            sampler = _StepBatches(len(self.images), self.cfg.seed, self.cfg.batch, self.step_index, self.rank, self.world)
            self._batches = iter(torch.utils.data.DataLoader(
                self.images, batch_sampler=sampler, num_workers=self.cfg.workers, pin_memory=self.device.type == "cuda",
                prefetch_factor=4 if self.cfg.workers else None))
        return next(self._batches).to(self.device, non_blocking=True).float() / 127.5 - 1

    def _reduce(self, params) -> None:
        """Sum the gradients over processes: one flat buffer, one all-reduce (as NVIDIA's loop does)."""
        if self.world == 1:
            return
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
            offset += p.numel()

    def generator_losses(self, fake: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
        """Consistency losses of G_render's images against G_real's for the same w (train resolution)."""
        out = {}
        if self.identity is not None:
            with torch.no_grad():
                ref_embedding = self.identity.embed(reference)
            out["identity"] = self.identity(fake, ref_embedding).mean()
        else:
            out["identity"] = fake.new_zeros(())
        out["colour"] = L.colour_loss(fake, reference)
        out["geometry"] = L.geometry_loss(fake, reference)
        return out

    @torch.no_grad()
    def evaluate(self, z: torch.Tensor, generator: torch.nn.Module | None = None) -> dict[str, float]:
        """Consistency losses of G_render (or `generator`) against G_real on fixed latents, no update."""
        z = z.to(self.device)
        w = self.g_real.map(z)
        reference = L.resize_area(self.g_real.synthesize(w), self.resolution)
        fake = L.resize_area((generator or self.g_render).synthesize(w), self.resolution)
        return {k: float(v) for k, v in self.generator_losses(fake, reference).items()}

    def step(self) -> dict:
        cfg, share = self.cfg, self.local / self.cfg.batch
        draw = self._draw()
        real = self._reals()
        consistency = max(cfg.w_identity, cfg.w_colour, cfg.w_geometry) > 0
        with torch.no_grad():
            w = self.g_real.map(draw["z"])
            reference = L.resize_area(self.g_real.synthesize(w, noise=draw["noise"]), self.resolution) if consistency else None
        w_render = w if cfg.freeze_mapping else self.g_render.map(draw["z"])
        for p in self.d_params:
            p.requires_grad_(False)
        fake = L.resize_area(self._synthesize(w_render, noise=draw["noise"]), self.resolution)
        if consistency:
            parts = self.generator_losses(fake, reference)
        else:     # a plain adversarial fine-tune: G_real is not even run
            parts = {k: fake.new_full((), float("nan")) for k in ("identity", "colour", "geometry")}
        parts["adversarial"] = L.generator_loss(self._discriminate(L.augment(fake, draw["aug_fake"], cfg.augment)))
        total = cfg.w_adversarial * parts["adversarial"]
        for name in ("identity", "colour", "geometry"):
            if getattr(cfg, f"w_{name}") > 0:
                total = total + getattr(cfg, f"w_{name}") * parts[name]
        self.opt_g.zero_grad(set_to_none=True)
        (total * share).backward()
        self._reduce(self.g_params)
        self.opt_g.step()
        self._update_ema()

        for p in self.d_params:
            p.requires_grad_(True)
        fake_logits = self._discriminate(L.augment(fake.detach(), draw["aug_fake"], cfg.augment))
        regularise = cfg.r1_gamma > 0 and self.step_index % cfg.r1_interval == 0
        if regularise:     # R1 at the un-augmented reals: the gradient goes back through DiffAugment
            real = real.detach().requires_grad_(True)
        real_logits = self._discriminate(L.augment(real, draw["aug_real"], cfg.augment))
        d_loss = L.discriminator_loss(fake_logits, real_logits)
        r1 = L.r1_penalty(real_logits, real) if regularise else d_loss.new_zeros(())
        self.opt_d.zero_grad(set_to_none=True)
        ((d_loss + (cfg.r1_gamma / 2) * cfg.r1_interval * r1) * share).backward()
        self._reduce(self.d_params)
        self.opt_d.step()

        values = torch.stack([parts["adversarial"], parts["identity"], parts["colour"], parts["geometry"], d_loss, r1]).detach().float() * share
        if self.world > 1:
            dist.all_reduce(values)
        self.step_index += 1
        row = {"step": self.step_index, "kimg": self.step_index * cfg.batch / 1000,
               **{k: float(v) for k, v in zip(self.LOSS_COLUMNS, values)}}
        if not regularise:
            row["r1"] = float("nan")
        self.history.append(row)
        return row

    def _update_ema(self) -> None:
        half_life = self.cfg.ema_kimg * 1000
        beta = 0.5 ** (self.cfg.batch / half_life) if half_life > 0 else 0.0
        ema, current = dict(self.g_ema.named_parameters()), dict(self.g_render.named_parameters())
        with torch.no_grad():
            names = self.train_names
            torch._foreach_lerp_([ema[n] for n in names], [current[n].detach() for n in names], 1 - beta)

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        def trained(module):
            params = dict(module.named_parameters())
            return {n: params[n].detach().cpu().clone() for n in self.train_names}

        return {"config": asdict(self.cfg), "step": self.step_index, "history": self.history,
                "g_render": trained(self.g_render), "g_ema": trained(self.g_ema), "d": self.d.state_dict(),
                "d_config": self.d_config(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "base_info": self.base_info}

    def load(self, state: dict) -> None:
        with torch.no_grad():
            for module, key in ((self.g_render, "g_render"), (self.g_ema, "g_ema")):
                params = dict(module.named_parameters())
                for name, value in state[key].items():
                    params[name].copy_(value)
        self.d.load_state_dict(state["d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step_index, self.history = state["step"], list(state["history"])
        self._batches = None


# ---------------------------------------------------------------- the command

def _plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    kimg = [r["kimg"] for r in history]
    for name in ("identity", "colour", "geometry"):
        axes[0].plot(kimg, [r[name] for r in history], label=name)
    axes[0].set_title("consistency (G_render vs G_real)")
    for name in ("adversarial", "d_loss"):
        axes[1].plot(kimg, [r[name] for r in history], label=name)
    axes[1].set_title("adversarial")
    for ax in axes:
        ax.set_xlabel("kimg")
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def _write_losses(history: list[dict], path: Path) -> None:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "kimg", *Trainer.LOSS_COLUMNS])
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def snapshot(trainer: Trainer, out: Path) -> None:
    """Checkpoint, EMA generator, loss table and curves, and the fixed-seed grid (rank 0 writes)."""
    if trainer.rank != 0:
        return
    cfg = trainer.cfg
    tmp = out / ".checkpoint.pt.tmp"
    torch.save(trainer.state(), tmp)
    tmp.replace(out / "checkpoint.pt")
    info = {"train_config": asdict(cfg), "step": trainer.step_index, "kimg": trainer.step_index * cfg.batch / 1000,
            "base": trainer.base_info, "resolution": trainer.resolution, "discriminator": trainer.d_source,
            "precision": trainer.precision,
            "peak_cuda_mib": round(torch.cuda.max_memory_allocated(trainer.device) / 2**20) if trainer.device.type == "cuda" else None,
            "identity_network": {"name": trainer.identity.name, "sha256": trainer.identity.weights_sha256} if trainer.identity else None}
    save_generator(trainer.g_ema, out / "g_render", extra=info)
    _write_losses(trainer.history, out / "losses.csv")
    if trainer.history:
        _plot_losses(trainer.history, out / "losses.png")
    z = torch.from_numpy(np.random.default_rng(cfg.seed + 7).standard_normal((cfg.grid, trainer.g_real.z_dim)).astype(np.float32))
    with torch.no_grad():
        w = trainer.g_real.map(z.to(trainer.device))
        real = torch.cat([trainer.g_real.synthesize(w[i:i + 1]) for i in range(len(w))])
        render = torch.cat([trainer.g_ema.synthesize(w[i:i + 1]) for i in range(len(w))])
    (out / "snapshots").mkdir(exist_ok=True)
    kimg = trainer.step_index * cfg.batch / 1000
    atomic_save_image(out / "snapshots" / f"grid-{kimg:08.3f}.png", grid_image([real, render], min(256, trainer.resolution * 2)))


def train(cfg: TrainConfig, resume: bool = False, progress=None, log=print) -> Path:
    """Train (or continue) a run; returns the run folder. Works alone or under torchrun."""
    cfg.validate()
    out = Path(cfg.out)
    rank, world = _world()
    keep_freed_memory()
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists() and not resume:
        raise DrfhqError(f"{out}: a run is already here; continue it with --resume or choose another --out")
    if resume and not checkpoint.exists():
        raise DrfhqError(f"{out}: nothing to resume (no checkpoint.pt)")
    state = None
    if resume:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)   # tensors and plain values only
        saved = {k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()}
        before = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
        diff = {k: (before.comparable()[k], v) for k, v in cfg.comparable().items() if before.comparable()[k] != v}
        if diff:
            raise DrfhqError(f"--resume with other settings than the run's: {diff}")
        if "d_config" not in state:
            raise DrfhqError(f"{checkpoint}: written by an older drfhq (no discriminator architecture); start a new run")
    base_d = None
    if resume and (out / "g_real").is_dir():
        g_real, base_info = load_generator(out / "g_real"), state.get("base_info")
    else:
        base = load_base(cfg.base, cfg.network or "tiny", cfg.seed)
        g_real, base_info, base_d = base.generator, base.info, base.discriminator
    trainer = Trainer(cfg, g_real, base_info, base_d=base_d, d_config=state["d_config"] if state else None)
    if state is not None:
        trainer.load(state)
    out.mkdir(parents=True, exist_ok=True)     # every option has been checked by now
    with FolderLock(out, "train") if rank == 0 else contextlib.nullcontext():
        if rank == 0:
            log(f"G_real: {base_info.get('base')} at {trainer.g_real.img_resolution} px; training at {trainer.resolution} px; "
                f"discriminator: {trainer.d_source}" + (f", first {cfg.freeze_d} blocks frozen" if cfg.freeze_d else "")
                + f"; precision {trainer.precision}")
            atomic_write_json(out / "train-config.json", {**asdict(cfg), "world_size": world, "base_info": base_info,
                                                          "resolution": trainer.resolution, "discriminator": trainer.d_source,
                                                          "discriminator_config": trainer.d_config()["config"],
                                                          "precision": trainer.precision})
            if not (out / "g_real").is_dir():
                save_generator(trainer.g_real, out / "g_real", extra={"role": "G_real (frozen base)", "base": base_info})
        total_steps = max(1, math.ceil(cfg.kimg * 1000 / cfg.batch))
        every = max(1, round(cfg.snapshot_kimg * 1000 / cfg.batch))
        if trainer.step_index == 0:
            snapshot(trainer, out)
        started = time.time()
        while trainer.step_index < total_steps:
            row = trainer.step()
            if progress:
                progress(trainer.step_index, total_steps)
            out_of_time = _out_of_time(started, cfg.max_minutes, trainer.device)
            if out_of_time and rank == 0:
                log(f"--max-minutes {cfg.max_minutes}: stopping at kimg {row['kimg']:.3f} of {cfg.kimg}")
            if trainer.step_index % every == 0 or trainer.step_index == total_steps or out_of_time:
                snapshot(trainer, out)
                if rank == 0:
                    log(f"kimg {row['kimg']:.3f}: identity {row['identity']:.4f} colour {row['colour']:.4f} "
                        f"geometry {row['geometry']:.4f} G {row['adversarial']:.3f} D {row['d_loss']:.3f} "
                        f"({(time.time() - started) / max(1, len(trainer.history)):.2f} s/step)")
            if out_of_time:
                break
    return out


def _out_of_time(started: float, max_minutes: float | None, device: torch.device) -> bool:
    """Whether the time budget is spent; every process takes rank 0's answer, so all stop at one step."""
    if max_minutes is None:
        return False
    spent = time.time() - started >= max_minutes * 60
    if _world()[1] == 1:            # alone: no device tensor and no sync on every step
        return spent
    flag = torch.tensor([float(spent)], device=device)
    dist.broadcast(flag, 0)
    return bool(flag.item())


class distributed_from_env:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR, ...); a no-op alone.
    gloo on the CPU, nccl on CUDA (one device per local rank)."""

    def __init__(self, device: str):
        self.device = device
        self.active = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()

    def __enter__(self) -> "distributed_from_env":
        if self.active:
            if self.device.startswith("cuda"):
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group("nccl" if self.device.startswith("cuda") else "gloo")
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            dist.destroy_process_group()
