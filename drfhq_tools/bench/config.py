"""Bench configuration: one frozen dataclass, validated before any side effect, saved in the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DrfhqError
from ..models.identity import identity_names
from .methods import BUILTIN_METHODS, GENERATOR_METHODS, RESIZE_FILTERS, parse_baselines
from .slices import TAG_COLUMNS, check_slices

IDENTITY_CROPS = ("output", "render")


@dataclass(frozen=True)
class BenchConfig:
    dataset: str                                   # a build-dataset folder (manifest.parquet + images/)
    real: str                                      # real photos: a dataset folder, aligned images, or raw photos
    out: str                                       # run folder: results.duckdb, *.parquet, report.html
    baselines: tuple[str, ...] = ("input", "color-transfer")   # built-in names or NAME=DIR
    lpips_net: str = "alex"                        # alex | vgg
    lpips_random: bool = False                     # tests only: random backbone, rows named lpips_random
    identity: str = "auto"                         # networks, comma list: auto (ArcFace if imported, dlib, FaceRes if fetched) | dlib | dlib-torch | arcface | faceres
    identity_crop: str = "output"                  # output: each image's own re-detected face | render: the render's landmarks for both
    slices: tuple[str, ...] = TAG_COLUMNS          # tags, source_dir or meta_<name> columns to slice by (slices.py)
    cross: tuple[str, ...] = ()                    # crossings, e.g. "gender*age_group"
    kid_subsets: int = 100
    kid_subset_size: int = 1000                    # clean-fid's default; a smaller slice uses all its images
    bootstrap: int = 1000                          # resamples for the 95% intervals
    seed: int = 0
    fid_min_n: int = 1000                          # FID of slices smaller than this is flagged `small_n`
    device: str = "cpu"                            # cpu | cuda
    batch_size: int = 16
    workers: int = 2                               # DataLoader processes that decode and resize (0: in the main process)
    resize: str = "lanczos"                        # external outputs of another size are resized to the dataset's with this
    prdc_k: int = 5                                # neighbours of precision / recall / density / coverage
    fid_inf_points: int = 15                       # subset sizes of the FID-infinity fit
    cache: str | None = None                       # feature cache file (default: $DRFHQ_HOME/cache/bench.sqlite)
    limit: int | None = None                       # use only the first N dataset rows (quick looks)
    samples: int = 8                               # rows in the report's sample grid
    ckpt: str | None = None                        # a `drfhq train` run: enables transfer, project-real, layer-swap
    translate_steps: int = 300                     # inversion steps of those methods
    translate_lpips: str = "vgg"
    translate_batch: int = 4
    engine: str = "local"                          # local (DataLoader workers here) | ray (Ray Data actors, a cluster)
    ray_address: str | None = None                 # a running cluster (else RAY_ADDRESS, else a local instance)
    cpus_per_worker: float = 1.0                   # Ray: CPUs each actor reserves
    gpus_per_worker: float = 0.0                   # Ray: GPUs each actor reserves (with --device cuda)
    worker_resources: tuple[str, ...] = ()         # Ray: custom resources each actor needs, NAME=AMOUNT

    def validate(self) -> None:
        dataset = Path(self.dataset)
        if not (dataset / "manifest.parquet").is_file():
            raise DrfhqError(f"{dataset}: not a dataset (no manifest.parquet); make one with `drfhq build-dataset`")
        if not Path(self.real).is_dir():
            raise DrfhqError(f"{self.real}: real-image folder does not exist")
        for name, folder in parse_baselines(self.baselines):
            if folder is None and name in GENERATOR_METHODS and not self.ckpt:
                raise DrfhqError(f"--baselines: '{name}' runs a trained generator: give --ckpt RUN_DIR (a `drfhq train` "
                                 f"run), or {name}=DIR for outputs of `drfhq translate`")
            if folder is None and name not in BUILTIN_METHODS and name not in GENERATOR_METHODS:
                raise DrfhqError(f"--baselines: unknown built-in method '{name}' (built in: "
                                 f"{', '.join([*BUILTIN_METHODS, *GENERATOR_METHODS])}; or give NAME=DIR for a folder of outputs)")
            if folder is not None and not Path(folder).is_dir():
                raise DrfhqError(f"--baselines: {name}={folder}: folder does not exist")
        if self.lpips_net not in ("alex", "vgg"):
            raise DrfhqError(f"--lpips-net {self.lpips_net}: choose alex or vgg")
        identity_names(self.identity)
        if self.identity_crop not in IDENTITY_CROPS:
            raise DrfhqError(f"--identity-crop {self.identity_crop}: choose from {', '.join(IDENTITY_CROPS)}")
        if self.resize not in RESIZE_FILTERS:
            raise DrfhqError(f"--resize {self.resize}: choose from {', '.join(RESIZE_FILTERS)}")
        if self.workers < 0 or self.prdc_k < 1 or self.fid_inf_points < 3:
            raise DrfhqError("--workers must be >= 0, --prdc-k >= 1, --fid-inf-points >= 3")
        check_slices(dataset / "manifest.parquet", self.slices, self.cross)
        if self.kid_subsets < 1 or self.kid_subset_size < 2 or self.bootstrap < 1 or self.batch_size < 1:
            raise DrfhqError("--kid-subsets, --bootstrap and --batch-size must be >= 1, --kid-subset-size >= 2")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise DrfhqError(f"--device {self.device}: cpu or cuda")
        if self.ckpt is not None:
            for part in ("g_real", "g_render"):
                if not (Path(self.ckpt) / part / "generator.json").is_file():
                    raise DrfhqError(f"--ckpt {self.ckpt}: not a `drfhq train` run (no {part}/generator.json)")
            if self.translate_steps < 1 or self.translate_batch < 1 or self.translate_lpips not in ("alex", "vgg"):
                raise DrfhqError("--translate-steps and --translate-batch must be >= 1, --translate-lpips alex or vgg")
        from ..dataset.engines import check_engine_options

        check_engine_options(self)
        if self.engine == "ray" and self.workers < 1:
            raise DrfhqError("--engine ray: --workers is the number of actors, at least 1")
        if self.limit is not None and self.limit < 2:
            raise DrfhqError("--limit must be at least 2")
