"""FFHQ-style alignment with one interpolation at the output resolution.

NVlabs' procedure shrinks by an integer factor, crops, reflect-pads with a blur, warps the quad to a
4096-pixel square with bilinear sampling and resizes that to the output with Lanczos. Here the same
quad is sampled once, directly at the output size: the source is box-reduced by the integer part of
the scale (exact, cheap), low-pass filtered for the remaining fraction, padded like the reference only
where the quad leaves the image, and warped with bilinear interpolation (what the reference effectively does too:
bilinear at 4096, then a low-pass resize).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
from PIL import Image, ImageFilter

from .align_geometry import ffhq_quad, quad_to_output_affine


@dataclass(frozen=True)
class AlignedFace:
    image: np.ndarray      # output_size x output_size x 3 uint8
    quad: np.ndarray       # 4 x 2 source coordinates (TL, BL, BR, TR)
    qsize: float           # side of the quad in source pixels
    affine: np.ndarray     # 2 x 3 map from source to output coordinates


def reflect_pad_blend(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom) and fade the padding into a blur and the median colour (NVlabs)."""
    img = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = img.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    with np.errstate(divide="ignore"):
        mask = np.maximum(
            1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
            1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]),
        )
    blur = qsize * 0.02
    img += (scipy.ndimage.gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return np.uint8(np.clip(np.rint(img), 0, 255))


def align_face(rgb: np.ndarray, landmarks68: np.ndarray, output_size: int = 1024, enable_padding: bool = True) -> AlignedFace:
    quad_src, qsize_src = ffhq_quad(landmarks68)
    quad = quad_src.copy()
    qsize = qsize_src
    img = Image.fromarray(rgb)

    # Integer box reduction: exact averaging, no interpolation, leaves a scale factor in [1, 2).
    shrink = int(np.floor(qsize / output_size))
    if shrink > 1:
        img = img.reduce(shrink)
        quad = (quad + 0.5) / shrink - 0.5
        qsize /= shrink

    # Crop to the quad plus a border (pixel copy).
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - crop[0:2]

    # Pad where the quad leaves the image, as the reference does.
    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
           int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.size[0] + border, 0), max(pad[3] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        pad = tuple(int(v) for v in np.maximum(pad, int(np.rint(qsize * 0.3))))
        img = Image.fromarray(reflect_pad_blend(np.asarray(img), pad, qsize), "RGB")
        quad = quad + pad[:2]

    # Low-pass for the remaining fractional downscale so the bilinear warp does not alias.
    scale = qsize / output_size
    if scale > 1.0:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(0.5 * np.sqrt(scale * scale - 1.0))))

    out = img.transform((output_size, output_size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    return AlignedFace(
        image=np.asarray(out),
        quad=quad_src.astype(np.float32),
        qsize=float(qsize_src),
        affine=quad_to_output_affine(quad_src + 0.5, output_size),
    )
