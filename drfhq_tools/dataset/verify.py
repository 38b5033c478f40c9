"""Near-duplicate verification as pure functions on arrays: register two pictures, then look for a local change.

A planted copy (re-encode, resize, crop, small rotation, brightness / contrast / colour shift) is one
picture seen through a similarity transform and a gain and offset. A different picture of the same
character (another expression, pose or light) or of the same person is not: once the two are
registered, some region still differs. So a candidate pair is registered (Lucas-Kanade on grey levels,
a similarity transform plus a gain and an offset, coarse to fine), and the residual is measured per
block relative to the block's own contrast: `residual_score` is the mean of the three worst blocks.
The check runs twice: on the whole picture, and on the face region at the same resolution, so that a
small face in a large render is seen at a size where an expression shows; the pair's score is the
worse of the two. On bench_dedup's labelled fixture set (planted copies against every distinct
picture with a thumbnail cosine over 0.85: 2484 pairs) copies score at most 0.35 and distinct pictures
at least 0.53; the threshold sits between.

`thumbnail_descriptor` is the cheap embedding that proposes candidates: an 8 x 8 grey thumbnail of the
whole picture, zero mean and unit norm, as int8. Copies stay above a cosine of 0.92; many distinct
pictures do too (renders share framing), which is why every candidate is registered before it is merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
from PIL import Image

from .align_geometry import head_pitch_ratio, head_pose_from_landmarks

VERIFY_SIDE = 128            # pixels across the compared region (whole picture, then face)
BLUR_SIGMA = 1.2             # both sides blurred alike, so a resized copy's softness is no difference
CLIPPED = 253                # a channel at or above this is saturated
MIN_UNCLIPPED = 0.05         # pictures with less than this share of usable pixels are never called copies
BORDER = 0.06                # fraction of each side ignored: rotation fill and crop edges live there
DESCRIPTOR_SIDE = 8
# Calibrated on bench_dedup's labelled set (planted copies vs every distinct fixture picture):
RESIDUAL_THRESHOLD = 0.44    # copies <= 0.35, distinct pictures >= 0.53 (max of whole and face); held-out copies <= 0.43
CANDIDATE_COSINE = 0.90      # copies' thumbnails >= 0.925
# The pose guard refuses pairs whose heads plainly point elsewhere, before any registration. Landmark yaw
# is too noisy for more than that: on the labelled sets, copies of one picture (a colour shift alone)
# read +10 and -43 degrees, profiles -43 and -90, and pitch ratios differ by up to 0.20. So the guard
# refuses only heads turned opposite ways by a clear margin, or a large pitch gap; the registration is
# what tells poses, expressions and light apart.
OPPOSITE_YAW_DEG = 25.0
MAX_PITCH_RATIO_GAP = 0.25


def pose_gap(landmarks_a, landmarks_b) -> str | None:
    """Why two faces cannot be one picture judging by head pose alone, or None."""
    yaw_a, yaw_b = head_pose_from_landmarks(landmarks_a)[0], head_pose_from_landmarks(landmarks_b)[0]
    if yaw_a * yaw_b < 0 and min(abs(yaw_a), abs(yaw_b)) > OPPOSITE_YAW_DEG:
        return f"heads turned opposite ways: yaw {yaw_a:.0f} vs {yaw_b:.0f} degrees"
    pitch_a, pitch_b = head_pitch_ratio(landmarks_a), head_pitch_ratio(landmarks_b)
    if abs(pitch_a - pitch_b) > MAX_PITCH_RATIO_GAP:
        return f"pitch ratio {pitch_a:.2f} vs {pitch_b:.2f}"
    return None


def thumbnail_descriptor(rgb: np.ndarray) -> bytes:
    """64 int8 values: the whole picture's 8 x 8 grey thumbnail, zero mean, unit norm (x 127)."""
    grey = Image.fromarray(rgb).convert("L").resize((DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), Image.BOX)
    x = np.asarray(grey, dtype=np.float64).ravel()
    x -= x.mean()
    x /= np.linalg.norm(x) + 1e-9
    return np.round(x * 127).astype(np.int8).tobytes()


def descriptor_vectors(raw: np.ndarray) -> np.ndarray:
    """n x 64 float32 unit rows from n x 64 int8 descriptors (rows of zeros stay zero)."""
    x = np.asarray(raw, dtype=np.int8).reshape(len(raw), DESCRIPTOR_SIDE ** 2).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    return x


