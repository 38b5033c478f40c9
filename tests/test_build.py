"""build-dataset as a whole: one row per file, bad input kept as rows, metadata, resume, locking."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import copy_files
from drfhq_tools.dataset.build import build_dataset
from drfhq_tools.dataset.config import BuildConfig
from drfhq_tools.dataset.schema import LIST_LENGTHS, MANIFEST_SCHEMA, check_list_lengths
from drfhq_tools.errors import DrfhqError, MissingWeightsError
from drfhq_tools.io import FolderLock

DRFHQ = [sys.executable, "-m", "drfhq_tools.cli"]


def _frl(fixtures, n):
    return sorted((fixtures / "real/frl_canada").glob("*.jpg"))[:n]


def test_manifest_schema_and_one_row_per_input_file(fixture_dataset, fixtures):
    table = pq.read_table(fixture_dataset / "manifest.parquet")
    inputs = [p for p in fixtures.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".png")]
    assert table.num_rows == len(inputs)
    assert table.schema.remove_metadata().equals(MANIFEST_SCHEMA.remove_metadata())
    assert table.schema.metadata[b"drfhq.schema_version"] == b"2.0"
    m = table.to_pandas()
    assert m.id.is_unique and m.source_path.is_unique
    ok = m[m.status == "ok"]
    assert ok.landmarks_68.map(len).eq(136).all() and ok.align_quad.map(len).eq(8).all()
    assert (ok.gender_source == "gender-v1").all() and ok.gender.isin(["female", "male"]).all()
    assert (ok.age_source == "age-v1").all() and ok.age_group.notna().all()
    assert (m.race == "unknown").all() and (m.race_source == "none").all()     # no race model here
    for rel in ok.image_path:
        assert (fixture_dataset / rel).is_file()
    record = json.loads((fixture_dataset / "build.json").read_text())
    assert set(record["models"]) >= {"dlib-landmarks-68", "age-v1", "gender-v1"}
    assert all(len(v["sha256"]) == 64 for v in record["models"].values())
    assert record["config"]["size"] == 256


def test_bad_inputs_become_rejected_rows_and_the_build_goes_on(fixtures, tmp_path):
    src = copy_files(_frl(fixtures, 2), tmp_path / "src")
    (src / "empty.png").write_bytes(b"")
    (src / "notes.bin").write_bytes(b"\x00\x01 not an image")
    (src / "half.jpg").write_bytes((fixtures / "real/frl_canada/003f.jpg").read_bytes()[:3000])
    out = tmp_path / "out"
    build_dataset(BuildConfig(src=str(src), out=str(out), size=256))
    m = pq.read_table(out / "manifest.parquet").to_pandas().set_index("source_path")
    assert m.loc["empty.png", "reject_reason"] == "empty_file"
    assert m.loc["notes.bin", "reject_reason"] == "not_an_image"
    assert m.loc["half.jpg", "reject_reason"] == "truncated"
    # Rejected rows have no coordinates: stored as null plain lists, which every pyarrow reads back (a
    # null fixed-size list fails before apache/arrow GH-35692's fix)
    stored = pq.read_schema(out / "manifest.parquet")
    assert not any(pa.types.is_fixed_size_list(f.type) for f in stored)
    assert m.loc[["empty.png", "notes.bin", "half.jpg"], ["bbox", "landmarks_68", "align_quad"]].isna().all().all()
    assert (m.loc[[p.name for p in _frl(fixtures, 2)], "status"] == "ok").all()


def test_metadata_wins_and_other_columns_are_carried(fixtures, tmp_path):
    files = _frl(fixtures, 4)
    src = copy_files(files, tmp_path / "src")
    meta = tmp_path / "meta.csv"
    meta.write_text("stem,sex,age,ethnicity,character_id,lighting\n"
                    f"{files[0].stem},F,34,East Asian,c1,key\n{files[1].stem},male,20-29,,c2,rim\n")
    out = tmp_path / "out"
    build_dataset(BuildConfig(src=str(src), out=str(out), size=256, metadata=str(meta)))
    m = pq.read_table(out / "manifest.parquet").to_pandas().set_index("source_path")
    a, b, c = m.loc[files[0].name], m.loc[files[1].name], m.loc[files[2].name]
    assert (a.gender, a.gender_source, a.gender_confidence) == ("female", "metadata", 1.0)
    assert (a.age_years, a.age_group, a.age_source) == (34.0, "30-39", "metadata")
    assert (a.race, a.race_source, a.identity_id, a.meta_lighting) == ("east_asian", "metadata", "c1", "key")
    assert (b.age_group, b.age_source) == ("20-29", "metadata") and b.race == "unknown"
    assert c.gender_source == "gender-v1" and pd.isna(c.meta_lighting)


def test_adding_files_processes_only_the_new_ones(fixtures, tmp_path):
    src = copy_files(_frl(fixtures, 3), tmp_path / "src")
    out = tmp_path / "out"
    first = build_dataset(BuildConfig(src=str(src), out=str(out), size=256))
    assert (first.processed, first.reused) == (3, 0)
    copy_files(_frl(fixtures, 5)[3:], src)
    second = build_dataset(BuildConfig(src=str(src), out=str(out), size=256))
    assert (second.processed, second.reused) == (2, 3)
    assert second.manifest.num_rows == 5
    os.utime(src / _frl(fixtures, 1)[0].name, ns=(1, 1))     # a touched file counts as changed
    third = build_dataset(BuildConfig(src=str(src), out=str(out), size=256))
    assert (third.processed, third.reused) == (1, 4)


def test_a_work_cache_of_schema_1_1_is_reused(fixtures, tmp_path):
    """1.1 stored coordinates as fixed-size lists; its cached records read back into 2.0's types."""
    src = copy_files(_frl(fixtures, 2), tmp_path / "src")
    out = tmp_path / "out"
    first = build_dataset(BuildConfig(src=str(src), out=str(out), size=128, predict_attributes=False))
    old_types = {name: pa.list_(pa.float32(), length) for name, length in LIST_LENGTHS.items()}
    for shard in (out / ".work").rglob("*.parquet"):
        table = pq.read_table(shard)
        old = pa.schema([f.with_type(old_types.get(f.name, f.type)) for f in table.schema], metadata=table.schema.metadata)
        pq.write_table(table.cast(old), shard)
        assert pa.types.is_fixed_size_list(pq.read_schema(shard).field("bbox").type)
    second = build_dataset(BuildConfig(src=str(src), out=str(out), size=128, predict_attributes=False))
    assert (second.processed, second.reused) == (0, 2)
    assert second.manifest.equals(first.manifest)


