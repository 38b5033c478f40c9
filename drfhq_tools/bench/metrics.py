"""Metric maths as pure functions on arrays: no files, no networks.

FID uses the symmetric eigenvalue route: tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), which
equals scipy.linalg.sqrtm's trace on covariances (both symmetric PSD) and is several times faster.
KID follows clean-fid's estimator (cubic polynomial kernel, unbiased MMD^2 over random subsets) with
a seeded generator, and also reports the spread over subsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..colour import srgb_to_linear


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), for symmetric PSD covariances."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    if len(features1) < 2 or len(features2) < 2:
        raise ValueError("FID needs at least two images on each side")
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


@dataclass(frozen=True)
class KidResult:
    mean: float
    std: float          # over subsets
    subset_size: int
    subsets: int


def kid_subset_size(n1: int, n2: int, max_subset_size: int) -> int:
    """clean-fid's rule: subsets of min(n1, n2, max_subset_size); a smaller slice uses all its images."""
    return min(n1, n2, max_subset_size)


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> KidResult:
    """KID(features1 = method outputs, features2 = real set), seeded; mean equals clean-fid's
    `kernel_distance(features1, features2)` after `np.random.seed(seed)`."""
    features1 = np.asarray(features1, dtype=np.float64)
    features2 = np.asarray(features2, dtype=np.float64)
    d = features1.shape[1]
    m = kid_subset_size(len(features1), len(features2), max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least two images on each side")
    rng = np.random.RandomState(seed)
    values = np.empty(num_subsets)
    for k in range(num_subsets):
        x = features2[rng.choice(len(features2), m, replace=False)]
        y = features1[rng.choice(len(features1), m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        values[k] = ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m
    return KidResult(float(values.mean()), float(values.std(ddof=1)) if num_subsets > 1 else 0.0, m, num_subsets)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine between two N x D arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def bootstrap_summary(values: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Summary:
    """Mean with a percentile bootstrap interval (seeded); n < 2 gives no interval."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return Summary(0, float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(values.mean())
    if n < 2:
        return Summary(n, mean, float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    alpha = (1 - level) / 2
    return Summary(n, mean, float(values.std(ddof=1)), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


class FrechetReference:
    """FID against one fixed reference set, fast for many slices.

    The reference's covariance square root is computed once. For a slice of n < d images the cross
    term uses the n x n Gram route: with Y the centred slice features, sqrt(S_ref) S Y sqrt(S_ref) has the
    same non-zero eigenvalues as (Y R)(Y R)^T / (n - 1), R = sqrt(S_ref).
    """

    def __init__(self, features: np.ndarray):
        self.mu, self.sigma = feature_statistics(features)
        self.root = _psd_sqrt(self.sigma)
        self.trace = float(np.trace(self.sigma))
        self.n = len(features)

    def distance(self, features: np.ndarray) -> float:
        features = np.asarray(features, dtype=np.float64)
        n, d = features.shape
        if n < 2:
            raise ValueError("FID needs at least two images on each side")
        mu = features.mean(axis=0)
        centred = features - mu
        if n < d:
            projected = centred @ self.root
            gram = projected @ projected.T / (n - 1)
            eigenvalues = np.linalg.eigvalsh((gram + gram.T) / 2)
            trace_other = float((centred * centred).sum() / (n - 1))
        else:
            sigma = centred.T @ centred / (n - 1)
            middle = self.root @ sigma @ self.root
            eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
            trace_other = float(np.trace(sigma))
        diff = mu - self.mu
        return float(diff @ diff + self.trace + trace_other - 2.0 * np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def cluster_bootstrap_summary(values: np.ndarray, clusters: list | np.ndarray | None, resamples: int = 1000, seed: int = 0,
                              level: float = 0.95) -> Summary:
    """Mean with a percentile interval from resampling whole clusters (identities) with replacement: several
    views of one identity are not independent, and resampling images would make the interval too narrow.
    Each resample's mean is over all images of the drawn clusters. Without clusters: `bootstrap_summary`."""
    values = np.asarray(values, dtype=np.float64)
    if clusters is None:
        return bootstrap_summary(values, resamples, seed, level)
    n = len(values)
    if n < 2:
        return bootstrap_summary(values, resamples, seed, level)
    labels, index = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    k = len(labels)
    sums = np.bincount(index, weights=values, minlength=k)
    counts = np.bincount(index, minlength=k).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(resamples, k))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1 - level) / 2
    return Summary(n, float(values.mean()), float(values.std(ddof=1)), float(np.quantile(means, alpha)),
                   float(np.quantile(means, 1 - alpha)))


@dataclass(frozen=True)
class FidInfinity:
    value: float                 # the fit's intercept: FID extrapolated to infinitely many images
    slope: float                 # the bias term's coefficient (FID = value + slope / n)
    sizes: tuple[int, ...]       # subset sizes fitted
    fids: tuple[float, ...]      # FID of the subset drawn at each size


def fid_subset_sizes(n: int, points: int = 15, min_size: int = 10) -> list[int]:
    """Chong & Forsyth fit over sizes spread evenly in n from a fifth of the set (at least `min_size`) to
    all of it; a set too small for three distinct sizes has none."""
    low = max(min_size, n // 5)
    if n - low < 2:
        return []
    return sorted({int(round(v)) for v in np.linspace(low, n, points)})


def fid_infinity(features: np.ndarray, reference: "FrechetReference", points: int = 15, seed: int = 0,
                 min_size: int = 10) -> FidInfinity | None:
    """Bias-corrected FID (Chong & Forsyth 2020, "Effectively Unbiased FID"): FID of random subsets at
    several sizes n, a least-squares line in 1/n, its value at 1/n = 0. FID's bias grows like 1/n, so
    slices of different sizes are comparable only after this. None when the set is too small to fit."""
    features = np.asarray(features, dtype=np.float64)
    sizes = fid_subset_sizes(len(features), points, min_size)
    if len(sizes) < 3:
        return None
    rng = np.random.default_rng(seed)
    fids = [reference.distance(features[rng.choice(len(features), size, replace=False)]) for size in sizes]
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes, dtype=np.float64), np.asarray(fids), 1)
    return FidInfinity(float(intercept), float(slope), tuple(sizes), tuple(float(f) for f in fids))


def _pairwise_distances(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distances, |a|^2 + |b|^2 - 2ab in chunks (float64, clipped at 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    bb = (b * b).sum(1)
    out = np.empty((len(a), len(b)))
    for s in range(0, len(a), chunk):
        x = a[s:s + chunk]
        out[s:s + chunk] = np.sqrt(np.clip((x * x).sum(1)[:, None] + bb[None] - 2 * x @ b.T, 0, None))
    return out


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest other point (the point itself is not a neighbour)."""
    d = _pairwise_distances(features, features)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


@dataclass(frozen=True)
class Prdc:
    precision: float    # outputs inside some real image's k-NN ball
    recall: float       # real images inside some output's k-NN ball
    density: float      # how many real balls hold each output, / k (about 1 when the sets match)
    coverage: float     # real images whose ball holds an output


def real_balls_holding(real: np.ndarray, fake: np.ndarray, k: int = 5) -> np.ndarray:
    """Per output: how many real images' k-NN balls hold it. Its mean over a set of outputs > 0 is their
    precision, / k their density; the real balls do not depend on the outputs, so these are per-image
    values, and any slice's precision and density are means of them."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if len(real) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} real images")
    return (_pairwise_distances(real, fake) < knn_radii(real, k)[:, None]).sum(axis=0)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> Prdc:
    """Precision and recall (Kynkaanniemi et al. 2019) with density and coverage (Naeem et al. 2020), on
    k-nearest-neighbour balls; a point is inside a ball when strictly closer than its radius, as in
    Naeem et al.'s code. Two identical sets of distinct points give 1.0 for all four."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} images on each side")
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    cross = _pairwise_distances(real, fake)            # real x fake
    inside_real = cross < real_radii[:, None]          # fake j inside real i's ball
    return Prdc(precision=float(inside_real.any(axis=0).mean()),
                recall=float((cross < fake_radii[None, :]).any(axis=1).mean()),
                density=float(inside_real.sum() / (k * len(fake))),
                coverage=float((cross.min(axis=1) < real_radii).mean()))


# ---------------------------------------------------------------- colour and geometry kept

_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
_D65 = np.array([0.95047, 1.0, 1.08883])


def srgb_to_cielab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of uint8 sRGB, ... x 3 -> ... x 3 float64."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = srgb_to_linear(c)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1) of ... x 3 Lab arrays, elementwise (Sharma, Wu and
    Dalal 2005: hue angle 0 where chroma is 0, mean hue and hue difference on the short arc)."""
    lab1, lab2 = np.asarray(lab1, dtype=np.float64), np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_mean7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_mean7 / (c_mean7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.where(c1p == 0, 0.0, np.degrees(np.arctan2(b1, a1p)) % 360)
    h2p = np.where(c2p == 0, 0.0, np.degrees(np.arctan2(b2, a2p)) % 360)
    chroma_zero = (c1p * c2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    dL, dC = L2 - L1, c2p - c1p
    dH = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    L_mean, c_mean = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = np.where(np.abs(h1p - h2p) <= 180, h_sum / 2, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2))
    h_mean = np.where(chroma_zero, h_sum, h_mean)
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    d_theta = 30 * np.exp(-(((h_mean - 275) / 25) ** 2))
    c_mean7p = c_mean ** 7
    r_c = 2 * np.sqrt(c_mean7p / (c_mean7p + 25.0 ** 7))
    s_l = 1 + 0.015 * (L_mean - 50) ** 2 / np.sqrt(20 + (L_mean - 50) ** 2)
    s_c = 1 + 0.045 * c_mean
    s_h = 1 + 0.015 * c_mean * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    return np.sqrt((dL / s_l) ** 2 + (dC / s_c) ** 2 + (dH / s_h) ** 2 + r_t * (dC / s_c) * (dH / s_h))


def mean_delta_e(rgb1: np.ndarray, rgb2: np.ndarray, mask: np.ndarray) -> float:
    """Mean CIEDE2000 between two equal-sized uint8 RGB images over the pixels where mask is true."""
    if rgb1.shape != rgb2.shape or mask.shape != rgb1.shape[:2]:
        raise ValueError(f"shapes differ: {rgb1.shape}, {rgb2.shape}, mask {mask.shape}")
    if not mask.any():
        return float("nan")
    return float(ciede2000(srgb_to_cielab(rgb1[mask]), srgb_to_cielab(rgb2[mask])).mean())


def inter_ocular(landmarks68: np.ndarray) -> float:
    """Distance between the outer eye corners (points 36 and 45), the 300-W normaliser."""
    lm = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    return float(np.hypot(*(lm[45] - lm[36])))


def landmark_nme(reference68: np.ndarray, predicted68: np.ndarray) -> float:
    """Mean point-to-point distance of two 68-point sets over the reference's inter-ocular distance."""
    ref = np.asarray(reference68, dtype=np.float64).reshape(68, 2)
    pred = np.asarray(predicted68, dtype=np.float64).reshape(68, 2)
    return float(np.hypot(*(pred - ref).T).mean() / max(inter_ocular(ref), 1e-9))
