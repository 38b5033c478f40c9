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


# ---------------------------------------------------------------- small slices, told honestly

def test_fid_infinity_is_the_direct_fit_of_fid_in_one_over_n():
    from drfhq_tools.bench.metrics import fid_infinity, fid_subset_sizes

    rng = np.random.default_rng(3)
    mix = rng.normal(size=(16, 16))
    real = rng.normal(size=(600, 16)) @ mix
    fake = rng.normal(loc=0.4, size=(150, 16)) @ mix
    got = fid_infinity(fake, FrechetReference(real), points=15, seed=5)
    # the literal computation: the same draws, FID by the sqrtm-free covariance route, normal equations
    draws = np.random.default_rng(5)
    sizes = fid_subset_sizes(150, 15)
    fids = [fid_from_features(fake[draws.choice(150, s, replace=False)], real) for s in sizes]
    x = np.stack([np.ones(len(sizes)), 1.0 / np.asarray(sizes)], axis=1)
    intercept, slope = np.linalg.solve(x.T @ x, x.T @ np.asarray(fids))
    assert got.sizes == tuple(sizes) and sizes[0] == 30 and sizes[-1] == 150
    assert got.fids == pytest.approx(fids, rel=1e-7)
    assert (got.value, got.slope) == pytest.approx((intercept, slope), rel=1e-6)
    # what it is for: samples of the reference's own distribution have FID about 0 at infinity (on average
    # over draws: one fit is noisy), while their FID at n is all bias
    big = FrechetReference(rng.normal(size=(20000, 16)) @ mix)
    sets = [rng.normal(size=(200, 16)) @ mix for _ in range(5)]
    plain = np.mean([big.distance(s) for s in sets])
    corrected = np.mean([fid_infinity(s, big, seed=i).value for i, s in enumerate(sets)])
    assert plain > 3 and abs(corrected) < plain / 4
    assert fid_infinity(fake[:11], FrechetReference(real)) is None          # too few for three sizes


