"""Which latent space should translate invert into? Measured, at equal steps and from the same start.

For each `--space` (w, w+, w+reg) the transfer method runs on the same renders with the same run;
project-real (the projector's own W+) and the input are the references. Then bench scores all of them
against the real photos: FID and KID (realism), identity cosine to the render (dlib descriptor), LPIPS to
the render. Printed as a table and written, with a picture (render | transfer in each space |
project-real), to --out: spaces.json, spaces.md, spaces.jpg, and degenerate.json/.jpg: the outputs
checked for the issue's collapses (dark, faint) apart from translate's own rule.

    python benchmarks/bench_spaces.py --dataset DATASET --ckpt TRAIN_RUN --real ../shared/fixtures/real \
        --out OUT [--steps 20] [--limit 8] [--spaces w,w+,w+reg,w+reg@0.03] [--device cpu]
`w+reg@WEIGHT` is w+reg with that --space-regularize (the default 0.1 lies between w+, weight 0, and one w).
Each transfer column's identity is also paired per render with project-real's (the rule's bar), overall
and in each group of --slices (default source_dir: the folder each render came from).
`--stage translate` only translates (on a GPU machine, say); `--stage bench` then scores the folders that
the same arguments name (no --ckpt needed), where bench's weights are.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--ckpt", default=None, help="the train run (not needed with --stage bench)")
    parser.add_argument("--real", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--spaces", default="w,w+,w+reg")
    parser.add_argument("--start", default="mean")
    parser.add_argument("--lpips-net", default="vgg")
    parser.add_argument("--w-noise", type=float, default=0.0, help="exploration noise on w (translate's default 0)")
    parser.add_argument("--lr", type=float, default=None, help="the inversion's learning rate (default: translate's)")
    parser.add_argument("--project-real-spaces", default="w+",
                        help="spaces in which project-real (the identity bar the default must meet) is also inverted")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stage", default="all", choices=("all", "translate", "bench"))
    parser.add_argument("--slices", default="source_dir", help="bench slices for the per-group table ('' for none)")
    args = parser.parse_args()
    if args.stage != "bench" and not args.ckpt:
        parser.error("--ckpt is needed to translate")
    spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    try:
        settings = {spec: space_setting(spec) for spec in spaces}
    except ValueError as exc:
        parser.error(str(exc))

    from drfhq_tools.bench.config import BenchConfig
    from drfhq_tools.bench.run import run_bench
    from drfhq_tools.bench.slices import slice_groups
    from drfhq_tools.dataset.rows import dataset_rows
    from drfhq_tools.gan.translate import TranslateConfig, translate

    out = Path(args.out)
    common = dict(dataset=args.dataset, ckpt=args.ckpt, steps=args.steps, limit=args.limit, start=args.start,
                  lpips_net=args.lpips_net, batch=args.batch, device=args.device, w_noise=args.w_noise,
                  **({"lr": args.lr} if args.lr is not None else {}))
    folders, seconds = {}, {}
    for space in spaces:
        real_spaces = [s.strip() for s in args.project_real_spaces.split(",")]
        methods = ("transfer", "project-real") if space in real_spaces else ("transfer",)
        if args.stage != "bench":
            t0 = time.perf_counter()
            space_name, weight = settings[space]
            translate(TranslateConfig(out=str(out / space), methods=methods, space=space_name, **common,
                                      **({"space_regularize": weight} if weight is not None else {})), log=print)
            seconds[space] = time.perf_counter() - t0
        folders[f"transfer-{space}"] = out / space / "transfer"
        if space in real_spaces:    # plain "project-real" when it runs in one space only (older tables' name)
            folders["project-real" if len(real_spaces) == 1 else f"project-real-{space}"] = out / space / "project-real"
    timing = out / "translate-seconds.json"         # seconds per space of --stage translate calls, merged
    if args.stage == "translate":
        out.mkdir(parents=True, exist_ok=True)
        earlier = json.loads(timing.read_text()) if timing.is_file() else {}
        timing.write_text(json.dumps({"device": args.device, "steps": args.steps,
                                      "seconds_per_space": earlier.get("seconds_per_space", {}) | seconds}, indent=2))
        return
    if not seconds and timing.is_file():      # translated elsewhere: its steps are the table's
        saved = json.loads(timing.read_text())
        seconds, args.steps = saved["seconds_per_space"], saved["steps"]
    baselines = ("input", *[f"{name}={folder}" for name, folder in folders.items()])
    slices = tuple(s.strip() for s in args.slices.split(",") if s.strip())
    run = run_bench(BenchConfig(dataset=args.dataset, real=args.real, out=str(out / "bench"), baselines=baselines,
                                identity="dlib", limit=args.limit, device=args.device, bootstrap=1000, slices=slices), log=print)
    table = {}
    for r in run.results:
        if r["slice"] == "all":
            table.setdefault(r["method"], {})[r["metric"]] = r
    metrics = ("fid", "kid", "identity_cosine", "lpips")
    # identity is averaged over the outputs a face is found in: say how many, or a method whose failures show
    # no face would look better than one whose failures are faces of someone else
    import pandas as pd

    per_image = pd.DataFrame(run.per_image)
    ids = per_image[per_image["metric"] == "identity_cosine"].groupby("method")["value"]
    found = {m: f"{int(v.notna().sum())}/{len(v)}" for m, v in ids}
    header = "| method | steps | FID ↓ | KID ↓ | identity cosine ↑ [95% CI] | faces found | LPIPS to the render [95% CI] |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for method in ("input", *folders):
        cells = []
        for m in metrics:
            row = table.get(method, {}).get(m)
            if row is None or row["value"] is None:      # e.g. identity where no output shows a face
                cells.append("–")
            elif row.get("ci_low") is not None:
                cells.append(f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
            else:
                cells.append(f"{row['value']:.3f}" if m != "kid" else f"{row['value']:.4f} ± {row['std']:.4f}")
            if m == "identity_cosine":
                cells.append(found.get(method, "–"))
        steps = "–" if method == "input" else str(args.steps)
        lines.append(f"| {method} | {steps} | " + " | ".join(cells) + " |")
    rows, size = dataset_rows(Path(args.dataset), args.limit)
    identity = per_image[per_image["metric"] == "identity_cosine"].pivot_table(index="image_id", columns="method", values="value")
    bar = next((m for m in folders if m.startswith("project-real")), None)
    if bar is not None:
        lines += ["", f"Identity of each transfer column minus {bar}'s, paired per render on the faces found in both "
                      "(bootstrap, 10,000 resamples, seeded):", "", "| group | method | faces | mean difference [95% CI] |", "|---|---|---|---|"]
        for s, g, ids in slice_groups(rows, list(slices)):
            for method in (m for m in folders if m.startswith("transfer")):
                both = method in identity and bar in identity
                d = (identity.reindex(ids)[method] - identity.reindex(ids)[bar]).dropna().to_numpy() if both else np.array([])
                low, high = paired_interval(d)
                lines.append(f"| {g if s == 'all' else f'{s}={g}'} | {method} | {len(d)} | "
                             + (f"{d.mean():+.4f} [{low:+.4f}, {high:+.4f}] |" if len(d) > 1 else "– |"))
    for s in slices:
        lines += ["", f"By {s}:", "", "| group | method | n | FID ↓ | KID ↓ ± std | identity ↑ [95% CI] | LPIPS to the render |",
                  "|---|---|---|---|---|---|---|"]
        by = {(r["grp"], r["method"], r["metric"]): r for r in run.results if r["slice"] == s}
        for g in sorted({k[0] for k in by}):
            for method in ("input", *folders):
                lines.append(f"| {g} | {method} | " + " | ".join(slice_cells(by, g, method)) + " |")
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spaces.md").write_text(text + "\n")
    (out / "spaces.json").write_text(json.dumps({
        "args": vars(args), "seconds_per_space": seconds,
        "results": {m: {k: {f: v[f] for f in ("value", "std", "ci_low", "ci_high", "n", "protocol", "extractor", "weights_sha256")}
                        for k, v in ms.items()} for m, ms in table.items()}}, indent=2, default=str))

    columns = ["input", *folders]
    sheet([[Path(r["image_file"]) if name == "input" else folders[name] / f"{r['id']}.png" for name in columns]
           for r in rows], min(size, 160), out / "spaces.jpg")
    print(f"columns of {out / 'spaces.jpg'}: {', '.join(columns)}")
    report = degenerate_report(rows, folders, out)
    (out / "degenerate.json").write_text(json.dumps(report, indent=2))


SPACES = ("w", "w+", "w+reg")


def space_setting(spec: str) -> tuple[str, float | None]:
    """'w+reg@0.03' -> ('w+reg', 0.03); a plain space -> (space, None): translate's default weight."""
    space, at, weight = spec.partition("@")
    if space not in SPACES or (at and space != "w+reg"):
        raise ValueError(f"--spaces {spec}: one of {', '.join(SPACES)}, or w+reg@WEIGHT (its --space-regularize)")
    if not at:
        return space, None
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValueError(f"--spaces {spec}: the weight after @ is a number >= 0")
    return space, value


