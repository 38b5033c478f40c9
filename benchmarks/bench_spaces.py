"""Which latent space should translate invert into? Measured, at equal steps and from the same start.

For each `--space` (w, w+, w+reg) the transfer method runs on the same renders with the same run;
project-real (the projector's own W+) and the input are the references. Then bench scores all of them
against the real photos: FID and KID (realism), identity cosine to the render (dlib descriptor), LPIPS to
the render. Printed as a table and written, with a picture (render | transfer in each space |
project-real), to --out: spaces.json, spaces.md, spaces.jpg.

    python benchmarks/bench_spaces.py --dataset DATASET --ckpt TRAIN_RUN --real ../shared/fixtures/real \
        --out OUT [--steps 20] [--limit 8] [--spaces w,w+,w+reg] [--device cpu]
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
    parser.add_argument("--ckpt", required=True)
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
    args = parser.parse_args()

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
        t0 = time.perf_counter()
        translate(TranslateConfig(out=str(out / space), methods=methods, space=space, **common), log=print)
        seconds[space] = time.perf_counter() - t0
        folders[f"transfer-{space}"] = out / space / "transfer"
        if space in real_spaces:    # plain "project-real" when it runs in one space only (older tables' name)
            folders["project-real" if len(real_spaces) == 1 else f"project-real-{space}"] = out / space / "project-real"
    baselines = ("input", *[f"{name}={folder}" for name, folder in folders.items()])
    run = run_bench(BenchConfig(dataset=args.dataset, real=args.real, out=str(out / "bench"), baselines=baselines,
                                identity="dlib", limit=args.limit, device=args.device, bootstrap=1000), log=print)
    table = {}
    for r in run.results:
        if r["slice"] == "all":
            table.setdefault(r["method"], {})[r["metric"]] = r
    metrics = ("fid", "kid", "identity_cosine", "lpips")
    header = "| method | steps | FID ↓ | KID ↓ | identity cosine ↑ [95% CI] | LPIPS to the render [95% CI] |"
    lines = [header, "|---|---|---|---|---|---|"]
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
    tile = min(size, 160)
    columns = ["input", *folders]
    sheet = Image.new("RGB", (tile * len(columns), tile * len(rows)), "white")
    for y, r in enumerate(rows):
        for x, name in enumerate(columns):
            path = Path(r["image_file"]) if name == "input" else folders[name] / f"{r['id']}.png"
            if path.is_file():
                with Image.open(path) as img:
                    sheet.paste(img.convert("RGB").resize((tile, tile), Image.LANCZOS), (x * tile, y * tile))
    sheet.save(out / "spaces.jpg", quality=90)
    print(f"columns of {out / 'spaces.jpg'}: {', '.join(columns)}")
    print("mean pixel of each output's inner face (0-255), to spot dark collapses:")
    for name in folders:
        means = []
        for r in rows:
            with Image.open(folders[name] / f"{r['id']}.png") as img:
                a = np.asarray(img.convert("L"), dtype=np.float32)
            s = a.shape[0]
            means.append(float(a[s // 4:int(s * 0.81), s // 4:3 * s // 4].mean()))
        print(f"  {name:18} min {min(means):6.1f}  mean {np.mean(means):6.1f}")


if __name__ == "__main__":
    main()
