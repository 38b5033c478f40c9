"""Per-render metadata tables (CSV, JSON, Parquet) and the rules that turn them into attribute tags.

The key column is one of: source_path, path, relpath, file, filename (a path relative to SRC), or
stem / name (a file stem). Recognised attribute columns (case-insensitive): gender or sex; age or
age_years (years) or age_group; race or ethnicity; identity_id, identity, character_id or character.
All other columns are carried into the manifest as meta_<name>.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from ..age_groups import age_group_label, age_group_labels  # noqa: F401  (re-exported: one binning everywhere)
from ..errors import DrfhqError

PATH_KEYS = ("source_path", "path", "relpath", "relative_path", "file", "filename")
STEM_KEYS = ("stem", "name")
SYNONYMS = {
    "gender": ("gender", "sex"),
    "age_years": ("age_years", "age"),
    "age_group": ("age_group", "age_bin"),
    "race": ("race", "ethnicity"),
    "identity_id": ("identity_id", "identity", "character_id", "character", "subject_id"),
}
_GENDER = {"m": "male", "male": "male", "man": "male", "boy": "male",
           "f": "female", "female": "female", "woman": "female", "girl": "female"}


def normalise_gender(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    return _GENDER.get(text, text or None)


def normalise_label(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = re.sub(r"[\s\-/]+", "_", str(value).strip().lower())
    return text or None


@dataclass(frozen=True)
class MetadataTable:
    path: str
    by_path: dict[str, dict]
    by_stem: dict[str, dict]
    carried: tuple[str, ...]            # names of carried columns (without the meta_ prefix)

    def lookup(self, source_path: str) -> dict | None:
        hit = self.by_path.get(source_path)
        if hit is None:
            hit = self.by_stem.get(PurePosixPath(source_path).stem)
        return hit


def read_metadata(path: str | Path) -> MetadataTable:
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        elif suffix in (".json", ".jsonl"):
            frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise DrfhqError(f"{path}: metadata must be .csv, .json, .jsonl or .parquet")
    except DrfhqError:
        raise
    except Exception as exc:
        raise DrfhqError(f"{path}: cannot read metadata table: {exc}") from None
    lower = {c.lower(): c for c in frame.columns}
    key_path = next((lower[k] for k in PATH_KEYS if k in lower), None)
    key_stem = next((lower[k] for k in STEM_KEYS if k in lower), None)
    if key_path is None and key_stem is None:
        raise DrfhqError(f"{path}: no key column; name one of {', '.join(PATH_KEYS + STEM_KEYS)}")
    rename = {}
    for target, names in SYNONYMS.items():
        for name in names:
            if name in lower and lower[name] not in rename:
                rename[lower[name]] = target
                break
    keys = {c for c in (key_path, key_stem) if c}
    carried = tuple(c for c in frame.columns if c not in rename and c not in keys)
    for column in carried:   # CSV cells arrive as text: keep a column numeric when all its values are
        try:
            frame[column] = pd.to_numeric(frame[column])
        except (ValueError, TypeError):
            pass
    by_path, by_stem = {}, {}
    for index, row in enumerate(frame.to_dict(orient="records")):
        entry = {rename.get(k, f"meta_{k}"): (None if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in row.items() if k not in keys}
        if key_path:
            rel = PurePosixPath(str(row[key_path]).replace("\\", "/")).as_posix().lstrip("./")
            if rel in by_path:
                raise DrfhqError(f"{path}: row {index + 2}: path '{rel}' appears twice")
            by_path[rel] = entry
            by_stem.setdefault(PurePosixPath(rel).stem, entry)
        else:
            stem = str(row[key_stem])
            if stem in by_stem:
                raise DrfhqError(f"{path}: row {index + 2}: stem '{stem}' appears twice")
            by_stem[stem] = entry
    return MetadataTable(str(path), by_path, by_stem, carried)


def parse_metadata_age(entry: dict, bins: tuple[int, ...]) -> tuple[float | None, str | None]:
    """(years, group) from a metadata row: numeric years, or a group label such as '20-29' or '70+'."""
    years, group = None, None
    raw = entry.get("age_years")
    if raw is not None and str(raw).strip() not in ("", "nan", "None"):
        try:
            years = float(raw)
        except (TypeError, ValueError):
            group = str(raw).strip()
    raw_group = entry.get("age_group")
    if raw_group is not None and str(raw_group).strip() not in ("", "nan", "None"):
        group = str(raw_group).strip()
    if years is not None and group is None:
        group = age_group_label(years, bins)
    return years, group
