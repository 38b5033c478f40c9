"""Identity kept, judged by two networks trained apart: dlib's descriptor (bench's identity so far, and the one
`--w-identity` would optimise) and HSE FaceRes (VGGFace2-trained MobileNet). The same outputs as
exposure-lift-stuck-cpu-2core's table: each method's final composite and its default column (stuck dark renders
lifted), benched against the real photos with `--identity faceres,dlib`, sliced by source folder; the paired
differences, transfer against project-real, under each network. From the repository root:

    .venv/bin/python benchmarks/results/identity-faceres-cpu-2core/second_opinion.py DATASET REAL OUT \
        transfer-final=DIR project-real-final=DIR transfer-stuck=DIR project-real-stuck=DIR
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, "benchmarks")
from bench_spaces import paired_identity  # noqa: E402
from drfhq_tools.bench.config import BenchConfig  # noqa: E402
from drfhq_tools.bench.run import run_bench  # noqa: E402
from drfhq_tools.dataset.rows import dataset_rows  # noqa: E402

dataset, real, out = (Path(a) for a in sys.argv[1:4])
columns = dict(a.split("=", 1) for a in sys.argv[4:])
rows, _ = dataset_rows(dataset, None)
run = run_bench(BenchConfig(dataset=str(dataset), real=str(real), out=str(out / "bench"), identity="faceres,dlib",
                            slices=("source_dir",), baselines=("input", *[f"{k}={v}" for k, v in columns.items()]),
                            bootstrap=1000), log=lambda *a: None)
metrics = {"faceres": "identity_cosine", "dlib": "identity_cosine_dlib"}
by = {(r["grp"], r["method"], r["metric"]): r for r in run.results}
extractor = {net: next(r for r in run.results if r["metric"] == m) for net, m in metrics.items()}
folder = {r["id"]: str(Path(r["source_path"]).parent) for r in rows}
groups = ["all", *sorted(set(folder.values()))]
lines = [f"Networks: faceres = {extractor['faceres']['extractor']} ({extractor['faceres']['weights_sha256'][:12]}), "
         f"dlib = {extractor['dlib']['extractor']} ({extractor['dlib']['weights_sha256'][:12]}); identity on each output's "
         "own face found again.", "",
         "| renders | n | method | identity, faceres [95% CI] | identity, dlib [95% CI] |", "|---|---|---|---|---|"]
cell = lambda r: f"{r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
for g in groups:
    for m in ("input", *columns):
        lines.append(f"| {g} | {by[(g, m, 'identity_cosine')]['n']} | {m} | {cell(by[(g, m, 'identity_cosine')])} | "
                     f"{cell(by[(g, m, 'identity_cosine_dlib')])} |")
per_image = pd.DataFrame(run.per_image)
subsets = {"all": list(folder), **{g: [i for i in folder if folder[i] == g] for g in groups[1:]}}
pairs = [("transfer-stuck", "project-real-stuck"), ("transfer-final", "project-real-final"),
         ("transfer-stuck", "transfer-final"), ("project-real-stuck", "project-real-final")]
pairs = [p for p in pairs if set(p) <= set(columns)]
lines += ["", "Paired (bootstrap, 10,000 resamples):"]
deltas = {}
for net, metric in metrics.items():
    identity = per_image[per_image.metric == metric].pivot_table(index="image_id", columns="method", values="value")
    lines += ["", f"{net}:", *[f"- {p}" for p in paired_identity(identity, pairs, subsets)]]
    a, b = pairs[0]
    deltas[net] = identity[a] - identity[b]
both = pd.concat(deltas, axis=1).dropna()
lines += ["", f"Per render, {pairs[0][0]} - {pairs[0][1]}: the two networks' differences correlate at "
              f"r = {np.corrcoef(both['faceres'], both['dlib'])[0, 1]:.2f} over {len(both)} renders; they agree in sign on "
              f"{int((np.sign(both['faceres']) == np.sign(both['dlib'])).sum())}."]
text = "\n".join(lines) + "\n"
(out / "second_opinion.md").write_text(text)
print(text)
