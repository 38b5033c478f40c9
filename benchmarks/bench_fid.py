"""Our FID maths against clean-fid's `frechet_distance` (scipy sqrtm) on the same 2048-d statistics:
time ratio and agreement, in one run.

    .venv/bin/python benchmarks/bench_fid.py [--n 4000] [--slice-n 300]
"""

import argparse
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000, help="images per side (full-rank covariances need > 2048)")
    parser.add_argument("--slice-n", type=int, default=300, help="a small slice, for the Gram route")
    args = parser.parse_args()
    from cleanfid.fid import frechet_distance as cleanfid_fd

    from drfhq_tools.bench.metrics import FrechetReference, feature_statistics, frechet_distance

    rng = np.random.default_rng(0)
    mix = rng.normal(size=(2048, 2048)) / 45
    real = np.maximum(rng.normal(size=(args.n, 2048)) @ mix, 0)          # ReLU-like, as Inception pool features
    fake = np.maximum(rng.normal(loc=0.05, size=(args.n, 2048)) @ mix, 0)
    s_real, s_fake = feature_statistics(real), feature_statistics(fake)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        theirs = cleanfid_fd(s_fake[0], s_fake[1], s_real[0], s_real[1])
        t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = frechet_distance(*s_fake, *s_real)
    t_ours = time.perf_counter() - t0
    reference = FrechetReference(real)
    t0 = time.perf_counter()
    ours_ref = reference.distance(fake)
    t_ref = time.perf_counter() - t0
    print(f"FID of 2048-d statistics, n={args.n} per side")
    print(f"clean-fid (scipy sqrtm): {t_theirs:7.2f} s   FID {theirs:.6f}")
    print(f"ours (eigh route)      : {t_ours:7.2f} s   FID {ours:.6f}   ratio {t_theirs / t_ours:5.1f}x   rel diff {abs(ours - theirs) / theirs:.2e}")
    print(f"ours (vs fixed ref)    : {t_ref:7.2f} s   FID {ours_ref:.6f}   ratio {t_theirs / t_ref:5.1f}x   (reference root computed once)")

    small = fake[: args.slice_n]
    s_small = feature_statistics(small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        theirs = cleanfid_fd(s_small[0], s_small[1], s_real[0], s_real[1])
        t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = reference.distance(small)
    t_ours = time.perf_counter() - t0
    print(f"slice of n={args.slice_n} (rank-deficient covariance)")
    print(f"clean-fid (scipy sqrtm): {t_theirs:7.2f} s   FID {theirs:.6f}")
    print(f"ours (Gram route)      : {t_ours:7.2f} s   FID {ours:.6f}   ratio {t_theirs / t_ours:5.1f}x   rel diff {abs(ours - theirs) / theirs:.2e}")


if __name__ == "__main__":
    main()
