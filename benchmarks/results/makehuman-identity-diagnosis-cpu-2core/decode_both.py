"""Decode each transfer latent with G_render and G_real (256 px PNG, the dataset's size) for bench:

    .venv/bin/python decode_both.py TRANSLATE_OUT TRAIN_RUN    -> TRANSLATE_OUT/decoded-g_render, decoded-g_real
"""
import sys
from pathlib import Path

import torch
from PIL import Image
from drfhq_tools.gan.translate import load_generator
out_root, ckpt = Path(sys.argv[1]), Path(sys.argv[2])
lat = next((out_root / "latents").glob("g_render-*"))
gens = {n: load_generator(ckpt / n) for n in ("g_render", "g_real")}
for name, g in gens.items():
    d = out_root / f"decoded-{name}"; d.mkdir(exist_ok=True)
    for f in sorted(lat.glob("*.pt")):
        s = torch.load(f, weights_only=True)
        with torch.no_grad():
            img = g.synthesize(s["ws"][None])[0]
        arr = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).resize((256, 256), Image.LANCZOS).save(d / f"{f.stem}.png")
        print(name, f.stem, s["lpips"], s["steps"], s["restarts"])
