"""dlib's aligned face chips in torch: the same similarity transform as `dlib.get_face_chip_details`,
resampled with `grid_sample`, so an identity loss is differentiable from the generated image.

`chip_matrix` (numpy, once per landmark set) gives the 2x3 map from chip pixels to image pixels;
`extract_chips` (torch, batched) samples the chips. For a large reduction (a 1024-px face into a 150-px
chip) the image is box-filtered first, as dlib filters through an image pyramid.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


# dlib's 5-point face template on the unit square (get_face_chip_details, dlib/image_transforms/interpolation.h)
DLIB_TEMPLATE_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                            [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                            [0.4901123135679, 0.6277975316475]])


def chip_matrix(landmarks5: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """2x3 matrix taking chip pixel (u, v, 1) to image pixel (x, y): dlib's chip geometry, in numpy
    (so training needs no dlib). As dlib: whole-pixel landmarks, the padded template scaled to the
    chip, a least-squares similarity chip -> image, kept as an angle and a rectangle centred on the
    chip's centre (dlib's centered_drect: side - 1), whose corners are what the chip is sampled on."""
    from .identity import similarity_transform

    lm = np.round(np.asarray(landmarks5, dtype=np.float64).reshape(5, 2))
    chip_points = (padding + DLIB_TEMPLATE_5) / (2 * padding + 1) * size
    tform = similarity_transform(chip_points, lm)
    p = tform[:, 0]                                   # the image of the unit vector (1, 0)
    angle, scale = math.atan2(p[1], p[0]), math.hypot(p[0], p[1])
    centre = tform @ np.array([size / 2, size / 2, 1.0])
    half = (size * scale - 1) / 2
    left, top, right, bottom = centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half
    corners = np.array([[left, top], [right, top], [right, bottom]])
    middle = np.array([(left + right) / 2, (top + bottom) / 2])
    c, s = math.cos(angle), math.sin(angle)
    rotated = (corners - middle) @ np.array([[c, s], [-s, c]]) + middle
    targets = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1]], dtype=np.float64)
    return similarity_transform(targets, rotated)


def extract_chips(images: torch.Tensor, matrices: torch.Tensor, size: int = 150) -> torch.Tensor:
    """images: N x C x H x W; matrices: N x 2 x 3 (or 2 x 3 for all) chip -> image pixels.
    Returns N x C x size x size, bilinear, differentiable with respect to the images."""
    n, _, h, w = images.shape
    m = matrices.to(images.dtype).to(images.device)
    if m.dim() == 2:
        m = m.expand(n, 2, 3)
    scale = float(torch.linalg.matrix_norm(m[:, :, :2], ord=2).max())   # image pixels per chip pixel
    k = int(scale) if scale >= 2 else 1
    if k > 1:   # box filter, then the same map in the reduced image's pixel frame
        images = F.avg_pool2d(images, k, stride=k, ceil_mode=True)
        m = torch.cat([m[:, :, :2], m[:, :, 2:] - (k - 1) / 2], dim=2) / k
        h, w = images.shape[-2:]
    v, u = torch.meshgrid(torch.arange(size, dtype=m.dtype, device=m.device),
                          torch.arange(size, dtype=m.dtype, device=m.device), indexing="ij")
    ones = torch.ones_like(u)
    coords = torch.stack([u, v, ones], dim=-1).reshape(-1, 3)                  # size*size x 3
    xy = torch.einsum("nij,pj->npi", m, coords)                              # N x P x 2 image pixels
    grid = torch.stack([2 * xy[..., 0] / (w - 1) - 1, 2 * xy[..., 1] / (h - 1) - 1], dim=-1)
    out = F.grid_sample(images, grid.reshape(n, size, size, 2), mode="bilinear", padding_mode="zeros", align_corners=True)
    return out
