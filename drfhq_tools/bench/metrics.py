"""Metric maths as pure functions on arrays: no files, no networks.

FID uses the symmetric eigenvalue route: tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), which
equals scipy.linalg.sqrtm's trace on covariances (both symmetric PSD) and is several times faster.
KID follows clean-fid's estimator (cubic polynomial kernel, unbiased MMD^2 over random subsets) with
a seeded generator, and also reports the spread over subsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
