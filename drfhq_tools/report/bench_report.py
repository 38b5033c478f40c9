"""What a bench run shows a person: a rich table of methods x metrics and an HTML page with charts
of every metric per slice (with intervals) and a sample grid (input | each method)."""

from __future__ import annotations

import html
import math
from pathlib import Path

from PIL import Image, ImageDraw
from rich.table import Table

from ..io import atomic_save_image, atomic_write_text

METRIC_LABELS = {"fid": "FID ↓", "kid": "KID ↓", "identity_cosine": "identity cos ↑", "lpips": "LPIPS", "lpips_random": "LPIPS (random!)"}


def _fmt(value, digits=3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def overall_table(run) -> Table:
    metrics = [m for m in METRIC_LABELS if any(r["metric"] == m for r in run.results)]
    table = Table(title=f"bench {run.run_id} (slice: all)")
    table.add_column("method")
    table.add_column("n", justify="right")
    for m in metrics:
        table.add_column(METRIC_LABELS[m], justify="right")
    for method in dict.fromkeys(r["method"] for r in run.results):
        cells, n = [], 0
        for m in metrics:
            row = next((r for r in run.results if r["method"] == method and r["metric"] == m and r["slice"] == "all"), None)
            if row is None:
                cells.append("–")
                continue
            n = row["n"]
            text = _fmt(row["value"], 5 if m == "kid" else 3)
            if m == "kid" and row["std"] is not None:
                text += f" ± {_fmt(row['std'], 5)}"
            if row.get("ci_low") is not None:
                text += f" [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
            if row.get("flag"):
                text += f" ({row['flag']})"
            cells.append(text)
        table.add_row(method, str(n), *cells)
    return table


def _chart(run, metric: str, slice_name: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in run.results if r["metric"] == metric and r["slice"] == slice_name and r["value"] is not None]
    if not rows:
        return False
    methods = list(dict.fromkeys(r["method"] for r in rows))
    groups = sorted(dict.fromkeys(r["grp"] for r in rows))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(groups) + 2), 3.2), dpi=110)
    for k, method in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for g, group in enumerate(groups):
            r = next((r for r in rows if r["method"] == method and r["grp"] == group), None)
            if r is None:
                continue
            xs.append(g + (k - (len(methods) - 1) / 2) * width)
            ys.append(r["value"])
            if r.get("ci_low") is not None:
                lo.append(r["value"] - r["ci_low"])
                hi.append(r["ci_high"] - r["value"])
            elif r.get("std") is not None:
                lo.append(r["std"])
                hi.append(r["std"])
            else:
                lo.append(0)
                hi.append(0)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=method)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{g}\nn={next((r['n'] for r in rows if r['grp'] == g), 0)}" for g in groups], fontsize=8)
    ax.set_title(f"{METRIC_LABELS.get(metric, metric)} by {slice_name}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def sample_grid(run, rows: list[dict], path: Path, samples: int, tile: int = 160) -> bool:
    ids = [r["id"] for r in rows if all(r["id"] in m.paths for m in run.methods)][:samples]
    if not ids:
        return False
    columns = [m.name for m in run.methods]
    label_h = 18
    grid = Image.new("RGB", (tile * len(columns), label_h + tile * len(ids)), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(columns):
        draw.text((c * tile + 4, 3), name, fill="black")
    for r, image_id in enumerate(ids):
        for c, method in enumerate(run.methods):
            with Image.open(method.paths[image_id]) as img:
                grid.paste(img.convert("RGB").resize((tile, tile), Image.LANCZOS), (c * tile, label_h + r * tile))
    atomic_save_image(path, grid)
    return True


def write_html_report(run, rows: list[dict], config) -> Path:
    out = Path(run.out)
    assets = out / "report_assets"
    assets.mkdir(exist_ok=True)
    parts = [f"<h1>drfhq bench {html.escape(run.run_id)}</h1>",
             f"<p>dataset: {html.escape(str(config.dataset))} &middot; real: {html.escape(str(config.real))} &middot; "
             f"methods: {html.escape(', '.join(m.name for m in run.methods))}</p>"]
    for m in run.methods:
        if m.missing or m.wrong_size:
            parts.append(f"<p class=warn>{html.escape(m.name)}: {len(m.paths)} outputs used; missing {len(m.missing)}, "
                         f"wrong size {len(m.wrong_size)}, extra {len(m.extra)}</p>")
    parts.append("<h2>Overall</h2><table><tr><th>method</th><th>metric</th><th>n</th><th>value</th><th>spread</th><th>extractor</th><th>flag</th></tr>")
    for r in run.results:
        if r["slice"] == "all":
            spread = f"95% CI [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r.get("ci_low") is not None else (
                f"± {_fmt(r['std'], 5)}" if r.get("std") is not None else "")
            parts.append(f"<tr><td>{html.escape(r['method'])}</td><td>{r['metric']}</td><td>{r['n']}</td>"
                         f"<td>{_fmt(r['value'], 5)}</td><td>{spread}</td><td>{html.escape(r['extractor'])} "
                         f"({r['weights_sha256'][:12]})</td><td>{r.get('flag') or ''}</td></tr>")
    parts.append("</table>")
    if sample_grid(run, rows, assets / "samples.png", config.samples):
        parts.append("<h2>Samples (input | each method)</h2><img src='report_assets/samples.png'>")
    parts.append("<h2>By slice</h2>")
    slices = [s for s in dict.fromkeys(r["slice"] for r in run.results) if s != "all"]
    for metric in dict.fromkeys(r["metric"] for r in run.results):
        for s in slices:
            name = f"{metric}_{s.replace('*', '-x-')}.png"
            if _chart(run, metric, s, assets / name):
                parts.append(f"<img src='report_assets/{name}'>")
    parts.append("<p>FID rows flagged small_n come from fewer images than the configured minimum: FID is biased upward "
                 "at small n, so compare such rows only at equal n. KID is unbiased; its spread is over subsets.</p>")
    style = ("<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;"
             "padding:3px 8px;font-size:13px} img{max-width:100%;margin:6px} .warn{color:#a60}</style>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>drfhq bench</title>{style}</head><body>{''.join(parts)}</body></html>"
    atomic_write_text(out / "report.html", page)
    return out / "report.html"
