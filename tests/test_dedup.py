"""Duplicate finding: the candidate search equals brute force, and planted copies are found while
different poses of one CG identity are not merged."""

import io
import itertools
import random
import shutil

import pyarrow.parquet as pq
import pytest
from PIL import Image

from drfhq_tools.dataset.build import build_dataset
from drfhq_tools.dataset.config import BuildConfig
from drfhq_tools.dataset.dedup import group_duplicates, hamming, near_pairs


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


def test_groups_are_transitive_and_keep_the_best_item():
    pixel = ["a", "b", "a", "c", "d"]
    phash = [0b0, 0b1, 0b0, 0b1111 << 100, 0b11]   # 0~1~4 by phash, 0=2 by pixels, 3 alone
    quality = [(100.0, 1.0, 0), (120.0, 1.0, -1), (100.0, 1.0, -2), (500.0, 1.0, -3), (90.0, 1.0, -4)]
    rep, kind = group_duplicates(pixel, phash, 2, quality)
    assert rep == [1, 1, 1, 3, 1]
    assert kind == ["near", None, "near", None, "near"]
    rep, kind = group_duplicates(pixel, phash, 0, quality)
    assert rep[0] == rep[2] and kind[2] == "exact" and rep[1] == 1


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
    assert rep.face_size_px == members.face_size_px.max()          # the documented representative rule
    assert m.loc["planted/original.png", "pixel_sha256"] == m.loc["planted/reencoded.webp", "pixel_sha256"]
    for _, row in members[members.status == "duplicate"].iterrows():
        assert row.duplicate_kind == ("exact" if row.pixel_sha256 == rep.pixel_sha256 else "near")
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
