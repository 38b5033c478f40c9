"""Losses of the identity-consistent transfer (pure functions of image batches in [-1, 1]).

- adversarial: non-saturating logistic loss, lazy R1 on real images (Mescheder et al. 2018);
- identity consistency: 1 - cos(ID(G_render(w)), ID(G_real(w))), with a frozen, differentiable
  identity network (dlib's ResNet in torch on dlib's own chips, cut in torch);
- colour consistency: L1 between the two outputs' inner faces low-passed to 8 x 8 (skin colour and
  tone, not texture);
- geometry consistency: disagreement of the two outputs' luminance-gradient fields at 64 px, each
  normalised by its RMS (face outline, eyes, nose, mouth where they are, whatever the shading).
DiffAugment (Zhao et al. 2020: colour, translation, cutout) draws its random values for the whole
batch up front so that a batch split across processes is augmented exactly as in one process.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..dataset.rows import FACE_BOX


def resize_area(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size and images.shape[-1] % size == 0:
        return F.avg_pool2d(images, images.shape[-1] // size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D at the real images (real_images must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean()


def inner_face(images: torch.Tensor) -> torch.Tensor:
    s = images.shape[-1]
    x0, y0, x1, y1 = (round(f * s) for f in FACE_BOX)
    return images[..., y0:y1, x0:x1]


def colour_loss(a: torch.Tensor, b: torch.Tensor, size: int = 8) -> torch.Tensor:
    pa = F.adaptive_avg_pool2d(inner_face(a), size)
    pb = F.adaptive_avg_pool2d(inner_face(b), size)
    return (pa - pb).abs().mean()


def _gradient_field(images: torch.Tensor, size: int = 64) -> torch.Tensor:
    lum = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])[:, None]
    lum = resize_area(lum, size)
    gx = lum[..., :, 1:] - lum[..., :, :-1]
    gy = lum[..., 1:, :] - lum[..., :-1, :]
    field = torch.cat([gx[..., :-1, :].flatten(1), gy[..., :, :-1].flatten(1)], dim=1)
    return field / (field.square().mean(dim=1, keepdim=True) + 1e-8).sqrt()


def geometry_loss(a: torch.Tensor, b: torch.Tensor, size: int = 64) -> torch.Tensor:
    """0 when the structures agree up to contrast; 2 for unrelated images, 4 for inverted ones."""
    return (_gradient_field(a, size) - _gradient_field(b, size)).square().mean()


class IdentityLoss(nn.Module):
    """1 - cos of dlib descriptors of two batches of aligned faces, differentiable in the first.

    `landmarks5` are the five dlib points of an aligned face in the frame of the images given (all
    generated faces share the dataset's alignment, so one chip transform serves every image)."""

    def __init__(self, landmarks5: np.ndarray, resolution: int, device: str = "cpu"):
        super().__init__()
        from ..models.chips import chip_matrix
        from ..models.dlib_resnet import DlibFaceResNet
        from ..models.weights import resolve

        model = resolve("dlib-face-descriptor")
        self.name, self.weights_sha256 = "dlib-resnet-v1-torch", model.sha256
        self.net = DlibFaceResNet.from_dlib_file(model.path).to(device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("matrix", torch.from_numpy(chip_matrix(landmarks5)).float())
        self.resolution = resolution

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        from ..models.chips import extract_chips

        chips = extract_chips((resize_area(images, self.resolution) + 1) * 127.5, self.matrix, 150)
        return F.normalize(self.net(chips.clamp(0, 255)), dim=1)

    def forward(self, a: torch.Tensor, b_embedding: torch.Tensor) -> torch.Tensor:
        return 1 - (self.embed(a) * b_embedding).sum(dim=1)        # per image


# ---------------------------------------------------------------- DiffAugment

def draw_augment(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random values for n images (drawn for the full batch on every process, then sliced)."""
    return {
        "brightness": torch.rand(n, generator=generator) - 0.5,
        "saturation": torch.rand(n, generator=generator) * 2,
        "contrast": torch.rand(n, generator=generator) + 0.5,
        "shift": torch.rand(n, 2, generator=generator) * 2 - 1,        # fraction of 1/8 of the side
        "cutout": torch.rand(n, 2, generator=generator),               # centre of a half-side square
    }


def slice_augment(params: dict[str, torch.Tensor], start: int, stop: int | None, step: int = 1) -> dict[str, torch.Tensor]:
    return {k: v[start:stop:step] for k, v in params.items()}


def translate_images(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image moved by its whole-pixel (dx, dy), zeros where nothing moved in: out[y, x] = in[y - dy, x - dx].
    A gather, not grid_sample: R1 differentiates the discriminator's gradient through this, and CUDA has
    no derivative for grid_sample's backward (found on the first GPU run)."""
    n, c, h, w = x.shape
    iy = torch.arange(h, device=x.device).view(1, h, 1) - shift[:, 1].view(n, 1, 1)
    ix = torch.arange(w, device=x.device).view(1, 1, w) - shift[:, 0].view(n, 1, 1)
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    index = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).reshape(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w) * inside.unsqueeze(1).to(x.dtype)


def augment(images: torch.Tensor, params: dict[str, torch.Tensor], policy: tuple[str, ...]) -> torch.Tensor:
    if not policy:
        return images
    x = images
    p = {k: v.to(x.device, x.dtype) for k, v in params.items()}
    n, _, h, w = x.shape
    if "color" in policy:
        x = x + p["brightness"].view(n, 1, 1, 1)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * p["saturation"].view(n, 1, 1, 1) + mean
        mean = x.mean(dim=[1, 2, 3], keepdim=True)
        x = (x - mean) * p["contrast"].view(n, 1, 1, 1) + mean
    if "translation" in policy:
        x = translate_images(x, torch.round(params["shift"].to(x.device, torch.float64) * torch.tensor([w / 8, h / 8], device=x.device,
                                                                                                     dtype=torch.float64)).long())
    if "cutout" in policy:
        ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
        xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
        cy = (p["cutout"][:, 0] * h).view(n, 1, 1)
        cx = (p["cutout"][:, 1] * w).view(n, 1, 1)
        inside = ((ys - cy).abs() < h / 4) & ((xs - cx).abs() < w / 4)
        x = x * (~inside).unsqueeze(1).to(x.dtype)
    return x
