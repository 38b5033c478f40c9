"""Result tables: DuckDB (`results.duckdb`) and the same tables as Parquet, with explicit schemas.

A run folder accumulates runs: each bench adds rows under a new run_id. The DuckDB file is rebuilt
into a temporary file and renamed over the old one, so a reader never sees half a run.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DrfhqError
from ..io import atomic_write_parquet

RESULTS_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("method", pa.string(), nullable=False),
    pa.field("metric", pa.string(), nullable=False),      # see README "Metrics": fid, fid_inf, kid, precision, recall, density,
                                                          # coverage, identity_cosine[_net], lpips, landmark_nme, face_found,
                                                          # skin_delta_e
    pa.field("slice", pa.string(), nullable=False),       # all | gender | age_group | race | crossings a*b
    pa.field("grp", pa.string(), nullable=False),         # group value; 'all' for the overall row
    pa.field("n", pa.int64(), nullable=False),            # images the value is over
    pa.field("n_missing", pa.int64()),                    # dataset rows in the group without an output
    pa.field("n_failed", pa.int64()),                     # outputs without a value (no face found again), counted, not dropped silently
    pa.field("value", pa.float64()),
    pa.field("std", pa.float64()),                        # KID: over subsets; per-image metrics: over images
    pa.field("ci_low", pa.float64()),                     # 95% bootstrap interval of the mean (clusters = identity_id when known)
    pa.field("ci_high", pa.float64()),
    pa.field("flag", pa.string()),                        # small_n | subset_reduced | too_few | single
    pa.field("protocol", pa.string()),                    # how the number was made (sample counts, seeds)
    pa.field("extractor", pa.string(), nullable=False),
    pa.field("weights_sha256", pa.string(), nullable=False),
    pa.field("created_at", pa.string(), nullable=False),
])

PER_IMAGE_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("method", pa.string(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("metric", pa.string(), nullable=False),
    pa.field("value", pa.float64()),                      # null where it could not be measured (see flag)
    pa.field("flag", pa.string()),                        # no_face_found; resized_from_WxH_FILTER (';'-joined)
    pa.field("extractor", pa.string(), nullable=False),
    pa.field("weights_sha256", pa.string(), nullable=False),
])

IMAGES_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("source_path", pa.string()),
    pa.field("gender", pa.string()),
    pa.field("age_group", pa.string()),
    pa.field("race", pa.string()),
    pa.field("identity_id", pa.string()),
])


METHODS_SCHEMA = pa.schema([          # where each method's images came from (one row per run and method)
    pa.field("run_id", pa.string()),
    pa.field("method", pa.string()),
    pa.field("source", pa.string()),          # built-in, a folder, or a `drfhq train` run (generator methods)
    pa.field("outputs", pa.int64()),
    pa.field("checkpoint_sha256", pa.string()),   # JSON {g_real, g_render} for generator methods
    pa.field("output_key", pa.string()),      # translate's key: checkpoint hashes + every setting that changes the images
    pa.field("settings", pa.string()),        # JSON of those settings
])


def _append(existing: Path, new: pa.Table, schema: pa.Schema) -> pa.Table:
    """Earlier runs' rows, then the new ones; columns added since an earlier run are null in its rows."""
    if existing.is_file():
        old = pq.read_table(existing)
        columns = [old.column(f.name).cast(f.type) if f.name in old.column_names else pa.nulls(len(old), f.type)
                   for f in schema]
        return pa.concat_tables([pa.Table.from_arrays(columns, schema=schema), new])
    return new


def write_run(run, rows: list[dict], config) -> None:
    out = Path(run.out)
    tables = {
        "results": (pa.Table.from_pylist([{f.name: r.get(f.name) for f in RESULTS_SCHEMA} for r in run.results], schema=RESULTS_SCHEMA), RESULTS_SCHEMA),
        "per_image": (pa.Table.from_pylist(run.per_image, schema=PER_IMAGE_SCHEMA), PER_IMAGE_SCHEMA),
        "images": (pa.Table.from_pylist([{"run_id": run.run_id, "image_id": r["id"], **{k: r.get(k) for k in
                                          ("source_path", "gender", "age_group", "race", "identity_id")}} for r in rows],
                                        schema=IMAGES_SCHEMA), IMAGES_SCHEMA),
        "methods": (pa.Table.from_pylist([{
            "run_id": run.run_id, "method": m.name, "source": m.source, "outputs": len(m.paths),
            "checkpoint_sha256": json.dumps(m.provenance["checkpoint_sha256"]) if m.provenance else None,
            "output_key": m.provenance["key"] if m.provenance else None,
            "settings": json.dumps({**m.provenance["settings"], "swap_resolution": m.provenance.get("swap_resolution")})
            if m.provenance else None} for m in run.methods], schema=METHODS_SCHEMA), METHODS_SCHEMA),
    }
    merged = {}
    for name, (table, schema) in tables.items():
        merged[name] = _append(out / f"{name}.parquet", table, schema)
    fd, tmp = tempfile.mkstemp(prefix=".results.", suffix=".duckdb", dir=out)
    os.close(fd)
    os.unlink(tmp)
    try:
        con = duckdb.connect(tmp)
        for name, table in merged.items():
            con.register(f"_{name}", table)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}")
            con.unregister(f"_{name}")
        con.close()
        os.replace(tmp, out / "results.duckdb")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for name, table in merged.items():
        atomic_write_parquet(out / f"{name}.parquet", table)


def query(run_dir: str | Path, sql: str):
    path = Path(run_dir) / "results.duckdb"
    if not path.is_file():
        raise DrfhqError(f"{run_dir}: no results.duckdb; run `drfhq bench --out {run_dir}` first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
    except duckdb.Error as exc:
        raise DrfhqError(f"query failed: {exc}") from None
    finally:
        con.close()