def _prdc_brute_force(real, fake, k):
    def radius(points, i):
        distances = sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i)
        return distances[k - 1]
    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, j) for j in range(len(fake))]
    d = lambda i, j: np.linalg.norm(real[i] - fake[j])
    precision = np.mean([any(d(i, j) < r_real[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d(i, j) < r_fake[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum(d(i, j) < r_real[i] for i in range(len(real)) for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([min(d(i, j) for j in range(len(fake))) < r_real[i] for i in range(len(real))])
    return precision, recall, density, coverage


def test_prdc_equals_the_brute_force_transcription():
    from drfhq_tools.bench.metrics import prdc

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 6)), rng.normal(loc=0.7, scale=0.8, size=(33, 6))
    got = prdc(real, fake, k=5)
    assert (got.precision, got.recall, got.density, got.coverage) == pytest.approx(_prdc_brute_force(real, fake, 5), rel=1e-12)
    assert 0 < got.precision < 1 and 0 < got.coverage < 1
    same = prdc(real, real.copy(), k=5)
    assert (same.precision, same.recall, same.density, same.coverage) == (1.0, 1.0, 1.0, 1.0)
    far = prdc(real, real + 100.0, k=5)
    assert (far.precision, far.recall, far.density, far.coverage) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="more than 5"):
        prdc(real, fake[:5], k=5)
    # precision and density are means of a per-output count, so any slice of outputs is a mean too
    from drfhq_tools.bench.metrics import real_balls_holding

    held = real_balls_holding(real, fake, k=5)
    part = prdc(real, fake[:20], k=5)
    assert ((held > 0).mean(), held.mean() / 5) == pytest.approx((got.precision, got.density), rel=1e-12)
    assert ((held[:20] > 0).mean(), held[:20].mean() / 5) == pytest.approx((part.precision, part.density), rel=1e-12)


def test_cluster_bootstrap_resamples_identities_not_images():
    from drfhq_tools.bench.metrics import cluster_bootstrap_summary

    rng = np.random.default_rng(2)
    clusters = np.repeat([f"id{i}" for i in range(12)], 5)           # 12 identities, 5 views each
    values = np.repeat(rng.normal(size=12), 5) + rng.normal(scale=0.05, size=60)
    got = cluster_bootstrap_summary(values, clusters, resamples=300, seed=4)
    # the literal computation: draw identities with replacement, average every image they own
    labels = sorted(set(clusters))
    draws = np.random.default_rng(4).integers(0, len(labels), size=(300, len(labels)))
    means = [np.mean(np.concatenate([values[clusters == labels[c]] for c in row])) for row in draws]
    assert (got.ci_low, got.ci_high) == pytest.approx((np.quantile(means, 0.025), np.quantile(means, 0.975)), rel=1e-12)
    assert got.mean == pytest.approx(values.mean()) and got.n == 60
    # views of one identity move together: resampling images would claim a far narrower interval
    naive = bootstrap_summary(values, 300, seed=4)
    assert (got.ci_high - got.ci_low) > 1.8 * (naive.ci_high - naive.ci_low)
    assert cluster_bootstrap_summary(values, None, 300, seed=4) == naive


# ---------------------------------------------------------------- colour and geometry kept

# Sharma, Wu and Dalal (2005), Table 1: L1 a1 b1, L2 a2 b2, CIEDE2000 (published test data)
SHARMA_2005 = np.array([
    [50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425], [50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615],
    [50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412], [50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000], [50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669], [50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792], [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195], [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045], [50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461], [50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065],
    [50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492], [50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977],
    [50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030], [50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000], [50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000], [50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000],
    [60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644], [63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630],
    [61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731], [35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645],
    [22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373], [36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146],
    [90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441], [90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381],
    [6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377], [2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082]])


def test_ciede2000_reproduces_sharmas_test_data_both_ways():
    from drfhq_tools.bench.metrics import ciede2000

    forward = ciede2000(SHARMA_2005[:, 0:3], SHARMA_2005[:, 3:6])
    backward = ciede2000(SHARMA_2005[:, 3:6], SHARMA_2005[:, 0:3])
    assert np.abs(forward - SHARMA_2005[:, 6]).max() < 5e-5
    assert np.abs(backward - SHARMA_2005[:, 6]).max() < 5e-5
    assert ciede2000(SHARMA_2005[:, 0:3], SHARMA_2005[:, 0:3]) == pytest.approx(np.zeros(34), abs=1e-12)


def test_srgb_to_cielab_on_known_colours():
    from drfhq_tools.bench.metrics import mean_delta_e, srgb_to_cielab

    lab = srgb_to_cielab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [128, 128, 128]], dtype=np.uint8))
    assert lab[0] == pytest.approx([100, 0, 0], abs=0.01) and lab[1] == pytest.approx([0, 0, 0], abs=1e-9)
    assert lab[2] == pytest.approx([53.24, 80.09, 67.20], abs=0.01)            # sRGB red
    assert lab[3] == pytest.approx([53.59, 0, 0], abs=0.01)                    # mid grey
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    assert mean_delta_e(img, img, mask) == 0.0
    shifted = img.copy()
    shifted[~mask] = 255 - shifted[~mask]                                      # changes outside the mask do not count
    assert mean_delta_e(img, shifted, mask) == 0.0


def test_landmark_nme_and_the_skin_region(fixture_dataset):
    from drfhq_tools.bench.metrics import inter_ocular, landmark_nme
    from drfhq_tools.bench.run import dataset_rows
    from drfhq_tools.dataset.paste import skin_mask

    rows, size = dataset_rows(fixture_dataset, None)
    lm = rows[0]["aligned_lm68"]
    assert landmark_nme(lm, lm) == 0.0
    assert landmark_nme(lm, lm + [3.0, 4.0]) == pytest.approx(5.0 / inter_ocular(lm))
    mask = skin_mask(lm, (size, size))
    at = lambda p: mask[int(round(p[1])), int(round(p[0]))]
    assert not any(at(p) for p in lm[36:48]) and not any(at(p) for p in lm[48:60]) and not any(at(p) for p in lm[17:27])
    assert at(lm[30]) and at((lm[2] + lm[31]) / 2) and at((lm[14] + lm[35]) / 2)   # nose tip, both cheeks
    brow_to_nose = np.linalg.norm(lm[17:27].mean(0) - lm[33])
    assert at(lm[17:27].mean(0) - [0, 0.5 * brow_to_nose])                     # forehead
    assert not mask[:, :size // 8].any() and not mask[:size // 10].any()       # nothing of the background
