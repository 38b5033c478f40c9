"""The default column with `--exposure-floor 0.3`: the final transfer composite (rule8-default-column-cpu-2core) with
every render the floor lifts translated again with it on the CPU (the H100's G_render, MobileStyleGAN as G_real, the
defaults otherwise). Renders it does not lift have the same inversion with and without it. Bench scores input, the
composite without the floor, the one with it and project-real's final composite (no floor), sliced by source folder,
and identity is paired per render. From the repository root:

    .venv/bin/python benchmarks/results/exposure-floor-cpu-2core/compose_lifted.py DATASET REAL FINAL_COMPOSE OUT \
        TRANSLATE_OUT ...

FINAL_COMPOSE: compose.py's OUT of rule8-default-column-cpu-2core (composite/transfer, composite/project-real).
Each TRANSLATE_OUT is a CPU translate folder run with the floor (translate.parquet with exposure_gain)."""
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, "benchmarks")
from bench_spaces import degenerate_report, paired_identity, sheet, source_table  # noqa: E402
from drfhq_tools.bench.config import BenchConfig  # noqa: E402
from drfhq_tools.bench.run import run_bench  # noqa: E402
from drfhq_tools.dataset.rows import dataset_rows  # noqa: E402

dataset, real, final, out = (Path(a) for a in sys.argv[1:5])
rows, _ = dataset_rows(dataset, None)
by_id = {r["id"]: r for r in rows}
lifted = pd.concat([pd.read_parquet(Path(f) / "translate.parquet").assign(folder=f) for f in sys.argv[5:]], ignore_index=True)
lifted = lifted[(lifted.generator == "g_render") & (lifted.exposure_gain > 1)].drop_duplicates("id")
column = out / "composite" / "transfer"
column.mkdir(parents=True, exist_ok=True)
for r in rows:
    row = lifted[lifted.id == r["id"]]
    source = Path(row.folder.iloc[0]) / "transfer" if len(row) else final / "composite" / "transfer"
    shutil.copyfile(source / f"{r['id']}.png", column / f"{r['id']}.png")
lifted.drop(columns=["folder", "inversion_key", "lpips_net", "generator"]).sort_values("id").to_csv(out / "lifted-rows.csv", index=False)
old = pd.read_parquet(final / "composite" / "translate.parquet")
old = old[old.method == "transfer"].set_index("id")
print(f"{len(lifted)} renders lifted; of them gave up before (kept before step 50): {int((old.loc[lifted.id, 'steps'] < 50).sum())}, "
      f"gave up now: {int(lifted.gave_up.sum())}, collapsed now: {int(lifted.collapsed.sum())}, "
      f"restarts before {int(old.loc[lifted.id, 'restarts'].sum())} now {int(lifted.restarts.sum())}")
# translate.parquet beside the column, for degenerate_report's flags
table = pd.concat([old.reset_index()[~old.reset_index().id.isin(lifted.id)].drop(columns=["method", "folder", "source"], errors="ignore"),
                   lifted.drop(columns=["folder"])], ignore_index=True)
table.to_parquet(out / "composite" / "translate.parquet")
columns = {"transfer-final": final / "composite" / "transfer", "transfer-floor0.3": column,
           "project-real-final": final / "composite" / "project-real"}
run = run_bench(BenchConfig(dataset=str(dataset), real=str(real), out=str(out / "bench"), identity="dlib", slices=("source_dir",),
                            baselines=("input", *[f"{k}={v}" for k, v in columns.items()]), bootstrap=1000), log=lambda *a: None)
lines, identity, folder = source_table(run, rows, ("input", *columns))
subsets = {"all": list(folder), "lifted": lifted.id.tolist(), "gave up before": [i for i in lifted.id if int(old.loc[i, "steps"]) < 50]}   # older rows lack the gave_up column
subsets |= {g: [i for i in folder if folder[i] == g] for g in sorted(set(folder.values()))}
paired = paired_identity(identity, (("transfer-floor0.3", "transfer-final"), ("transfer-floor0.3", "project-real-final"),
                                    ("transfer-final", "project-real-final")), subsets)
text = "\n".join([*lines, "", "Paired (bootstrap, 10,000 resamples):", "", *[f"- {p}" for p in paired]]) + "\n"
(out / "table.md").write_text(text)
print(text)
degenerate_report(rows, {"transfer-floor0.3": column}, out)
ids = sorted(lifted.id, key=lambda i: -float(lifted[lifted.id == i].exposure_gain.iloc[0]))
sheet([[Path(by_id[i]["image_file"]), final / "composite" / "transfer" / f"{i}.png", column / f"{i}.png"] for i in ids], 160, out / "lifted.jpg")
print(f"{out / 'lifted.jpg'}: render | transfer final (no floor) | transfer with the floor; darkest first ({len(ids)})")
