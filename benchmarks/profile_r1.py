"""Where the time of our R1 step goes (the discriminator's double backward), on one device: seconds of a
plain D step and an R1 step per precision and cudnn setting, then the profiler's top kernels of one R1
step. Written after the H100 run in which our R1 step took 4.4 s against NVIDIA's 0.18 s (256 px,
batch 8, config-f) while our plain step was faster than NVIDIA's.

    python benchmarks/profile_r1.py DATASET [--device cuda] [--resolution 256] [--batch 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--precisions", default="bf16,fp32,fp16", help="on CUDA (the CPU runs fp32)")
    parser.add_argument("--cudnn-benchmark", default="on,off", help="on CUDA: on, off or both")
    args = parser.parse_args()
    import torch

    from drfhq_tools.gan import losses as L
    from drfhq_tools.gan.stylegan2 import Generator, StyleGAN2Config
    from drfhq_tools.gan.train import TrainConfig, Trainer

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    g = Generator(StyleGAN2Config(resolution=args.resolution, channel_base=32768, channel_max=512, conv_clamp=256, num_fp16_res=4))
    reals = torch.randn(args.batch, 3, args.resolution, args.resolution, device=args.device)

    def r1_step(trainer, regularise: bool) -> None:
        real = reals.detach().requires_grad_(regularise)
        logits = trainer._discriminate(real)
        loss = torch.nn.functional.softplus(-logits).mean()
        if regularise:
            loss = loss + 8 * L.r1_penalty(logits, real)
        loss.backward()

    for precision in (args.precisions.split(",") if cuda else ["fp32"]):
        for bench in ([v == "on" for v in args.cudnn_benchmark.split(",")] if cuda else [False]):
            cfg = TrainConfig(dataset=args.dataset, out=tempfile.mkdtemp(), batch=args.batch, mbstd_group=min(4, args.batch),
                              device=args.device, limit=8, augment=(), identity="none", w_identity=0, w_colour=0,
                              w_geometry=0, precision=precision, workers=0)
            trainer = Trainer(cfg, g, {"base": "profile"})
            torch.backends.cudnn.benchmark = bench
            times = {}
            for kind, reg in (("plain", False), ("r1", True)):
                r1_step(trainer, reg)
                r1_step(trainer, reg)
                sync()
                t0 = time.perf_counter()
                for _ in range(3):
                    r1_step(trainer, reg)
                sync()
                times[kind] = (time.perf_counter() - t0) / 3
            print(f"{precision:5} cudnn.benchmark={bench!s:5}  D step {times['plain']:.4f} s   with R1 {times['r1']:.4f} s "
                  f"({times['r1'] / times['plain']:.1f}x)", flush=True)
            profiled = trainer      # the profile below runs the last configuration measured
    from torch.profiler import ProfilerActivity, profile

    torch.backends.cudnn.benchmark = True
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        r1_step(profiled, True)
        sync()
    key = "cuda_time_total" if cuda else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.top, max_name_column_width=70))


if __name__ == "__main__":
    main()
