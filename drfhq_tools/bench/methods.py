"""Methods that turn an aligned render into a (hopefully) realistic face.

Built in: `input` (the render unchanged: the uncanny-valley baseline) and `color-transfer` (Reinhard et
al. 2001: each face's l-alpha-beta mean and spread matched to the real set's). External methods are
folders of outputs from other tools, matched to dataset rows by id or file stem. With `--ckpt RUN`
(a `drfhq train` run) the generator methods transfer, project-real and layer-swap are built in too:
bench runs `translate` for them into its own methods/ folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..dataset.decode import IMAGE_SUFFIXES
from ..dataset.rows import FACE_BOX
from ..errors import DrfhqError

_RGB_TO_LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
_LMS_TO_LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array([[1, 1, 1], [1, 1, -2], [1, -1, 0]])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Reinhard's l-alpha-beta from uint8 RGB (HxWx3 -> HxWx3 float64)."""
    lms = (np.asarray(rgb, dtype=np.float64) / 255.0) @ _RGB_TO_LMS.T
    # A floor of one grey level keeps near-black pixels from dominating the log-domain statistics.
    return np.log10(np.clip(lms, 1.0 / 255.0, None)) @ _LMS_TO_LAB.T


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    lms = 10 ** (lab @ np.linalg.inv(_LMS_TO_LAB).T)
    rgb = lms @ np.linalg.inv(_RGB_TO_LMS).T
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def face_region(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return image[round(FACE_BOX[1] * h):round(FACE_BOX[3] * h), round(FACE_BOX[0] * w):round(FACE_BOX[2] * w)]


def lab_statistics(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of l-alpha-beta over the inner faces of a set of aligned images."""
    pixels = np.concatenate([rgb_to_lab(face_region(img)).reshape(-1, 3) for img in images])
    return pixels.mean(axis=0), pixels.std(axis=0)


def reinhard_transfer(rgb: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray) -> np.ndarray:
    lab = rgb_to_lab(rgb)
    face = lab[tuple(slice(round(a * s), round(b * s)) for a, b, s in
                     ((FACE_BOX[1], FACE_BOX[3], rgb.shape[0]), (FACE_BOX[0], FACE_BOX[2], rgb.shape[1])))]
    mean, std = face.reshape(-1, 3).mean(0), face.reshape(-1, 3).std(0)
    # Bounded gain: a face with almost no spread in a channel (dark, flat renders) is not blown up.
    gain = np.clip(target_std / np.maximum(std, 1e-6), 1 / 3, 3)
    return lab_to_rgb((lab - mean) * gain + target_mean)


RESIZE_FILTERS = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


@dataclass
class MethodOutputs:
    name: str
    paths: dict[str, Path]                 # dataset row id -> output image (at the dataset's size)
    missing: list[str]                     # row ids without an output
    resized: dict[str, str]                # row id -> the output's own size ("512x512"), for outputs resized to the dataset's
    extra: list[str]                       # files in the folder that match no row
    source: str                            # 'built-in', the folder, or the train run (generator methods)
    provenance: dict | None = None         # generator methods: checkpoint hashes, translate settings and key
    unreadable: list[str] = field(default_factory=list)   # "file: reason" for matched files that do not decode


def parse_baselines(text: str | tuple) -> list[tuple[str, str | None]]:
    items = text.split(",") if isinstance(text, str) else list(text)
    parsed, seen = [], set()
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, _, folder = item.partition("=")
        name = name.strip()
        if not name or name in seen:
            raise DrfhqError(f"--baselines: empty or repeated method name in '{item}'")
        seen.add(name)
        parsed.append((name, folder.strip() or None))
    if not parsed:
        raise DrfhqError("--baselines: name at least one method (input, color-transfer, NAME=DIR)")
    return parsed


def match_folder(name: str, folder: Path, rows: list[dict], size: int, resize: str, resized_dir: Path,
                 file_sha256) -> MethodOutputs:
    """Match a folder of outputs to dataset rows by id, then by the source file's stem. Outputs of another
    size are resized to the dataset's with `resize` (a copy under `resized_dir`, named by the output's
    content hash, so it is made once). A method with fewer than two usable outputs is an error that
    says why."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p)
    paths, missing, resized, unreadable, used = {}, [], {}, [], set()
    for row in rows:
        candidates = by_stem.get(row["id"]) or by_stem.get(Path(row["source_path"]).stem) or []
        if len(candidates) != 1:
            missing.append(row["id"])
            continue
        path = candidates[0]
        used.add(path)
        try:
            with Image.open(path) as img:
                own = img.size
                if own != (size, size):
                    target = resized_dir / f"{file_sha256([path])[0][:24]}-{size}-{resize}.png"
                    if not target.is_file():
                        from ..io import atomic_save_image

                        atomic_save_image(target, img.convert("RGB").resize((size, size), RESIZE_FILTERS[resize]))
                    resized[row["id"]] = f"{own[0]}x{own[1]}"
                    path = target
        except (OSError, ValueError) as exc:
            unreadable.append(f"{path.relative_to(folder)}: {exc}")
            missing.append(row["id"])
            continue
        paths[row["id"]] = path
    extra = [str(p.relative_to(folder)) for p in files if p not in used]
    if len(paths) < 2:
        if not files:
            reason = "it holds no image files"
        elif unreadable:
            reason = f"{len(unreadable)} matched file(s) cannot be read, e.g. {unreadable[0]}"
        else:
            reason = (f"{len(paths)} of its {len(files)} image files are named after a dataset row (file stem = row id or the "
                      f"render's own stem, e.g. {rows[0]['id']} or {Path(rows[0]['source_path']).stem}); unmatched: "
                      f"{', '.join(extra[:3])}")
        raise DrfhqError(f"--baselines {name}={folder}: no usable outputs (needs at least two): {reason}")
    return MethodOutputs(name, paths, missing, resized, extra, str(folder), unreadable=unreadable)


BuiltinMethod = Callable[[list[dict], Path, dict], dict[str, Path]]


def _method_input(rows: list[dict], out_dir: Path, context: dict) -> dict[str, Path]:
    return {row["id"]: Path(row["image_file"]) for row in rows}


def _method_color_transfer(rows: list[dict], out_dir: Path, context: dict) -> dict[str, Path]:
    mean, std = context["real_lab_stats"]()
    out_dir.mkdir(parents=True, exist_ok=True)
    from ..io import atomic_save_image

    paths = {}
    for row in rows:
        target = out_dir / f"{row['id']}.png"
        rgb = np.asarray(Image.open(row["image_file"]).convert("RGB"))
        atomic_save_image(target, Image.fromarray(reinhard_transfer(rgb, mean, std)))
        paths[row["id"]] = target
    return paths


def _generator_method(name: str) -> BuiltinMethod:
    def run(rows: list[dict], out_dir: Path, context: dict) -> dict[str, Path]:
        from ..gan.translate import TranslateConfig, translate

        config = context["config"]
        cfg = TranslateConfig(dataset=config.dataset, ckpt=config.ckpt, out=str(out_dir.parent), methods=(name,),
                              steps=config.translate_steps, lpips_net=config.translate_lpips, device=config.device,
                              limit=config.limit, batch=config.translate_batch)
        paths = translate(cfg, progress=context.get("progress"), log=context.get("log", print))[name]
        context.setdefault("provenance", {})[name] = json.loads((out_dir / "provenance.json").read_text())
        return paths
    return run


BUILTIN_METHODS: dict[str, BuiltinMethod] = {"input": _method_input, "color-transfer": _method_color_transfer}
GENERATOR_METHODS: dict[str, BuiltinMethod] = {m: _generator_method(m) for m in ("transfer", "project-real", "layer-swap")}
