"""The GPU check's figures in one JSON and one picture, from what its driver left (benchmarks/gpu_check.sh).

Reads CARRY/results (bench_train.json, bench_features.json, stages.tsv, gpu_mem.csv) and CARRY/work (the transfer run,
the translations, the bench tables); writes CARRY/results/gpu_check.json and translate-grid.jpg
(held-back renders, then each method's output, one face per row). Each figure is taken from the
files the commands wrote; a stage that did not run leaves its entry out and says why.

    python benchmarks/gpu_check_summary.py --carry DIR --device cuda --faces 32 --steps 200
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

METHODS = ("transfer", "project-real", "layer-swap")


def read_stages(path: Path) -> dict[str, dict]:
    stages = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, start, end, rc = line.split("\t")
            stages[name] = {"start": int(start), "end": int(end), "seconds": int(end) - int(start),
                            "exit": rc if rc == "skipped" else int(rc)}
    return stages


def gpu_memory_by_stage(path: Path, stages: dict[str, dict]) -> dict[str, dict]:
    """Peak device memory in use (nvidia-smi, MiB, every 0.5 s: the whole card, CUDA context included)
    and mean utilisation, per stage."""
    samples = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                stamp, used, util = (p.strip() for p in line.split(","))
                t = datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
                samples.append((t, float(used), float(util)))
            except ValueError:
                continue
    out = {}
    for name, s in stages.items():
        inside = [(u, g) for t, u, g in samples if s["start"] <= t <= s["end"]]
        if inside:
            out[name] = {"peak_mib": max(u for u, _ in inside), "mean_util_pct": round(sum(g for _, g in inside) / len(inside), 1)}
    return out


def bench_table(bench: Path) -> list[dict]:
    path = bench / "results.parquet"
    if not path.is_file():
        return []
    rows = pq.read_table(path).to_pylist()
    keep = ("method", "metric", "n", "n_failed", "value", "ci_low", "ci_high", "flag", "extractor", "weights_sha256")
    return [{k: r.get(k) for k in keep} for r in rows if r["slice"] == "all"]


def translate_grid(held: Path, translated: Path, out: Path, faces: int = 6, tile: int = 256) -> bool:
    """Rows of faces: the held-back render, then each method's output."""
    manifest = held / "manifest.parquet"
    if not manifest.is_file():
        return False
    rows = [r for r in pq.read_table(manifest).to_pylist()
            if all((translated / m / f"{r['id']}.png").is_file() for m in METHODS)][:faces]
    if not rows:
        return False
    from drfhq_tools.report.grid import path_grid

    path_grid([[held / r["image_path"]] + [translated / m / f"{r['id']}.png" for m in METHODS] for r in rows], tile).save(out, quality=90)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carry", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--faces", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--renders-as", choices=("jpeg", "png"), default="jpeg", help="how the renders travelled (GPU_CHECK_JPEG)")
    args = parser.parse_args()
    import torch

    results, work = args.carry / "results", args.carry / "work"
    stages = read_stages(results / "stages.tsv")
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    report = {
        "device": torch.cuda.get_device_name(0) if cuda else "CPU (rehearsal, tiny sizes)",
        "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
        "renders_carried_as": "JPEG q95 4:4:4, written back as PNG before use (the 64 MiB-per-call limit)"
                              if args.renders_as == "jpeg" else "PNG, as built",
        "stages": stages,
        "gpu_memory_by_stage": gpu_memory_by_stage(results / "gpu_mem.csv", stages),
    }
    for name in ("bench_train", "bench_features"):
        if (results / f"{name}.json").is_file():
            report[name] = json.loads((results / f"{name}.json").read_text())
    run = work / "train-run"
    if (run / "train-config.json").is_file():        # trained there (not a G_render sent along)
        info = json.loads((run / "g_render" / "generator.json").read_text())
        extra = info.get("extra", info)
        config = json.loads((run / "train-config.json").read_text())
        trained = next((s for k, s in stages.items() if k.startswith("train") and s["exit"] == 0), None)
        report["transfer"] = {
            "g_real": (config.get("base_info") or {}).get("base"), "resolution": config["resolution"],
            "batch": config["batch"], "precision": config["precision"], "discriminator": config["discriminator"],
            "training_images": pq.read_metadata(Path(config["dataset"]) / "manifest.parquet").num_rows,
            "kimg": extra.get("kimg"), "steps": extra.get("step"), "max_minutes": config.get("max_minutes"),
            "peak_cuda_allocated_mib": extra.get("peak_cuda_mib"),
            "train_stage_s": trained["seconds"] if trained else None,
        }
    table = work / "translated" / "translate.parquet"
    if table.is_file():
        inv = pq.read_table(table).to_pylist()
        stage = stages.get("translate", {})
        report["translate"] = {
            "faces": args.faces, "inversion_steps": args.steps, "methods": list(METHODS),
            "stage_s": stage.get("seconds"), "exit": stage.get("exit"),
            "s_per_face_all_methods": stage["seconds"] / args.faces if stage.get("seconds") else None,
            "by_generator": {
                g: {"faces": len(rs), "mean_lpips": sum(r["lpips"] for r in rs) / len(rs),
                    "collapsed": sum(bool(r["collapsed"]) for r in rs), "restarts": sum(r["restarts"] or 0 for r in rs),
                    "pulled_towards_w": sum(any(r.get(k) is not None and r[k] < 1 for k in ("spread_kept", "truncation")) for r in rs),
                    "gave_up": sum(bool(r.get("gave_up")) for r in rs),
                    "inverted_lifted": sum((r.get("exposure_gain") or 1) > 1 for r in rs)}
                for g in sorted({r["generator"] for r in inv}) for rs in [[r for r in inv if r["generator"] == g]]},
        }
        report["translate_grid"] = translate_grid(args.carry / "stage" / "transfer" / "data" / "held", work / "translated",
                                                  results / "translate-grid.jpg")
    rows = bench_table(work / "bench")
    if rows:
        stage = stages.get("bench", {})
        per_image = work / "bench" / "per_image.parquet"
        outputs = (len({(r["method"], r["image_id"]) for r in pq.read_table(per_image, columns=["method", "image_id"]).to_pylist()})
                   if per_image.is_file() else None)
        report["bench"] = {"stage_s": stage.get("seconds"), "outputs_scored": outputs,
                           "outputs_per_s": outputs / stage["seconds"] if outputs and stage.get("seconds") else None,
                           "results": rows}
    (results / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({k: v for k, v in report.items() if k not in ("bench", "bench_train")}, indent=1, default=str))
    for r in rows:
        print(f"{r['method']:14} {r['metric']:22} n={r['n']:<3} {r['value'] if r['value'] is None else round(r['value'], 4)}")


if __name__ == "__main__":
    main()
