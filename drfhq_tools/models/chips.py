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


def chip_matrix(landmarks5: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """2x3 matrix taking chip pixel (u, v, 1) to image pixel (x, y), exactly dlib's chip geometry."""
    import dlib

    from .identity import similarity_transform

    lm = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    box = dlib.rectangle(*(int(round(v)) for v in (*lm.min(0), *(lm.max(0) + 1))))
    parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in lm])
    details = dlib.get_face_chip_details(dlib.full_object_detection(box, parts), size, padding)
    r = details.rect
    corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
    centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    c, s = math.cos(details.angle), math.sin(details.angle)
    rotated = (corners - centre) @ np.array([[c, s], [-s, c]]) + centre
    targets = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], dtype=np.float64)
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
