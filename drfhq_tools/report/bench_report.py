"""What a bench run shows a person: a rich table of methods x metrics and an HTML page with charts
of every metric per slice (with intervals) and a sample grid (input | each method)."""

from __future__ import annotations

import html
import math
from pathlib import Path

from rich.table import Table

from ..io import atomic_save_image, atomic_write_text
from .grid import path_grid

METRIC_LABELS = {"fid": "FID ↓", "fid_inf": "FID∞ ↓", "kid": "KID ↓", "precision": "precision ↑", "recall": "recall ↑",
                 "density": "density ↑", "coverage": "coverage ↑", "identity_cosine": "identity cos ↑",
                 "identity_cosine_dlib": "identity cos (dlib) ↑", "identity_cosine_arcface": "identity cos (ArcFace) ↑",
                 "landmark_nme": "landmark NME ↓", "face_found": "faces found ↑", "skin_delta_e": "skin ΔE00 ↓", "lpips": "LPIPS", "lpips_random": "LPIPS (random!)"}


METRIC_HELP = {
    "fid": "Fréchet distance of Inception features to the real set. Biased upward at small n: compare rows only at equal n, or read FID∞.",
    "fid_inf": "FID extrapolated to infinitely many images (Chong & Forsyth 2020): FID of subsets at 15 sizes, a line in 1/n, its intercept. Comparable across slices of different size; noisy below ~50 images.",
    "kid": "Kernel inception distance (unbiased); ± is the spread over random subsets.",
    "precision": "Share of outputs inside the real set's k-NN manifold (k=5): are outputs realistic?",
    "recall": "Share of real images inside the outputs' k-NN manifold: do outputs cover the real variety?",
    "density": "How many real neighbourhoods hold each output, / k: about 1 when outputs are distributed like real faces.",
    "coverage": "Share of real images whose neighbourhood holds an output.",
    "identity_cosine": "Cosine of face descriptors of render and output, each on its own face found again (protocol says which crop). 1 = same descriptor.",
    "landmark_nme": "68-landmark distance between render and output, each found again, over the inter-ocular distance: geometry kept (0 = unchanged).",
    "face_found": "Share of outputs in which a face is found again (the detector that finds landmarks). Identity, landmark NME and skin colour are averaged over these faces only: read them with this.",
    "skin_delta_e": "Mean CIEDE2000 between render and output over the skin (cheeks, forehead, nose; not eyes, brows, mouth): colour kept. About 1 is a just-noticeable difference.",
    "lpips": "Perceptual distance between render and output: how much the image changed.",
}


def _fmt(value, digits=3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _cell(row: dict | None, metric: str) -> str:
    if row is None:
        return "–"
    text = _fmt(row["value"], 5 if metric == "kid" else 3)
    if metric == "kid" and row["std"] is not None:
        text += f" ± {_fmt(row['std'], 5)}"
    if row.get("ci_low") is not None:
        text += f" [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
    if row.get("n_failed"):
        text += f" ({row['n_failed']} no face)"
    if row.get("flag"):
        text += f" ({row['flag']})"
    return text


def overall_table(run) -> Table:
    """Metrics down, methods across (slice: all), with n per method."""
    metrics = [m for m in METRIC_LABELS if any(r["metric"] == m for r in run.results)]
    methods = list(dict.fromkeys(r["method"] for r in run.results))
    by = {(r["method"], r["metric"]): r for r in run.results if r["slice"] == "all"}
    table = Table(title=f"bench {run.run_id} (slice: all)")
    table.add_column("metric")
    for method in methods:
        n = by.get((method, "fid"), {}).get("n")
        table.add_column(f"{method} (n={n})" if n is not None else method, justify="right")
    for m in metrics:
        table.add_row(METRIC_LABELS[m], *[_cell(by.get((method, m)), m) for method in methods])
    return table


def _chart(run, metric: str, slice_name: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in run.results if r["metric"] == metric and r["slice"] in (slice_name, "all") and r["value"] is not None]
    if not any(r["slice"] == slice_name for r in rows):
        return False
    methods = list(dict.fromkeys(r["method"] for r in rows))
    groups = ["all", *sorted({r["grp"] for r in rows if r["slice"] == slice_name} - {"all"})]   # the overall value first
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
    grid = path_grid([[m.paths[i] for m in run.methods] for i in ids], tile, labels=[m.name for m in run.methods])
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
        if m.missing or m.resized or m.extra or m.unreadable:
            parts.append(f"<p class=warn>{html.escape(m.name)}: {len(m.paths)} outputs used; missing {len(m.missing)}, "
                         f"resized to the dataset's size with {html.escape(config.resize)} {len(m.resized)}, unreadable "
                         f"{len(m.unreadable)}, matching no row {len(m.extra)}</p>")
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
        charts = []
        for s in slices:
            name = f"{metric}_{s.replace('*', '-x-')}.png"
            if _chart(run, metric, s, assets / name):
                charts.append(f"<img src='report_assets/{name}'>")
        if charts:
            help_text = METRIC_HELP.get(metric.rsplit("_dlib", 1)[0].rsplit("_arcface", 1)[0], "")
            parts.append(f"<h3>{html.escape(METRIC_LABELS.get(metric, metric))}</h3><p>{html.escape(help_text)}</p>{''.join(charts)}")
    parts.append("<p>Whiskers: 95% bootstrap intervals of the mean (identities resampled as clusters when the dataset "
                 "has identity_id); KID: ± its spread over subsets. Rows flagged small_n have fewer images than "
                 "--fid-min-n.</p>")
    style = ("<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;"
             "padding:3px 8px;font-size:13px} img{max-width:100%;margin:6px} .warn{color:#a60}</style>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>drfhq bench</title>{style}</head><body>{''.join(parts)}</body></html>"
    atomic_write_text(out / "report.html", page)
    return out / "report.html"
