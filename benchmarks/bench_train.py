"""Training speed, ours against NVIDIA's stylegan2-ada-pytorch, side by side in one run.

For each resolution (config-f channels: channel_base 32768, channel_max 512, conv_clamp 256) and the
same batch, a fresh process per implementation builds G and D from scratch and times training steps
on the same real images:
- nvidia-ref / nvidia-custom: NVIDIA's own loop body (imported from ../shared/peers, never copied):
  StyleGAN2Loss phases Gmain, Dmain every step and Dreg every 16 (lazy R1), pl_weight 0 and no style
  mixing (what a fine-tune compares to), nan_to_num of gradients, Adam, G_ema. `ref` forces the
  reference paths of its custom ops; `custom` lets them build with nvcc (CUDA only). fp16 on the 4
  highest resolutions on CUDA (NVIDIA's default), fp32 on the CPU (its fp16 CPU kernels are not a
  fair peer).
- ours-adversarial: `Trainer.step()` with the same workload (mapping trained, no augmentation, no
  consistency losses; G_real is not run); bf16 on the same layers on CUDA, fp32 on the CPU.
- ours-consistency: the paper's step as users run it (mapping frozen, DiffAugment, identity + colour
  + geometry consistency against G_real).
Each is timed over steps without R1 and one step with it; the figure is amortised over the 16-step R1
interval: s/step = (15 t_plain + t_r1) / 16, s/kimg = s/step * 1000 / batch. Printed: s/kimg, the
ratio NVIDIA / ours (above 1: ours is faster) and peak memory (CUDA allocated, or process RSS).

    python benchmarks/bench_train.py --dataset DATASET [--resolutions 256,1024] [--batch 4] [--steps 3]
        [--device cpu|cuda] [--json OUT.json] [--translate 16]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the peer: ../shared/peers beside the repo, or DRFHQ_PEER (the GPU check carries it there)
PEER = Path(os.environ.get("DRFHQ_PEER") or Path(__file__).resolve().parents[2] / "shared" / "peers" / "stylegan2-ada-pytorch")
R1_INTERVAL = 16


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(step, first: int, steps: int, device: str) -> tuple[float, float]:
    """(seconds of a step without R1, seconds of the R1 step), after a warm-up step of each kind."""
    step(first)                       # warm-up: allocations, cudnn autotuning, lazy init
    step(R1_INTERVAL * 2)             # the R1 step's double backward has convolutions of its own to tune
                                      # (12 s of a first H100 run went there, timed as if it were the step)
    _sync(device)
    start = time.perf_counter()
    for i in range(first + 1, first + 1 + steps):
        step(i)
    _sync(device)
    plain = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    step(R1_INTERVAL * 4)             # a step that regularises
    _sync(device)
    return plain, time.perf_counter() - start


def _reals(dataset: str, resolution: int, n: int = 32):
    import torch

    from drfhq_tools.dataset.rows import AlignedImages, dataset_rows

    rows, _ = dataset_rows(Path(dataset), n)
    images = AlignedImages([r["image_file"] for r in rows], resolution)
    return torch.stack([images[i] for i in range(len(images))]).float() / 127.5 - 1


def _register_built_extensions() -> None:
    """The peer's custom_ops builds with `cpp_extension.load`, then imports the module by name; since
    torch 2.x `load` no longer puts it in sys.modules, so that import fails and NVIDIA's code falls back
    to its reference ops (seen on the first GPU run). Registering what `load` returns is the whole fix;
    the peer itself is run unchanged."""
    import torch.utils.cpp_extension as cpp_extension

    load = cpp_extension.load

    def load_and_register(name, *args, **kwargs):
        module = load(name, *args, **kwargs)
        sys.modules.setdefault(name, module)
        return module

    cpp_extension.load = load_and_register


def child_nvidia(resolution: int, batch: int, steps: int, device: str, path: str, dataset: str) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(PEER))
    _register_built_extensions()
    from torch_utils import misc
    from torch_utils.ops import bias_act, upfirdn2d
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    if path == "ref":       # NVIDIA's reference implementations of its custom ops
        bias_act._init = upfirdn2d._init = lambda: False
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True
    common = dict(channel_base=32768, channel_max=512, num_fp16_res=4 if cuda else 0, conv_clamp=256)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3, mapping_kwargs={"num_layers": 8},
                  synthesis_kwargs=common).train().requires_grad_(False).to(device)
    D = Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, epilogue_kwargs={"mbstd_group_size": min(4, batch)},
                      **common).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    loss = StyleGAN2Loss(device=torch.device(device), G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=None,
                         style_mixing_prob=0, r1_gamma=1.0, pl_weight=0)
    ratio = R1_INTERVAL / (R1_INTERVAL + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=0.002 * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
    reals = _reals(dataset, resolution).to(device)
    c = torch.zeros(batch, 0, device=device)
    rng = np.random.default_rng(0)
    beta = 0.5 ** (batch / 500)

    def step(i):
        z = torch.randn(batch, 512, device=device)
        real = reals[torch.from_numpy(rng.integers(len(reals), size=batch)).to(device)]
        for name, module, opt, interval in (("Gmain", G, opt_g, 1), ("Dmain", D, opt_d, 1), ("Dreg", D, opt_d, R1_INTERVAL)):
            if i % interval:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            loss.accumulate_gradients(phase=name, real_img=real, real_c=c, gen_z=z, gen_c=c, sync=True, gain=interval)
            module.requires_grad_(False)
            for p in module.parameters():
                if p.grad is not None:
                    misc.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    plain, r1 = _time(step, 1, steps, device)
    # NVIDIA's plugins fall back to their reference code, with only a warning, when nvcc fails: say which ran
    ops = {"bias_act": bias_act._plugin is not None, "upfirdn2d": upfirdn2d._plugin is not None}
    return {"plain_s": plain, "r1_s": r1, "peak_mib": _peak(device), "precision": "fp16 (4 res)" if cuda else "fp32",
            "custom_ops_built": ops}


def child_ours(resolution: int, batch: int, steps: int, device: str, mode: str, dataset: str) -> dict:
    import torch

    from drfhq_tools.gan.stylegan2 import Generator, StyleGAN2Config
    from drfhq_tools.gan.train import TrainConfig, Trainer
    from drfhq_tools.runtime import keep_freed_memory

    keep_freed_memory()
    torch.manual_seed(0)
    g = Generator(StyleGAN2Config(resolution=resolution, channel_base=32768, channel_max=512, conv_clamp=256, num_fp16_res=4))
    common = dict(dataset=dataset, out=tempfile.mkdtemp(), batch=batch, mbstd_group=min(4, batch), device=device, limit=32,
                  r1_interval=R1_INTERVAL, workers=2)
    if mode == "adversarial":
        cfg = TrainConfig(**common, augment=(), identity="none", w_identity=0, w_colour=0, w_geometry=0, freeze_mapping=False)
    else:
        cfg = TrainConfig(**common)
    trainer = Trainer(cfg, g, {"base": "benchmark"})
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step(i):
        trainer.step_index = i
        trainer.step()

    plain, r1 = _time(step, 1, steps, device)
    return {"plain_s": plain, "r1_s": r1, "peak_mib": _peak(device), "precision": trainer.precision}


def run_child(args, resolution: int, impl: str) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, "--resolutions", str(resolution), "--dataset", args.dataset,
           "--steps", str(args.steps), "--device", args.device, "--batch", str(args.batch)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        return {"impl": impl, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    r = json.loads(done.stdout.strip().splitlines()[-1])
    r["s_per_step"] = ((R1_INTERVAL - 1) * r["plain_s"] + r["r1_s"]) / R1_INTERVAL
    r["s_per_kimg"] = r["s_per_step"] * 1000 / args.batch
    return {"impl": impl, **r}


def translate_speed(args) -> dict:
    """Seconds per face of `translate` (all three methods) with MobileStyleGAN as both generators."""
    from drfhq_tools.gan.mobilestylegan import MobileStyleGAN
    from drfhq_tools.gan.networks import save_generator
    from drfhq_tools.gan.translate import METHODS, TranslateConfig, translate

    with tempfile.TemporaryDirectory() as tmp:
        g = MobileStyleGAN()
        for role in ("g_real", "g_render"):
            save_generator(g, Path(tmp) / "run" / role)
        start = time.perf_counter()
        translate(TranslateConfig(dataset=args.dataset, ckpt=f"{tmp}/run", out=f"{tmp}/tr", methods=METHODS, limit=args.translate,
                                  steps=args.translate_steps, lpips_net="vgg", device=args.device, batch=8), log=lambda *a: None)
        elapsed = time.perf_counter() - start
    return {"faces": args.translate, "inversion_steps": args.translate_steps, "s_per_face": elapsed / args.translate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="demo-out/dataset")
    parser.add_argument("--resolutions", default="256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--translate", type=int, default=0, help="also time translate on this many faces")
    parser.add_argument("--translate-steps", type=int, default=20)
    parser.add_argument("--impls", help="comma list (default: every one that runs on --device)")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        resolution = int(args.resolutions)
        if args.child.startswith("nvidia-"):
            result = child_nvidia(resolution, args.batch, args.steps, args.device, args.child.split("-")[1], args.dataset)
        else:
            result = child_ours(resolution, args.batch, args.steps, args.device, args.child.split("-")[1], args.dataset)
        print(json.dumps(result))
        return
    if not (Path(args.dataset) / "manifest.parquet").is_file():
        sys.exit(f"{args.dataset}: no dataset; run `make demo` first or pass --dataset")
    import torch

    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    impls = ["nvidia-ref"] + (["nvidia-custom"] if args.device.startswith("cuda") else []) + ["ours-adversarial", "ours-consistency"]
    if args.impls:     # in the order given (the GPU check times ours while NVIDIA's ops still compile)
        impls = [i for i in args.impls.split(",") if i in impls]
    report = {"device": device_name, "torch": torch.__version__, "batch": args.batch, "timed_steps": args.steps, "rows": []}
    print(f"training step, config-f, batch {args.batch}, on {device_name}, torch {torch.__version__}; "
          f"{args.steps} timed steps + 1 R1 step after a warm-up of each, amortised over R1 every {R1_INTERVAL}")
    print(f"{'res':>5} {'implementation':18} {'s/kimg':>9} {'s/step':>8} {'peak MiB':>9} {'precision':>12}  NVIDIA / ours")
    for resolution in (int(r) for r in args.resolutions.split(",")):
        rows = [run_child(args, resolution, impl) for impl in impls]
        peers = {r["impl"]: r for r in rows if "error" not in r and r["impl"].startswith("nvidia")}
        for r in rows:
            r["resolution"] = resolution
            if "error" in r:
                print(f"{resolution:5d} {r['impl']:18} failed: {r['error']}")
                continue
            ratios = {k.split("-")[1]: v["s_per_kimg"] / r["s_per_kimg"] for k, v in peers.items()} if r["impl"].startswith("ours") else {}
            r["ratio_nvidia_over_ours"] = ratios
            print(f"{resolution:5d} {r['impl']:18} {r['s_per_kimg']:9.1f} {r['s_per_step']:8.3f} {r['peak_mib']:9.0f} "
                  f"{r['precision']:>12}  " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
                  + (" (its custom ops did not build: reference code ran)" if r["impl"] == "nvidia-custom"
                     and not all(r.get("custom_ops_built", {}).values()) else ""))
        report["rows"].extend(rows)
        if args.json:       # after each resolution: a run stopped later keeps what it measured
            Path(args.json).write_text(json.dumps(report, indent=1))
    if args.translate:
        report["translate"] = translate_speed(args)
        t = report["translate"]
        print(f"translate (MobileStyleGAN, transfer + project-real + layer-swap, {t['inversion_steps']} steps, LPIPS vgg): "
              f"{t['s_per_face']:.2f} s per face over {t['faces']} faces")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
