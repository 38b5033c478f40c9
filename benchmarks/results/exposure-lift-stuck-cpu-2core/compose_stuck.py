"""The default column under `--exposure-lift stuck` (floor 0.3): a dark render is inverted again lifted only when
its inversion as it is is stuck (gave up or stayed collapsed after every restart), and the lifted fit is kept when
it is usable. Each image's draws come from its own seed, so that second inversion is the one `--exposure-lift
always` made of the render: the CPU runs with the floor always on (exposure-floor-cpu-2core for transfer, a run of
the renders project-real was stuck on for project-real) stand in for it. For each method: the final composite
(rule8-default-column-cpu-2core) with each stuck dark render replaced by its lifted output where that one is not
stuck. Bench against the real photos, sliced by source folder, identity paired per render. From the repository root:

    .venv/bin/python benchmarks/results/exposure-lift-stuck-cpu-2core/compose_stuck.py DATASET REAL FINAL_COMPOSE OUT \
        transfer=TRANSLATE_OUT[,TRANSLATE_OUT...] project-real=TRANSLATE_OUT[,...]

FINAL_COMPOSE: compose.py's OUT of rule8-default-column-cpu-2core (composite/<method>/, composite/translate.parquet).
Each TRANSLATE_OUT is a CPU translate folder run with --exposure-floor 0.3 --exposure-lift always (HEAD 05decfd's
--exposure-floor 0.3, the same thing)."""
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, "benchmarks")
from bench_spaces import degenerate_report, paired_identity, sheet, source_table  # noqa: E402
from drfhq_tools.bench.config import BenchConfig  # noqa: E402
from drfhq_tools.bench.run import run_bench  # noqa: E402
from drfhq_tools.dataset.rows import dataset_rows  # noqa: E402
from drfhq_tools.gan.translate import GAVE_UP_BEFORE, SOURCE  # noqa: E402

dataset, real, final, out = (Path(a) for a in sys.argv[1:5])
lifted_runs = {k: v.split(",") for k, v in (a.split("=", 1) for a in sys.argv[5:])}
rows, _ = dataset_rows(dataset, None)
by_id = {r["id"]: r for r in rows}
final_table = pd.read_parquet(final / "composite" / "translate.parquet")
columns, replaced, records = {}, {}, []
for method, runs in lifted_runs.items():
    old = final_table[final_table.method == method].set_index("id")
    # stuck as it is: still collapsed, or gave up (older rows lack gave_up: an early step kept after every restart)
    gave_up = old["gave_up"].astype("boolean").fillna((old["steps"] < GAVE_UP_BEFORE * 100) & (old["restarts"] > 0))
    stuck = set(old.index[old["collapsed"] | gave_up])
    lifted = pd.concat([pd.read_parquet(Path(f) / "translate.parquet").assign(folder=f) for f in runs], ignore_index=True)
    lifted = lifted[(lifted.generator == SOURCE[method]) & (lifted.exposure_gain > 1)].drop_duplicates("id").set_index("id")
    tried = sorted(stuck & set(lifted.index))
    kept = [i for i in tried if not (lifted.loc[i, "gave_up"] or lifted.loc[i, "collapsed"])]
    print(f"{method}: stuck as it is {len(stuck)} ({', '.join(sorted(i[:8] for i in stuck))}); dark and lifted: {len(tried)}; "
          f"lifted fit usable and kept: {len(kept)} ({', '.join(i[:8] for i in kept)}); stuck without a lifted run: "
          f"{', '.join(i[:8] for i in sorted(stuck - set(lifted.index))) or 'none'}")
    column = out / "composite" / method
    column.mkdir(parents=True, exist_ok=True)
    for r in rows:
        source = Path(lifted.loc[r["id"], "folder"]) / method if r["id"] in kept else final / "composite" / method
        shutil.copyfile(source / f"{r['id']}.png", column / f"{r['id']}.png")
    # a kept lifted row costs what `stuck` spends: the tries as it is, one more start, and the lifted run's own
    cost = lifted.loc[kept].assign(restarts=lifted.loc[kept, "restarts"] + old.loc[kept, "restarts"] + 1,
                                   steps_run=lifted.loc[kept, "steps_run"] + old.loc[kept, "steps_run"])
    records.append(pd.concat([old.drop(index=kept).reset_index(), cost.reset_index().assign(method=method)],
                             ignore_index=True).drop(columns=["folder", "source"], errors="ignore"))
    lifted.loc[tried].drop(columns=["folder", "inversion_key", "lpips_net"]).assign(method=method, kept=[i in kept for i in tried]) \
        .reset_index().to_csv(out / f"{method}-lifted-rows.csv", index=False)
    columns[f"{method}-final"], columns[f"{method}-stuck"] = final / "composite" / method, column
    replaced[method] = kept
# translate.parquet beside the columns, for degenerate_report's flags
pd.concat(records, ignore_index=True).to_parquet(out / "composite" / "translate.parquet")
run = run_bench(BenchConfig(dataset=str(dataset), real=str(real), out=str(out / "bench"), identity="dlib", slices=("source_dir",),
                            baselines=("input", *[f"{k}={v}" for k, v in columns.items()]), bootstrap=1000), log=lambda *a: None)
lines, identity, folder = source_table(run, rows, ("input", *columns))
subsets = {"all": list(folder), **{f"lifted in {m}": ids for m, ids in replaced.items()},
           "lifted in either": sorted(set().union(*replaced.values()))}
subsets |= {g: [i for i in folder if folder[i] == g] for g in sorted(set(folder.values()))}
pairs = [(f"{m}-stuck", f"{m}-final") for m in lifted_runs]
if {"transfer", "project-real"} <= set(lifted_runs):
    pairs += [("transfer-stuck", "project-real-stuck"), ("transfer-final", "project-real-final")]
paired = paired_identity(identity, pairs, subsets)
text = "\n".join([*lines, "", "Paired (bootstrap, 10,000 resamples):", "", *[f"- {p}" for p in paired]]) + "\n"
(out / "table.md").write_text(text)
print(text)
degenerate_report(rows, {k: v for k, v in columns.items() if k.endswith("-stuck")}, out)
ids = sorted(set().union(*replaced.values()))
sheet([[Path(by_id[i]["image_file"]), *[columns[f"{m}-{c}"] / f"{i}.png" for m in lifted_runs for c in ("final", "stuck")]] for i in ids],
      160, out / "lifted.jpg")
print(f"{out / 'lifted.jpg'}: render | " + " | ".join(f"{m} {c}" for m in lifted_runs for c in ("final", "stuck")) + f" ({len(ids)})")
