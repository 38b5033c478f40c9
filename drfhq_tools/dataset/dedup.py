"""Duplicate finding as pure functions: a perceptual hash of the aligned face, and grouping that scales.

Exact duplicates share the sha256 of their decoded pixels. Near duplicates have perceptual hashes
within `threshold` bits (Hamming). The hash sees only the inner face of the aligned image: FFHQ's
crop reaches far beyond the face, and that periphery changes when a copy is cropped (real pixels
become reflect padding). Candidates come from multi-index hashing: the 256-bit hash is cut
into threshold + 1 bands, and two hashes within the threshold must agree on at least one band
(pigeonhole), so only items sharing a band value are compared, never all pairs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import scipy.fft
from PIL import Image

from .rows import FACE_BOX

HASH_BITS = 256
# Calibrated on the fixtures (256-px aligned faces): JPEG re-encodes, 70% resizes and 10% crops of
# 512-px photos stay within 12 bits; different poses of one CG identity are 72+ bits apart; distinct
# expressions of one head are 14+ bits apart (a few of them are near-identical pictures).
DEFAULT_NEAR_THRESHOLD = 12
# Inner face of an FFHQ-aligned image (fractions of its side): brows to chin, cheek to cheek.


def perceptual_hash(aligned_rgb: np.ndarray) -> int:
    """256-bit DCT hash (pHash) of the inner face: low 16x16 frequencies of a 64x64 grey image vs their median."""
    h, w = aligned_rgb.shape[:2]
    box = (round(FACE_BOX[0] * w), round(FACE_BOX[1] * h), round(FACE_BOX[2] * w), round(FACE_BOX[3] * h))
    grey = Image.fromarray(aligned_rgb).convert("L").crop(box).resize((64, 64), Image.BOX)
    low = scipy.fft.dctn(np.asarray(grey, dtype=np.float64), norm="ortho")[:16, :16].flatten()
    bits = low > np.median(low[1:])   # the DC term carries brightness only and would skew the median
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _bands(threshold: int) -> list[tuple[int, int]]:
    count = threshold + 1
    edges = np.linspace(0, HASH_BITS, count + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def near_pairs(hashes: list[int | None], threshold: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair with Hamming distance <= threshold; None hashes are skipped."""
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for band_index, (lo, hi) in enumerate(_bands(threshold)):
        mask = (1 << (hi - lo)) - 1
        for i, h in enumerate(hashes):
            if h is not None:
                buckets[(band_index, (h >> lo) & mask)].append(i)
    seen, pairs = set(), []
    for members in buckets.values():
        for a_pos, i in enumerate(members):
            for j in members[a_pos + 1:]:
                if (i, j) in seen:
                    continue
                seen.add((i, j))
                d = hamming(hashes[i], hashes[j])
                if d <= threshold:
                    pairs.append((i, j, d))
    return pairs


def group_duplicates(pixel_hashes: list[str | None], phashes: list[int | None], threshold: int,
                     quality: list[tuple]) -> tuple[list[int], list[str | None]]:
    """Group items that are exact or near duplicates (transitively).

    Returns, per item, the index of its group's representative and the kind of match that put it in a
    group ('exact', 'near', or None for singletons and representatives). The representative is the item
    with the largest `quality` tuple (callers order it: usable face first, then face size, sharpness, and
    an earlier path wins ties).
    """
    n = len(pixel_hashes)
    uf = _UnionFind(n)
    kind: list[str | None] = [None] * n
    first_by_pixels: dict[str, int] = {}
    exact_edges = []
    for i, h in enumerate(pixel_hashes):
        if h is None:
            continue
        if h in first_by_pixels:
            uf.union(first_by_pixels[h], i)
            exact_edges.append((first_by_pixels[h], i))
        else:
            first_by_pixels[h] = i
    near_edges = [(i, j) for i, j, _ in near_pairs(phashes, threshold)]
    for i, j in near_edges:
        uf.union(i, j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[uf.find(i)].append(i)
    representative = list(range(n))
    for members in groups.values():
        best = max(members, key=lambda k: quality[k])
        for k in members:
            representative[k] = best
    exact_of = {}
    for i, j in exact_edges:
        exact_of.setdefault(i, set()).add(j)
        exact_of.setdefault(j, set()).add(i)
    for i in range(n):
        rep = representative[i]
        if rep != i:
            same_pixels = pixel_hashes[i] is not None and pixel_hashes[i] == pixel_hashes[rep]
            kind[i] = "exact" if same_pixels else "near"
    return representative, kind
