"""A small z-buffer triangle rasteriser in numpy: screen-space triangles in, interpolated attributes out.

Pure function of arrays. Perspective is applied by the caller; attributes are interpolated with screen
barycentrics (fine for the small depth range of a portrait). Anti-aliasing is the caller's
supersampling (render at k x size, then box-reduce).
"""

from __future__ import annotations

import numpy as np


def rasterize(screen: np.ndarray, faces: np.ndarray, attributes: np.ndarray, height: int, width: int,
              background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """screen: V x 3 (x right, y down in pixels, z depth: smaller is nearer); faces: F x 3 vertex indices;
    attributes: V x C. Returns (H x W x C image, H x W bool coverage)."""
    channels = attributes.shape[1]
    image = np.zeros((height, width, channels), dtype=np.float32)
    if background is not None:
        image[:] = background
    depth = np.full((height, width), np.inf, dtype=np.float32)
    covered = np.zeros((height, width), dtype=bool)
    tri = screen[faces]                                   # F x 3 x 3
    # Back-face culling: keep triangles wound clockwise on screen (y down) as seen by the camera.
    e1, e2 = tri[:, 1, :2] - tri[:, 0, :2], tri[:, 2, :2] - tri[:, 0, :2]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    keep = np.abs(area) > 1e-9
    order = np.argsort(-tri[:, :, 2].mean(axis=1))       # far to near: fewer overwrites
    xmin = np.clip(np.floor(tri[:, :, 0].min(1)).astype(int), 0, width - 1)
    xmax = np.clip(np.ceil(tri[:, :, 0].max(1)).astype(int), 0, width - 1)
    ymin = np.clip(np.floor(tri[:, :, 1].min(1)).astype(int), 0, height - 1)
    ymax = np.clip(np.ceil(tri[:, :, 1].max(1)).astype(int), 0, height - 1)
    for f in order:
        if not keep[f] or xmax[f] < xmin[f] or ymax[f] < ymin[f]:
            continue
        ys, xs = np.mgrid[ymin[f]:ymax[f] + 1, xmin[f]:xmax[f] + 1]
        px, py = xs + 0.5, ys + 0.5                       # sample at pixel centres
        (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = tri[f]
        w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area[f]
        w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area[f]
        w2 = 1.0 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        if not inside.any():
            continue
        z = w0 * z0 + w1 * z1 + w2 * z2
        yy, xx = ys[inside], xs[inside]
        nearer = z[inside] < depth[yy, xx]
        if not nearer.any():
            continue
        yy, xx = yy[nearer], xx[nearer]
        depth[yy, xx] = z[inside][nearer]
        a = attributes[faces[f]]                          # 3 x C
        weights = np.stack([w0[inside][nearer], w1[inside][nearer], w2[inside][nearer]], axis=1)
        image[yy, xx] = weights @ a
        covered[yy, xx] = True
    return image, covered


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12)
