"""Translate's output check (rule 8: `degenerate` with G_real's brighter tone allowed, and a face where the render
shows one, found as bench finds it) applied to outputs already made: the H100 run 2's transfer or project-real
PNGs (G_real's images of the kept latents) against their aligned renders, at the check's 256 px. With the run's
translate.parquet it tells which renders the final code can treat differently: only those with a restart, an
iterate kept in the first half of the steps (`early`: the give-up restart), or an output the check fails. From
the repository root:

    .venv/bin/python benchmarks/results/rule8-default-column-cpu-2core/check_outputs.py DATASET OUTPUT_FOLDER \
        TRANSLATE_PARQUET HARD_IDS(comma, 8-char prefixes) OUT_CSV [g_render|g_real]
"""
import sys
import numpy as np, pandas as pd, torch
from PIL import Image
from drfhq_tools.gan import losses as L
from drfhq_tools.gan.translate import degenerate, face_statistics, faces_in_frame

dataset, outdir, table = sys.argv[1:4]
t = pd.read_parquet(table); t = t[t.generator == (sys.argv[6] if len(sys.argv) > 6 else "g_render")]
def load(p, side=256):
    x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    return L.resize_area(x, side) if x.shape[-1] > side else x
rows = []
for r in t.itertuples():
    target = load(f"{dataset}/images/{r.id[:2]}/{r.id}.png"); out = load(f"{outdir}/{r.id}.png")
    deg = bool(degenerate(out, face_statistics(target), brighter_ok=True)[0])
    face_t, face_o = (bool(v) for v in faces_in_frame(torch.cat([target, out])))
    rows.append(dict(id=r.id, steps=r.steps, restarts=r.restarts, collapsed=r.collapsed, lpips=round(float(r.lpips), 3),
                     degenerate=deg, face_render=face_t, face_output=face_o,
                     check_fails=deg or (face_t and not face_o)))
d = pd.DataFrame(rows)
hard = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else set()
d["hard"] = d.id.str[:8].isin(hard)
d["early"] = (d.steps < 50) | (d.restarts > 0)
print(d.to_string())
print(d.groupby(["hard", "early"])[["check_fails", "degenerate"]].sum())
d.to_csv(sys.argv[5] if len(sys.argv) > 5 else "/tmp/s15/h100_check.csv", index=False)
