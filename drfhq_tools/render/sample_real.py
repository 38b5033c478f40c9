"""`drfhq sample-real`: FFHQ-like faces from MobileStyleGAN (distilled from NVIDIA's FFHQ StyleGAN2),
the closest installable stand-in for real photos. They are generated images, NOT photographs: use
them for demos and pipelines, and point `--real` at real photos for numbers you report.

Runs the `random-face` package's OpenVINO IR files through OpenVINO's current API in f32 (the CPU's
default is bf16). Truncation uses the mean of mapped samples, since no average w ships.
Weights: NVIDIA Source Code License, non-commercial.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DrfhqError
from ..io import atomic_save_image, atomic_write_json
from ..models.weights import resolve

LICENCE = "MobileStyleGAN weights: NVIDIA Source Code License (non-commercial use only)"


@dataclass(frozen=True)
class SampleRealConfig:
    out: str
    n: int = 64
    size: int = 256                   # FFHQ-aligned already; resized with Lanczos
    seed: int = 0
    truncation: float = 0.7           # psi: 1 = no truncation
    mean_samples: int = 2048          # mapped samples averaged for the truncation centre

    def validate(self) -> None:
        if self.n < 1:
            raise DrfhqError("--n must be at least 1")
        if not (16 <= self.size <= 1024):
            raise DrfhqError(f"--size {self.size}: 16 to 1024")
        if not (0 < self.truncation <= 1.0):
            raise DrfhqError(f"--truncation {self.truncation}: in (0, 1]")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise DrfhqError(f"{out}: exists and is not a folder")


class MobileStyleGanOpenVino:
    """z -> w (mapping) and w -> 1024 px RGB in [-1, 1] (synthesis), OpenVINO f32."""

    def __init__(self):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        files = {name: resolve(f"mobilestylegan-{name}") for name in ("mapping-xml", "mapping-bin", "synthesis-xml", "synthesis-bin")}
        self.sha256 = {k: v.sha256 for k, v in files.items()}
        self.mapping = core.compile_model(core.read_model(str(files["mapping-xml"].path), str(files["mapping-bin"].path)), "CPU", config)
        self.synthesis = core.compile_model(core.read_model(str(files["synthesis-xml"].path), str(files["synthesis-bin"].path)), "CPU", config)

    def map(self, z: np.ndarray) -> np.ndarray:
        return np.concatenate([self.mapping(z[i:i + 1].astype(np.float32))[0] for i in range(len(z))])

    def synthesize(self, w: np.ndarray) -> np.ndarray:
        return self.synthesis(w.reshape(1, 512).astype(np.float32))[0][0]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """3 x H x W in [-1, 1] -> H x W x 3 uint8."""
    return np.clip(np.rint((np.clip(image, -1, 1).transpose(1, 2, 0) + 1) * 127.5), 0, 255).astype(np.uint8)


def sample_real(config: SampleRealConfig, progress=None) -> list[Path]:
    config.validate()
    net = MobileStyleGanOpenVino()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, 1])
    w_mean = net.map(rng.standard_normal((config.mean_samples, 512))).mean(axis=0)
    paths = []
    for i in range(config.n):
        z = np.random.default_rng([config.seed, 2, i]).standard_normal((1, 512))
        w = w_mean + config.truncation * (net.map(z)[0] - w_mean)
        image = Image.fromarray(to_uint8(net.synthesize(w)))
        if config.size != image.size[0]:
            image = image.resize((config.size, config.size), Image.LANCZOS)
        path = out / f"sample_{i:05d}.png"
        atomic_save_image(path, image)
        paths.append(path)
        if progress:
            progress(i + 1, config.n)
    atomic_write_json(out / "sample_real.json", {"config": config, "generator": "MobileStyleGAN (FFHQ), OpenVINO f32",
                                                 "weights_sha256": net.sha256, "licence": LICENCE,
                                                 "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    return paths
