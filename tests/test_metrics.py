"""Metric maths on arrays: FID by the eigenvalue routes equals the sqrtm definition; KID is seeded."""

import numpy as np
import pytest
import scipy.linalg

from drfhq_tools.bench.metrics import (FrechetReference, bootstrap_summary, cosine_similarity, fid_from_features,
                                       frechet_distance, kernel_inception_distance)


def _sqrtm_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    d = mu1 - mu2
    return d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _random_cov(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + np.eye(d) * 0.01


@pytest.mark.parametrize("d", [4, 32, 128])
def test_fid_equals_the_sqrtm_definition_on_random_covariances(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_sqrtm_fid(mu1, s1, mu2, s2), rel=1e-8)


@pytest.mark.parametrize("n", [10, 50, 300])
def test_reference_routes_agree_for_small_and_large_slices(n):
    rng = np.random.default_rng(n)
    real = rng.normal(size=(400, 64)) @ rng.normal(size=(64, 64))
    fake = rng.normal(loc=0.3, size=(n, 64)) @ rng.normal(size=(64, 64))
    assert FrechetReference(real).distance(fake) == pytest.approx(fid_from_features(fake, real), rel=1e-7)


def test_fid_of_a_set_against_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(200, 32))
    assert abs(fid_from_features(feats, feats)) < 1e-8
    assert abs(FrechetReference(feats).distance(feats)) < 1e-8


def test_kid_is_seeded_and_matches_clean_fids_estimator():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 16)), rng.normal(loc=0.5, size=(80, 16))
    first = kernel_inception_distance(a, b, num_subsets=20, max_subset_size=30, seed=7)
    again = kernel_inception_distance(a, b, num_subsets=20, max_subset_size=30, seed=7)
    other = kernel_inception_distance(a, b, num_subsets=20, max_subset_size=30, seed=8)
    assert (first.mean, first.std) == (again.mean, again.std) and first.std > 0
    assert other.mean != first.mean and first.subset_size == 30
    from cleanfid.fid import kernel_distance

    np.random.seed(7)
    assert first.mean == pytest.approx(kernel_distance(a, b, num_subsets=20, max_subset_size=30), rel=1e-12)
    assert kernel_inception_distance(a[:10], b, max_subset_size=30).subset_size == 10   # small slice: all of it


def test_cosine_and_bootstrap():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0]])
    assert cosine_similarity(a, b) == pytest.approx([1.0, -1.0])
    values = np.random.default_rng(0).normal(loc=0.5, scale=0.1, size=400)
    s = bootstrap_summary(values, 500, seed=3)
    assert s.ci_low < s.mean < s.ci_high and s.ci_high - s.ci_low < 0.05
    assert bootstrap_summary(values, 500, seed=3) == s
    assert np.isnan(bootstrap_summary(values[:1]).ci_low)
