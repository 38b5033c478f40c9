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
id) and its loss is its own. Its numbers still depend on the batch and the device: batched kernels round
differently, and Adam's normalised steps amplify that (benchmarks/results/exposure-lift-stuck-cpu-2core: batch 6
against 1). The cache key leaves --batch and --device out.
Inversion options: `--space w|w+|w+reg` (one w for every layer; free per-layer W+; W+ with each layer
pulled towards the layers' mean, e4e-style), `--w-first` (the fraction of steps that move one w, at w's
rate, before each layer moves on its own), `--start mean|bank` (the mean w, or the nearest of a bank
of sampled latents by their 32-px images; the bank is computed once per generator and cached),
`--lpips-target` (an image stops once its LPIPS reaches it), and collapse handling: the best iterate
whose inner face is not degenerate (far darker or brighter than the target's, of another colour, flat)
is returned when the last one is; starts are chosen usable where possible; an inversion that still ends
degenerate, or never beat a usable start, starts again (`--restarts`), and so does one whose last iterate was
degenerate and whose kept iterate came early (the closer usable result is kept); none ends worse than a usable start.
One still collapsed after the last restart is pulled towards W one rung at a time (its layers towards their
mean, then that w towards the mean w) and the first latent that passes is kept: a less faithful face rather
than a blob (flagged still when no rung passes); translate.parquet says how far (`spread_kept`, `truncation`).
With `--face-check` (default) an inversion has also collapsed when G_real's image of its latent (the
transfer and project-real output) is degenerate (far darker, another colour, flat; brighter is G_real's
tone) or shows no face where the render shows one (dlib's detectors): G_render's image of a W+ latent can
be a fine face while G_real's is a blob.
A render darker than `--exposure-floor` (inner-face sRGB mean) that is still stuck after all that (gave up, or
collapsed) is inverted once more, lifted in linear light to the floor (`exposure`), and that inversion is kept when
it is usable; its output is divided by the same gain (`--exposure-lift always`: every darker render lifted at once).
OUT/translate.parquet records each inversion's final LPIPS, the step kept, the steps run (every start),
restarts and whether it stayed collapsed. The progress bar counts image-steps (`StepMeter`): a restart or a lifted
second try adds its steps to the total as it starts, and the bar's label names it while it runs.
Inversion follows the StyleGAN2 projector (Karras et al. 2020): start at the mean w, Adam with a
ramped learning rate and decaying noise on w, LPIPS (+ pixel MSE, + optional identity) on images
downsampled to --loss-resolution, and, for generators with noise inputs, per-image noise maps with the
projector's multi-scale autocorrelation penalty. Inversions are kept in OUT/latents/<generator>/
(W+ and noise per row), so methods share them and an interrupted run continues where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from PIL import Image

from ..dataset.rows import ALIGNED_LANDMARKS5, FACE_BOX, dataset_rows, load_aligned
from ..errors import DrfhqError
from ..io import atomic_save_image, atomic_write_json, png_text, sha256_file
from ..runtime import keep_freed_memory
from . import losses as L
from .exposure import exposure_gains, scale_exposure
from .losses import inner_face as _inner_face
from .networks import layer_swap, load_generator
from .train import check_device, to_uint8

METHODS = ("transfer", "project-real", "layer-swap")
SOURCE = {"transfer": "g_render", "layer-swap": "g_render", "project-real": "g_real"}    # inverted into
# the settings that change an inversion (batch, device and limit do not: each image has its own draws)
INVERSION_SETTINGS = ("steps", "lr", "w_noise", "lpips_net", "w_pixel", "w_identity", "noise_regularize", "loss_resolution", "seed",
                      "space", "space_regularize", "w_first", "start", "bank_size", "lpips_target", "restarts",
                      "face_check", "exposure_floor", "exposure_lift")
SPACES = ("w", "w+", "w+reg")
# Adam's rate when --lr is not given. One w: the StyleGAN2 projector's 0.1. Per-layer latents move 18-23 x 512
# coordinates at once; at 0.1 the first steps could land on a flat image. Measured on the space table's 8 fixture
# renders, 20 steps (benchmarks/results/bench_spaces-msg-8renders-20steps-lr003-cpu-2core.md): at 0.03 no inversion
# collapsed in either generator (1 each at 0.1), LPIPS to the render 0.304 (0.340), FID 169 (226) at equal identity.
LR_BY_SPACE = {"w": 0.1, "w+": 0.03, "w+reg": 0.03}
STARTS = ("mean", "bank")
EXPOSURE_LIFTS = ("stuck", "always")
INVERSION_RULE = 9        # bumped when the collapse rule or the restarts change: older latents are not reused
                          # (4: only a usable iterate reaches --lpips-target; 5: restarts sample 4x more each time;
                          # 6: --face-check; 7: the pull towards W after the last restart; G_real's image may be brighter;
                          # an early usable iterate kept because the last was degenerate restarts; 8: the face check
                          # finds faces as bench does; 9: a dark render that is stuck is inverted again lifted)
GAVE_UP_BEFORE = 0.5      # an inversion whose last iterate was degenerate and whose kept one came before this fraction of
                          # --steps starts again too (a usable early iterate is often someone else's face: seen on dark renders)
RESTART_CANDIDATES = 16   # latents sampled per image for the first restart from a mean start (x4 per further restart:
                          # a target no sample resembles, e.g. a dark face in sunglasses, gets a wider search); the nearest is taken
# After the last restart, an inversion that is still collapsed is pulled towards W, where the two generators agree,
# one rung at a time, and the first latent whose output passes the collapse rule is kept (`Projector.pull_towards_w`):
SPREAD_LADDER = (0.5, 0.25, 0.0)             # the fraction of each layer's deviation from the layers' mean kept (0: one w)
TRUNCATION_LADDER = (0.875, 0.75, 0.625, 0.5, 0.25, 0.0)   # then that w's distance from the mean w kept (0: the mean face)
KEY_CHUNK = "drfhq:key"


@dataclass(frozen=True)
class TranslateConfig:
    dataset: str
    ckpt: str                              # a `drfhq train` run folder (g_real/, g_render/)
    out: str
    methods: tuple[str, ...] = ("transfer",)
    steps: int = 300                       # optimisation steps per inversion
    lr: float | None = None                # Adam's rate; None: LR_BY_SPACE[space] (`learning_rate`)
    w_noise: float = 0.0                   # the projector's exploration noise on w (x the w spread; 0.05 there), mean starts
                                           # only; off by default: measured to double the LPIPS left at 30 and 90 steps
    lpips_net: str = "vgg"                 # vgg (the StyleGAN2 projector's) | alex (cheaper)
    w_pixel: float = 0.1                   # MSE on [-1, 1] images, beside LPIPS
    w_identity: float = 0.0                # optional identity term (dlib in torch)
    noise_regularize: float = 1e5
    swap_resolution: int = 32              # layer-swap: G_render's layers below this resolution
    loss_resolution: int = 256
    space: str = "w+reg"                   # w (one w for every layer) | w+ (free per layer) | w+reg (per layer, pulled to their
                                           # mean): the default by the space table's rule (README, bench_spaces-...-defaults-...)
    space_regularize: float = 0.1          # w+reg: weight of each layer's squared deviation from the layers' mean / w_std^2
    w_first: float = 0.3                   # w+, w+reg: the fraction of --steps spent moving one w (at w's rate, 0.1) before each
                                           # layer moves at its own (0.03). Measured (bench_translate, MobileStyleGAN, 4 fixture
                                           # renders, CPU): NVIDIA's 300-step LPIPS on every face in 57 steps on average; 0: 1 of 2
    start: str = "mean"                    # mean w | bank (the nearest of --bank-size sampled latents, by 32-px image)
    bank_size: int = 4096
    lpips_target: float = 0.0              # stop an image once its LPIPS to the target is at most this (0: run every step)
    restarts: int = 2                      # inversions that collapse (flat, dark, or LPIPS not falling) start again elsewhere
    face_check: bool = True                # an inversion whose output (for transfer: G_real's image) shows no face where the
                                           # render has one has collapsed too (dlib's detectors; seen on the GPU: a blue screen
                                           # with a face-coloured blob passed every statistics test)
    exposure_floor: float = 0.3            # a target whose inner face is darker (sRGB mean) may be inverted lifted to it in linear
                                           # light, its output given back at the render's exposure (`exposure`); 0: never.
                                           # FFHQ generators draw inner faces at 0.32-0.75 (the SFHQ StyleGAN2 fixtures)
    exposure_lift: str = "stuck"           # stuck: only when its inversion as it is gave up or stayed collapsed after every
                                           # restart (the lifted one kept when usable); always: every darker target, at once.
                                           # Measured (benchmarks/results/exposure-floor-cpu-2core): always ended the seven
                                           # give-ups of the dark renders but cost FID and one fit elsewhere; stuck keeps those fits
    batch: int = 4
    device: str = "cpu"
    limit: int | None = None
    seed: int = 0

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else LR_BY_SPACE[self.space]

    def validate(self) -> None:
        if not (Path(self.dataset) / "manifest.parquet").is_file():
            raise DrfhqError(f"{self.dataset}: not a dataset (no manifest.parquet)")
        self.validate_run()
        self.validate_options()

    def validate_run(self) -> None:
        for part in ("g_real", "g_render"):
            if not (Path(self.ckpt) / part / "generator.json").is_file():
                raise DrfhqError(f"--ckpt {self.ckpt}: not a `drfhq train` run (no {part}/generator.json)")
        if self.face_check:         # dlib and its CNN detector's file, before any work (the errors say what to install or where)
            from ..models.faces import require_detectors

            require_detectors()

    def validate_options(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise DrfhqError(f"--method {','.join(bad) or '(none)'}: choose from {', '.join(METHODS)}")
        if self.space not in SPACES or self.start not in STARTS:
            raise DrfhqError(f"--space {self.space} / --start {self.start}: choose from {', '.join(SPACES)} / {', '.join(STARTS)}")
        if self.steps < 1 or self.batch < 1 or self.learning_rate <= 0:
            raise DrfhqError("--steps and --batch must be >= 1, --lr > 0")
        if self.lpips_net not in ("alex", "vgg"):
            raise DrfhqError(f"--lpips-net {self.lpips_net}: alex or vgg")
        if min(self.w_pixel, self.w_identity, self.noise_regularize, self.w_noise) < 0:
            raise DrfhqError("loss weights must be >= 0")
        if self.space_regularize < 0 or self.lpips_target < 0 or self.restarts < 0 or self.bank_size < 1:
            raise DrfhqError("--space-regularize, --lpips-target, --restarts must be >= 0 and --bank-size >= 1")
        if not 0 <= self.exposure_floor < 1:
            raise DrfhqError(f"--exposure-floor {self.exposure_floor}: an sRGB level in [0, 1) (0: off)")
        if self.exposure_lift not in EXPOSURE_LIFTS:
            raise DrfhqError(f"--exposure-lift {self.exposure_lift}: choose from {', '.join(EXPOSURE_LIFTS)}")
        if not 0 <= self.w_first < 1:
            raise DrfhqError(f"--w-first {self.w_first}: a fraction of --steps in [0, 1)")
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


def face_structure(images: torch.Tensor) -> torch.Tensor:
    """Per image: the spatial spread of its inner face at 16 x 16 (std over positions, mean over channels).
    Low-passed, so that noise-map texture on a flat colour does not count as structure, and per channel,
    so that a flat image of one hue is not mistaken for a face by its channels' differences."""
    return L.resize_area(_inner_face(images), 16).std(dim=[2, 3]).mean(dim=1)


MEAN_GAP, BRIGHTNESS_RATIO, STRUCTURE_RATIO = 0.15, 0.6, 0.5    # the collapse rule's limits (see `collapsed`)
CHANNEL_GAP = 0.4      # a colour cast: measured at most 0.33 between render and output on the fixture space table


def face_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the inner face's mean of each channel on [-1, 1] (N x 3) and its structure (`face_structure`)."""
    return _inner_face(images).mean(dim=[2, 3]), face_structure(images)


FACE_CHECK_SIDE = 256      # faces are looked for on images of this width (aligned faces fill the frame)


def faces_in_frame(images: torch.Tensor) -> torch.Tensor:
    """Per aligned image (N x 3 x R x R on [-1, 1]): whether a face is found in it at 256 px, the way bench finds
    an output's face again (`find_faces_again`: dlib's HOG, then its CNN), with its centre in the aligned frame's
    inner face box (FACE_BOX). What tells a face from an image with a face's colours and spread but no face: a
    blob on a blue screen passed `degenerate`. Bench's protocol, not a cheaper one: at dlib's own scale (no
    upsampling) a dim, distorted output passed here that bench then found no face in (rule 8)."""
    from ..models.faces import find_faces_again

    images = images.detach().float()
    side = (L.resize_area(images, FACE_CHECK_SIDE) if images.shape[-1] > FACE_CHECK_SIDE        # dlib's faces are >= 80 px:
            else F.interpolate(images, size=FACE_CHECK_SIDE, mode="bilinear", align_corners=False))  # smaller frames go up
    rgb = ((side.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    x0, y0, x1, y1 = (f * rgb.shape[2] for f in FACE_BOX)
    found = []
    for image in rgb:
        boxes = find_faces_again(np.ascontiguousarray(image))
        found.append(any(x0 <= (b.box[0] + b.box[2]) / 2 <= x1 and y0 <= (b.box[1] + b.box[3]) / 2 <= y1 for b in boxes))
    return torch.tensor(found, dtype=torch.bool)


def degenerate(output: torch.Tensor, target_stats: tuple[torch.Tensor, torch.Tensor], brighter_ok: bool = False) -> torch.Tensor:
    """Per image: far darker or brighter than the target's inner face, of another colour, or flat (the
    parts of `collapsed` that look at the image alone). brighter_ok: only far darker counts (for another
    generator's image of the latent, whose tone is part of the translation)."""
    return degenerate_statistics(face_statistics(output), target_stats, brighter_ok)


def degenerate_statistics(output_stats, target_stats, brighter_ok: bool = False) -> torch.Tensor:
    """`degenerate` on statistics already measured (`face_statistics`)."""
    (out_channels, out_structure), (tgt_channels, tgt_structure) = output_stats, target_stats
    out_mean, tgt_mean = out_channels.mean(1), tgt_channels.mean(1)
    ratio = (out_mean + 1) / (tgt_mean + 1).clamp_min(1e-3)
    darker = (tgt_mean - out_mean > MEAN_GAP) | (ratio < BRIGHTNESS_RATIO)
    far = darker if brighter_ok else darker | (out_mean - tgt_mean > MEAN_GAP) | (ratio > 1 / BRIGHTNESS_RATIO)
    cast = (out_channels - tgt_channels).abs().amax(1) > CHANNEL_GAP
    return far | cast | (out_structure < tgt_structure * STRUCTURE_RATIO)


def collapsed(output: torch.Tensor, target: torch.Tensor, lpips_first: torch.Tensor, lpips_last: torch.Tensor,
              start_degenerate: torch.Tensor | None = None) -> torch.Tensor:
    """Per image: an inversion that settled on a degenerate image, judged on the inner face (FACE_BOX of
    the aligned frame; a dark background would make a black face look close on the whole image):
    - far darker or brighter: its mean differs from the target's by more than 0.15 on [-1, 1] (about 19
      grey levels), or its brightness is under 0.6 or over 1/0.6 times the target's (what catches a
      dark face on a dark render going black: 33 -> 16 of 255 is a gap of 0.13 but half the brightness);
    - of another colour: one channel's mean differs from the target's by more than CHANNEL_GAP (a blue or
      orange screen with some texture passes the brightness and structure tests: seen on restarts);
    - flat: its structure (`face_structure`) is under half the target's (measured: a flat dark-red
      output of a briefly fine-tuned G_render scored 0.002 against its target's 0.114, while its plain
      std over pixels and channels, 0.177, looked like a face's);
    - stuck: its LPIPS did not fall from the start's, unless the start was itself degenerate
      (`start_degenerate`): a usable image a little further from the target than a black one is a success."""
    stuck = lpips_last >= lpips_first
    if start_degenerate is not None:
        stuck &= ~start_degenerate
    return degenerate(output, face_statistics(target)) | stuck


@dataclass
class Inversion:
    ws: torch.Tensor                       # N x num_ws x w_dim
    noise: dict[str, torch.Tensor]         # layer -> N x 1 x r x r
    lpips: torch.Tensor                    # N: LPIPS to the target at the end (no jitter)
    steps: torch.Tensor                    # N: the step whose latent was kept (fewer than --steps when the LPIPS
                                           # target was reached, or when a later iterate was degenerate)
    restarts: torch.Tensor                 # N: further starts run (after a collapse or `gave_up`)
    collapsed: torch.Tensor                # N: still degenerate after every restart and the pull towards W
    steps_run: torch.Tensor                # N: optimisation steps spent on the image, every start counted (the cost)
    gave_up: torch.Tensor | None = None       # N: the last iterate was degenerate and the one kept came early (GAVE_UP_BEFORE)
    spread_kept: torch.Tensor | None = None   # N: the fraction of its layers' spread the latent kept (1: as optimised;
    truncation: torch.Tensor | None = None    # N:  see SPREAD_LADDER), and of its distance from the mean w (TRUNCATION_LADDER)

    def __post_init__(self):
        n = len(self.lpips)
        self.gave_up = torch.zeros(n, dtype=torch.bool) if self.gave_up is None else self.gave_up
        self.spread_kept = torch.ones(n) if self.spread_kept is None else self.spread_kept
        self.truncation = torch.ones(n) if self.truncation is None else self.truncation

    def take(self, i: int, other: Inversion, j: int) -> None:
        """Image i's result becomes other's image j (its counts of starts and steps run stay i's: the caller adds)."""
        self.ws[i], self.lpips[i], self.steps[i], self.collapsed[i] = other.ws[j], other.lpips[j], other.steps[j], other.collapsed[j]
        self.gave_up[i], self.spread_kept[i], self.truncation[i] = other.gave_up[j], other.spread_kept[j], other.truncation[j]
        for k in self.noise:
            self.noise[k][i] = other.noise[k][j]

    def stuck(self) -> torch.Tensor:
        """N bools: no usable fit (still collapsed, or an early iterate kept because every later one was degenerate)."""
        return self.collapsed | self.gave_up


class StepMeter:
    """Inversion work for a progress bar, in image-steps (one image optimised one step), done and planned. A restart
    or a lifted second try adds its steps to the plan as it starts and names itself in the label, so the bar neither
    stands still nor runs past its end while that extra work runs."""

    def __init__(self, report=None, planned: int = 0, label: str = "inverting"):
        self.report, self.planned, self.done, self.label = report, planned, 0, label

    def advance(self, image_steps: int) -> None:
        self.done += image_steps
        self._show()

    @contextlib.contextmanager
    def extra(self, image_steps: int, label: str):
        """Plan `image_steps` more under `label` (the label goes back when they are done)."""
        before, self.label = self.label, f"{self.label} ({label})"
        self.planned += image_steps
        self._show()
        try:
            yield self
        finally:
            self.label = before
            self._show()

    def _show(self) -> None:
        if self.report:
            self.report(self.done, self.planned, self.label)


class Projector:
    def __init__(self, generator, cfg: TranslateConfig, landmarks5: np.ndarray | None, bank_path: Path | None = None,
                 output_check=None):
        """output_check: (ws N x num_ws x w_dim, noise, targets at the loss resolution) -> N bools, True where the
        output the latent stands for is unusable (`RunModels.output_check`); such an inversion has collapsed too."""
        from ..models.lpips_net import LpipsDistance

        self.g, self.cfg = generator, cfg
        self.w_mean, self.w_std = w_statistics(generator, seed=cfg.seed + 123)
        self.lpips = LpipsDistance(cfg.lpips_net, cfg.device).model
        for p in self.lpips.parameters():
            p.requires_grad_(False)
        self.resolution = min(cfg.loss_resolution, generator.img_resolution)
        self.identity = (L.IdentityLoss(landmarks5, self.resolution, cfg.device)
                         if cfg.w_identity > 0 and landmarks5 is not None else None)
        self.bank_path, self._bank = bank_path, None
        self.output_check = output_check

    # ---------------------------------------------------------------- starts
    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, 32-px image features) of `bank_size` sampled latents, computed once per generator and
        kept in `bank_path` (the generator's hash and the bank's settings are in its name)."""
        if self._bank is None:
            device = self.w_mean.device
            if self.bank_path is not None and self.bank_path.is_file():
                saved = torch.load(self.bank_path, map_location=device, weights_only=True)
                self._bank = (saved["w"], saved["features"])
            else:
                gen = torch.Generator().manual_seed(self.cfg.seed + 321)
                ws, feats = [], []
                step = self.cfg.batch          # --batch bounds memory here too (MobileStyleGAN synthesises at 1024 px)
                with torch.no_grad():
                    for start in range(0, self.cfg.bank_size, step):
                        z = torch.randn(min(step, self.cfg.bank_size - start), self.g.z_dim, generator=gen).to(device)
                        w = self.g.map(z)
                        ws.append(w)
                        feats.append(self.features(self.g.synthesize(w)))
                self._bank = (torch.cat(ws), torch.cat(feats))
                if self.bank_path is not None:
                    self.bank_path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = self.bank_path.with_name(f".{self.bank_path.name}.tmp")
                    torch.save({"w": self._bank[0].cpu(), "features": self._bank[1].cpu()}, tmp)
                    tmp.replace(self.bank_path)
        return self._bank

    @staticmethod
    def features(images: torch.Tensor) -> torch.Tensor:
        return L.resize_area(images, 32).flatten(1)

    def starts(self, target: torch.Tensor, attempt: int, gens: list[torch.Generator]) -> torch.Tensor:
        """N x w_dim starting latents. The first: the mean w, or the nearest bank latent (by 32-px image).
        A restart: the next nearest bank latent, or, from a mean start, the nearest of RESTART_CANDIDATES x
        4^(attempt - 1) latents sampled for that image (from its own generator). Candidates that the collapse rule would
        call degenerate next to the target (`start_distance`) come after every one it would not, so a
        start is a fallback the inversion can always return (see `_optimise`)."""
        if self.cfg.start == "bank":
            bank_w, bank_f = self.bank()
            order = self.start_distance(target, bank_f).argsort(dim=1)
            return bank_w[order[:, min(attempt, order.shape[1] - 1)]]
        if attempt == 0:
            return self.w_mean[None].expand(len(target), -1)
        picked = []
        with torch.no_grad():
            for k, gen in enumerate(gens):
                z = torch.randn(RESTART_CANDIDATES * 4 ** (attempt - 1), self.g.z_dim, generator=gen).to(self.w_mean.device)
                w = self.g.map(z)
                feats = torch.cat([self.features(self.g.synthesize(w[s:s + self.cfg.batch]))
                                   for s in range(0, len(w), self.cfg.batch)])
                picked.append(w[int(self.start_distance(target[k:k + 1], feats)[0].argmin())])
        return torch.stack(picked)

    @classmethod
    def start_distance(cls, target: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """N x M: distance of each candidate's 32-px image to each target's, with candidates that the
        collapse rule would call degenerate next to the target put after all others, and flat ones (no
        face structure: what a briefly fine-tuned generator sometimes makes) after those."""
        candidate_stats = face_statistics(features.reshape(len(features), 3, 32, 32))
        target_stats = face_statistics(L.resize_area(target, 32))
        distance = torch.cdist(cls.features(target), features)
        rows = []
        for k in range(len(target)):
            stats = tuple(v[k:k + 1].expand(len(features), *v.shape[1:]) for v in target_stats)
            bad = degenerate_statistics(candidate_stats, stats).float()
            flat = (candidate_stats[1] < stats[1] * STRUCTURE_RATIO).float()
            rows.append(distance[k] + 1e6 * bad + 1e9 * flat)
        return torch.stack(rows)

    # ---------------------------------------------------------------- the optimisation
    def project(self, targets: torch.Tensor, seeds: list[int] | None = None, progress: StepMeter | None = None,
                lpips_targets: torch.Tensor | None = None) -> Inversion:
        """targets: N x 3 x R x R in [-1, 1] -> their inversions. seeds: one per image for its noise
        start, restarts and w jitter (default: the run seed + index). lpips_targets: a per-image
        `--lpips-target` (default: the config's for all). Collapsed inversions are run again from other
        starts (up to `restarts` times); the better of the two is kept. One still collapsed after the last
        restart is pulled towards W (`pull_towards_w`). progress: advanced by N x steps for the first pass
        (planned by the caller); each restart plans its own."""
        n = targets.shape[0]
        gens = [torch.Generator().manual_seed(s) for s in (seeds or [self.cfg.seed + i for i in range(n)])]
        goal = (torch.full((n,), float(self.cfg.lpips_target)) if lpips_targets is None
                else torch.as_tensor(lpips_targets, dtype=torch.float32).reshape(n).cpu())
        target = L.resize_area(targets, self.resolution)
        progress = progress or StepMeter()
        best = self._optimise(target, self.starts(target, 0, gens), gens, progress, goal)
        for attempt in range(1, self.cfg.restarts + 1):
            redo = best.stuck().nonzero().flatten().tolist()
            if not redo:
                break
            with progress.extra(len(redo) * self.cfg.steps, f"restart {attempt}"):
                again = self._optimise(target[redo], self.starts(target[redo], attempt, [gens[i] for i in redo]),
                                       [gens[i] for i in redo], progress, goal[redo])
            for j, i in enumerate(redo):
                best.restarts[i] += 1
                best.steps_run[i] += again.steps_run[j]
                # a collapsed one takes any usable or closer result; a usable one that gave up, only a usable closer one
                closer = bool(again.lpips[j] < best.lpips[i])
                if (not bool(again.collapsed[j]) or closer) if bool(best.collapsed[i]) else (not bool(again.collapsed[j]) and closer):
                    best.take(i, again, j)
        if best.collapsed.any():
            self.pull_towards_w(target, best)
        return best

    def ladder(self) -> list[tuple[float, float]]:
        """(spread kept, truncation) rungs, nearest the optimised latent first; a w latent has no spread to drop."""
        spreads = [] if self.cfg.space == "w" else [(s, 1.0) for s in SPREAD_LADDER]
        return spreads + [(0.0, t) for t in TRUNCATION_LADDER]

    def pull_towards_w(self, target: torch.Tensor, inv: Inversion) -> None:
        """For each inversion still collapsed after every restart: move its latent towards W one rung at a time
        (`ladder`: the layers towards their mean, then that w towards the mean w) and keep the first whose
        output is usable: `output_check`'s verdict when there is one (G_real's image, what transfer and
        project-real return), else this generator's image not degenerate next to the target. Off W the
        generators disagree (G_real's image of a W+ latent can be a blob while G_render's is a face); the mean
        face is a face in both. In place; the rung's LPIPS (this generator's image) replaces the fit's. An image
        that no rung rescues stays collapsed with its fitted latent."""
        todo = inv.collapsed.nonzero().flatten().tolist()
        target_stats = face_statistics(target)
        for spread, psi in self.ladder():
            if not todo:
                break
            rescued = []
            for s in range(0, len(todo), self.cfg.batch):
                idx = todo[s:s + self.cfg.batch]
                ws = inv.ws[idx]
                layer_mean = ws.mean(dim=1, keepdim=True)
                w = self.w_mean + psi * (layer_mean - self.w_mean)
                ws = w + spread * (ws - layer_mean)
                noise = {k: v[idx] for k, v in inv.noise.items()}
                with torch.no_grad():
                    image = self._image(ws, 0.0, noise)
                    distance = self.lpips(image, target[idx]).reshape(len(idx)).cpu()
                    # the output decides: on a very dark render, G_render's image near W can be flat (traced: a rung
                    # whose G_real image was a face, at half the render's structure in G_render)
                    bad = (self.output_check(ws, noise, target[idx]).cpu() if self.output_check is not None
                           else degenerate(image.cpu(), tuple(v[idx].cpu() for v in target_stats)))
                for j, i in enumerate(idx):
                    if not bad[j]:
                        inv.ws[i], inv.lpips[i], inv.collapsed[i] = ws[j], distance[j], False
                        inv.spread_kept[i], inv.truncation[i] = spread, psi
                        rescued.append(i)
            todo = [i for i in todo if i not in rescued]

    def _image(self, ws, jitter, noise):
        g = self.g
        full = ws.expand(-1, g.num_ws, -1) if ws.shape[1] == 1 else ws
        return L.resize_area(g.synthesize(full + jitter, noise=noise or None), self.resolution)

    def _optimise(self, target: torch.Tensor, start: torch.Tensor, gens: list[torch.Generator], progress: StepMeter,
                  goal: torch.Tensor) -> Inversion:
        cfg, g = self.cfg, self.g
        n = target.shape[0]
        target_id = self.identity.embed(target).detach() if self.identity else None
        layers = 1 if cfg.space == "w" else g.num_ws
        # --w-first: the first steps move one w for every layer (coarse, and inside W), then each layer its own
        w_phase = 0 if cfg.space == "w" else round(cfg.w_first * cfg.steps)
        ws = start.detach().reshape(n, 1, -1).repeat(1, 1 if w_phase else layers, 1).clone().requires_grad_(True)
        noise = {k: torch.stack([torch.randn(1, *v.shape[-2:], generator=gen) for gen in gens]).to(ws.device).requires_grad_(True)
                 for k, v in g.noise_maps().items()}
        rate = cfg.lr if cfg.lr is not None else LR_BY_SPACE["w"] if w_phase else cfg.learning_rate
        opt = torch.optim.Adam([ws, *noise.values()], lr=rate, betas=(0.9, 0.999))
        kept_ws, kept_noise = ws.detach().repeat(1, layers // ws.shape[1], 1), {k: v.detach().clone() for k, v in noise.items()}
        first_noise = {k: v.detach().clone() for k, v in noise.items()}
        steps = torch.full((n,), cfg.steps, dtype=torch.long)
        active = torch.ones(n, dtype=torch.bool)
        # the best iterate that is not degenerate: returned if the last one is (an image can pass through
        # a good fit on its way to a dark or flat one)
        valid_ws, valid_noise = kept_ws.clone(), {k: v.detach().clone() for k, v in noise.items()}
        valid_lpips, valid_step = torch.full((n,), float("inf")), torch.full((n,), -1, dtype=torch.long)
        target_stats = tuple(v.detach() for v in face_statistics(target))
        with torch.no_grad():           # the start's own LPIPS, without jitter: what the optimisation must beat
            start_image = self._image(ws, 0.0, noise)
            first = self.lpips(start_image, target).reshape(n).cpu()
            start_bad = degenerate(start_image, target_stats).cpu()
        # the projector's exploration noise on w is for a start far from the target (the mean w); a bank
        # start is already near it, and jitter there only keeps LPIPS up in a short run
        noise_scale = cfg.w_noise if cfg.start == "mean" else 0.0
        counted = 0
        for step in range(cfg.steps):
            t = step / cfg.steps
            if w_phase and step == w_phase:     # each layer from here on, from the w reached; Adam starts afresh
                ws = ws.detach().repeat(1, layers, 1).requires_grad_(True)
                rate = cfg.learning_rate
                opt = torch.optim.Adam([ws, *noise.values()], lr=rate, betas=(0.9, 0.999))
            w_noise = self.w_std * noise_scale * max(0.0, 1 - t / 0.75) ** 2
            ramp = min(1.0, (1 - t) / 0.25)
            warm = min(1.0, t / 0.05)
            if w_phase and step >= w_phase:       # Adam's fresh moments after the switch: warm up again
                warm = min(warm, (step - w_phase + 1) / max(1.0, 0.05 * cfg.steps))
            ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * warm
            for group in opt.param_groups:
                group["lr"] = rate * ramp
            jitter = torch.stack([torch.randn(ws.shape[1:], generator=gen) for gen in gens]).to(ws.device) * w_noise
            image = self._image(ws, jitter, noise)
            distance = self.lpips(image, target).reshape(n)
            loss = distance + cfg.w_pixel * (image - target).square().mean(dim=[1, 2, 3])
            with torch.no_grad():
                usable = ~degenerate(image, target_stats).cpu()
                better = active & usable & (distance.detach().cpu() < valid_lpips)
                for i in better.nonzero().flatten().tolist():
                    valid_ws[i], valid_lpips[i], valid_step[i] = ws.detach()[i], distance.detach()[i].cpu(), step
                    for k in noise:
                        valid_noise[k][i] = noise[k].detach()[i]
            if (goal > 0).any():     # an image that reached the target with a usable iterate keeps that latent (a
                # degenerate one can score under the target: a dark image on a dark render; seen on the GPU)
                reached = active & usable & (goal > 0) & (distance.detach().cpu() <= goal)
                for i in reached.nonzero().flatten().tolist():
                    kept_ws[i] = ws.detach()[i]
                    for k in noise:
                        kept_noise[k][i] = noise[k].detach()[i]
                    steps[i] = step
                active &= ~reached
                if not active.any():
                    break
            if self.identity is not None:
                loss = loss + cfg.w_identity * self.identity(image, target_id)
            if noise:
                loss = loss + cfg.noise_regularize * noise_penalty(noise)
            if cfg.space == "w+reg":     # e4e-style: every layer's w kept near the layers' mean
                loss = loss + cfg.space_regularize * (ws - ws.mean(dim=1, keepdim=True)).square().sum(-1).mean(1) / self.w_std ** 2
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()      # per-image losses: each image's latents get their own gradient
            opt.step()
            with torch.no_grad():      # the projector keeps noise maps unit-variance
                for v in noise.values():
                    v.sub_(v.mean(dim=[1, 2, 3], keepdim=True)).div_(v.square().mean(dim=[1, 2, 3], keepdim=True).sqrt())
            progress.advance(n)
            counted += n
        progress.advance(n * cfg.steps - counted)     # the steps an early stop saved count as done: the plan was n x steps
        with torch.no_grad():
            for i in active.nonzero().flatten().tolist():
                kept_ws[i] = ws.detach()[i]
                for k in noise:
                    kept_noise[k][i] = noise[k].detach()[i]
            final = self._image(kept_ws, 0.0, kept_noise)
            last = self.lpips(final, target).reshape(n).cpu()
            final_bad = degenerate(final, target_stats).cpu()
            # per image, of the last iterate, the best non-degenerate one (only when the last is degenerate)
            # and the start: one that is not degenerate before one that is, then the lower LPIPS (so never
            # worse than a usable start)
            at_once = ~active & (steps == 0)        # reached the LPIPS target at the start: good enough
            steps_run = steps.clone()               # the cost, whichever iterate is returned
            changed = False
            for i in range(n):
                options = [(bool(final_bad[i]), float(last[i]), "last")]
                if final_bad[i] and active[i] and valid_step[i] >= 0:
                    options.append((False, float(valid_lpips[i]), "valid"))
                options.append((bool(start_bad[i]), float(first[i]), "start"))
                choice = min(options)[2]
                if choice != "last":
                    source_ws, source_noise = (valid_ws, valid_noise) if choice == "valid" else (start.reshape(n, 1, -1).expand(-1, layers, -1), first_noise)
                    kept_ws[i], changed = source_ws[i], True
                    if choice == "valid":
                        steps[i] = valid_step[i]
                    for k in noise:
                        kept_noise[k][i] = source_noise[k][i]
            if changed:
                final = self._image(kept_ws, 0.0, kept_noise)
                last = self.lpips(final, target).reshape(n).cpu()
            bad = collapsed(final.cpu(), target.cpu(), first, last, start_bad)
            bad &= ~at_once
            gave_up = final_bad & ~at_once & (steps < GAVE_UP_BEFORE * cfg.steps)
            full = kept_ws.expand(-1, g.num_ws, -1).clone() if cfg.space == "w" else kept_ws
            if self.output_check is not None:       # what the method makes of the latent, not only this generator's image
                bad |= self.output_check(full, kept_noise, target).cpu()
        return Inversion(full, kept_noise, last, steps, torch.zeros(n, dtype=torch.long), bad, steps_run, gave_up)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def bank_file(folder: Path, generator_sha256: str, cfg: TranslateConfig) -> Path:
    """Where a generator's start bank is cached: named by the generator's hash and the bank's settings."""
    return Path(folder) / f"bank-{_digest([generator_sha256, cfg.bank_size, cfg.seed])}.pt"


def generator_sha256(folder: Path) -> str:
    """Content hash of a saved generator's weights (the file its generator.json names)."""
    meta = json.loads((folder / "generator.json").read_text())
    return sha256_file(folder / meta.get("weights", "generator.safetensors"))


def translation_keys(cfg: TranslateConfig, hashes: dict[str, str], size: int, landmarks5: np.ndarray) -> dict:
    """Keys of every inversion (per generator) and every method's outputs for these settings."""
    settings = {f: getattr(cfg, f) for f in INVERSION_SETTINGS} | {"lr": cfg.learning_rate}   # --lr 0.03 == w+'s default
    if cfg.w_identity > 0:     # the identity term cuts its chips with the dataset's median landmarks
        settings["landmarks5"] = np.round(landmarks5, 3).tolist()
    # with --face-check, which inversion counts as collapsed depends on G_real's image of it
    checked = {g: {"checked_with": hashes["g_real"]} if cfg.face_check else {} for g in ("g_real", "g_render")}
    inversion = {g: _digest({"generator_sha256": hashes[g], "rule": INVERSION_RULE, **settings, **checked[g]}) for g in ("g_real", "g_render")}
    outputs = {}
    for method in METHODS:
        parts = {"method": method, "inversion": inversion[SOURCE[method]], "size": size, "decoder": hashes["g_real"]}
        if method == "layer-swap":
            parts.update(coarse=hashes["g_render"], swap_resolution=cfg.swap_resolution)
        outputs[method] = _digest(parts)
    return {"inversion": inversion, "outputs": outputs, "settings": settings}


def _row_seed(seed: int, row_id: str) -> int:
    return int(hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()[:15], 16)


def _save(image: torch.Tensor, path: Path, size: int, key: str) -> None:
    """Atomic PNG at `size` with its key in a text chunk."""
    picture = Image.fromarray(to_uint8(image[None])[0]).resize((size, size), Image.LANCZOS, reducing_gap=3.0)
    atomic_save_image(path, picture, {KEY_CHUNK: key})


INVERSION_SCHEMA = pa.schema([
    pa.field("id", pa.string()),                  # dataset row
    pa.field("generator", pa.string()),           # g_render (transfer, layer-swap) | g_real (project-real)
    pa.field("inversion_key", pa.string()),
    pa.field("lpips", pa.float64()),              # LPIPS to the render at the loss resolution, at the end
    pa.field("lpips_net", pa.string()),
    pa.field("steps", pa.int64()),                # the step whose latent was kept (fewer than --steps when --lpips-target
                                                  # was reached or a later iterate was degenerate)
    pa.field("restarts", pa.int64()),             # further starts run (the inversion collapsed, or its last iterate was
                                                  # degenerate and the one kept came early)
    pa.field("collapsed", pa.bool_()),            # still degenerate after every restart and the pull towards W
    pa.field("steps_run", pa.int64()),            # optimisation steps spent, every start counted (the cost)
    pa.field("spread_kept", pa.float64()),        # 1 unless the pull towards W rescued it: the fraction of its layers'
    pa.field("truncation", pa.float64()),         # spread kept, and of its w's distance from the mean w (0: the mean face)
    pa.field("gave_up", pa.bool_()),              # the latent kept is an early iterate because every later one was
                                                  # degenerate, after every restart: a face, often another person's
    pa.field("exposure_gain", pa.float64()),      # the linear-light gain the render was inverted at (1: as it is;
                                                  # > 1: darker than --exposure-floor, lifted; the output is given back)
])


INVERSION_RECORD = ("lpips", "steps", "restarts", "collapsed", "steps_run", "spread_kept", "truncation", "gave_up",
                    "exposure_gain")


def inversion_record(saved: dict) -> dict:
    """A saved latent's record of its inversion (INVERSION_RECORD; None where an older file lacks one), as
    translate.parquet and enhance.parquet carry it."""
    return {k: saved.get(k) for k in INVERSION_RECORD}


def _write_inversion_table(out: Path, rows: list[dict], latent_dirs: dict[str, Path], lpips_net: str) -> None:
    """OUT/translate.parquet: one row per dataset row and generator inverted into, from the latents."""
    from ..io import atomic_write_parquet

    records = []
    for src, folder in sorted(latent_dirs.items()):
        for r in rows:
            if not (folder / f"{r['id']}.pt").is_file():       # outputs kept, their latents deleted by hand
                continue
            saved = torch.load(folder / f"{r['id']}.pt", map_location="cpu", weights_only=True)
            records.append({"id": r["id"], "generator": src, "inversion_key": saved["key"], "lpips_net": lpips_net,
                            **inversion_record(saved)})
    atomic_write_parquet(out / "translate.parquet", pa.Table.from_pylist(records, schema=INVERSION_SCHEMA))


class RunModels:
    """A `drfhq train` run's generators, projectors and decoders, each loaded once, and the inversion
    cache: `invert` projects what has no latent yet under these settings, `decode` draws a method's
    output from a saved latent. translate (dataset rows) and enhance (faces found in whole images) share it."""

    def __init__(self, cfg: TranslateConfig, landmarks5: np.ndarray | None = None, size: int | None = None):
        """size: the side of the images given and returned (default: G_real's own resolution);
        landmarks5: their typical five points (default: ALIGNED_LANDMARKS5 at that size)."""
        self.cfg, self.ckpt, self.device = cfg, Path(cfg.ckpt), torch.device(cfg.device)
        self.hashes = {g: generator_sha256(self.ckpt / g) for g in ("g_real", "g_render")}
        self._generators, self._projectors, self._decoders = {}, {}, {}
        self._render_faces: dict[str, bool] = {}      # target digest -> a face found in it (each render looked at once)
        size = size or self.generator("g_real").img_resolution
        if landmarks5 is None:
            landmarks5 = np.asarray(ALIGNED_LANDMARKS5) * size
        self.landmarks5, self.size = landmarks5, size         # five points in the frame of `size`-px images
        self.keys = translation_keys(cfg, self.hashes, size, landmarks5)

    def generator(self, name: str):
        if name not in self._generators:
            g = load_generator(self.ckpt / name).to(self.device)
            for p in g.parameters():
                p.requires_grad_(False)
            self._generators[name] = g
        return self._generators[name]

    def projector(self, src: str, bank_dir: Path) -> Projector:
        if src not in self._projectors:
            cfg, g = self.cfg, self.generator(src)
            self._projectors[src] = Projector(g, cfg, self.landmarks5 * min(cfg.loss_resolution, g.img_resolution) / self.size,
                                              bank_file(bank_dir, self.hashes[src], cfg),
                                              self.output_check if cfg.face_check else None)
        return self._projectors[src]

    def output_check(self, ws: torch.Tensor, noise: dict, targets: torch.Tensor) -> torch.Tensor:
        """Per latent: True where G_real's image of it (transfer's and project-real's output) is degenerate
        next to the target (far darker, another colour, flat; brighter is allowed: G_real's tone is the
        translation's), or shows no face where the target shows one (`faces_in_frame`). G_render's image
        of a W+ latent can be a fine face while G_real's is not: the generators agree near W only."""
        with torch.no_grad():
            images = L.resize_area(self.generator("g_real").synthesize(ws, noise=noise or None), targets.shape[-1])
        # brighter allowed: measured on a dark render, G_real's face of the fitted latent and of every rung towards
        # W was 0.13-0.2 brighter (on [-1, 1]) than G_render's, which matched the render: a face, not a collapse
        bad = degenerate(images.cpu(), face_statistics(targets.cpu()), brighter_ok=True)
        # dlib is the check's cost (0.35 s an image on a CPU core): each render once, outputs only where it decides
        keys = [hashlib.sha256(t.numpy().tobytes()).hexdigest() for t in targets.detach().float().cpu()]
        new = {k: i for i, k in enumerate(keys) if k not in self._render_faces}
        if new:
            self._render_faces.update(zip(new, faces_in_frame(targets[list(new.values())]).tolist()))
        ask = [i for i, k in enumerate(keys) if self._render_faces[k] and not bad[i]]
        if ask:
            bad[ask] = ~faces_in_frame(images[ask])
        return bad

    def decoder(self, method: str):
        if method not in self._decoders:
            self._decoders[method] = (layer_swap(self.generator("g_render"), self.generator("g_real"), self.cfg.swap_resolution)
                                      if method == "layer-swap" else self.generator("g_real"))
        return self._decoders[method]

    def invert(self, src: str, latent_dir: Path, ids: list[str], load_target, progress: StepMeter | None = None,
               on_batch=None) -> None:
        """Invert every id without a latent in `latent_dir` (load_target(id, R) -> its 3 x R x R uint8
        tensor); each latent is saved atomically as soon as its batch is done, and on_batch(ids) is told.
        progress: advanced by steps for each id inverted (the caller plans those), plus any restart or lift."""
        missing = [i for i in ids if not (latent_dir / f"{i}.pt").is_file()]
        for start in range(0, len(missing), self.cfg.batch):
            chunk = missing[start:start + self.cfg.batch]
            projector = self.projector(src, latent_dir.parent)
            targets = torch.stack([load_target(i, projector.resolution).float() / 127.5 - 1 for i in chunk]).to(self.device)
            inv, gains = self._project_exposed(projector, targets, [_row_seed(self.cfg.seed, i) for i in chunk], progress)
            latent_dir.mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(chunk):
                tmp = latent_dir / f".{i}.pt.tmp"
                torch.save({"ws": inv.ws[k].cpu(), "noise": {n: v[k].cpu() for n, v in inv.noise.items()}, "key": self.keys["inversion"][src],
                            "lpips": float(inv.lpips[k]), "steps": int(inv.steps[k]), "restarts": int(inv.restarts[k]),
                            "collapsed": bool(inv.collapsed[k]), "steps_run": int(inv.steps_run[k]),
                            "spread_kept": float(inv.spread_kept[k]), "truncation": float(inv.truncation[k]),
                            "gave_up": bool(inv.gave_up[k]), "exposure_gain": float(gains[k])}, tmp)
                tmp.replace(latent_dir / f"{i}.pt")
            if on_batch:
                on_batch(chunk)

    def _project_exposed(self, projector: Projector, targets: torch.Tensor, seeds: list[int],
                         progress: StepMeter | None) -> tuple[Inversion, torch.Tensor]:
        """Invert targets under --exposure-floor / --exposure-lift -> (inversions, the gain each was inverted at; 1: as
        it is). `decode` divides a lifted one's output by its gain. Each image's draws come from its seed, so a lifted
        second try is the inversion `always` would have made of it, at that batch size."""
        gains, progress = exposure_gains(targets, self.cfg.exposure_floor), progress or StepMeter()
        if self.cfg.exposure_lift == "always":
            return projector.project(scale_exposure(targets, gains) if (gains > 1).any() else targets, seeds, progress), gains
        inv, used = projector.project(targets, seeds, progress), torch.ones_like(gains)
        stuck = ((gains > 1) & inv.stuck().cpu()).nonzero().flatten().tolist()
        if stuck:
            with progress.extra(len(stuck) * self.cfg.steps, "lifted"):
                lifted = projector.project(scale_exposure(targets[stuck], gains[stuck]), [seeds[k] for k in stuck], progress)
            still_stuck = lifted.stuck().tolist()
            for j, k in enumerate(stuck):
                inv.restarts[k] += 1 + lifted.restarts[j]
                inv.steps_run[k] += lifted.steps_run[j]
                if not still_stuck[j]:       # else the fit as it is stays: LPIPS at two exposures do not compare
                    inv.take(k, lifted, j)
                    used[k] = gains[k]
        return inv, used

    def load_latent(self, latent_file: Path) -> dict:
        return torch.load(latent_file, map_location=self.device, weights_only=True)

    def decode(self, method: str, saved: dict) -> torch.Tensor:
        """A saved latent (`load_latent`) -> 3 x R x R image in about [-1, 1] at the generator's resolution, at the
        render's exposure (a target lifted for its inversion is divided by the same gain)."""
        with torch.no_grad():
            image = self.decoder(method).synthesize(saved["ws"][None], noise={k: v[None] for k, v in saved["noise"].items()} or None)
        gain = float(saved.get("exposure_gain", 1.0))
        return (scale_exposure(image, torch.tensor([1 / gain])) if gain != 1 else image)[0]


def translate(cfg: TranslateConfig, progress=None, log=print) -> dict[str, dict[str, Path]]:
    """Write every method's output for every usable dataset row; returns {method: {row id: path}}."""
    cfg.validate()
    rows, size = dataset_rows(Path(cfg.dataset), cfg.limit)
    keep_freed_memory()
    out, ckpt = Path(cfg.out), Path(cfg.ckpt)
    models = RunModels(cfg, np.median(np.stack([r["aligned_lm5"] for r in rows]), axis=0), size)
    hashes, keys = models.hashes, models.keys
    # what is already there under these exact settings
    todo = {m: {r["id"] for r in rows if png_text(out / m / f"{r['id']}.png", KEY_CHUNK) != keys["outputs"][m]} for m in cfg.methods}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "translate.json", {"config": asdict(cfg), "checkpoint_sha256": hashes, **keys})
    files = {r["id"]: r["image_file"] for r in rows}
    pending = {src: [r["id"] for r in rows if any(r["id"] in todo[m] for m in cfg.methods if SOURCE[m] == src)]
               for src in ("g_render", "g_real")}
    # the plan: every pending id's first pass (restarts and lifts add theirs as they start); an id whose latent is
    # already there counts as done at once
    meter = StepMeter(progress, sum(len(v) for v in pending.values()) * cfg.steps)
    for src, ids in pending.items():
        if not ids:
            continue
        latent_dir = out / "latents" / f"{src}-{keys['inversion'][src]}"
        there = sum((latent_dir / f"{i}.pt").is_file() for i in ids)
        meter.advance(there * cfg.steps)
        drawn: set[str] = set()

        def draw(batch, src=src, latent_dir=latent_dir, drawn=drawn):      # each batch's outputs as soon as it is inverted
            for i in batch:
                saved = models.load_latent(latent_dir / f"{i}.pt")
                for method in cfg.methods:
                    if SOURCE[method] == src and i in todo[method]:
                        _save(models.decode(method, saved), out / method / f"{i}.png", size, keys["outputs"][method])
                drawn.add(i)
        models.invert(src, latent_dir, ids, lambda i, resolution: load_aligned(files[i], resolution), meter, draw)
        draw([i for i in ids if i not in drawn])          # those whose latents were there already
    _write_inversion_table(out, rows, {src: out / "latents" / f"{src}-{keys['inversion'][src]}"
                                       for src in {SOURCE[m] for m in cfg.methods}}, cfg.lpips_net)
    results = {m: {r["id"]: out / m / f"{r['id']}.png" for r in rows} for m in cfg.methods}
    for method in cfg.methods:
        atomic_write_json(out / method / "provenance.json", {
            "method": method, "checkpoint": str(ckpt), "checkpoint_sha256": hashes, "key": keys["outputs"][method],
            "inversion_key": keys["inversion"][SOURCE[method]], "settings": keys["settings"],
            "swap_resolution": cfg.swap_resolution if method == "layer-swap" else None, "size": size,
            "rows": len(rows), "redrawn": len(todo[method])})
        log(f"{method}: {len(rows)} images in {out / method} ({len(todo[method])} new, {len(rows) - len(todo[method])} reused)")
    return results
