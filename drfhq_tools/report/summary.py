"""Rich tables that close a run."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from ..dataset.rows import source_dir


def _counts_table(title: str, counts: Counter) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("value")
    table.add_column("n", justify="right")
    for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))):
        table.add_row(str(value), str(n))
    return table


def _status_by_folder_table(counts: Counter) -> Table:
    statuses = sorted({status for _, status in counts}, key=lambda s: (s != "ok", s))
    table = Table(title="by source folder", title_justify="left")
    table.add_column("folder")
    for status in statuses:
        table.add_column(status, justify="right")
    for folder in sorted({folder for folder, _ in counts}):
        table.add_row(folder, *(str(counts.get((folder, status), 0)) for status in statuses))
    return table


def print_build_summary(result, console: Console) -> None:
    manifest = result.manifest
    status = manifest.column("status").to_pylist()
    rows = manifest.select(["source_path", "status", "reject_reason", "duplicate_kind", "gender", "age_group", "race"]).to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    console.print(f"[bold]{result.out}[/]: {len(status)} files, {result.processed} processed now, {result.reused} reused")
    tables = [
        _counts_table("status", Counter(status)),
        _counts_table("rejected: reason", Counter(r["reject_reason"] for r in rows if r["status"] == "rejected")),
        _counts_table("duplicate: found by", Counter(r["duplicate_kind"] for r in rows if r["status"] == "duplicate")),
        _counts_table("ok: gender", Counter(r["gender"] for r in ok)),
        _counts_table("ok: age group", Counter(r["age_group"] for r in ok)),
        _counts_table("ok: race", Counter(r["race"] for r in ok)),
    ]
    from rich.columns import Columns

    console.print(Columns(tables))
    folders = Counter((source_dir(r["source_path"]), r["status"]) for r in rows)
    if len({folder for folder, _ in folders}) > 1:      # one folder's renders failing shows here, not in the totals
        console.print(_status_by_folder_table(folders))
    console.print(f"manifest: {result.out / 'manifest.parquet'}   build record: {result.out / 'build.json'}")
