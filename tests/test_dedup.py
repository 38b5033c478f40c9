"""Duplicate finding: the candidate search equals brute force, and planted copies are found while
different poses of one CG identity are not merged."""

import io
import itertools
import random
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from drfhq_tools.dataset.build import build_dataset
from drfhq_tools.dataset.config import BuildConfig
from drfhq_tools.dataset.dedup import group_duplicates, hamming, near_pairs
from drfhq_tools.dataset.verify import RESIDUAL_THRESHOLD


def test_multi_index_search_equals_brute_force():
    rng = random.Random(0)
    base = [rng.getrandbits(256) for _ in range(40)]
    hashes = list(base)
    for h in base[:20]:   # close relatives at 1..20 bits
        flips = rng.sample(range(256), rng.randint(1, 20))
        hashes.append(h ^ sum(1 << b for b in flips))
    hashes.append(None)
    for threshold in (0, 5, 12, 16):
        found = {(i, j) for i, j, _ in near_pairs(hashes, threshold)}
        brute = {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2)
                 if hashes[i] is not None and hashes[j] is not None and hamming(hashes[i], hashes[j]) <= threshold}
        assert found == brute


def test_hex_hashes_and_crowded_bands():
    from drfhq_tools.dataset.dedup import hash_words, hex_hash_words, near_pairs_words

    rng = random.Random(1)
    hashes = [rng.getrandbits(256) for _ in range(30)] + [None]
    words, valid = hash_words(hashes)
    hex_words, hex_valid = hex_hash_words([None if h is None else f"{h:064x}" for h in hashes])
    assert (words == hex_words).all() and (valid == hex_valid).all()
    same = [hashes[0]] * 6 + [hashes[1]]                     # one band value shared by six items: all 15 pairs
    i, j, d = near_pairs_words(*hash_words(same), 0)
    assert sorted(zip(i.tolist(), j.tolist())) == list(itertools.combinations(range(6), 2)) and not d.any()


def each(check):
    """A pair check as the batch `confirm` that group_duplicates calls."""
    return lambda pairs: [check(i, j) for i, j in pairs]


def test_grouping_names_each_step_and_does_not_chain():
    pixel = ["a", "b", "a", "c", "d", "e"]
    phash = [0b0, 0b1, 0b0, 0b1111 << 100, 0b11, 0b111 << 200]   # 0~1~4 by phash, 0=2 by pixels, 3 and 5 alone
    vectors = np.eye(6, dtype=np.float32)
    vectors[5] = vectors[3] = (vectors[3] + vectors[5]) / np.sqrt(2)   # 3 and 5 proposed by the embedding
    quality = [(100.0, 1.0, 0), (120.0, 1.0, -1), (100.0, 1.0, -2), (500.0, 1.0, -3), (90.0, 1.0, -4), (80.0, 1.0, -5)]
    calls = []

    def confirm(pairs):
        calls.extend(pairs)
        return [(True, 0.1 * (i + j)) for i, j in pairs]

    rep, kind, score = group_duplicates(pixel, phash, 2, quality, (vectors, np.ones(6, bool)), confirm)
    assert rep == [1, 1, 1, 3, 1, 3]
    assert kind == ["phash", None, "phash", None, "phash", "embedding"]
    assert score[0] == pytest.approx(0.1) and score[5] == pytest.approx(0.8) and score[1] is None
    assert all(pair in calls for pair in [(0, 1), (1, 4), (3, 5)])    # every proposal confirmed, between exact classes
    # 0~1 and 1~4 confirmed, but 0 and 4 are not one picture: 4 joins the representative 1 directly, and
    # with 0 too; now let 1 be unlike 4 while 0~4 holds: 4 must not reach 1 through 0
    refuse = {(1, 4)}
    rep, kind, _ = group_duplicates(pixel, phash, 2, quality, None, each(lambda i, j: ((i, j) not in refuse, 0.0)))
    assert rep[:3] == [1, 1, 1] and rep[4] == 4 and kind[4] is None
    # linked only through another item: the representative check decides, and says so
    rep, kind, _ = group_duplicates(["a", "b", "c"], [0b0, 0b11, 0b1111], 2, [(1.0,), (3.0,), (2.0,)], None,
                                    each(lambda i, j: (True, 0.0)))
    assert rep == [1, 1, 1] and kind == ["phash", None, "phash"]
    rep, kind, _ = group_duplicates(["a", "b", "c"], [0b0, 0b11, 0b1111], 2, [(3.0,), (2.0,), (1.0,)], None,
                                    each(lambda i, j: (True, 0.0)))
    assert rep == [0, 0, 0] and kind == [None, "phash", "representative"]
    rep, kind, _ = group_duplicates(["a", "b", "c"], [0b0, 0b11, 0b1111], 2, [(3.0,), (2.0,), (1.0,)], None,
                                    each(lambda i, j: ((i, j) != (0, 2), 0.0)))
    assert rep == [0, 0, 2] and kind == [None, "phash", None]
    rep, kind, _ = group_duplicates(pixel, phash, 0, quality)
    assert rep[0] == rep[2] and kind[2] == "exact" and rep[1] == 1


