"""`drfhq build-dataset`: list inputs, run the per-image stage where needed, then the whole-set steps.

Resumable by construction: each finished batch of records is written as one atomic Parquet shard
under OUT/.work/<stage-key>/, keyed by the options that change per-image results. A new run reuses
every record whose file (path, size, mtime) is unchanged, so a killed run loses at most the batches in
flight, and adding files processes only those. The manifest is rebuilt from records every run and
sorted by path, so it is the same whatever order or how many runs produced them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import concurrent.futures as cf
import json
import multiprocessing
import platform
from collections import Counter
from dataclasses import dataclass
from importlib import metadata as pkg_metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from .. import __version__
from ..io import FolderLock, atomic_write_json, atomic_write_parquet
from ..models import faces
from ..models.weights import resolve, try_resolve
from .config import BuildConfig
from .decode import RejectedImage, decode_image, list_inputs
from .dedup import LOSSLESS_PATTERN, group_duplicates, hex_hash_words, representative_quality
from .verify import DESCRIPTOR_SIDE, RESIDUAL_THRESHOLD, compare_pictures, descriptor_vectors, pose_gap
from .metadata import MetadataTable, age_group_label, normalise_gender, normalise_label, parse_metadata_age, read_metadata
from .schema import MANIFEST_SCHEMA, RECORD_SCHEMA, RECORD_VERSION, SCHEMA_VERSION, check_list_lengths
from .engines import run_local, run_ray

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


def _load_shards(shard_dir: Path) -> pa.Table:
    """Every record of earlier runs with these options, the newest one of each source path (shards are
    read in the order they were written), as one table."""
    tables = []
    if shard_dir.is_dir():
        for shard in sorted(shard_dir.glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns):
            try:
                tables.append(pq.read_table(shard, schema=RECORD_SCHEMA))
            except Exception:
                continue  # a shard that cannot be read is redone, never trusted
    if not tables:
        return RECORD_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    paths = table.column("source_path").to_numpy(zero_copy_only=False)
    _, last = np.unique(paths[::-1], return_index=True)
    if len(last) == len(paths):        # every path once (a compacted work folder): no copy
        return table
    return table.take(pa.array(np.sort(len(paths) - 1 - last)))   # the newest record of each path


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


class PictureComparer:
    """The build's `compare` for the dedup cascade: the pose guard, then registration of the two source
    pictures (decoded as the per-image stage decodes them; the last few kept). Called with a list of
    (path_a, landmarks_a, path_b, landmarks_b); long lists are spread over `workers` processes, each
    taking the checks of a few pictures so that its decoded pictures are reused. Counts what it did."""

    def __init__(self, src: str | Path, background: str, max_pixels: int, workers: int = 1,
                 threshold: float = RESIDUAL_THRESHOLD, keep: int = 32):
        self.src, self.background, self.max_pixels, self.workers = str(src), background, max_pixels, workers
        self.threshold = threshold
        self.keep = keep
        self.pictures: dict[str, Image.Image] = {}
        self.counts: Counter = Counter()

    def _picture(self, path: str) -> Image.Image:
        if path not in self.pictures:
            if len(self.pictures) >= self.keep:
                self.pictures.pop(next(iter(self.pictures)))
            rgb = decode_image(Path(self.src) / path, self.background, self.max_pixels).rgb
            self.pictures[path] = Image.fromarray(rgb)
        return self.pictures[path]

    def check(self, path_a: str, landmarks_a, path_b: str, landmarks_b) -> tuple[bool, float | None, str]:
        """(same picture?, score, what happened)."""
        if pose_gap(landmarks_a, landmarks_b):
            return False, None, "refused_by_pose"
        try:
            result = compare_pictures(self._picture(path_a), self._picture(path_b), landmarks_a, landmarks_b, self.threshold)
        except (RejectedImage, OSError):
            return False, None, "unreadable"     # a source changed or vanished since its record: never merge on a guess
        same = result.same_picture(self.threshold)
        return same, result.score, "same_picture" if same else "different_pictures"

    def __call__(self, tasks: list[tuple]) -> list[tuple[bool, float | None]]:
        if self.workers > 1 and len(tasks) >= PARALLEL_CHECKS:
            order = sorted(range(len(tasks)), key=lambda k: tasks[k][0])     # one picture's checks together
            size = -(-len(order) // (4 * self.workers))
            chunks = [order[k:k + size] for k in range(0, len(order), size)]
            results: list = [None] * len(tasks)
            with cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_compare_chunk, self.src, self.background, self.max_pixels, self.threshold,
                                       [tasks[k] for k in chunk]): chunk for chunk in chunks}
                for future in cf.as_completed(futures):
                    for k, result in zip(futures[future], future.result()):
                        results[k] = result
        else:
            results = [self.check(*task) for task in tasks]
        self.counts.update(outcome for _, _, outcome in results)
        self.counts["registered"] += sum(outcome in ("same_picture", "different_pictures") for _, _, outcome in results)
        return [(same, score) for same, score, _ in results]


PARALLEL_CHECKS = 64          # fewer checks than this run in the calling process
_worker_comparer: PictureComparer | None = None


def _compare_chunk(src: str, background: str, max_pixels: int, threshold: float, tasks: list[tuple]) -> list[tuple]:
    global _worker_comparer
    settings = (src, background, max_pixels, threshold)
    if _worker_comparer is None or (_worker_comparer.src, _worker_comparer.background, _worker_comparer.max_pixels,
                                    _worker_comparer.threshold) != settings:
        _worker_comparer = PictureComparer(*settings[:3], threshold=threshold)
    return [_worker_comparer.check(*task) for task in tasks]


def _descriptors(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(n x 64 unit vectors, valid) straight from the Arrow buffer: no Python object per row."""
    array = column.combine_chunks()
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    raw = np.frombuffer(array.buffers()[1], dtype=np.int8, count=(array.offset + len(array)) * DESCRIPTOR_SIDE ** 2)
    raw = raw[array.offset * DESCRIPTOR_SIDE ** 2:].reshape(len(array), DESCRIPTOR_SIDE ** 2)
    return descriptor_vectors(np.where(valid[:, None], raw, 0)), valid


