"""What bench slices by: the dataset's tags (gender, age_group, race), the folder each render came from
(`source_dir`: datasets gathered from several renderers, artists or collections differ by it), and any
column carried from `build-dataset --metadata` (`meta_<name>`: expression, lighting, pose band, ...).
Slices are grouped by value, so a column must be categorical: a continuous one (yaw in degrees) would
make one group per image, and is refused with a hint to bin it in the metadata first."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..dataset.rows import source_dir
from ..errors import DrfhqError

TAG_COLUMNS = ("gender", "age_group", "race")        # the default slices
DERIVED_COLUMNS = ("source_dir",)                   # computed from the manifest, not stored in it
MAX_GROUPS = 64                                     # distinct values a slice column may have among usable rows
UNKNOWN = "unknown"


def slice_value(row: dict, column: str) -> str:
    """A row's group in one slice column; a missing value (None, NaN, empty) is 'unknown'. False and 0 are values."""
    if column == "source_dir":
        return source_dir(row["source_path"])
    value = row.get(column)
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    return str(value)


def slice_groups(rows: list[dict], specs: list[str]) -> list[tuple[str, str, list[str]]]:
    """(slice, group, ids) for the overall set, then each slice column or crossing (columns joined by '*',
    groups by '|'), groups in sorted order."""
    out = [("all", "all", [r["id"] for r in rows])]
    for spec in specs:
        columns = spec.split("*")
        groups: dict[str, list[str]] = {}
        for r in rows:
            groups.setdefault("|".join(slice_value(r, c) for c in columns), []).append(r["id"])
        out += [(spec, g, ids) for g, ids in sorted(groups.items())]
    return out


def check_slices(manifest: Path, slices: tuple[str, ...], cross: tuple[str, ...]) -> None:
    """Every column named in --slices and --cross exists in the dataset and is categorical (at most
    MAX_GROUPS values among the usable rows); read before any work, so a typo costs nothing."""
    names = list(dict.fromkeys(c for spec in (*slices, *cross) for c in spec.split("*")))
    for cross_spec in cross:
        if len(cross_spec.split("*")) < 2:
            raise DrfhqError(f"--cross {cross_spec}: join two or more slice columns with '*', e.g. gender*age_group")
    schema = pq.read_schema(manifest)
    carried = [n for n in schema.names if n.startswith("meta_")]
    allowed = [*TAG_COLUMNS, *DERIVED_COLUMNS, *carried]
    for name in names:
        if name not in allowed:
            hint = f"; this dataset carries {', '.join(carried)}" if carried else (
                "; columns of a metadata file given to `build-dataset --metadata` come as meta_<name>")
            raise DrfhqError(f"--slices/--cross {name}: not a slice column of {manifest} (choose from "
                             f"{', '.join([*TAG_COLUMNS, *DERIVED_COLUMNS])}{hint})")
    stored = [n for n in names if n not in DERIVED_COLUMNS]
    if not stored:
        return
    table = pq.read_table(manifest, columns=["status", *stored])
    table = table.filter(pc.equal(table["status"], "ok"))
    for name in stored:      # distinct values first (vectorised: a manifest may hold millions of rows), then as grouped
        values = {slice_value({name: v}, name) for v in pc.unique(table[name]).to_pylist()}
        if len(values) > MAX_GROUPS:
            raise DrfhqError(f"--slices/--cross {name}: {len(values)} distinct values among the usable rows of {manifest} "
                             f"(at most {MAX_GROUPS} make slices); bin it into bands in the metadata file first, "
                             "e.g. a yaw_band column of -30..-10, -10..10, 10..30")
