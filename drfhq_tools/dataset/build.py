"""`drfhq build-dataset`: list inputs, run the per-image stage where needed, then the whole-set steps.

Resumable by construction: each finished batch of records is written as one atomic Parquet shard
under OUT/.work/<stage-key>/, keyed by the options that change per-image results. A new run reuses
every record whose file (path, size, mtime) is unchanged, so a killed run loses at most the batches in
flight, and adding files processes only those. The manifest is rebuilt from records every run and
sorted by path, so it is the same whatever order or how many runs produced them.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import datetime as dt
import hashlib
import json
import platform
from collections import Counter
from dataclasses import dataclass
from importlib import metadata as pkg_metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..io import FolderLock, atomic_write_json, atomic_write_parquet
from ..models import faces
from ..models.weights import resolve, try_resolve
from .config import BuildConfig
from .decode import list_inputs
from .dedup import group_duplicates
from .metadata import MetadataTable, age_group_label, normalise_gender, normalise_label, parse_metadata_age, read_metadata
from .schema import MANIFEST_SCHEMA, RECORD_SCHEMA, SCHEMA_VERSION
from .stages import process_batch

ALGO_VERSION = "1"   # bump when the per-image stage changes its output for the same options


@dataclass(frozen=True)
class BuildResult:
    out: Path
    manifest: pa.Table
    processed: int          # files run through the per-image stage in this run
    reused: int             # records taken from earlier runs


def _model_names(config: BuildConfig) -> list[str]:
    names = faces.model_names(faces.resolve_detector(config.detector))
    if config.predict_attributes:
        names += ["age-v1", "gender-v1"]
    return names


def _stage_key(stage: dict) -> str:
    return hashlib.sha256(json.dumps(stage, sort_keys=True).encode()).hexdigest()[:12]


def _load_shards(shard_dir: Path) -> dict[str, dict]:
    records: dict[str, dict] = {}
    if not shard_dir.is_dir():
        return records
    for shard in sorted(shard_dir.glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns):
        try:
            table = pq.read_table(shard, schema=RECORD_SCHEMA)
        except Exception:
            continue  # a shard that cannot be read is redone, never trusted
        for record in table.to_pylist():
            records[record["source_path"]] = record
    return records


def _write_shard(shard_dir: Path, records: list[dict]) -> None:
    key = hashlib.sha256("\n".join(f"{r['source_path']}:{r['file_size']}:{r['file_mtime_ns']}" for r in records).encode())
    atomic_write_parquet(shard_dir / f"batch-{key.hexdigest()[:16]}.parquet", pa.Table.from_pylist(records, schema=RECORD_SCHEMA))


def _tasks(src: Path, out: Path) -> list[dict]:
    tasks = []
    for path in list_inputs(src):
        if out == path or out in path.parents:
            continue  # an OUT inside SRC must not feed on itself
        stat = path.stat()
        tasks.append({"source_path": path.relative_to(src).as_posix(), "abs_path": str(path),
                      "file_size": stat.st_size, "file_mtime_ns": stat.st_mtime_ns})
    return tasks


def _run_stage(batches: list[list[dict]], stage: dict, out: Path, workers: int, on_done) -> None:
    if workers == 1 or len(batches) <= 1:
        for batch in batches:
            on_done(process_batch(batch, stage, str(out)))
        return
    # spawn, not fork: a forked child of a process whose torch/OpenMP threads ran can hang
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(process_batch, batch, stage, str(out)) for batch in batches]
        for future in cf.as_completed(futures):
            on_done(future.result())


def _attributes(record: dict, meta: dict | None, bins: tuple[int, ...], race_model: str | None) -> dict:
    meta = meta or {}
    out = {}
    gender = normalise_gender(meta.get("gender"))
    if gender:
        out.update(gender=gender, gender_source="metadata", gender_confidence=1.0)
    elif record.get("pred_gender"):
        out.update(gender=record["pred_gender"], gender_source="gender-v1", gender_confidence=record["pred_gender_confidence"])
    else:
        out.update(gender="unknown", gender_source="none", gender_confidence=None)
    years, group = parse_metadata_age(meta, bins)
    if years is not None or group is not None:
        out.update(age_years=years, age_group=group, age_source="metadata", age_confidence=1.0)
    elif record.get("pred_age_years") is not None:
        out.update(age_years=record["pred_age_years"], age_group=age_group_label(record["pred_age_years"], bins),
                   age_source="age-v1", age_confidence=record["pred_age_confidence"])
    else:
        out.update(age_years=None, age_group="unknown", age_source="none", age_confidence=None)
    race = normalise_label(meta.get("race"))
    if race:
        out.update(race=race, race_source="metadata", race_confidence=1.0)
    elif record.get("pred_race"):
        out.update(race=record["pred_race"], race_source=race_model, race_confidence=record["pred_race_confidence"])
    else:
        out.update(race="unknown", race_source="none", race_confidence=None)
    identity = meta.get("identity_id")
    out["identity_id"] = None if identity is None or str(identity) in ("", "nan") else str(identity)
    return out


def assemble_manifest(records: list[dict], config: BuildConfig, metadata: MetadataTable | None,
                      race_model: str | None) -> pa.Table:
    """Whole-set steps on per-image records: deduplication, status, attributes, carried metadata."""
    records = sorted(records, key=lambda r: r["source_path"])
    usable = [i for i, r in enumerate(records) if r["reject_reason"] is None]
    pixel = [records[i]["pixel_sha256"] for i in usable]
    phash = [int(records[i]["phash"], 16) for i in usable]
    # Representative: largest face in source pixels, then sharpest, then the earliest path.
    quality = [(records[i]["face_size_px"], records[i]["sharpness"], -k) for k, i in enumerate(usable)]
    rep, kind = group_duplicates(pixel, phash, config.near_threshold, quality)
    group_of = {usable[k]: (usable[rep[k]], kind[k]) for k in range(len(usable))}
    rows = []
    for i, record in enumerate(records):
        row = {f.name: record.get(f.name) for f in MANIFEST_SCHEMA}
        if i in group_of:
            rep_index, match = group_of[i]
            row["duplicate_group"] = records[rep_index]["id"]
            if rep_index != i:
                row.update(status="duplicate", duplicate_of=records[rep_index]["id"], duplicate_kind=match)
            else:
                row["status"] = "ok"
        else:
            row["status"] = "rejected"
        meta = metadata.lookup(record["source_path"]) if metadata else None
        row.update(_attributes(record, meta, config.age_bins, race_model))
        if metadata:
            for name in metadata.carried:
                row[f"meta_{name}"] = (meta or {}).get(f"meta_{name}")
        rows.append(row)
    schema = MANIFEST_SCHEMA
    if metadata:
        for name in metadata.carried:
            values = pa.array([r[f"meta_{name}"] for r in rows])
            schema = schema.append(pa.field(f"meta_{name}", values.type if values.type != pa.null() else pa.string()))
    schema = schema.with_metadata({**MANIFEST_SCHEMA.metadata, b"drfhq.carried_columns": json.dumps(
        [f"meta_{n}" for n in (metadata.carried if metadata else ())]).encode()})
    return pa.Table.from_pylist(rows, schema=schema)


def _versions() -> dict:
    versions = {"drfhq-tools": __version__, "python": platform.python_version()}
    for name in ("numpy", "pillow", "dlib-bin", "onnxruntime", "pyarrow", "scipy"):
        try:
            versions[name] = pkg_metadata.version(name)
        except pkg_metadata.PackageNotFoundError:
            pass
    return versions


def _prune_images(out: Path, manifest: pa.Table, known: list[dict]) -> None:
    """Delete the images that records of this build wrote (now or in earlier runs of the same options)
    and the manifest no longer uses (a source file removed or changed). Works from the records, so the
    images folder is never listed."""
    keep = {p for p in manifest.column("image_path").to_pylist() if p}
    for path in {r.get("image_path") for r in known} - keep - {None}:
        (out / path).unlink(missing_ok=True)


def build_dataset(config: BuildConfig, progress=None) -> BuildResult:
    """Run a build. `progress(done, total)` is called after each batch (the CLI draws a bar with it)."""
    config.validate()
    metadata = read_metadata(config.metadata) if config.metadata else None
    models = {name: resolve(name) for name in _model_names(config)}   # missing weights fail before any write
    race = try_resolve("fairface-race") if config.predict_attributes else None
    if race:
        models["fairface-race"] = race
    src, out = Path(config.src).resolve(), Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with FolderLock(out, "drfhq build-dataset"):
        stage = {**config.stage_fields(), "race_model_sha256": race.sha256 if race else None, "algo": ALGO_VERSION,
                 "schema": SCHEMA_VERSION}
        shard_dir = out / ".work" / _stage_key(stage)
        cached = _load_shards(shard_dir)
        earlier = list(cached.values())
        tasks = _tasks(src, out)
        fresh = {}
        todo = []
        for task in tasks:
            hit = cached.get(task["source_path"])
            if hit and hit["file_size"] == task["file_size"] and hit["file_mtime_ns"] == task["file_mtime_ns"]:
                fresh[task["source_path"]] = hit
            else:
                todo.append(task)
        reused = len(fresh)
        batches = [todo[i:i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
        done = 0
        if progress:
            progress(done, len(todo))

        def on_done(batch_records: list[dict]) -> None:
            nonlocal done
            _write_shard(shard_dir, batch_records)
            for record in batch_records:
                fresh[record["source_path"]] = record
            done += len(batch_records)
            if progress:
                progress(done, len(todo))

        _run_stage(batches, stage, out, config.workers, on_done)
        records = [fresh[t["source_path"]] for t in tasks]
        manifest = assemble_manifest(records, config, metadata, "fairface-race" if race else None)
        atomic_write_parquet(out / "manifest.parquet", manifest)
        # Compact the shards into one so the work folder stays small; written before the old ones go.
        if len(list(shard_dir.glob("*.parquet"))) > 1:
            compact = shard_dir / f"compact-{_stage_key({'n': len(records), 't': started})}.parquet"
            atomic_write_parquet(compact, pa.Table.from_pylist(records, schema=RECORD_SCHEMA))
            for shard in shard_dir.glob("*.parquet"):
                if shard != compact:
                    shard.unlink(missing_ok=True)
        _prune_images(out, manifest, [*earlier, *records])
        counts = Counter(manifest.column("status").to_pylist())
        atomic_write_json(out / "build.json", {
            "schema_version": SCHEMA_VERSION, "config": config, "stage_key": shard_dir.name,
            "started_at": started, "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
            "models": {name: {"path": str(m.path), "sha256": m.sha256, "licence": m.spec.licence} for name, m in models.items()},
            "files": len(tasks), "processed_this_run": len(todo), "reused": reused,
            "status_counts": dict(counts),
        })
    return BuildResult(out=out, manifest=manifest, processed=len(todo), reused=reused)