def slice_cells(by: dict, group: str, method: str) -> list[str]:
    """n, FID, KID ± std, identity [CI], LPIPS of one method in one slice group ('–' where there is none)."""
    def row(metric):
        r = by.get((group, method, metric))
        return r if r is not None and r["value"] is not None else None

    fid, kid, ident, lpips = row("fid"), row("kid"), row("identity_cosine"), row("lpips")
    return [str(fid["n"]) if fid else "–", f"{fid['value']:.1f}" if fid else "–",
            f"{kid['value']:.3f} ± {kid['std']:.3f}" if kid and kid["std"] is not None else (f"{kid['value']:.3f}" if kid else "–"),
            (f"{ident['value']:.4f}" + (f" [{ident['ci_low']:.4f}, {ident['ci_high']:.4f}]" if ident["ci_low"] is not None else "")) if ident else "–",
            f"{lpips['value']:.3f}" if lpips else "–"]


def source_table(run, rows, methods) -> tuple:
    """A bench run sliced by source_dir -> (markdown lines, one per slice group and method: n, FID, KID, identity
    [CI], faces found, LPIPS to the render, skin ΔE; the per-image identity cosines, image id x method; row id ->
    its source folder)."""
    import pandas as pd

    by = {(r["grp"], r["method"], r["metric"]): r for r in run.results}
    groups = ["all", *sorted({r["grp"] for r in run.results if r["slice"] == "source_dir"})]
    folder = {r["id"]: str(Path(r["source_path"]).parent) for r in rows}
    per_image = pd.DataFrame(run.per_image)
    identity = per_image[per_image.metric == "identity_cosine"].pivot_table(index="image_id", columns="method", values="value")
    found = per_image[per_image.metric == "face_found"]
    lines = ["| renders | n | method | FID ↓ | KID ↓ ± std | identity ↑ [95% CI] | faces found | LPIPS to the render | skin ΔE00 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        ids = [i for i in folder if g == "all" or folder[i] == g]
        for m in methods:
            r = lambda metric: by[(g, m, metric)]
            f = found[(found.method == m) & found.image_id.isin(ids)]["value"]
            lines.append(f"| {g} | {r('fid')['n']} | {m} | {r('fid')['value']:.1f} | {r('kid')['value']:.3f} ± {r('kid')['std']:.3f} | "
                         f"{r('identity_cosine')['value']:.4f} [{r('identity_cosine')['ci_low']:.4f}, {r('identity_cosine')['ci_high']:.4f}] | "
                         f"{int(f.sum()) if len(f) else '–'}/{len(ids)} | {r('lpips')['value']:.3f} | {r('skin_delta_e')['value']:.2f} |")
    return lines, identity, folder


def paired_identity(identity, pairs, subsets: dict[str, list[str]]) -> list[str]:
    """For each (a, b) method pair and named subset of image ids: the mean paired identity difference a - b with its
    95% bootstrap interval (10,000 resamples), over the faces found in both."""
    out = []
    for a, b in pairs:
        for name, ids in subsets.items():
            d = (identity.reindex(ids)[a] - identity.reindex(ids)[b]).dropna().to_numpy()
            if len(d) > 1:
                low, high = paired_interval(d)
                out.append(f"identity {a} - {b}, {name}, paired on {len(d)} faces: {d.mean():+.4f} [{low:+.4f}, {high:+.4f}]")
    return out


def identity_by_network(run, rows, methods, pairs, networks: dict[str, str]) -> list[str]:
    """A bench run scored by several identity networks (`networks`: name -> metric, e.g. {"faceres": "identity_cosine",
    "dlib": "identity_cosine_dlib"}) -> markdown lines: which networks; per source folder and method, each network's
    identity [CI] and LPIPS to the render; each pair's paired difference under each network, overall and per folder;
    and how far the networks agree on the first pair, render by render."""
    import pandas as pd

    by = {(r["grp"], r["method"], r["metric"]): r for r in run.results}
    first = {net: next(r for r in run.results if r["metric"] == metric) for net, metric in networks.items()}
    folder = {r["id"]: str(Path(r["source_path"]).parent) for r in rows}
    groups = ["all", *sorted(set(folder.values()))] if len(set(folder.values())) > 1 else ["all"]
    cell = lambda r: f"{r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
    lines = ["Networks: " + ", ".join(f"{net} = {r['extractor']} ({r['weights_sha256'][:12]})" for net, r in first.items())
             + "; identity on each output's own face found again.", "",
             "| renders | n | method | " + " | ".join(f"identity, {net} [95% CI]" for net in networks) + " | LPIPS to the render |",
             "|---|---|---|" + "---|" * len(networks) + "---|"]
    for g in groups:
        for m in methods:
            lines.append(f"| {g} | {by[(g, m, 'identity_cosine')]['n']} | {m} | "
                         + " | ".join(cell(by[(g, m, metric)]) for metric in networks.values()) + f" | {by[(g, m, 'lpips')]['value']:.3f} |")
    per_image = pd.DataFrame(run.per_image)
    subsets = {"all": list(folder), **{g: [i for i in folder if folder[i] == g] for g in groups[1:]}}
    lines += ["", "Paired (bootstrap, 10,000 resamples):"]
    deltas = {}
    for net, metric in networks.items():
        identity = per_image[per_image.metric == metric].pivot_table(index="image_id", columns="method", values="value")
        lines += ["", f"{net}:", *[f"- {p}" for p in paired_identity(identity, pairs, subsets)]]
        deltas[net] = identity[pairs[0][0]] - identity[pairs[0][1]]
    if len(networks) > 1:
        both = pd.concat(deltas, axis=1).dropna()
        a, b = list(networks)[:2]
        lines += ["", f"Per render, {pairs[0][0]} - {pairs[0][1]}: {a} and {b} differences correlate at "
                      f"r = {np.corrcoef(both[a], both[b])[0, 1]:.2f} over {len(both)} renders; they agree in sign on "
                      f"{int((np.sign(both[a]) == np.sign(both[b])).sum())}."]
    return lines


def paired_interval(d: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean of paired differences (NaN, NaN under two): bench's own bootstrap."""
    from drfhq_tools.bench.metrics import bootstrap_summary

    summary = bootstrap_summary(d, resamples, seed)
    return summary.ci_low, summary.ci_high


def sheet(grid: list[list[Path]], tile: int, path: Path) -> None:
    """A JPEG of square tiles, one row per list (a missing file leaves its tile white)."""
    from drfhq_tools.report.grid import path_grid

    path_grid(grid, tile).save(path, quality=90)


DARK_GREY, FAINT_RATIO = 25.0, 0.5    # the collapses: inner-face mean 5 to 13 of 255; near-flat faces


def degenerate_report(rows, folders: dict[str, Path], out: Path) -> dict:
    """Outputs checked apart from translate's own collapse rule (PIL and numpy, not its torch code), by the
    issue's symptoms on the inner face (the middle half across, rows 1/4 to 0.81, grey 0-255): dark, a
    mean under DARK_GREY and under half the render's (a render that is itself that dark is matched, not
    collapsed: the issue's were black on faces that were plainly visible); faint, a contrast under
    FAINT_RATIO times the render's (contrast: the std of the face box-filtered to 16 x 16, so that noise
    texture on a flat colour does not count). Beside them translate's flags, and a sheet of the faintest
    outputs next to their renders (degenerate.jpg)."""
    import pandas as pd

    def inner(path: Path) -> np.ndarray:
        with Image.open(path) as img:
            a = np.asarray(img.convert("L"), dtype=np.float32)
        s = a.shape[0]
        return a[s // 4:int(s * 0.81), s // 4:3 * s // 4]

    def contrast(face: np.ndarray) -> float:
        return float(np.asarray(Image.fromarray(face).resize((16, 16), Image.BOX)).std())

    renders = {r["id"]: inner(Path(r["image_file"])) for r in rows}
    render_contrast = {i: contrast(f) for i, f in renders.items()}
    print(f"inner faces of {len(rows)} outputs per method (grey 0-255): dark, mean < {DARK_GREY:g} and < half the render's; "
          f"faint, contrast < {FAINT_RATIO:g} x the render's")
    print(f"  {'method':22} {'min mean':>8} {'mean':>6} {'min contrast/render':>19} {f'< {DARK_GREY:g}':>4} {'dark':>4} {'faint':>5}"
          f" {'restarted':>9} {'pulled':>6} {'flagged':>7} {'gave up':>7} {'lifted':>6}")
    report, faintest = {}, []
    for name, folder in folders.items():
        faces = {i: inner(folder / f"{i}.png") for i in renders if (folder / f"{i}.png").is_file()}    # a cut-short run: fewer
        means = {i: float(f.mean()) for i, f in faces.items()}
        ratios = {i: contrast(f) / max(render_contrast[i], 1e-3) for i, f in faces.items()}
        table = pd.read_parquet(folder.parent / "translate.parquet")
        table = table[table["generator"] == ("g_real" if name.startswith("project-real") else "g_render")]
        entry = {
            "n": len(faces), "missing": len(renders) - len(faces), "min_mean": min(means.values()), "mean": float(np.mean(list(means.values()))),
            "min_contrast_ratio": min(ratios.values()),
            "dark": sorted(i for i, m in means.items() if m < DARK_GREY and m < 0.5 * float(renders[i].mean())),
            "under_dark_grey": sorted(i for i, m in means.items() if m < DARK_GREY),
            "faint": sorted(i for i, r in ratios.items() if r < FAINT_RATIO),
            "restarted": int((table["restarts"] > 0).sum()), "flagged": int(table["collapsed"].sum()),
            # pulled towards W after the last restart (tables written before the pull have no such columns)
            "pulled": int(((table["spread_kept"] < 1) | (table["truncation"] < 1)).sum()) if "spread_kept" in table else 0,
            "gave_up": int(table["gave_up"].fillna(False).astype(bool).sum()) if "gave_up" in table else 0,
            "lifted": int((table["exposure_gain"] > 1).sum()) if "exposure_gain" in table else 0}
        report[name] = entry
        faintest += [(ratios[i], name, i) for i in sorted(ratios, key=ratios.get)[:4]]
        print(f"  {name:22} {entry['min_mean']:8.1f} {entry['mean']:6.1f} {entry['min_contrast_ratio']:19.2f} "
              f"{len(entry['under_dark_grey']):4d} {len(entry['dark']):4d} {len(entry['faint']):5d} {entry['restarted']:9d} {entry['pulled']:6d} {entry['flagged']:7d} "
              f"{entry['gave_up']:7d} {entry['lifted']:6d}")
    render_files = {r["id"]: Path(r["image_file"]) for r in rows}
    faintest.sort()
    sheet([[render_files[i], folders[name] / f"{i}.png"] for _, name, i in faintest], 160, out / "degenerate.jpg")
    print(f"the faintest outputs (render | output, by contrast ratio): {out / 'degenerate.jpg'}: "
          + ", ".join(f"{name} {i} {r:.2f}" for r, name, i in faintest))
    return report

if __name__ == "__main__":
    main()
