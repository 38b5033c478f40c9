"""The final columns (compose.py's composites) sliced by the folder each render came from (`--slices source_dir`):
where transfer's identity tie with project-real comes from. From the repository root, after compose.py:

    .venv/bin/python benchmarks/results/rule8-default-column-cpu-2core/by_source.py DATASET REAL COMPOSE_OUT OUT"""
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, "benchmarks")
from bench_spaces import paired_interval  # noqa: E402
from drfhq_tools.bench.config import BenchConfig  # noqa: E402
from drfhq_tools.bench.run import run_bench  # noqa: E402
from drfhq_tools.dataset.rows import dataset_rows  # noqa: E402

dataset, real, composed, out = (Path(a) for a in sys.argv[1:5])
methods = ("input", "transfer", "project-real")
run = run_bench(BenchConfig(dataset=str(dataset), real=str(real), out=str(out), identity="dlib", slices=("source_dir",),
                            baselines=("input", *[f"{m}={composed / 'composite' / m}" for m in methods[1:]]), bootstrap=1000),
                log=lambda *a: None)
by = {(r["grp"], r["method"], r["metric"]): r for r in run.results}
groups = ["all", *sorted({r["grp"] for r in run.results if r["slice"] == "source_dir"})]
folder = {r["id"]: str(Path(r["source_path"]).parent) for r in dataset_rows(dataset, None)[0]}
per_image = pd.DataFrame(run.per_image)
identity = per_image[per_image.metric == "identity_cosine"].pivot_table(index="image_id", columns="method", values="value")
lines = ["| renders | n | method | FID ↓ | KID ↓ ± std | identity ↑ [95% CI] | LPIPS to the render | skin ΔE00 |",
         "|---|---|---|---|---|---|---|---|"]
paired = []
for g in groups:
    for m in methods:
        r = lambda metric: by[(g, m, metric)]
        lines.append(f"| {g} | {r('fid')['n']} | {m} | {r('fid')['value']:.1f} | {r('kid')['value']:.3f} ± {r('kid')['std']:.3f} | "
                     f"{r('identity_cosine')['value']:.4f} [{r('identity_cosine')['ci_low']:.4f}, {r('identity_cosine')['ci_high']:.4f}] | "
                     f"{r('lpips')['value']:.3f} | {r('skin_delta_e')['value']:.2f} |")
    ids = [i for i in identity.index if g == "all" or folder[i] == g]
    d = (identity.loc[ids, "transfer"] - identity.loc[ids, "project-real"]).dropna().to_numpy()
    low, high = paired_interval(d)
    paired.append(f"identity transfer - project-real, {g}, paired on {len(d)} faces (bootstrap, 10,000 resamples): "
                  f"{d.mean():+.4f} [{low:+.4f}, {high:+.4f}]")
text = "\n".join([*lines, "", *paired]) + "\n"
(out / "by-source.md").write_text(text)
print(text)
