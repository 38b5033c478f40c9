"""Duplicate finding as pure functions: a perceptual hash of the aligned face, and grouping that scales.

Exact duplicates share the sha256 of their decoded pixels. Near duplicates have perceptual hashes
within `threshold` bits (Hamming). The hash sees only the inner face of the aligned image: FFHQ's
crop reaches far beyond the face, and that periphery changes when a copy is cropped (real pixels
become reflect padding). Candidates come from multi-index hashing: the 256-bit hash is cut
into threshold + 1 bands, and two hashes within the threshold must agree on at least one band
(pigeonhole), so only items sharing a band value are compared, never all pairs. Hashes are kept as
n x 4 uint64 words and each band is sorted in turn (numpy), so memory stays linear in n: a million
hashes take 32 MB, and a band's candidates are the runs of equal values in its sorted order.
"""

from __future__ import annotations

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


def hash_words(hashes: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """(n x 4 uint64 words, little-endian: bit b in word b // 64; valid mask) of 256-bit hashes."""
    words = np.zeros((len(hashes), HASH_BITS // 64), dtype=np.uint64)
    valid = np.zeros(len(hashes), dtype=bool)
    mask = (1 << 64) - 1
    for i, h in enumerate(hashes):
        if h is not None:
            valid[i] = True
            words[i] = [(h >> (64 * k)) & mask for k in range(HASH_BITS // 64)]
    return words, valid


def hex_hash_words(hex_hashes) -> tuple[np.ndarray, np.ndarray]:
    """The same from the manifest's 64-digit hex strings (None for rows without a face), without Python ints."""
    valid = np.array([h is not None for h in hex_hashes], dtype=bool)
    raw = b"".join(bytes.fromhex(h) if h is not None else bytes(HASH_BITS // 8) for h in hex_hashes)
    big_endian = np.frombuffer(raw, dtype=">u8").reshape(len(hex_hashes), HASH_BITS // 64)
    return np.ascontiguousarray(big_endian[:, ::-1]).astype(np.uint64), valid


def _band_columns(words: np.ndarray, lo: int, hi: int) -> list[np.ndarray]:
    """The bits lo..hi of every hash as one uint64 column per word they touch."""
    columns = []
    for k in range(lo // 64, (hi - 1) // 64 + 1):
        a, b = max(lo, 64 * k) - 64 * k, min(hi, 64 * (k + 1)) - 64 * k
        column = words[:, k] >> np.uint64(a)
        if b - a < 64:
            column = column & np.uint64((1 << (b - a)) - 1)
        columns.append(column)
    return columns


def near_pairs_words(words: np.ndarray, valid: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) arrays, i < j, of every pair of valid hashes within `threshold` bits. Memory is
    linear in n: one band at a time is sorted, items in a run of equal band values are paired by their
    offset within the run (all vectorised), and only pairs within the threshold are kept."""
    index = np.flatnonzero(valid)
    hashes = words[index]
    found_i, found_j = [], []
    for lo, hi in _bands(threshold):
        columns = _band_columns(hashes, lo, hi)
        order = np.lexsort(columns[::-1])
        same_as_next = np.ones(max(len(order) - 1, 0), dtype=bool)
        for c in columns:
            ordered = c[order]
            same_as_next &= ordered[1:] == ordered[:-1]
        del columns
        run = np.concatenate([[0], np.cumsum(~same_as_next)])          # run number of each sorted position
        offset = 1
        while offset < len(order):
            paired = run[:-offset] == run[offset:]
            if not paired.any():
                break
            a, b = order[:-offset][paired], order[offset:][paired]
            close = np.bitwise_count(hashes[a] ^ hashes[b]).sum(axis=1) <= threshold
            found_i.append(a[close])
            found_j.append(b[close])
            offset += 1
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    i, j = index[np.concatenate(found_i)], index[np.concatenate(found_j)]
    i, j = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    unique = np.unique(i * len(words) + j)
    i, j = unique // len(words), unique % len(words)
    return i, j, np.bitwise_count(words[i] ^ words[j]).sum(axis=1).astype(np.int64)


def near_pairs(hashes: list[int | None], threshold: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair with Hamming distance <= threshold; None hashes are skipped."""
    words, valid = hash_words(hashes)
    return [tuple(int(v) for v in t) for t in zip(*near_pairs_words(words, valid, threshold))]


def group_duplicates(pixel_hashes, phashes, threshold: int, quality) -> tuple[list[int], list[str | None]]:
    """Group items that are exact or near duplicates (transitively).

    pixel_hashes: per item, the sha256 of its decoded pixels (or None). phashes: 256-bit ints (or None),
    or an (n x 4 words, valid) pair from `hex_hash_words`. quality: per item a tuple, or a tuple of
    arrays (compared in order). Returns, per item, the index of its group's representative and the kind
    of match that put it in a group ('exact', 'near', or None for singletons and representatives). The
    representative is the item with the largest quality (callers order it: usable face first, then face
    size, sharpness, and an earlier path wins ties).
    """
    n = len(pixel_hashes)
    uf = _UnionFind(n)
    first_by_pixels: dict[str, int] = {}
    for i, h in enumerate(pixel_hashes):
        if h is None:
            continue
        first = first_by_pixels.setdefault(h, i)
        if first != i:
            uf.union(first, i)
    words, valid = phashes if isinstance(phashes, tuple) else hash_words(phashes)
    for i, j in zip(*near_pairs_words(words, valid, threshold)[:2]):
        uf.union(int(i), int(j))
    roots = np.fromiter((uf.find(i) for i in range(n)), dtype=np.int64, count=n)
    keys = [np.asarray(column) for column in quality] if isinstance(quality, tuple) else \
        [np.asarray([q[k] for q in quality]) for k in range(len(quality[0]))] if n else []
    # within each group, the member with the largest quality: sort by (root, quality...) and take each run's last
    order = np.lexsort([*keys[::-1], roots]) if n else np.zeros(0, dtype=np.int64)
    sorted_roots = roots[order]
    run_ends = np.flatnonzero(np.append(sorted_roots[1:] != sorted_roots[:-1], True)) if n else np.zeros(0, dtype=np.int64)
    best_of_root = np.zeros(n, dtype=np.int64)
    best_of_root[sorted_roots[run_ends]] = order[run_ends]      # each root once: its best member
    representative = best_of_root[roots]
    kind: list[str | None] = [None] * n
    for i in np.flatnonzero(representative != np.arange(n)).tolist():
        rep = int(representative[i])
        kind[i] = "exact" if pixel_hashes[i] is not None and pixel_hashes[i] == pixel_hashes[rep] else "near"
    return representative.tolist(), kind