def _column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


def assemble_manifest(records: pa.Table | list[dict], config: BuildConfig, metadata: MetadataTable | None,
                      race_model: str | None, compare=None) -> pa.Table:
    """Whole-set steps on the per-image records, column by column (a million rows never become a million
    dicts): deduplication, status, attributes merged with metadata, carried metadata columns.

    compare([(path_a, landmarks_a, path_b, landmarks_b), ...]) -> [(same picture?, score), ...] confirms the
    near-duplicate proposals (build passes a PictureComparer); None merges every proposal unconfirmed."""
    if not isinstance(records, pa.Table):
        records = pa.Table.from_pylist(records, schema=RECORD_SCHEMA)
    # rows in path order; each column is taken in that order when it is used, never the whole table at once
    order = pc.sort_indices(records.column("source_path"))

    def column(name: str) -> pa.ChunkedArray:
        return records.column(name).take(order)

    n = records.num_rows
    usable = np.flatnonzero(column("reject_reason").is_null().to_numpy(zero_copy_only=False))
    ids = np.asarray(column("id").to_pylist(), dtype=object)
    usable_rows = pa.array(usable)
    pixel = column("pixel_sha256").take(usable_rows).to_pylist()
    phash = hex_hash_words(column("phash").take(usable_rows).to_pylist())
    lossless = pc.match_substring_regex(column("source_path").take(usable_rows), LOSSLESS_PATTERN)
    quality = representative_quality(column("face_size_px").to_numpy(zero_copy_only=False)[usable],
                                     lossless.to_numpy(zero_copy_only=False),
                                     column("sharpness").to_numpy(zero_copy_only=False)[usable])
    descriptors = _descriptors(column("thumb_descriptor").take(usable_rows))
    confirm = None
    if compare is not None:
        at = order.to_numpy()[usable]             # a usable row's place in `records`: read one row, not a column
        paths_in, landmarks_in = records.column("source_path"), records.column("landmarks_68")

        def row(i: int) -> tuple:
            return paths_in[int(at[i])].as_py(), np.asarray(landmarks_in[int(at[i])].as_py(), dtype=np.float64)

        def confirm(pairs: list[tuple[int, int]]) -> list:
            return compare([(*row(i), *row(j)) for i, j in pairs])

    rep, kind, score = group_duplicates(pixel, phash, config.near_threshold, quality, descriptors, confirm, config.near_cosine)
    status = np.full(n, "rejected", dtype=object)
    group = np.full(n, None, dtype=object)
    duplicate_of = np.full(n, None, dtype=object)
    duplicate_kind = np.full(n, None, dtype=object)
    duplicate_score = np.full(n, None, dtype=object)
    rep_rows = usable[np.asarray(rep, dtype=np.int64)] if len(usable) else usable
    group[usable] = ids[rep_rows]
    is_copy = rep_rows != usable
    status[usable] = np.where(is_copy, "duplicate", "ok")
    duplicate_of[usable[is_copy]] = ids[rep_rows[is_copy]]
    duplicate_kind[usable] = np.asarray(kind, dtype=object)
    duplicate_score[usable] = np.asarray(score, dtype=object)
    # attributes: metadata first, then the models; a block of rows at a time, each block straight into
    # Arrow, so Python objects never exist for more than ATTRIBUTE_BLOCK rows
    types = {f.name: f.type for f in MANIFEST_SCHEMA}
    attribute_names = [name for name in types if name in ATTRIBUTE_COLUMNS]
    attributes = {name: [] for name in attribute_names}
    carried = {f"meta_{name}": [] for name in (metadata.carried if metadata else ())}
    predicted_names = ("pred_gender", "pred_gender_confidence", "pred_age_years", "pred_age_confidence", "pred_race",
                       "pred_race_confidence")
    for start in range(0, n, ATTRIBUTE_BLOCK):
        block = order.slice(start, ATTRIBUTE_BLOCK)
        predicted = {name: records.column(name).take(block).to_pylist() for name in predicted_names}
        paths = records.column("source_path").take(block).to_pylist()
        values = {name: [] for name in attribute_names}
        extra = {name: [] for name in carried}
        for k, path in enumerate(paths):
            meta = metadata.lookup(path) if metadata else None
            row = _attributes({name: got[k] for name, got in predicted.items()}, meta, config.age_bins, race_model)
            for name in attribute_names:
                values[name].append(row.get(name))
            for name in carried:
                extra[name].append((meta or {}).get(name))
        for name in attribute_names:
            attributes[name].append(pa.array(values[name], type=types[name]))
        for name in carried:
            carried[name].extend(extra[name])      # carried columns' types are found on the whole column
    whole_set = {"status": status, "duplicate_group": group, "duplicate_of": duplicate_of, "duplicate_kind": duplicate_kind,
                 "duplicate_score": duplicate_score}
    columns, fields = [], []
    for f in MANIFEST_SCHEMA:
        if f.name in whole_set:
            columns.append(pa.array(whole_set[f.name].tolist(), type=f.type))
        elif f.name in attributes:
            columns.append(pa.chunked_array(attributes[f.name], type=f.type))
        else:
            columns.append(column(f.name).cast(f.type))               # the record's own columns, not copied row by row
        fields.append(f)
    for name, values in carried.items():
        array = pa.array(values)
        columns.append(array if array.type != pa.null() else array.cast(pa.string()))
        fields.append(pa.field(name, columns[-1].type))
    schema = pa.schema(fields, metadata={**MANIFEST_SCHEMA.metadata, b"drfhq.carried_columns": json.dumps(list(carried)).encode()})
    manifest = pa.Table.from_arrays(columns, schema=schema)
    check_list_lengths(manifest)
    return manifest


