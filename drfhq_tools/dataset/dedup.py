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
from .verify import CANDIDATE_COSINE

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


def _same_key_pairs(columns: list[np.ndarray], accept) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) index arrays of every pair of rows whose key columns are all equal and that `accept(a, b)`
    (a vectorised test) keeps. Memory is linear in n: the rows are sorted by key, rows in a run of equal
    keys are paired by their offset within the run (all vectorised), and only accepted pairs are kept."""
    order = np.lexsort(columns[::-1])
    same_as_next = np.ones(max(len(order) - 1, 0), dtype=bool)
    for c in columns:
        ordered = c[order]
        same_as_next &= ordered[1:] == ordered[:-1]
    run = np.concatenate([[0], np.cumsum(~same_as_next)])          # run number of each sorted position
    found_a, found_b = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    offset = 1
    while offset < len(order):
        paired = run[:-offset] == run[offset:]
        if not paired.any():
            break
        a, b = order[:-offset][paired], order[offset:][paired]
        keep = accept(a, b)
        found_a.append(a[keep])
        found_b.append(b[keep])
        offset += 1
    return np.concatenate(found_a), np.concatenate(found_b)


def _dedupe(a, b, c, n: int):
    """Each unordered pair once, as (lower, higher), in sorted order, with its value from c."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    _, first = np.unique(lo * max(n, 1) + hi, return_index=True)
    return lo[first], hi[first], c[first]


