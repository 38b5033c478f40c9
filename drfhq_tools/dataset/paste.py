"""Paste an aligned face back into its source image: the inverse of `align.align_face`.

Pure functions on arrays. A translated crop goes back through the inverse of the FFHQ alignment
(its affine), under a mask built from the 68 landmarks and feathered inward, and is blended with a
Laplacian pyramid, so that colour differences at the seam spread over a wide band while edges stay
sharp. What is blended is a change (a delta field in source pixels), which makes the operation exact
where nothing changed:
  source detail on:  delta = warp(translated - aligned original)  (frequencies above the crop's
                     resolution stay the source's; an unchanged crop changes nothing at all)
  source detail off: delta = warp(translated) - source            (the crop replaces the face)
Coordinates follow align_geometry: (x, y) source pixels with pixel centres at integer positions.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

REGIONS = ("face", "head")
_FOREHEAD = 0.8     # forehead height above the brows, as a fraction of the brow-to-nose-base distance


def face_polygon(landmarks68: np.ndarray, region: str = "face", quad: np.ndarray | None = None,
                 forehead: float = _FOREHEAD) -> np.ndarray:
    """K x 2 polygon in source pixels. face: the jaw line (0-16) closed over the brows (17-26) raised
    into the forehead; head: the alignment quad itself (hair and background of the crop included)."""
    if region == "head":
        if quad is None:
            raise ValueError("region 'head' needs the alignment quad")
        return np.asarray(quad, dtype=np.float64).reshape(4, 2)
    lm = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    brows = lm[17:27]
    up = brows.mean(axis=0) - lm[8]                     # chin -> brows
    up /= max(np.hypot(*up), 1e-9)
    lift = forehead * np.hypot(*(brows.mean(axis=0) - lm[33]))
    top = brows + up * lift
    points = np.concatenate([lm[0:17], top[::-1]])
    return points[_convex_hull(points)]


def skin_mask(landmarks68: np.ndarray, shape: tuple[int, int], margin: float = 0.08) -> np.ndarray:
    """H x W bool: the skin of the face (cheeks, forehead, nose, chin) from its 68 landmarks: the face
    polygon less the eyes, brows and mouth, each grown by `margin` x the inter-ocular distance (so lashes,
    brow hair and lips stay out)."""
    lm = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    grow = margin * float(np.hypot(*(lm[45] - lm[36])))
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([tuple(p) for p in face_polygon(lm, forehead=0.5)], fill=1)   # low: no hairline
    width = max(1, int(round(2 * grow)))
    for part in (lm[36:42], lm[42:48], lm[48:60]):             # eyes and outer lips: closed outlines
        closed = [tuple(p) for p in part] + [tuple(part[0])]
        draw.polygon(closed[:-1], fill=0)
        draw.line(closed, fill=0, width=width, joint="curve")
    for brow in (lm[17:22], lm[22:27]):
        thick = max(1.0, 1.5 * grow)
        draw.line([tuple(p) for p in brow], fill=0, width=int(round(2 * thick)), joint="curve")
        for x, y in brow:                                        # round ends
            draw.ellipse((x - thick, y - thick, x + thick, y + thick), fill=0)
    return np.asarray(canvas, dtype=bool)


def _convex_hull(points: np.ndarray) -> list[int]:
    """Indices of the convex hull, counter-clockwise (monotone chain)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    lower, upper = [], []
    for i in order:
        while len(lower) >= 2 and cross(points[lower[-2]], points[lower[-1]], points[i]) <= 0:
            lower.pop()
        lower.append(i)
    for i in reversed(order):
        while len(upper) >= 2 and cross(points[upper[-2]], points[upper[-1]], points[i]) <= 0:
            upper.pop()
        upper.append(i)
    return lower[:-1] + upper[:-1]


