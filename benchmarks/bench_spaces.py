"""Which latent space should translate invert into? Measured, at equal steps and from the same start.

For each `--space` (w, w+, w+reg) the transfer method runs on the same renders with the same run;
project-real (the projector's own W+) and the input are the references. Then bench scores all of them
against the real photos: FID and KID (realism), identity cosine to the render (dlib descriptor), LPIPS to
the render. Printed as a table and written, with a picture (render | transfer in each space |
project-real), to --out: spaces.json, spaces.md, spaces.jpg, and degenerate.json/.jpg: the outputs
checked for the issue's collapses (dark, faint) apart from translate's own rule.

    python benchmarks/bench_spaces.py --dataset DATASET --ckpt TRAIN_RUN --real ../shared/fixtures/real \
        --out OUT [--steps 20] [--limit 8] [--spaces w,w+,w+reg] [--device cpu]
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
    args = parser.parse_args()
    if args.stage != "bench" and not args.ckpt:
        parser.error("--ckpt is needed to translate")

    from drfhq_tools.bench.config import BenchConfig
    from drfhq_tools.bench.run import run_bench
    from drfhq_tools.dataset.rows import dataset_rows
    from drfhq_tools.gan.translate import TranslateConfig, translate

    out = Path(args.out)
    spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    common = dict(dataset=args.dataset, ckpt=args.ckpt, steps=args.steps, limit=args.limit, start=args.start,
                  lpips_net=args.lpips_net, batch=args.batch, device=args.device, w_noise=args.w_noise,
                  **({"lr": args.lr} if args.lr is not None else {}))
    folders, seconds = {}, {}
    for space in spaces:
        real_spaces = [s.strip() for s in args.project_real_spaces.split(",")]
        methods = ("transfer", "project-real") if space in real_spaces else ("transfer",)
        if args.stage != "bench":
            t0 = time.perf_counter()
            translate(TranslateConfig(out=str(out / space), methods=methods, space=space, **common), log=print)
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
    run = run_bench(BenchConfig(dataset=args.dataset, real=args.real, out=str(out / "bench"), baselines=baselines,
                                identity="dlib", limit=args.limit, device=args.device, bootstrap=1000), log=print)
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
            if row is None:
                cells.append("–")
            elif row.get("ci_low") is not None:
                cells.append(f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
            else:
                cells.append(f"{row['value']:.3f}" if m != "kid" else f"{row['value']:.4f} ± {row['std']:.4f}")
            if m == "identity_cosine":
                cells.append(found.get(method, "–"))
        steps = "–" if method == "input" else str(args.steps)
        lines.append(f"| {method} | {steps} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spaces.md").write_text(text + "\n")
    (out / "spaces.json").write_text(json.dumps({
        "args": vars(args), "seconds_per_space": seconds,
        "results": {m: {k: {f: v[f] for f in ("value", "std", "ci_low", "ci_high", "n", "protocol", "extractor", "weights_sha256")}
                        for k, v in ms.items()} for m, ms in table.items()}}, indent=2, default=str))

    rows, size = dataset_rows(Path(args.dataset), args.limit)
    columns = ["input", *folders]
    sheet([[Path(r["image_file"]) if name == "input" else folders[name] / f"{r['id']}.png" for name in columns]
           for r in rows], min(size, 160), out / "spaces.jpg")
    print(f"columns of {out / 'spaces.jpg'}: {', '.join(columns)}")
    report = degenerate_report(rows, folders, out)
    (out / "degenerate.json").write_text(json.dumps(report, indent=2))


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
          f" {'restarted':>9} {'pulled':>6} {'flagged':>7}")
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
            "pulled": int(((table["spread_kept"] < 1) | (table["truncation"] < 1)).sum()) if "spread_kept" in table else 0}
        report[name] = entry
        faintest += [(ratios[i], name, i) for i in sorted(ratios, key=ratios.get)[:4]]
        print(f"  {name:22} {entry['min_mean']:8.1f} {entry['mean']:6.1f} {entry['min_contrast_ratio']:19.2f} "
              f"{len(entry['under_dark_grey']):4d} {len(entry['dark']):4d} {len(entry['faint']):5d} {entry['restarted']:9d} {entry['pulled']:6d} {entry['flagged']:7d}")
    render_files = {r["id"]: Path(r["image_file"]) for r in rows}
    faintest.sort()
    sheet([[render_files[i], folders[name] / f"{i}.png"] for _, name, i in faintest], 160, out / "degenerate.jpg")
    print(f"the faintest outputs (render | output, by contrast ratio): {out / 'degenerate.jpg'}: "
          + ", ".join(f"{name} {i} {r:.2f}" for r, name, i in faintest))
    return report

if __name__ == "__main__":
    main()