def test_coordinate_lists_of_the_wrong_length_are_refused_with_the_file():
    table = pa.table({"source_path": ["a.png", "b.png", "c.png"],
                      **{name: pa.array([[0.0] * length, None, [0.0] * length], pa.list_(pa.float32()))
                         for name, length in LIST_LENGTHS.items()}})
    check_list_lengths(table)
    bad = table.set_column(table.schema.get_field_index("landmarks_5"), "landmarks_5",
                           pa.array([[0.0] * 10, None, [0.0] * 9], pa.list_(pa.float32())))
    with pytest.raises(ValueError, match="c.png: landmarks_5 has 9 values, not 10"):
        check_list_lengths(bad)


def test_killed_build_resumes_to_the_same_manifest(fixtures, tmp_path):
    src = copy_files(_frl(fixtures, 14), tmp_path / "src")
    args = ["--size", "256", "--batch-size", "2", "--workers", "1"]
    reference = tmp_path / "reference"
    subprocess.run([*DRFHQ, "build-dataset", str(src), str(reference), *args], check=True, capture_output=True)
    out = tmp_path / "out"
    proc = subprocess.Popen([*DRFHQ, "build-dataset", str(src), str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob(".work/*/batch-*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.parquet").exists(), "the run finished before it could be killed"
    resumed = subprocess.run([*DRFHQ, "build-dataset", str(src), str(out), *args], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert pq.read_table(out / "manifest.parquet").equals(pq.read_table(reference / "manifest.parquet"))
    record = json.loads((out / "build.json").read_text())
    assert record["reused"] >= 4 and record["processed_this_run"] <= 10
    listing = lambda root: sorted(str(p.relative_to(root)) for p in (root / "images").rglob("*.png"))
    assert listing(out) == listing(reference) and all(p.count("/") == 2 for p in listing(out))   # images/<id[:2]>/<id>.png


def test_a_second_build_on_the_same_out_is_refused(fixtures, tmp_path):
    src = copy_files(_frl(fixtures, 1), tmp_path / "src")
    out = tmp_path / "out"
    with FolderLock(out, "drfhq build-dataset"):
        with pytest.raises(DrfhqError, match="another drfhq build-dataset is running"):
            build_dataset(BuildConfig(src=str(src), out=str(out), size=256))


def test_options_are_checked_before_anything_is_written(tmp_path, fixtures):
    out = tmp_path / "never"
    bad = [["--size", "300"], ["--detector", "magic"], ["--workers", "0"], ["--multi-face", "all"],
           ["--metadata", str(tmp_path / "missing.csv")], ["--age-bins", "5,10"]]
    for extra in bad:
        result = subprocess.run([*DRFHQ, "build-dataset", str(fixtures / "nonface"), str(out), *extra],
                                capture_output=True, text=True)
        assert result.returncode == 2, (extra, result.stderr)
        assert "error:" in result.stderr
        assert not out.exists()
    for field, value, words in (("near_cosine", 1.5, "--near-cosine 1.5"), ("near_residual", -0.1, "--near-residual -0.1")):
        with pytest.raises(DrfhqError, match=words):
            BuildConfig(src=str(fixtures / "nonface"), out=str(out), **{field: value}).validate()


def test_missing_weights_name_the_file_and_the_fix(tmp_path, monkeypatch, fixtures):
    monkeypatch.setenv("DRFHQ_HOME", str(tmp_path / "empty-home"))
    with pytest.raises(MissingWeightsError) as info:
        build_dataset(BuildConfig(src=str(fixtures / "nonface"), out=str(tmp_path / "out")))
    text = str(info.value)
    assert "age-v1.onnx" in text and "empty-home/age-v1/age-v1.onnx" in text and "setup-offline" in text
    assert not (tmp_path / "out").exists()


def test_images_live_in_id_subfolders_and_a_removed_source_takes_its_image_along(fixtures, tmp_path):
    src = copy_files(_frl(fixtures, 3), tmp_path / "src")
    out = tmp_path / "out"
    build_dataset(BuildConfig(src=str(src), out=str(out), size=128, predict_attributes=False))
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert all(r["image_path"] == f"images/{r['id'][:2]}/{r['id']}.png" and (out / r["image_path"]).is_file() for r in rows)
    gone = next(r for r in rows if r["source_path"] == _frl(fixtures, 3)[0].name)
    (src / gone["source_path"]).unlink()
    result = build_dataset(BuildConfig(src=str(src), out=str(out), size=128, predict_attributes=False))
    assert result.processed == 0 and result.reused == 2
    assert not (out / gone["image_path"]).exists()
    assert all((out / r["image_path"]).is_file() for r in rows if r["id"] != gone["id"])


def test_build_summary_counts_each_source_folder(fixture_dataset):
    import re
    from pathlib import Path
    from types import SimpleNamespace

    from rich.console import Console

    from drfhq_tools.report.summary import print_build_summary

    manifest = pq.read_table(fixture_dataset / "manifest.parquet")
    console = Console(record=True, width=240)
    print_build_summary(SimpleNamespace(manifest=manifest, out=fixture_dataset, processed=0, reused=manifest.num_rows), console)
    text = console.export_text()
    m = manifest.select(["source_path", "status"]).to_pandas()
    counts = pd.crosstab(m.source_path.map(lambda p: str(Path(p).parent)), m.status)
    assert len(counts) >= 4 and counts["rejected"].sum() > 0 and "by source folder" in text
    statuses = sorted(counts.columns, key=lambda s: (s != "ok", s))
    for folder, row in counts[statuses].iterrows():
        cells = r"\s*│\s*".join(str(int(n)) for n in row)
        assert re.search(rf"{re.escape(folder)}\s*│\s*{cells}\s*│", text), folder
