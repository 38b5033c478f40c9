"""The default column (transfer, w+reg) and project-real as the final code would give them on the H100 run 2's renders
and G_render, without a GPU: the outputs that the final code can change were translated again on the CPU
(`check_outputs.py` tells which: a restart, an iterate kept in the first half of the steps, or an output the check
fails); the others are the H100's own, which the final code keeps (kept at the last step, no restart, and the output
check passes on them). Bench then scores the composites beside the H100's columns, and identity is paired between
transfer and project-real on the faces found in both. From the repository root:

    .venv/bin/python benchmarks/results/rule8-default-column-cpu-2core/compose.py DATASET H100_WREG REAL OUT \
        [METHOD:]LABEL=TRANSLATE_OUT ...

H100_WREG: the run's w+reg folder (transfer/, project-real/, translate.parquet). Each LABEL=TRANSLATE_OUT is a
CPU translate folder for METHOD (transfer when not named); where two hold the same render, the first named wins.
The label is kept per row. A method with no CPU folder is the H100's column alone."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, "benchmarks")
from bench_spaces import degenerate_report, sheet  # noqa: E402
from drfhq_tools.bench.config import BenchConfig  # noqa: E402
from drfhq_tools.bench.run import run_bench  # noqa: E402
from drfhq_tools.dataset.rows import dataset_rows  # noqa: E402

dataset, h100, real, out = (Path(a) for a in sys.argv[1:5])
METHODS = {"transfer": "g_render", "project-real": "g_real"}      # the generator each method inverted into
sources = []
for arg in sys.argv[5:]:
    name, folder = arg.split("=", 1)
    method, label = name.split(":", 1) if ":" in name else ("transfer", name)
    sources.append((method, label, Path(folder)))
rows, _ = dataset_rows(dataset, None)
h100_table = pd.read_parquet(h100 / "translate.parquet").assign(spread_kept=1.0, truncation=1.0, source="h100-run2", folder=str(h100))
tables, changed = [], {}
for method, generator in METHODS.items():
    parts, taken = [], set()
    for label, folder in [(lab, f) for m, lab, f in sources if m == method]:
        t = pd.read_parquet(folder / "translate.parquet")
        t = t[(t.generator == generator) & ~t.id.isin(taken)].assign(source=label, folder=str(folder))
        taken |= set(t.id)
        parts.append(t)
    own = h100_table[(h100_table.generator == generator) & ~h100_table.id.isin(taken)]
    table = pd.concat([own, *parts], ignore_index=True).sort_values("id").assign(method=method)
    assert sorted(table.id) == sorted(r["id"] for r in rows), f"the {method} composite does not cover the dataset"
    composite = out / "composite" / method              # degenerate_report reads the folder's parent's table
    composite.mkdir(parents=True, exist_ok=True)
    for r in table.itertuples():
        shutil.copyfile(Path(r.folder) / method / f"{r.id}.png", composite / f"{r.id}.png")
    print(method, table.groupby("source").size().to_dict())
    tables.append(table)
    changed[method] = table[table.source != "h100-run2"].id.tolist()
table = pd.concat(tables, ignore_index=True)
table.drop(columns=["folder"]).to_parquet(out / "composite" / "translate.parquet")
for method, part in table.groupby("method"):
    part.drop(columns=["inversion_key", "folder", "lpips_net", "generator", "method"]).to_csv(
        out / f"{method}-composite-rows.csv", index=False)
columns = {"transfer-h100run2": h100 / "transfer", "transfer-final": out / "composite" / "transfer",
           "project-real-h100run2": h100 / "project-real", "project-real-final": out / "composite" / "project-real"}
run = run_bench(BenchConfig(dataset=str(dataset), real=str(real), out=str(out / "bench"), identity="dlib",
                            baselines=("input", *[f"{k}={v}" for k, v in columns.items()]), bootstrap=1000), log=print)
summary = {}
for r in run.results:
    if r["slice"] == "all":
        summary.setdefault(r["method"], {})[r["metric"]] = r
per_image = pd.DataFrame(run.per_image)
ident = per_image[per_image.metric == "identity_cosine"]
found = ident.groupby("method")["value"].apply(lambda v: f"{int(v.notna().sum())}/{len(v)}")
identity = ident.pivot_table(index="image_id", columns="method", values="value")
lines = ["| method | FID ↓ | KID ↓ | identity cosine ↑ [95% CI] | faces found | LPIPS to the render |", "|---|---|---|---|---|---|"]
for m in ("input", *columns):
    s = summary[m]
    lines.append(f"| {m} | {s['fid']['value']:.1f} | {s['kid']['value']:.3f} ± {s['kid']['std']:.3f} | "
                 f"{s['identity_cosine']['value']:.3f} [{s['identity_cosine']['ci_low']:.3f}, {s['identity_cosine']['ci_high']:.3f}] | "
                 f"{found.get(m, '–')} | {s['lpips']['value']:.3f} |")
rng = np.random.default_rng(0)
for a, b in (("transfer-final", "project-real-final"), ("transfer-final", "project-real-h100run2"),
             ("transfer-h100run2", "project-real-h100run2")):
    d = (identity[a] - identity[b]).dropna().to_numpy()
    boot = d[rng.integers(0, len(d), (10000, len(d)))].mean(1)
    lines.append(f"\nidentity {a} - {b}, paired on the {len(d)} faces found in both (bootstrap, "
                 f"10,000 resamples): {d.mean():+.4f} [{np.quantile(boot, 0.025):+.4f}, {np.quantile(boot, 0.975):+.4f}]")
text = "\n".join(lines)
print(text)
(out / "table.md").write_text(text + "\n")
degenerate_report(rows, {f"{m}-final": out / "composite" / m for m in METHODS}, out)
by_id = {r["id"]: r for r in rows}
for method, ids in changed.items():
    if ids:
        sheet([[Path(by_id[i]["image_file"]), h100 / method / f"{i}.png", out / "composite" / method / f"{i}.png"] for i in ids],
              160, out / f"changed-{method}.jpg")
        print(f"{out / f'changed-{method}.jpg'}: render | {method}, H100 run 2 | {method}, final; one row per render translated again ({len(ids)})")
