"""Training and translation speed on this machine.

For each configuration (tiny and 256 StyleGAN2 from scratch; MobileStyleGAN with --msg) a fresh
process builds the trainer on a dataset, warms up, and times training steps. Printed per configuration:
steps per second, peak memory (resident set on the CPU, allocated on CUDA), and the ratio of a full
step to the peer measured in the same process: a bare forward+backward of G_render on the same batch
(what every GAN trainer pays; the ratio is the price of G_real, D, R1, the consistency losses, EMA).
Then `translate` images per second (all three methods, inversion steps as given) on the tiny run.

    python benchmarks/bench_train.py [--dataset demo-out/dataset] [--steps 6] [--device cpu] [--msg]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(config: str, dataset: str, steps: int, device: str, batch: int) -> dict:
    import torch

    from drfhq_tools.gan import losses as L
    from drfhq_tools.gan.train import TrainConfig, Trainer

    base = "mobilestylegan-ffhq" if config == "msg" else "none"
    cfg = TrainConfig(dataset=dataset, out=tempfile.mkdtemp(), base=base, config="cpu256" if config == "msg" else config,
                      batch=batch, mbstd_group=2, device=device, limit=32)
    trainer = Trainer(cfg)
    trainer.step()                                     # warm-up (allocations, lazy init)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / steps
    z = torch.randn(batch, trainer.g_real.z_dim, device=trainer.device)
    with torch.no_grad():
        w = trainer.g_real.map(z)
    start = time.perf_counter()
    for _ in range(steps):
        L.resize_area(trainer.g_render.synthesize(w), trainer.resolution).square().mean().backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    bare_s = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"config": config, "resolution": trainer.resolution, "batch": batch, "step_s": step_s, "bare_s": bare_s,
            "peak_mib": peak, "memory": "cuda allocated" if device.startswith("cuda") else "process RSS"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="demo-out/dataset")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--msg", action="store_true", help="also time MobileStyleGAN (1024 px, slow on the CPU)")
    parser.add_argument("--translate-steps", type=int, default=20)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.dataset, args.steps, args.device, args.batch)))
        return
    if not (Path(args.dataset) / "manifest.parquet").is_file():
        sys.exit(f"{args.dataset}: no dataset; run `make demo` first or pass --dataset")
    configs = ["tiny", "256"] + (["msg"] if args.msg else [])
    print(f"training steps on {args.device}, batch {args.batch}, {args.steps} timed steps after one warm-up")
    print(f"{'config':8} {'res':>5} {'steps/s':>9} {'s/step':>8} {'peak MiB':>9}  step / bare G fwd+bwd")
    for config in configs:
        batch = 2 if config == "msg" else args.batch
        done = subprocess.run([sys.executable, __file__, "--child", config, "--dataset", args.dataset, "--steps",
                               str(args.steps), "--device", args.device, "--batch", str(batch)],
                              capture_output=True, text=True)
        if done.returncode:
            print(f"{config}: failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{config:8} {r['resolution']:5d} {1 / r['step_s']:9.3f} {r['step_s']:8.3f} {r['peak_mib']:9.0f}  "
              f"{r['step_s'] / r['bare_s']:.2f}x  ({r['memory']}, batch {r['batch']})")

    from drfhq_tools.gan.train import TrainConfig, train
    from drfhq_tools.gan.translate import METHODS, TranslateConfig, translate

    with tempfile.TemporaryDirectory() as tmp:
        run = train(TrainConfig(dataset=args.dataset, out=f"{tmp}/run", config="tiny", kimg=0.008, snapshot_kimg=0.008,
                                batch=4, mbstd_group=2, device=args.device, limit=16), log=lambda *a: None)
        n = 8
        start = time.perf_counter()
        translate(TranslateConfig(dataset=args.dataset, ckpt=str(run), out=f"{tmp}/tr", methods=METHODS, limit=n,
                                  steps=args.translate_steps, lpips_net="vgg", device=args.device), log=lambda *a: None)
        elapsed = time.perf_counter() - start
    print(f"translate (tiny run, {', '.join(METHODS)}; {args.translate_steps} inversion steps, LPIPS vgg): "
          f"{n / elapsed:.2f} rows/s, {3 * n / elapsed:.2f} output images/s")


if __name__ == "__main__":
    main()