@dataclass(frozen=True)
class Patch:
    """A region of a picture resampled to about VERIFY_SIDE pixels, in grey levels, blurred. `unclipped`:
    the pixels where no channel is saturated, so that a gain and an offset still describe a brightness
    change. `scale` is source pixels per patch pixel and `origin` the source position of pixel (0, 0)."""
    pixels: np.ndarray
    unclipped: np.ndarray
    origin: tuple[float, float]
    scale: float


def take_patch(picture: Image.Image, box, side: int = VERIFY_SIDE) -> Patch:
    """The box (x0, y0, x1, y1 in source pixels, clipped to the picture) at `side` pixels across its longer
    side. `picture`: RGB, or L for grey pictures."""
    x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
    x1, y1 = min(float(picture.width), float(box[2])), min(float(picture.height), float(box[3]))
    scale = max(x1 - x0, y1 - y0) / side
    size = (max(8, round((x1 - x0) / scale)), max(8, round((y1 - y0) / scale)))
    resized = np.asarray(picture.resize(size, Image.BOX, box=(x0, y0, x1, y1)), dtype=np.float64)
    channels = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    grey = channels[0] if len(channels) == 1 else np.tensordot([0.299, 0.587, 0.114], channels, axes=1)
    # Brightening saturates highlights channel by channel (a red cheek first: +15% clips a third of a
    # fair face's red): no gain and offset undo that, so those pixels, and the blur's reach around them,
    # are left out of the score. Black is not: dark backdrops are common in renders and carry the frame.
    unclipped = scipy.ndimage.binary_erosion((channels < CLIPPED).all(axis=0), iterations=2, border_value=1)
    return Patch(scipy.ndimage.gaussian_filter(grey, BLUR_SIGMA), unclipped, (x0, y0), (x1 - x0) / size[0])


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (scale, rotation, shift) that maps src points onto dst best (least squares)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    a = (s * d).sum() / max((s ** 2).sum(), 1e-12)
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / max((s ** 2).sum(), 1e-12)
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = md - m[:, :2] @ ms
    return m


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    return np.concatenate([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def _patch_to_image(p: Patch) -> np.ndarray:
    return np.array([[p.scale, 0.0, p.origin[0] + 0.5 * p.scale], [0.0, p.scale, p.origin[1] + 0.5 * p.scale]])


def _image_to_patch(p: Patch) -> np.ndarray:
    return np.array([[1 / p.scale, 0.0, -p.origin[0] / p.scale - 0.5], [0.0, 1 / p.scale, -p.origin[1] / p.scale - 0.5]])


def _inner(shape, xs, ys) -> np.ndarray:
    h, w = shape
    return (xs >= BORDER * w - 0.5) & (xs <= (1 - BORDER) * w - 0.5) & (ys >= BORDER * h - 0.5) & (ys <= (1 - BORDER) * h - 0.5)


def _warp(a: np.ndarray, b: np.ndarray, m: np.ndarray):
    """b sampled at m(every pixel of a), and where that is meaningful in both."""
    ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float64)
    bx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    by = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    valid = _inner(a.shape, xs, ys) & _inner(b.shape, bx, by)
    return xs, ys, bx, by, valid


def _lucas_kanade(a: np.ndarray, b: np.ndarray, m: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    """Refine m (a's pixels -> b's pixels, a similarity) so that a ~ gain * b(m(x)) + offset. Gauss-Newton
    on the four similarity parameters (about a's centre) and the two photometric ones. Returns m and
    the RMS of the final residual relative to a's spread (inf when the overlap vanished)."""
    cx, cy = (a.shape[1] - 1) / 2, (a.shape[0] - 1) / 2
    p = np.array([m[0, 0], m[1, 0], m[0, 0] * cx + m[0, 1] * cy + m[0, 2], m[1, 0] * cx + m[1, 1] * cy + m[1, 2]])
    gy, gx = np.gradient(b)
    ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float64)
    xc, yc = xs - cx, ys - cy
    inner_a = _inner(a.shape, xs, ys)
    gain, offset, rms = 1.0, 0.0, np.inf
    for _ in range(iterations):
        bx, by = p[0] * xc - p[1] * yc + p[2], p[1] * xc + p[0] * yc + p[3]
        valid = inner_a & _inner(b.shape, bx, by)
        if valid.sum() < 32:
            return m, np.inf
        at = [by[valid], bx[valid]]
        bw = scipy.ndimage.map_coordinates(b, at, order=1)
        wx, wy = scipy.ndimage.map_coordinates(gx, at, order=1), scipy.ndimage.map_coordinates(gy, at, order=1)
        u, v = xc[valid], yc[valid]
        r = a[valid] - (gain * bw + offset)
        rms = float(np.sqrt((r ** 2).mean()) / (a[valid].std() + 1e-6))
        jac = np.stack([gain * (wx * u + wy * v), gain * (wy * u - wx * v), gain * wx, gain * wy, bw, np.ones_like(bw)], 1)
        step = np.linalg.lstsq(jac, r, rcond=None)[0]
        p += step[:4]
        gain, offset = gain + step[4], offset + step[5]
        if np.abs(step[2:4]).max() < 0.01 and np.abs(step[:2]).max() < 1e-4:
            break
    m = np.array([[p[0], -p[1], 0.0], [p[1], p[0], 0.0]])
    m[:, 2] = p[2:] - m[:, :2] @ np.array([cx, cy])
    return m, rms


def _rescale(m: np.ndarray, level: float) -> np.ndarray:
    """m between full patches -> m between patches shrunk by `level` (pixel centres kept)."""
    to_small = np.array([[1 / level, 0, 0.5 / level - 0.5], [0, 1 / level, 0.5 / level - 0.5]])
    to_full = np.array([[level, 0, 0.5 * level - 0.5], [0, level, 0.5 * level - 0.5]])
    return _compose(to_small, _compose(m, to_full))


def register(a: np.ndarray, b: np.ndarray, starts: list[np.ndarray], iterations=(25, 15, 10)) -> np.ndarray:
    """The similarity a -> b (pixels), coarse to fine; of several starts, the one that fits best at the
    coarsest level is refined."""
    best, best_rms = starts[0], np.inf
    levels = (4, 2, 1)
    shrunk = {level: (scipy.ndimage.zoom(a, 1 / level, order=1), scipy.ndimage.zoom(b, 1 / level, order=1)) for level in levels[:-1]}
    shrunk[1] = (a, b)
    for start in starts:
        m, rms = _lucas_kanade(*shrunk[levels[0]], _rescale(start, levels[0]), iterations[0])
        if rms < best_rms:
            best, best_rms = _rescale(m, 1 / levels[0]), rms
    m = best
    for level, n in zip(levels[1:], iterations[1:]):
        m = _rescale(_lucas_kanade(*shrunk[level], _rescale(m, level), n)[0], 1 / level)
    return m


def residual_score(a: Patch, b: Patch, m: np.ndarray) -> float:
    """How much of a is not explained by b seen through m with the best gain and offset, where neither is
    clipped: each block's RMS residual over (its own contrast + 0.2 x the picture's), mean of the three
    worst blocks. inf when the two hardly overlap."""
    _, _, bx, by, valid = _warp(a.pixels, b.pixels, m)
    k = max(4, a.pixels.shape[1] // 12)
    ny, nx = a.pixels.shape[0] // k, a.pixels.shape[1] // k
    if valid.mean() < 0.25 or ny == 0 or nx == 0:
        return float("inf")
    valid &= a.unclipped & (scipy.ndimage.map_coordinates(b.unclipped.astype(np.float64), [by, bx], order=0) > 0.5)
    if valid.mean() < MIN_UNCLIPPED:
        return float("inf")
    pixels = a.pixels
    bw = scipy.ndimage.map_coordinates(b.pixels, [by, bx], order=1)
    gain, offset = np.linalg.lstsq(np.stack([bw[valid], np.ones(int(valid.sum()))], 1), pixels[valid], rcond=None)[0]
    residual = np.where(valid, pixels - gain * bw - offset, 0.0)
    spread = pixels[valid].std() + 1e-6

    def block_sum(x):
        return x[:ny * k, :nx * k].reshape(ny, k, nx, k).sum(axis=(1, 3))

    count = block_sum(valid.astype(np.float64))
    used = count >= k * k / 2
    mean = block_sum(np.where(valid, pixels, 0.0))[used] / count[used]
    local = np.sqrt(np.maximum(block_sum(np.where(valid, pixels ** 2, 0.0))[used] / count[used] - mean ** 2, 0.0))
    blocks = np.sqrt(block_sum(residual ** 2)[used] / count[used]) / (local + 0.2 * spread)
    return float(np.sort(blocks)[-3:].mean()) if len(blocks) else float("inf")


@dataclass(frozen=True)
class PairCheck:
    whole: float             # residual_score of the whole pictures
    face: float              # residual_score of the face region (nan: not looked at, the whole already failed)
    transform: np.ndarray    # a's source pixels -> b's source pixels

    @property
    def score(self) -> float:
        return self.whole if np.isnan(self.face) else max(self.whole, self.face)

    def same_picture(self, threshold: float = RESIDUAL_THRESHOLD) -> bool:
        return self.score <= threshold


def face_box(landmarks68: np.ndarray, margin: float = 0.25) -> tuple[float, float, float, float]:
    """A square around the 68 landmarks, grown by `margin` of its side on each side (forehead included)."""
    lm = np.asarray(landmarks68, np.float64).reshape(68, 2)
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * side
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def compare_pictures(picture_a: Image.Image, picture_b: Image.Image, landmarks_a, landmarks_b,
                     stop_above: float | None = None) -> PairCheck:
    """Register b onto a (whole picture, then the face region) and score what is left. Starts: the
    frames laid on each other, and the similarity between the two sets of 68 landmarks. The two patches
    of a region sample their pictures at the same density (b's region is a's mapped through the whole
    picture's registration, grown by a tenth for the refinement to move in). With `stop_above`, a pair
    whose whole pictures already score above it is not looked at again on the face (half the cost of
    most distinct pairs; the decision is the same, since the pair's score is the worse of the two)."""
    mode = "L" if picture_a.mode == picture_b.mode == "L" else "RGB"
    picture_a, picture_b = picture_a.convert(mode), picture_b.convert(mode)
    la, lb = np.asarray(landmarks_a, np.float64).reshape(68, 2), np.asarray(landmarks_b, np.float64).reshape(68, 2)
    s = np.sqrt(picture_b.width / picture_a.width * picture_b.height / picture_a.height)
    frames = np.array([[s, 0.0, (picture_b.width - s * picture_a.width) / 2], [0.0, s, (picture_b.height - s * picture_a.height) / 2]])
    starts_image = [frames, similarity_from_points(la, lb)]
    whole_a = take_patch(picture_a, (0, 0, picture_a.width, picture_a.height))
    whole_b = take_patch(picture_b, (0, 0, picture_b.width, picture_b.height))

    def to_patches(m_image, pa, pb):
        return _compose(_image_to_patch(pb), _compose(m_image, _patch_to_image(pa)))

    def to_image(m_patch, pa, pb):
        return _compose(_patch_to_image(pb), _compose(m_patch, _image_to_patch(pa)))

    m = register(whole_a.pixels, whole_b.pixels, [to_patches(s, whole_a, whole_b) for s in starts_image])
    whole = residual_score(whole_a, whole_b, m)
    m_image = to_image(m, whole_a, whole_b)
    if stop_above is not None and whole > stop_above:
        return PairCheck(whole=whole, face=float("nan"), transform=m_image)
    box_a = np.array(face_box(la))
    box_a[:2], box_a[2:] = np.maximum(box_a[:2], 0), np.minimum(box_a[2:], picture_a.size)
    corners = np.array([[box_a[0], box_a[1]], [box_a[2], box_a[1]], [box_a[0], box_a[3]], [box_a[2], box_a[3]]])
    mapped = corners @ m_image[:, :2].T + m_image[:, 2]
    grow = 0.1 * np.ptp(mapped, 0)
    face_a = take_patch(picture_a, box_a)
    face_b = take_patch(picture_b, (*(mapped.min(0) - grow), *(mapped.max(0) + grow)), round(VERIFY_SIDE * 1.2))
    mf = register(face_a.pixels, face_b.pixels, [to_patches(m_image, face_a, face_b)], iterations=(10, 10, 10))
    face = residual_score(face_a, face_b, mf)
    return PairCheck(whole=whole, face=face, transform=m_image)
