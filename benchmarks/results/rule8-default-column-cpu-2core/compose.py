"""The default column (transfer, w+reg) and project-real as the final code would give them on the H100 run 2's
renders and G_render, without a GPU: every output that rule 8 can change is translated again on the CPU, the
others are the H100's own (unchanged under rule 8: kept at the last step, no restart, and translate's output
check passes on them: `check_outputs.py`). Then bench scores the composite columns beside the H100's columns,
and identity is paired with project-real on the faces found in both. From the repository root:

    .venv/bin/python benchmarks/results/rule8-default-column-cpu-2core/compose.py DATASET H100_WREG CPU_TRANSFER \
        CPU_PROJECT_REAL REAL OUT

H100_WREG: the run's w+reg folder (transfer/, project-real/, translate.parquet); CPU_*: translate output folders."""
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

dataset, h100, cpu_transfer, cpu_real, real, out = (Path(a) for a in sys.argv[1:7])
rows, _ = dataset_rows(dataset, None)
h100_table = pd.read_parquet(h100 / "translate.parquet")
folders = {}
for method, generator, cpu in (("transfer", "g_render", cpu_transfer), ("project-real", "g_real", cpu_real)):
    rerun = pd.read_parquet(cpu / "translate.parquet")
    rerun = rerun[rerun.generator == generator]
    kept = h100_table[(h100_table.generator == generator) & ~h100_table.id.isin(rerun.id)].assign(
        spread_kept=1.0, truncation=1.0, source="h100-run2")
    table = pd.concat([kept, rerun.assign(source="cpu-rule8")], ignore_index=True).sort_values("id")
    assert sorted(table.id) == sorted(r["id"] for r in rows), f"{method}: the composite does not cover the dataset"
    folder = out / "composite" / method / method            # degenerate_report reads the folder's parent's table
    folder.mkdir(parents=True, exist_ok=True)
    for r in table.itertuples():
        shutil.copyfile((h100 if r.source == "h100-run2" else cpu) / method / f"{r.id}.png", folder / f"{r.id}.png")
    table.to_parquet(folder.parent / "translate.parquet")
    table.drop(columns=["inversion_key"]).to_csv(out / f"{method}-composite-rows.csv", index=False)
    folders[f"{method}-rule8"] = folder
    print(f"{method}: {int((table.source == 'cpu-rule8').sum())} rerun on the CPU, {len(kept)} the H100's")
columns = {"transfer-h100run2": h100 / "transfer", "transfer-rule8": folders["transfer-rule8"],
           "project-real-h100run2": h100 / "project-real", "project-real-rule8": folders["project-real-rule8"]}
run = run_bench(BenchConfig(dataset=str(dataset), real=str(real), out=str(out / "bench"), identity="dlib",
                            baselines=("input", *[f"{k}={v}" for k, v in columns.items()]), bootstrap=1000), log=print)
table = {}
for r in run.results:
    if r["slice"] == "all":
        table.setdefault(r["method"], {})[r["metric"]] = r
per_image = pd.DataFrame(run.per_image)
identity = per_image[per_image.metric == "identity_cosine"].pivot_table(index="image_id", columns="method", values="value")
found = per_image[per_image.metric == "identity_cosine"].groupby("method")["value"].apply(lambda v: f"{int(v.notna().sum())}/{len(v)}")
lines = ["| method | FID ↓ | KID ↓ | identity cosine ↑ [95% CI] | faces found | LPIPS to the render |", "|---|---|---|---|---|---|"]
for m in ("input", *columns):
    t = table[m]
    lines.append(f"| {m} | {t['fid']['value']:.1f} | {t['kid']['value']:.3f} ± {t['kid']['std']:.3f} | "
                 f"{t['identity_cosine']['value']:.3f} [{t['identity_cosine']['ci_low']:.3f}, {t['identity_cosine']['ci_high']:.3f}] | "
                 f"{found.get(m, '–')} | {t['lpips']['value']:.3f} |")
rng = np.random.default_rng(0)
for a, b in (("transfer-rule8", "project-real-rule8"), ("transfer-h100run2", "project-real-h100run2")):
    d = (identity[a] - identity[b]).dropna().to_numpy()
    boot = d[rng.integers(0, len(d), (10000, len(d)))].mean(1)
    lines.append(f"\nidentity {a} - {b}, paired on the {len(d)} faces found in both (bootstrap, 10,000 resamples): "
                 f"{d.mean():+.4f} [{np.quantile(boot, 0.025):+.4f}, {np.quantile(boot, 0.975):+.4f}]")
text = "\n".join(lines)
print(text)
(out / "table.md").write_text(text + "\n")
report = degenerate_report(rows, {k: v for k, v in folders.items()}, out)
changed = sorted(set(pd.read_parquet(cpu_transfer / "translate.parquet").id) | set(pd.read_parquet(cpu_real / "translate.parquet").id))
by_id = {r["id"]: r for r in rows}
sheet([[Path(by_id[i]["image_file"]), h100 / "transfer" / f"{i}.png", folders["transfer-rule8"] / f"{i}.png",
        h100 / "project-real" / f"{i}.png", folders["project-real-rule8"] / f"{i}.png"] for i in changed], 160, out / "changed.jpg")
print(f"{out / 'changed.jpg'}: render | transfer H100 run 2 | transfer rule 8 | project-real H100 run 2 | project-real rule 8, "
      f"one row per render rerun ({len(changed)})")
