"""Score translate output folders on the hard renders: bench's face redetection, inner-face darkness/contrast,
and translate.parquet's record; and draw render | output per folder. From the repository root:
    .venv/bin/python benchmarks/results/pull-towards-w-10renders-cpu-2core/evaluate.py DATASET OUT NAME=TRANSLATE_OUT ..."""
import sys
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
sys.path.insert(0, "benchmarks")
from bench_spaces import degenerate_report, sheet
from drfhq_tools.dataset.rows import dataset_rows
from drfhq_tools.models.faces import redetect_landmarks

dataset, out = Path(sys.argv[1]), Path(sys.argv[2])
folders = {a.split("=")[0]: Path(a.split("=")[1]) for a in sys.argv[3:]}
rows, _ = dataset_rows(dataset, None)
out.mkdir(parents=True, exist_ok=True)
report = degenerate_report(rows, {k: v / "transfer" for k, v in folders.items()}, out)
for name, folder in folders.items():
    t = pd.read_parquet(folder / "translate.parquet")
    t = t[(t.generator == "g_render") & t.id.isin([r["id"] for r in rows])].reset_index(drop=True)
    t["face_found"] = [redetect_landmarks(np.asarray(Image.open(folder / "transfer" / f"{i}.png").convert("RGB"))) is not None for i in t.id]
    t.to_csv(out / f"{name}-rows.csv", index=False)
    print(name); print(t.drop(columns=["inversion_key", "lpips_net", "generator"]).to_string())
sheet([[Path(r["image_file"])] + [f / "transfer" / f"{r['id']}.png" for f in folders.values()] for r in rows], 192, out / "before-after.jpg")