def near_pairs_words(words: np.ndarray, valid: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) arrays, i < j, of every pair of valid hashes within `threshold` bits, by
    multi-index hashing: the pairs that agree on at least one band."""
    index = np.flatnonzero(valid)
    hashes = words[index]
    found_i, found_j = [], []
    for lo, hi in _bands(threshold):
        a, b = _same_key_pairs(_band_columns(hashes, lo, hi),
                               lambda a, b: np.bitwise_count(hashes[a] ^ hashes[b]).sum(axis=1) <= threshold)
        found_i.append(a)
        found_j.append(b)
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    i, j, _ = _dedupe(index[i], index[j], i, len(words))
    return i, j, np.bitwise_count(words[i] ^ words[j]).sum(axis=1).astype(np.int64)


EXACT_SEARCH_LIMIT = 50_000     # up to this many descriptors every pair is compared (in blocks)
LSH_TABLES = 40                 # above it: random-hyperplane tables, each keyed by ~log2(n) sign bits
MAX_CANDIDATES_PER_ITEM = 32    # each item keeps its most similar candidates only: memory stays O(n)


def _keep_strongest(i, j, score, n: int, per_item: int):
    """The pairs that are among the `per_item` highest scores of either of their two items (so at most
    per_item x n pairs)."""
    ends, pair = np.concatenate([i, j]), np.tile(np.arange(len(i)), 2)
    order = np.lexsort((-np.tile(score, 2), ends))
    ranked = ends[order]
    within = np.arange(len(order)) - np.searchsorted(ranked, ranked, side="left")
    keep = np.zeros(len(i), dtype=bool)
    keep[pair[order[within < per_item]]] = True
    return i[keep], j[keep], score[keep]


def similar_pairs(vectors: np.ndarray, valid: np.ndarray, min_cosine: float, seed: int = 0,
                  per_item: int = MAX_CANDIDATES_PER_ITEM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, cosine) of pairs of valid unit vectors with cosine >= min_cosine, at most `per_item`
    strongest per item. Exact up to EXACT_SEARCH_LIMIT items (blocked products); above it, locality-
    sensitive hashing with LSH_TABLES tables of random-hyperplane sign bits (a pair at cosine 0.92 shares
    a table's key with probability ~0.1 at 1M items, so 40 tables find it with probability ~0.98)."""
    index = np.flatnonzero(valid)
    x = vectors if len(index) == len(vectors) else vectors[index]     # no copy when every row is valid
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(index)
    found = [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))]
    kept = 0

    def add(a, b, c):
        nonlocal found, kept
        found.append((a, b, c))
        kept += len(a)
        if kept > 4 * per_item * max(n, 1):          # prune as we go, so memory never exceeds O(n)
            a, b, c = _keep_strongest(*_dedupe(*(np.concatenate(v) for v in zip(*found)), n), n, per_item)
            found, kept = [(a, b, c)], len(a)

    if n <= EXACT_SEARCH_LIMIT:
        block = max(1, 2 ** 22 // max(n, 1))
        for start in range(0, n, block):
            sims = x[start:start + block] @ x.T
            a, b = np.nonzero(sims >= min_cosine)
            a = a + start
            upper = b > a
            add(a[upper].astype(np.int64), b[upper].astype(np.int64), sims[a[upper] - start, b[upper]])
    else:
        rng = np.random.default_rng(seed)
        bits = int(np.ceil(np.log2(n))) - 2
        for _ in range(LSH_TABLES):
            planes = rng.standard_normal((x.shape[1], bits)).astype(np.float32)
            signs = (x @ planes) > 0
            key = (signs.astype(np.uint64) << np.arange(bits, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
            a, b = _same_key_pairs([key], lambda a, b: np.einsum("ij,ij->i", x[a], x[b]) >= min_cosine)
            add(a, b, np.einsum("ij,ij->i", x[a], x[b]))
    lo, hi, c = _keep_strongest(*_dedupe(*(np.concatenate(v) for v in zip(*found)), n), n, per_item)
    return index[lo], index[hi], c


def near_pairs(hashes: list[int | None], threshold: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair with Hamming distance <= threshold; None hashes are skipped."""
    words, valid = hash_words(hashes)
    return [tuple(int(v) for v in t) for t in zip(*near_pairs_words(words, valid, threshold))]


LOSSLESS_PATTERN = r"(?i)\.(png|tiff?|bmp)$"   # files whose pixels are the picture, not a lossy coding of it
FACE_SIZE_STEP = 1.05     # face sizes within 5% are one size: landmark noise moves a copy's quad by a few percent


def representative_quality(face_size_px: np.ndarray, lossless: np.ndarray, sharpness: np.ndarray) -> tuple[np.ndarray, ...]:
    """The keys, compared in order, that choose a group's representative: the face size in source pixels
    (in 5% steps), then a lossless file (LOSSLESS_PATTERN) over a lossy one (a JPEG copy's artefacts would
    otherwise pass for sharpness), then sharpness, then the earlier path (callers give rows in path order)."""
    size_step = np.floor(np.log(np.maximum(np.asarray(face_size_px, np.float64), 1.0)) / np.log(FACE_SIZE_STEP))
    return size_step, np.asarray(lossless, np.int8), np.asarray(sharpness, np.float64), -np.arange(len(size_step))


def group_duplicates(pixel_hashes, phashes, threshold: int, quality, descriptors=None, confirm=None,
                     min_cosine: float = CANDIDATE_COSINE) -> tuple[list[int], list[str | None], list[float | None]]:
    """Group exact and near duplicates, as a cascade whose every step is named.

    1. exact: the same sha256 of decoded pixels (transitive by nature);
    2. phash: perceptual hashes within `threshold` bits propose a pair;
    3. embedding: descriptors (an (n x d unit vectors, valid) pair) with cosine >= min_cosine propose one.
    Proposed pairs are merged only when confirmed: `confirm(pairs)` takes a list of (i, j) and returns a
    (same picture?, score) for each, so a caller can spread the checks over processes (None: accept every
    proposal, for callers without pixels). Grouping does not chain: within each set of items linked
    by confirmed pairs, the best item is a representative, and an item joins it only through a confirmed
    pair with it or, when they were linked only through others, a fresh confirm against it (the
    representative check, kind 'representative'); what is left forms further groups the same way.

    pixel_hashes: per item, the sha256 of its decoded pixels (or None). phashes: 256-bit ints (or None),
    or an (n x 4 words, valid) pair from `hex_hash_words`. quality: per item a tuple, or a tuple of
    arrays (compared in order); the representative is the member with the largest. Returns, per item,
    its representative's index, the step that grouped it ('exact', 'phash', 'embedding', 'representative';
    None for representatives and singletons) and the confirm score against the representative (None for
    exact copies, representatives and singletons).
    """
    n = len(pixel_hashes)
    if n == 0:
        return [], [], []
    keys = [np.asarray(column) for column in quality] if isinstance(quality, tuple) else \
        [np.asarray([q[k] for q in quality]) for k in range(len(quality[0]))]
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort(keys[::-1])] = np.arange(n)                     # larger rank: better item
    # 1. exact classes, each named by its best member
    by_pixels: dict[str, int] = {}
    klass = np.arange(n)
    for i, h in enumerate(pixel_hashes):
        if h is None:
            continue
        first = by_pixels.setdefault(h, i)
        if rank[i] > rank[first]:
            by_pixels[h] = i
    for i, h in enumerate(pixel_hashes):
        if h is not None:
            klass[i] = by_pixels[h]
    del by_pixels
    # 2 and 3. proposals between classes; the cheaper step names a pair both steps propose
    proposed: dict[tuple[int, int], str] = {}

    def propose(i_array, j_array, kind):
        a, b = klass[i_array], klass[j_array]
        for x, y in zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()):
            if x != y:
                proposed.setdefault((x, y), kind)

    words, valid = phashes if isinstance(phashes, tuple) else hash_words(phashes)
    propose(*near_pairs_words(words, valid, threshold)[:2], "phash")
    if descriptors is not None:
        propose(*similar_pairs(*descriptors, min_cosine)[:2], "embedding")
    def check(pairs: list[tuple[int, int]]) -> list[tuple[bool, float | None]]:
        return [(True, None)] * len(pairs) if confirm is None or not pairs else list(confirm(pairs))

    confirmed: dict[tuple[int, int], float | None] = {}
    linked = _UnionFind(n)
    pairs = sorted(proposed)
    for pair, (same, score) in zip(pairs, check(pairs)):
        if same:
            confirmed[pair] = score
            linked.union(*pair)
    leader_of = np.arange(n)              # per class: the class whose best member represents it
    kind: list[str | None] = [None] * n
    score_of: list[float | None] = [None] * n
    joined_by: dict[int, tuple[str, float | None]] = {}
    members: dict[int, list[int]] = {}
    for c in {x for pair in confirmed for x in pair}:
        members.setdefault(linked.find(c), []).append(c)
    for classes in members.values():
        remaining = sorted(classes, key=lambda c: -rank[c])
        while remaining:
            leader, unlinked = remaining[0], []
            for c in remaining[1:]:
                pair = (min(leader, c), max(leader, c))
                if pair in confirmed:
                    joined_by[c], leader_of[c] = (proposed[pair], confirmed[pair]), leader
                else:
                    unlinked.append(c)
            rest = []
            for c, (same, score) in zip(unlinked, check([(min(leader, c), max(leader, c)) for c in unlinked])):
                if same:
                    joined_by[c], leader_of[c] = ("representative", score), leader
                else:
                    rest.append(c)
            remaining = rest
    representative = leader_of[klass]
    for i in np.flatnonzero(representative != np.arange(n)).tolist():
        if klass[i] == representative[i]:
            kind[i] = "exact"
        else:
            kind[i], score_of[i] = joined_by[klass[i]]
    return representative.tolist(), kind, score_of