def region_box(polygon: np.ndarray, shape: tuple[int, ...], margin: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel window around the polygon plus a margin, clipped to the image."""
    x0, y0 = np.floor(polygon.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0) + margin).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def feathered_mask(polygon: np.ndarray, box: tuple[int, int, int, int], feather: float) -> np.ndarray:
    """H x W float32 in [0, 1] over `box`: 1 deep inside the polygon, falling smoothly to 0 at its edge
    over `feather` pixels (all of the ramp lies inside, so nothing outside the polygon changes)."""
    x0, y0, x1, y1 = box
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(canvas).polygon([(float(x - x0), float(y - y0)) for x, y in polygon], fill=1)
    inside = np.asarray(canvas, dtype=bool)
    distance = scipy.ndimage.distance_transform_edt(inside)
    t = np.clip(distance / max(feather, 1e-6), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)         # smoothstep


def warp_to_source(crop: np.ndarray, affine: np.ndarray, box: tuple[int, int, int, int], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample an aligned crop (S x S x C float) at the source pixels of `box`.

    `affine` maps source edge coordinates to crop edge coordinates (AlignedFace.affine); `scale` is the
    source pixels per crop pixel (quad side / S): a crop larger than its footprint is low-passed to
    that size first, so the warp does not alias. Returns (H x W x C values, H x W bool: inside the crop)."""
    size = crop.shape[0]
    image = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)).permute(2, 0, 1)[None]
    target = max(1, int(round(size * scale)))
    if target < size:
        image = F.interpolate(image, size=(target, target), mode="bilinear", antialias=True, align_corners=False)
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u = affine[0, 0] * (xs + 0.5) + affine[0, 1] * (ys + 0.5) + affine[0, 2]      # crop edge coordinates
    v = affine[1, 0] * (xs + 0.5) + affine[1, 1] * (ys + 0.5) + affine[1, 2]
    grid = torch.from_numpy(np.stack([u / size * 2 - 1, v / size * 2 - 1], axis=-1)).float()[None]
    sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = (u >= 0) & (u <= size) & (v >= 0) & (v <= size)
    return sampled[0].permute(1, 2, 0).numpy(), inside


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="replicate"), 2)


def _up(x: torch.Tensor, shape) -> torch.Tensor:
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)


def pyramid_blend(delta: np.ndarray, mask: np.ndarray, levels: int = 5) -> np.ndarray:
    """The change that a Laplacian-pyramid blend of `source` and `source + delta` under `mask` makes to
    the source: each Laplacian level of delta weighted by the same level of the mask's Gaussian pyramid
    (H x W x C). Coarse levels use a blurred mask, so a colour shift fades out over a wide band; fine
    detail stops at the mask's edge. A mask of ones returns delta exactly; zeros return zeros."""
    d = torch.from_numpy(np.ascontiguousarray(delta, dtype=np.float32)).permute(2, 0, 1)[None]
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    details, masks = [], []
    for _ in range(levels - 1):
        if min(d.shape[-2:]) < 8:
            break
        low = _down(d)
        details.append(d - _up(low, d.shape[-2:]))
        masks.append(m)
        d, m = low, _down(m)
    blended = m * d
    for detail, level_mask in zip(reversed(details), reversed(masks)):
        blended = _up(blended, detail.shape[-2:]) + level_mask * detail
    return blended[0].permute(1, 2, 0).numpy()


def paste_face(source: np.ndarray, translated: np.ndarray, original: np.ndarray | None, affine: np.ndarray,
               quad_side: float, polygon: np.ndarray, feather: float, levels: int = 5) -> np.ndarray:
    """`source` (H x W x 3 uint8) with a translated aligned crop (S x S x 3 uint8) pasted back.

    original: the aligned crop the translation started from (source detail on), or None (the crop
    replaces the face). Only a window around the polygon is touched; returns a new uint8 image."""
    size = translated.shape[0]
    scale = quad_side / size
    margin = feather + 2 ** levels
    box = region_box(polygon, source.shape, margin)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return source.copy()
    window = source[y0:y1, x0:x1].astype(np.float32)
    if original is not None:
        delta, inside = warp_to_source(translated.astype(np.float32) - original.astype(np.float32), affine, box, scale)
    else:
        pasted, inside = warp_to_source(translated.astype(np.float32), affine, box, scale)
        delta = pasted - window
    delta[~inside] = 0.0
    mask = feathered_mask(polygon, box, feather) * inside
    out = source.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(window + pyramid_blend(delta, mask, levels)), 0, 255).astype(np.uint8)
    return out
