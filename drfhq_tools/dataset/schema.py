"""The manifest's explicit, versioned pyarrow schema. Column meanings: manifests/MANIFEST_SCHEMA.md.

Two schemas: RECORD_SCHEMA holds what the per-image stage computes from one file's pixels (cached in
work shards and reused by incremental builds); MANIFEST_SCHEMA adds what needs the whole set (status
after deduplication, duplicate groups, attributes merged with metadata). Carried metadata columns are
appended after MANIFEST_SCHEMA as `meta_<name>`.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = "2.0"
# What the per-image stage computes, in the work cache's key: 2.0 changed only how coordinates are
# stored (below), and cached 1.1 shards read back into the new types, so incremental builds keep them.
RECORD_VERSION = "1.1"

f32, i32, i64, s = pa.float32(), pa.int32(), pa.int64(), pa.string()

RECORD_FIELDS = [
    pa.field("id", s, nullable=False),                 # stable row id: first 16 hex of sha256(source_path)
    pa.field("source_path", s, nullable=False),        # path relative to SRC, '/' separated
    pa.field("file_size", i64, nullable=False),
    pa.field("file_mtime_ns", i64, nullable=False),    # with file_size: the "unchanged since last build" check
    pa.field("file_sha256", s),                        # hash of the file's bytes
    pa.field("pixel_sha256", s),                       # hash of the decoded pixels: exact-duplicate key
    pa.field("width", i32),
    pa.field("height", i32),
    pa.field("source_mode", s),                        # PIL mode of the file (RGB, RGBA, I;16, CMYK, P, ...)
    pa.field("had_alpha", pa.bool_()),
    pa.field("reject_reason", s),                      # null unless the file or face is unusable
    pa.field("reject_detail", s),
    pa.field("face_count", i32),                       # faces found (after the score filter)
    pa.field("bbox", pa.list_(f32)),                   # 4: left, top, right, bottom (source pixels)
    pa.field("detector", s),
    pa.field("detector_score", f32),
    pa.field("landmarks_68", pa.list_(f32)),           # 136: x0, y0, x1, y1, ... iBUG 68 order, source pixels
    pa.field("landmarks_5", pa.list_(f32)),            # 10: dlib 5-point, source pixels
    pa.field("align_quad", pa.list_(f32)),             # 8: FFHQ quad corners TL, BL, BR, TR as x, y
    pa.field("face_size_px", f32),                     # side of the FFHQ quad in source pixels
    pa.field("sharpness", f32),                        # variance of the Laplacian on the 256-px aligned face
    pa.field("yaw_deg", f32),
    pa.field("roll_deg", f32),
    pa.field("phash", s),                              # 256-bit perceptual hash of the inner face, hex
    pa.field("thumb_descriptor", pa.binary(64)),       # 8x8 grey thumbnail of the whole picture, unit norm, int8
    pa.field("image_path", s),                         # aligned PNG relative to OUT (images/<id[:2]>/<id>.png)
    pa.field("pred_gender", s),
    pa.field("pred_gender_confidence", f32),
    pa.field("pred_age_years", f32),
    pa.field("pred_age_confidence", f32),
    pa.field("pred_race", s),
    pa.field("pred_race_confidence", f32),
]
RECORD_SCHEMA = pa.schema(RECORD_FIELDS, metadata={"drfhq.schema": "record", "drfhq.schema_version": SCHEMA_VERSION})

MANIFEST_FIELDS = [
    *[f for f in RECORD_FIELDS if not f.name.startswith("pred_")],
    pa.field("status", s, nullable=False),             # ok | duplicate | rejected
    pa.field("duplicate_group", s),                    # id of the group's representative (null: no face)
    pa.field("duplicate_of", s),                       # id of the kept representative; null unless status=duplicate
    pa.field("duplicate_kind", s),                     # cascade step: exact | phash | embedding | representative
    pa.field("duplicate_score", f32),                  # registration residual to the representative (null: exact)
    pa.field("gender", s),                             # female | male | other metadata value | unknown
    pa.field("gender_source", s),                      # metadata | model name | none
    pa.field("gender_confidence", f32),
    pa.field("age_years", f32),
    pa.field("age_group", s),                          # label of the configured bin, e.g. 20-29
    pa.field("age_source", s),
    pa.field("age_confidence", f32),
    pa.field("race", s),
    pa.field("race_source", s),
    pa.field("race_confidence", f32),
    pa.field("identity_id", s),                        # character / identity id from metadata
]
MANIFEST_SCHEMA = pa.schema(MANIFEST_FIELDS, metadata={"drfhq.schema": "manifest", "drfhq.schema_version": SCHEMA_VERSION})

STATUSES = ("ok", "duplicate", "rejected")

# Coordinates are plain lists of a known length, not fixed-size lists: a null fixed-size list (every
# rejected row) cannot be read back from Parquet by pyarrow before the fix of apache/arrow GH-35692
# (pyarrow 21: "Expected all lists to be of size=4 but index 2 had size=0"), nor by some other readers.
# Their lengths are checked when a manifest is assembled instead.
LIST_LENGTHS = {"bbox": 4, "landmarks_68": 136, "landmarks_5": 10, "align_quad": 8}


def check_list_lengths(table: pa.Table) -> None:
    """Raise ValueError, naming the column and the first row's source path, when a coordinate list that
    is present has another length than LIST_LENGTHS says (null lists are rows without a face)."""
    for name, length in LIST_LENGTHS.items():
        lengths = pc.list_value_length(table.column(name))
        wrong = pc.fill_null(pc.not_equal(lengths, length), False)
        if pc.any(wrong).as_py():
            k = pc.index(wrong, True).as_py()
            raise ValueError(f"{table.column('source_path')[k].as_py()}: {name} has {lengths[k].as_py()} values, "
                             f"not {length}")
