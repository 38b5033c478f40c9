"""Manifest assembly and deduplication at scale, without images: N synthetic records in shards (as
build-dataset's work folder holds them) -> the records table -> every whole-set step -> the manifest.
Prints wall time and the peak resident memory of the process that assembled (a fresh one, so the
generator's memory is not counted). Goal (issue #11): 1M rows under 4 GB and under 5 minutes on 2 cores.

Planted: 1% of rows are exact copies (same pixels) and 1% near copies of another row: half with a few
hash bits flipped (the perceptual hash proposes them), half with a fresh hash and a thumbnail
descriptor close to the original's (only the embedding search proposes them). The run checks that
every planted copy is grouped with its original and nothing else is.

There are no pictures, so the registration that confirms each proposal in a real build is stood in for
by the planted truth; the run counts the proposals it confirmed, each of which costs one registration
(about 30 ms on one core) in a real build.

    .venv/bin/python benchmarks/bench_scale.py [--rows 1000000] [--shard-rows 10000] [--work DIR]
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def generate(work: Path, rows: int, shard_rows: int, seed: int = 0) -> dict:
    from drfhq_tools.dataset.schema import RECORD_SCHEMA

    rng = np.random.default_rng(seed)
    shards = work / "shards"
    shards.mkdir(parents=True)
    hashes = rng.integers(0, 2 ** 63, size=(rows, 4), dtype=np.int64).view(np.uint64)
    pixels = rng.integers(0, 2 ** 63, size=(rows, 2), dtype=np.int64)
    planted = rng.choice(rows, size=rows // 50, replace=False)
    exact, near = planted[: rows // 100], planted[rows // 100:]
    others = np.setdiff1d(np.arange(rows), planted)           # originals are never copies themselves
    originals = others[rng.integers(0, len(others), size=len(planted))]
    hashes[planted] = hashes[originals]
    pixels[exact] = pixels[originals[: len(exact)]]
    for k in range(3):                                      # near copies: three random bits flipped
        bit = rng.integers(0, 256, size=len(near))
        hashes[near, bit // 64] ^= (np.uint64(1) << (bit % 64).astype(np.uint64))
    descriptors = rng.standard_normal((rows, 64)).astype(np.float32)
    descriptors[planted] = descriptors[originals] + 0.25 * rng.standard_normal((len(planted), 64)).astype(np.float32)
    embedding_only = near[len(near) // 2:]                 # the hash no longer finds these
    hashes[embedding_only] = rng.integers(0, 2 ** 63, size=(len(embedding_only), 4), dtype=np.int64).view(np.uint64)
    descriptors = np.round(descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True) * 127).astype(np.int8)
    for start in range(0, rows, shard_rows):
        n = min(shard_rows, rows - start)
        index = np.arange(start, start + n)
        ids = [f"{i:016x}" for i in index]
        columns = {
            "id": ids, "source_path": [_path(i) for i in index],
            "file_size": rng.integers(10_000, 900_000, n), "file_mtime_ns": rng.integers(1, 2 ** 60, n),
            "file_sha256": [f"{a:016x}" * 4 for a in pixels[index, 1]], "pixel_sha256": [f"{a:016x}{b:016x}" for a, b in pixels[index]],
            "width": np.full(n, 1024, np.int32), "height": np.full(n, 1024, np.int32), "source_mode": ["RGB"] * n,
            "had_alpha": np.zeros(n, bool), "reject_reason": [None] * n, "reject_detail": [None] * n,
            "face_count": np.ones(n, np.int32),
            "bbox": _coordinates(rng, n, 4),
            "detector": ["dlib-hog"] * n, "detector_score": rng.random(n, dtype=np.float32),
            "landmarks_68": _coordinates(rng, n, 136),
            "landmarks_5": _coordinates(rng, n, 10),
            "align_quad": _coordinates(rng, n, 8),
            "face_size_px": rng.random(n, dtype=np.float32) * 800 + 100, "sharpness": rng.random(n, dtype=np.float32),
            "yaw_deg": rng.normal(size=n).astype(np.float32), "roll_deg": rng.normal(size=n).astype(np.float32),
            "phash": [bytes(np.ascontiguousarray(h[::-1]).astype(">u8").tobytes()).hex() for h in hashes[index]],
            "thumb_descriptor": pa.FixedSizeBinaryArray.from_buffers(pa.binary(64), n, [None, pa.py_buffer(descriptors[index].tobytes())]),
            "image_path": [f"images/{i[:2]}/{i}.png" for i in ids],
            "pred_gender": rng.choice(["female", "male"], n).tolist(), "pred_gender_confidence": rng.random(n, dtype=np.float32),
            "pred_age_years": (rng.random(n, dtype=np.float32) * 70 + 10), "pred_age_confidence": rng.random(n, dtype=np.float32),
            "pred_race": [None] * n, "pred_race_confidence": np.full(n, np.nan, np.float32),
        }
        arrays = [pa.array(columns[f.name], type=f.type) if not isinstance(columns[f.name], pa.Array) else columns[f.name]
                  for f in RECORD_SCHEMA]
        pq.write_table(pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA), shards / f"batch-{start:09d}.parquet")
    result = {"planted": [[int(p), int(o)] for p, o in zip(planted, originals)]}
    (work / "planted.json").write_text(json.dumps(result))
    return result


def _coordinates(rng, n: int, length: int) -> pa.Array:
    """n lists of `length` random source-pixel coordinates, in the manifest's list type."""
    offsets = pa.array(np.arange(0, (n + 1) * length, length, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(rng.random(n * length, dtype=np.float32) * 1000))


class PlantedTruth:
    """Stands in for the registration of two pictures: the same picture when both are the same original
    or planted copies of it."""

    def __init__(self, planted):
        self.original = {_path(p): _path(o) for p, o in planted}
        self.calls = 0

    def __call__(self, tasks):
        self.calls += len(tasks)
        return [(self.original.get(a, a) == self.original.get(b, b), 0.0) for a, _, b, _ in tasks]


def _path(i: int) -> str:
    return f"renders/{i % 997:03d}/{i:08d}.png"


def measure(work: Path) -> dict:
    from drfhq_tools.dataset.build import _load_shards, assemble_manifest
    from drfhq_tools.dataset.config import BuildConfig

    planted = json.loads((work / "planted.json").read_text())["planted"]
    compare = PlantedTruth(planted)
    t0 = time.perf_counter()
    records = _load_shards(work / "shards")
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest = assemble_manifest(records, BuildConfig(src=".", out=str(work)), None, None, compare)
    t_assemble = time.perf_counter() - t0
    pq.write_table(manifest.select(["id", "status", "duplicate_group", "duplicate_kind"]), work / "groups.parquet")
    return {"rows": records.num_rows, "load_s": t_load, "assemble_s": t_assemble, "registrations": compare.calls,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--phase", choices=("all", "generate", "measure"), default="all")
    args = parser.parse_args()
    if args.phase == "generate":
        generate(args.work, args.rows, args.shard_rows)
        return
    if args.phase == "measure":
        print(json.dumps(measure(args.work)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    me = [sys.executable, __file__, "--rows", str(args.rows), "--shard-rows", str(args.shard_rows), "--work", str(work)]
    t0 = time.perf_counter()
    subprocess.run([*me, "--phase", "generate"], check=True)
    print(f"generated {args.rows} records in {args.rows // args.shard_rows} shards: {time.perf_counter() - t0:.0f} s "
          f"({sum(p.stat().st_size for p in (work / 'shards').iterdir()) / 2 ** 30:.2f} GB on disk)")
    t0 = time.perf_counter()
    result = json.loads(subprocess.run([*me, "--phase", "measure"], check=True, capture_output=True, text=True).stdout)
    wall = time.perf_counter() - t0
    groups = pq.read_table(work / "groups.parquet")
    group_of = dict(zip(groups.column("id").to_pylist(), groups.column("duplicate_group").to_pylist()))
    planted = json.loads((work / "planted.json").read_text())["planted"]
    found = sum(group_of[f"{p:016x}"] == group_of[f"{o:016x}"] for p, o in planted)
    print(f"rows {result['rows']}: load shards {result['load_s']:.1f} s, assemble + dedup {result['assemble_s']:.1f} s, "
          f"process wall {wall:.1f} s, peak RSS {result['peak_rss_gb']:.2f} GB")
    print(f"planted copies grouped with their original: {found} of {len(planted)}; proposals to confirm "
          f"{result['registrations']} (in a real build, ~{result['registrations'] * 0.03 / 60:.0f} min of registration on one core)")
    print(f"goal: < 4 GB ({'met' if result['peak_rss_gb'] < 4 else 'NOT met'}), < 300 s ({'met' if wall < 300 else 'NOT met'})")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