def test_representative_quality_prefers_a_lossless_file_over_jpeg_sharpness():
    from drfhq_tools.dataset.dedup import representative_quality

    # a JPEG copy reads "sharper" (its artefacts) and its face 2% larger (landmark noise): the PNG is kept
    size = 1.05 ** 117                                                        # a 5% step starts here
    quality = representative_quality(np.array([size * 1.001, size * 1.03, 400.0]), np.array([True, False, False]),
                                     np.array([50.0, 80.0, 10.0]))
    rep, kind, _ = group_duplicates(["a", "b", "c"], [0, 1, 2 ** 256 - 1], 2, quality)
    assert rep == [0, 0, 2] and kind == [None, "phash", None]
    quality = representative_quality(np.array([300.0, 330.0]), np.array([True, False]), np.array([50.0, 80.0]))
    assert group_duplicates(["a", "b"], [0, 1], 2, quality)[0] == [1, 1]      # 10% larger face: the larger wins


def test_similar_pairs_exact_and_hashed(monkeypatch):
    from drfhq_tools.dataset import dedup

    rng = np.random.default_rng(0)
    base = rng.standard_normal((400, 64)).astype(np.float32)
    near = base[:100] + 0.3 * rng.standard_normal((100, 64)).astype(np.float32)   # cosine about 0.95
    x = np.concatenate([base, near])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    valid = np.ones(len(x), bool)
    valid[7] = False
    cos = x @ x.T
    brute = {(i, j) for i, j in zip(*np.nonzero(np.triu(cos >= 0.9, 1))) if valid[i] and valid[j]}
    i, j, c = dedup.similar_pairs(x, valid, 0.9)
    assert set(zip(i.tolist(), j.tolist())) == brute and np.allclose(c, cos[i, j], atol=1e-5)
    planted = {(k, 400 + k) for k in range(100) if k != 7}
    assert planted <= brute
    monkeypatch.setattr(dedup, "EXACT_SEARCH_LIMIT", 0)           # the hashed search that large sets use
    i, j, c = dedup.similar_pairs(x, valid, 0.9)
    found = set(zip(i.tolist(), j.tolist()))
    assert found <= brute and len(found & planted) >= 0.97 * len(planted)
    # at most per_item candidates per item, the strongest kept
    crowd = np.tile(x[:1], (50, 1)) + 0.01 * rng.standard_normal((50, 64)).astype(np.float32)
    crowd /= np.linalg.norm(crowd, axis=1, keepdims=True)
    monkeypatch.setattr(dedup, "EXACT_SEARCH_LIMIT", 10 ** 6)
    i, j, _ = dedup.similar_pairs(crowd, np.ones(50, bool), 0.9, per_item=5)
    assert 0 < len(i) <= 50 * 5 and np.bincount(np.concatenate([i, j]), minlength=50).min() >= 5


