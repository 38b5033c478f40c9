"""Exposure of inversion targets: a dark render is inverted lifted, and its output given back at its own exposure.

FFHQ's generators draw faces whose inner face (FACE_BOX of the aligned frame) averages 0.32 to 0.75 in sRGB
(32 StyleGAN2 samples of the SFHQ set in the aligned_gan fixtures; median 0.51). Renders lit for a dark scene sit far below that (0.05 to 0.16 on the
fixture renders that gave up), where LPIPS prefers a flat dark image to any face the generator can draw, and the
inversion settles on an early iterate of someone else. Lifting the target in linear light (a camera's exposure,
not a tone curve) to `floor` puts it where the generator has faces; dividing the output by the same gain gives
back the render's exposure, so that colour kept and pasting into the scene still hold. translate lifts a render
only when its inversion as it is is stuck (`--exposure-lift stuck`, the default) or always (`always`).
Pure functions on N x 3 x R x R tensors in [-1, 1]; the sRGB curve is `colour`'s.
"""

from __future__ import annotations

import torch

from ..colour import linear_to_srgb, srgb_to_linear
from .losses import inner_face

MAX_GAIN = 64.0       # six stops: an inner face at 1/64 of the floor's linear level is noise, not a face to lift further


def inner_face_mean(images: torch.Tensor) -> torch.Tensor:
    """Per image on [-1, 1]: the mean of its inner face (FACE_BOX) over pixels and channels, in sRGB on [0, 1]."""
    return ((inner_face(images).clamp(-1, 1) + 1) / 2).mean(dim=[1, 2, 3])


def scale_exposure(images: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Each image times its gain in linear light (clipped at white), on [-1, 1]."""
    linear = srgb_to_linear((images.clamp(-1, 1) + 1) / 2) * gains.to(images).reshape(-1, 1, 1, 1)
    return linear_to_srgb(linear.clamp(0, 1)) * 2 - 1


def exposure_gains(images: torch.Tensor, floor: float, iterations: int = 40) -> torch.Tensor:
    """Per image: the linear-light gain (>= 1, at most MAX_GAIN) that brings its inner-face mean up to `floor`
    (sRGB on [0, 1]) once scaled and clipped (`scale_exposure`); 1 where it is there already or floor is 0.
    Bisection on the log of the gain: the clipped mean rises monotonically with it."""
    images = images.detach().float()
    n = images.shape[0]
    gains = torch.ones(n)
    if floor <= 0:
        return gains
    dark = (inner_face_mean(images).cpu() < floor).nonzero().flatten()
    if len(dark) == 0:
        return gains
    lo, hi = torch.zeros(len(dark)), torch.full((len(dark),), float(torch.log(torch.tensor(MAX_GAIN))))
    subset = images[dark]
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = inner_face_mean(scale_exposure(subset, mid.exp())).cpu() < floor
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    gains[dark] = ((lo + hi) / 2).exp()
    return gains
