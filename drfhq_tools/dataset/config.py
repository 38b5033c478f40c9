"""Build configuration: one frozen dataclass, validated before any side effect, saved in build.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..age_groups import DEFAULT_AGE_BINS, validate_age_bins
from ..errors import DrfhqError
from ..models.faces import DETECTORS, resolve_detector
from .decode import BACKGROUNDS
from .dedup import DEFAULT_NEAR_THRESHOLD, HASH_BITS
from .verify import CANDIDATE_COSINE, RESIDUAL_THRESHOLD

MULTI_FACE_POLICIES = ("largest", "center", "reject")


@dataclass(frozen=True)
class BuildConfig:
    src: str                                   # folder of renders (searched recursively)
    out: str                                   # dataset folder: images/, manifest.parquet, build.json
    metadata: str | None = None                # CSV / JSON / Parquet keyed by relative path or file stem
    size: int = 1024                           # aligned output side in pixels (FFHQ: 1024)
    workers: int = 1                           # worker processes for the per-image stage
    batch_size: int = 16                       # images per work shard (the unit of resume)
    detector: str = "auto"                     # auto | hog | cnn | hog+cnn | insightface (auto: insightface if
                                               # present, else HOG with CNN where HOG finds none)
    multi_face: str = "largest"                # largest | center | reject, for images with several faces
    min_face_px: float = 40.0                  # reject faces whose FFHQ quad is smaller (source pixels)
    background: str = "black"                  # colour under transparent pixels: black | white | grey
    near_threshold: int = DEFAULT_NEAR_THRESHOLD   # Hamming bits (of 256) within which the hash proposes a pair
    near_cosine: float = CANDIDATE_COSINE          # thumbnail cosine from which the embedding proposes a pair
    near_residual: float = RESIDUAL_THRESHOLD      # registration residual up to which a proposal is one picture
    age_bins: tuple[int, ...] = DEFAULT_AGE_BINS   # lower edges in years; the last bin is open
    predict_attributes: bool = True            # run the age/gender (and user race) models
    max_pixels: int = 100_000_000              # larger images are rejected as decompression bombs
    engine: str = "local"                      # local (process pool) | ray (Ray Data actor pool, one machine or a cluster)
    ray_address: str | None = None             # a running cluster (else RAY_ADDRESS, else a local instance)
    cpus_per_worker: float = 0.5               # Ray: CPUs each actor reserves (fractional, so the dataset's own tasks can run)
    gpus_per_worker: float = 0.0               # Ray: GPUs each actor reserves
    worker_resources: tuple[str, ...] = ()     # Ray: custom resources each actor needs, NAME=AMOUNT

    def stage_fields(self) -> dict:
        """The options that change per-image results; a change starts a fresh cache."""
        fields = {k: getattr(self, k) for k in ("size", "multi_face", "min_face_px", "background",
                                                "predict_attributes", "max_pixels")}
        return {**fields, "detector": resolve_detector(self.detector)}

    def validate(self) -> None:
        src = Path(self.src)
        if not src.is_dir():
            raise DrfhqError(f"{src}: source folder does not exist")
        out = Path(self.out).resolve()
        if out == src.resolve():
            raise DrfhqError(f"{out}: the output folder must differ from the source folder")
        if out.exists() and not out.is_dir():
            raise DrfhqError(f"{out}: exists and is not a folder")
        if self.metadata is not None and not Path(self.metadata).is_file():
            raise DrfhqError(f"{self.metadata}: metadata file not found")
        if not (64 <= self.size <= 4096) or self.size & (self.size - 1):
            raise DrfhqError(f"--size {self.size}: must be a power of two from 64 to 4096 (FFHQ: 1024; 256 and 512 common)")
        if self.workers < 1:
            raise DrfhqError(f"--workers {self.workers}: must be at least 1")
        from .engines import check_engine_options

        check_engine_options(self)
        if self.batch_size < 1:
            raise DrfhqError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.detector not in DETECTORS:
            raise DrfhqError(f"--detector {self.detector}: choose one of {', '.join(DETECTORS)}")
        if self.detector == "insightface":
            import importlib.util

            if importlib.util.find_spec("insightface") is None:
                raise DrfhqError("--detector insightface needs the insightface package: pip install 'drfhq-tools[insightface]'")
        if self.multi_face not in MULTI_FACE_POLICIES:
            raise DrfhqError(f"--multi-face {self.multi_face}: choose one of {', '.join(MULTI_FACE_POLICIES)}")
        if self.background not in BACKGROUNDS:
            raise DrfhqError(f"--background {self.background}: choose one of {', '.join(BACKGROUNDS)}")
        if not (0 <= self.near_threshold < HASH_BITS // 4):
            raise DrfhqError(f"--near-threshold {self.near_threshold}: must be in 0..{HASH_BITS // 4 - 1} bits")
        if not (0.0 < self.near_cosine <= 1.0):
            raise DrfhqError(f"--near-cosine {self.near_cosine}: must be in (0, 1]")
        if not (self.near_residual >= 0.0):
            raise DrfhqError(f"--near-residual {self.near_residual}: must be >= 0 (0 merges only pictures that register perfectly)")
        if validate_age_bins(self.age_bins):
            raise DrfhqError(f"--age-bins {','.join(map(str, self.age_bins))}: must be increasing lower edges starting at 0")
        if self.min_face_px < 0 or self.max_pixels < 64:
            raise DrfhqError("--min-face-px must be >= 0 and --max-pixels >= 64")


def load_config_file(path: str | Path) -> dict:
    """Options from a JSON file (manifests/examples/*.json); command-line flags override them."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DrfhqError(f"{path}: cannot read config: {exc}") from None
    if not isinstance(data, dict):
        raise DrfhqError(f"{path}: config must be a JSON object")
    return data


def merge_config(cls, file_values: dict, cli_values: dict, source: str):
    """Build a config dataclass from a config file's values overlaid with explicitly given CLI values."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(file_values) - names)
    if unknown:
        raise DrfhqError(f"{source}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {**file_values, **{k: v for k, v in cli_values.items() if v is not None}}
    for f in dataclasses.fields(cls):
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    try:
        return cls(**values)
    except TypeError as exc:
        raise DrfhqError(f"{source}: {exc}") from None