ATTRIBUTE_BLOCK = 65536
ATTRIBUTE_COLUMNS = ("gender", "gender_source", "gender_confidence", "age_years", "age_group", "age_source", "age_confidence",
                     "race", "race_source", "race_confidence", "identity_id")


def _versions() -> dict:
    versions = {"drfhq-tools": __version__, "python": platform.python_version()}
    for name in ("numpy", "pillow", "dlib-bin", "onnxruntime", "pyarrow", "scipy"):
        try:
            versions[name] = pkg_metadata.version(name)
        except pkg_metadata.PackageNotFoundError:
            pass
    return versions


def _prune_images(out: Path, manifest: pa.Table, written: set) -> None:
    """Delete the images that records of this build wrote (now or in earlier runs of the same options)
    and the manifest no longer uses (a source file removed or changed). Works from the records, so the
    images folder is never listed."""
    keep = {p for p in manifest.column("image_path").to_pylist() if p}
    for path in written - keep - {None}:
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
                 "schema": RECORD_VERSION}
        shard_dir = out / ".work" / _stage_key(stage)
        cached = _load_shards(shard_dir)
        known = {path: (size, mtime, k) for k, (path, size, mtime) in enumerate(zip(
            _column(cached, "source_path"), _column(cached, "file_size"), _column(cached, "file_mtime_ns")))}
        tasks = _tasks(src, out)
        reuse, todo = [], []
        for task in tasks:
            hit = known.get(task["source_path"])
            if hit and hit[0] == task["file_size"] and hit[1] == task["file_mtime_ns"]:
                reuse.append(hit[2])
            else:
                todo.append(task)
        del known
        batches = [todo[i:i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
        fresh: list[pa.Table] = []
        done = 0
        if progress:
            progress(done, len(todo))

        def on_done(batch_records: list[dict]) -> None:
            nonlocal done
            _write_shard(shard_dir, batch_records)
            fresh.append(pa.Table.from_pylist(batch_records, schema=RECORD_SCHEMA))
            done += len(batch_records)
            if progress:
                progress(done, len(todo))

        if config.engine == "ray":
            engine = run_ray(batches, stage, out, config, on_done)
        else:
            engine = run_local(batches, stage, out, config.workers, on_done)
        records = pa.concat_tables([cached.take(pa.array(reuse, type=pa.int64())), *fresh])
        comparer = PictureComparer(src, config.background, config.max_pixels, config.workers, config.near_residual)
        manifest = assemble_manifest(records, config, metadata, "fairface-race" if race else None, comparer)
        atomic_write_parquet(out / "manifest.parquet", manifest)
        # Compact the shards into one so the work folder stays small; written before the old ones go.
        if len(list(shard_dir.glob("*.parquet"))) > 1:
            compact = shard_dir / f"compact-{_stage_key({'n': records.num_rows, 't': started})}.parquet"
            atomic_write_parquet(compact, records)
            for shard in shard_dir.glob("*.parquet"):
                if shard != compact:
                    shard.unlink(missing_ok=True)
        _prune_images(out, manifest, {*_column(cached, "image_path"), *_column(records, "image_path")})
        counts = Counter(manifest.column("status").to_pylist())
        atomic_write_json(out / "build.json", {
            "schema_version": SCHEMA_VERSION, "config": config, "stage_key": shard_dir.name,
            "started_at": started, "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
            "models": {name: {"path": str(m.path), "sha256": m.sha256, "licence": m.spec.licence} for name, m in models.items()},
            "files": len(tasks), "processed_this_run": len(todo), "reused": len(reuse), "engine": engine,
            "status_counts": dict(counts), "near_duplicate_checks": dict(comparer.counts),
        })
    return BuildResult(out=out, manifest=manifest, processed=len(todo), reused=len(reuse))