def test_planted_copies_found_and_identities_not_merged(fixtures, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(fixtures / "render/replicantface_2ids_mit", src / "replicant")
    original = Image.open(fixtures / "real/frl_canada/003f.jpg").convert("RGB")
    planted = src / "planted"
    planted.mkdir()
    original.save(planted / "original.png")
    original.save(planted / "reencoded.webp", lossless=True)                       # same pixels, other codec
    buf = io.BytesIO()
    original.save(buf, "JPEG", quality=80)
    (planted / "lossy.jpg").write_bytes(buf.getvalue())                              # lossy re-encode
    original.resize((original.width * 7 // 10, original.height * 7 // 10), Image.LANCZOS).save(planted / "resized.png")
    w, h = original.size
    original.crop((w // 12, h // 14, w - w // 20, h - h // 16)).save(planted / "cropped.png")
    out = tmp_path / "out"
    build_dataset(BuildConfig(src=str(src), out=str(out), size=256, workers=2, predict_attributes=False))
    m = pq.read_table(out / "manifest.parquet").to_pandas().set_index("source_path")
    group = m.loc["planted/original.png", "duplicate_group"]
    copies = ["planted/reencoded.webp", "planted/lossy.jpg", "planted/resized.png", "planted/cropped.png"]
    assert (m.loc[copies + ["planted/original.png"], "duplicate_group"] == group).all()
    assert (m.loc[[*copies, "planted/original.png"], "status"] == "duplicate").sum() == 4
    members = m.loc[[*copies, "planted/original.png"]]
    rep = m[m.id == group].iloc[0]
    # the documented representative rule: face size in 5% steps, then lossless, then sharpness, then path
    steps = np.floor(np.log(members.face_size_px.astype(float)) / np.log(1.05))
    best = members[steps == steps.max()]
    best = best[best.index.str.endswith(".png")] if best.index.str.endswith(".png").any() else best
    assert rep.name == best.sharpness.idxmax() and rep.name != "planted/lossy.jpg"
    assert m.loc["planted/original.png", "pixel_sha256"] == m.loc["planted/reencoded.webp", "pixel_sha256"]
    for _, row in members[members.status == "duplicate"].iterrows():
        if row.pixel_sha256 == rep.pixel_sha256:
            assert row.duplicate_kind == "exact" and pd.isna(row.duplicate_score)
        else:
            assert row.duplicate_kind in ("phash", "embedding", "representative") and row.duplicate_score <= RESIDUAL_THRESHOLD
    replicant = m[m.index.str.startswith("replicant/") & m.reject_reason.isna()]
    assert len(replicant) >= 28
    assert (replicant.status == "ok").all(), replicant[replicant.status != "ok"][["duplicate_of"]]
    assert replicant.duplicate_group.nunique() == len(replicant)


def test_the_scale_benchmark_groups_every_planted_copy(tmp_path):
    """bench_scale's synthetic shards (exact and near copies planted) through loading and assembly, small."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).resolve().parents[1] / "benchmarks/bench_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    planted = bench.generate(tmp_path, 6000, 1500)["planted"]
    result = bench.measure(tmp_path)
    groups = pq.read_table(tmp_path / "groups.parquet").to_pylist()
    group_of = {r["id"]: r["duplicate_group"] for r in groups}
    assert result["rows"] == 6000 and len(planted) == 120
    assert all(group_of[f"{p:016x}"] == group_of[f"{o:016x}"] for p, o in planted)
    assert sum(r["status"] == "duplicate" for r in groups) == len(planted)       # nothing else merged
    assert json.dumps(result)


def _bench_dedup():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_dedup", Path(__file__).resolve().parents[1] / "benchmarks/bench_dedup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_labelled_set_and_its_scores(fixtures, tmp_path):
    bench = _bench_dedup()
    labels, ambiguous = bench.make_labelled_set(fixtures, tmp_path, originals=2)
    copies = [rel for rel in labels if rel.startswith("copies/")]
    assert len(copies) == 12 and all((tmp_path / rel).is_file() for rel in labels)
    # pixel-identical fixture files are one original; near-identical distinct ones are set aside
    assert labels["orig/makehuman_expressions_cc0/sceptical01.png"] == labels["orig/makehuman_expressions_cc0/sad02.png"]
    assert frozenset(("orig/makehuman_expressions_cc0/smile02.png", "orig/makehuman_expressions_cc0/smile03.png")) in ambiguous
    rows = [{"id": str(k), "source_path": p, "phash": f"{h:064x}", "duplicate_group": g}
            for k, (p, h, g) in enumerate([("a", 0, "a"), ("b", 1, "a"), ("c", 3, "c"), ("d", 2 ** 200, "a")])]
    result = bench.evaluate(rows, {"a": "A", "b": "A", "c": "A", "d": "D"})
    # true pairs ab, ac, bc; grouped ab, ad, bd: one right of three grouped, one found of three true
    assert (result["true_pairs"], result["grouped_pairs"]) == (3, 3)
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert result["distinct_merged"] == 2 and {(m["a"], m["b"]) for m in result["missed"]} == {("a", "c"), ("b", "c")}
