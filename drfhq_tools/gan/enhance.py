"""`drfhq enhance`: whole images in (any size, any number of faces), the same images out with every
usable face translated by a trained run and pasted back at the source resolution.

Per image: decode, detect every face, 68 landmarks, FFHQ-align each face at the generator's resolution,
translate the crops (translate's methods and inversion options, inversions cached by crop content),
paste each back through the inverse alignment under a feathered landmark mask with a Laplacian-pyramid
blend (`dataset.paste`), and write OUT/images/<relative path>.png. Faces that are too small are left as
rendered, with the reason; images where no face is usable (none found, all too small, a broken file)
are copied unchanged or, when unreadable, recorded. OUT/enhance.parquet has one row per face and one
per image without a usable face; OUT/index.html shows every image before and after.
Resumable: each output PNG and each image's rows carry a key (the source file's sha256, the
translation's key, the paste settings); a rerun redoes only what is missing or differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from ..dataset.align import align_face
from ..dataset.decode import IMAGE_SUFFIXES, RejectedImage, decode_image, list_inputs
from ..dataset.paste import REGIONS, face_polygon, paste_face
from ..errors import DrfhqError
from ..io import FolderLock, atomic_save_image, atomic_write_json, atomic_write_parquet, png_text, sha256_file
from .translate import KEY_CHUNK, SOURCE, RunModels, TranslateConfig, _digest, inversion_record
from .train import to_uint8


@dataclass(frozen=True)
class EnhanceConfig(TranslateConfig):
    """translate's options, with `dataset` the folder (or file) of whole images and `methods` one
    method, plus how faces are found and pasted back."""
    detector: str = "auto"                 # auto | hog | cnn | hog+cnn | insightface (as build-dataset)
    min_face_px: float = 96.0              # faces whose alignment square is smaller (source px) stay as rendered
    region: str = "face"                   # face: jaw line to forehead (hair stays rendered) | head: the whole crop
    source_detail: bool = True             # keep the source's detail above the crop's resolution
    feather: float = 0.06                  # mask ramp, as a fraction of the face's alignment square
    background: str = "black"              # under transparent pixels
    paste_collapsed: bool = False          # paste faces whose inversion stayed degenerate too (to look at them), flagged
    max_lpips: float = 0.0                 # > 0: faces fitted worse than this (LPIPS to the crop) stay as rendered: the
                                           # collapse rule can keep a usable start that is another face
    paste_gave_up: bool = False            # paste faces whose inversion gave up on every attempt (an early iterate:
                                           # measured on dark renders, a realistic face of someone else)
    min_truncation: float = 0.0            # > 0: faces pulled towards the mean face further than this (truncation
                                           # below it) stay as rendered: a far-pulled face is a face, but less the render's

    def validate(self) -> None:
        if not Path(self.dataset).exists():
            raise DrfhqError(f"{self.dataset}: no such file or folder")
        self.validate_run()
        self.validate_common()

    def validate_common(self) -> None:
        """Everything but the run folder (an injected translator needs none)."""
        from ..models.faces import DETECTORS

        self.validate_options()
        if len(self.methods) != 1:
            raise DrfhqError(f"--method {','.join(self.methods)}: enhance pastes one method's faces")
        if self.detector not in DETECTORS:
            raise DrfhqError(f"--detector {self.detector}: choose from {', '.join(DETECTORS)}")
        if self.region not in REGIONS:
            raise DrfhqError(f"--region {self.region}: choose from {', '.join(REGIONS)}")
        if self.min_face_px <= 0 or not 0 < self.feather < 0.5:
            raise DrfhqError("--min-face-px must be > 0 and --feather in (0, 0.5)")
        if self.max_lpips < 0:
            raise DrfhqError(f"--max-lpips {self.max_lpips}: must be >= 0 (0: off)")
        if not 0 <= self.min_truncation <= 1:
            raise DrfhqError(f"--min-truncation {self.min_truncation}: must be in [0, 1] (0: off)")

    def left_as_rendered(self, detail: dict) -> str | None:
        """Why a translated face is not pasted (None: it is), from its inversion's record."""
        if detail.get("collapsed") and not self.paste_collapsed:     # by default a degenerate face never goes
            return f"inversion stayed degenerate after {detail.get('restarts')} restarts; face left as rendered"
        if detail.get("gave_up") and not self.paste_gave_up:
            fit = f", LPIPS {detail['lpips']:.3f}" if detail.get("lpips") is not None else ""
            return (f"inversion gave up on every attempt (kept step {detail.get('steps')}{fit}: often another person's face); "
                    "face left as rendered")
        if self.max_lpips > 0 and detail.get("lpips") is not None and detail["lpips"] > self.max_lpips:
            return f"fit too poor (LPIPS {detail['lpips']:.3f} > --max-lpips {self.max_lpips:g}); face left as rendered"
        truncation = detail.get("truncation")
        if self.min_truncation > 0 and truncation is not None and truncation < self.min_truncation:
            return (f"pulled towards the mean face (truncation {truncation:.3f} < --min-truncation {self.min_truncation:g}); "
                    "face left as rendered")
        return None


ENHANCE_SCHEMA = pa.schema([
    pa.field("image", pa.string()),               # source path, relative to SRC
    pa.field("face", pa.int32()),                 # index from the left; null on an image's own row
    pa.field("status", pa.string()),              # enhanced | skipped (face) | unchanged | failed (image)
    pa.field("reason", pa.string()),              # why a face or an image was not enhanced
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("box", pa.list_(pa.float32())),      # detector box (left, top, right, bottom), source px
    pa.field("detector", pa.string()),
    pa.field("face_px", pa.float32()),            # side of the face's alignment square, source px
    pa.field("lpips", pa.float32()),              # inversion's LPIPS to the aligned face
    pa.field("steps", pa.int32()),
    pa.field("restarts", pa.int32()),
    pa.field("collapsed", pa.bool_()),
    pa.field("steps_run", pa.int32()),            # inversion steps spent, every start counted
    pa.field("spread_kept", pa.float32()),        # 1 unless pulled towards W after its restarts (translate.parquet's)
    pa.field("truncation", pa.float32()),
    pa.field("gave_up", pa.bool_()),              # translate.parquet's: an early iterate kept after every restart
    pa.field("exposure_gain", pa.float32()),      # translate.parquet's: > 1 where the face was inverted lifted
    pa.field("output", pa.string()),              # OUT-relative image written, null for unreadable files
    pa.field("key", pa.string()),
])


class GanFaceTranslator:
    """Aligned crops -> translated crops with a trained run (the method's generator inverted into, then
    decoded), inversions cached in OUT/latents by crop content and settings."""

    def __init__(self, cfg: EnhanceConfig, out: Path):
        self.models = RunModels(cfg, None, None)
        self.size = self.models.size
        self.method = cfg.methods[0]
        self.src = SOURCE[self.method]
        self.latent_dir = out / "latents" / f"{self.src}-{self.models.keys['inversion'][self.src]}"
        self.key = self.models.keys["outputs"][self.method]

    def __call__(self, crops: list[np.ndarray], ids: list[str]) -> tuple[list[np.ndarray], list[dict]]:
        by_id = dict(zip(ids, crops))

        def target(i, resolution):
            img = Image.fromarray(by_id[i])
            if img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.LANCZOS, reducing_gap=3.0)
            return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
        self.models.invert(self.src, self.latent_dir, list(dict.fromkeys(ids)), target)
        images, info = [], []
        for i in ids:
            saved = self.models.load_latent(self.latent_dir / f"{i}.pt")
            image = self.models.decode(self.method, saved)
            picture = Image.fromarray(to_uint8(image[None])[0])
            if picture.size != (self.size, self.size):
                picture = picture.resize((self.size, self.size), Image.LANCZOS, reducing_gap=3.0)
            images.append(np.asarray(picture))
            info.append(inversion_record(saved))
        return images, info

    def describe(self) -> dict:
        return {"method": self.method, "checkpoint_sha256": self.models.hashes, "inversion_key": self.models.keys["inversion"][self.src],
                "settings": self.models.keys["settings"]}


@dataclass
class FoundFace:
    index: int
    box: tuple[float, float, float, float]
    detector: str
    landmarks68: np.ndarray
    aligned: object                          # dataset.align.AlignedFace at the translator's size
    reason: str | None                       # why it is left as rendered (None: usable)

    @property
    def crop_id(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.aligned.image).tobytes()).hexdigest()[:16]


def find_faces(rgb: np.ndarray, cfg: EnhanceConfig, size: int) -> list[FoundFace]:
    """Every detected face, left to right, aligned at `size`; too-small faces carry their reason."""
    from ..models import faces

    found = sorted(faces.detect_faces(rgb, cfg.detector), key=lambda f: (f.box[0], f.box[1]))
    out = []
    for index, face in enumerate(found):
        lm68 = faces.landmarks(rgb, face.box, 68)
        aligned = align_face(rgb, lm68, size)
        reason = None
        if aligned.qsize < cfg.min_face_px:
            reason = f"face too small: alignment square {aligned.qsize:.0f} px < --min-face-px {cfg.min_face_px:g}"
        out.append(FoundFace(index, tuple(float(v) for v in face.box), face.detector, lm68, aligned, reason))
    return out


def _output_path(rel: str) -> str:
    return "images/" + str(Path(rel).with_suffix(".png"))


def _row(rel: str, **values) -> dict:
    row = {f.name: None for f in ENHANCE_SCHEMA}
    row["image"] = rel
    row.update(values)
    return row


def enhance_image(path: Path, rel: str, cfg: EnhanceConfig, translator, key: str, out: Path) -> list[dict]:
    """Enhance one image and write its output; returns its rows."""
    try:
        decoded = decode_image(path, cfg.background)
    except (RejectedImage, OSError) as exc:
        return [_row(rel, status="failed", reason=f"cannot read: {exc}", key=key)]
    rgb = decoded.rgb
    size = dict(width=rgb.shape[1], height=rgb.shape[0])
    try:
        found = find_faces(rgb, cfg, translator.size)
    except Exception as exc:      # a detector failure on one image must not stop the folder
        return [_row(rel, status="failed", reason=f"face detection failed: {type(exc).__name__}: {exc}", key=key, **size)]
    usable = [f for f in found if f.reason is None]
    result = rgb
    info = {}
    if usable:
        ids = [f.crop_id for f in usable]
        translated, details = translator([f.aligned.image for f in usable], ids)
        for face, crop, detail in zip(usable, translated, details):
            info[face.index] = detail
            if cfg.left_as_rendered(detail):
                continue
            polygon = face_polygon(face.landmarks68, cfg.region, face.aligned.quad)
            result = paste_face(result, crop, face.aligned.image if cfg.source_detail else None, face.aligned.affine,
                                face.aligned.qsize, polygon, cfg.feather * face.aligned.qsize)
    output = _output_path(rel)
    atomic_save_image(out / output, Image.fromarray(result), {KEY_CHUNK: key})
    if not found:
        return [_row(rel, status="unchanged", reason="no face found", output=output, key=key, **size)]
    rows = []
    for face in found:
        detail = info.get(face.index, {})
        reason = face.reason or cfg.left_as_rendered(detail)
        rows.append(_row(rel, face=face.index, status="enhanced" if reason is None else "skipped", reason=reason,
                         box=list(face.box), detector=face.detector, face_px=face.aligned.qsize, output=output, key=key,
                         **size, **detail))
    if not usable:
        rows.append(_row(rel, status="unchanged", reason=f"no usable face ({len(found)} too small)", output=output, key=key, **size))
    return rows


def enhance(cfg: EnhanceConfig, translator=None, progress=None, log=print) -> Path:
    """Enhance every image under cfg.dataset into cfg.out; returns OUT/enhance.parquet.

    translator: aligned crops -> translated crops (`GanFaceTranslator` of cfg.ckpt by default; anything
    with `size`, `key` and that call, e.g. the identity in tests)."""
    if translator is None:
        cfg.validate()
    else:
        cfg.validate_common()
        if not Path(cfg.dataset).exists():
            raise DrfhqError(f"{cfg.dataset}: no such file or folder")
    src, out = Path(cfg.dataset), Path(cfg.out)
    root = src if src.is_dir() else src.parent
    files = list_inputs(src) if src.is_dir() else [src]
    rels = [p.relative_to(root).as_posix() for p in files]
    outputs: dict[str, str] = {}
    for rel in rels:
        if Path(rel).suffix.lower() in IMAGE_SUFFIXES and _output_path(rel) in outputs:
            raise DrfhqError(f"{src}: {outputs[_output_path(rel)]} and {rel} would both be written to {_output_path(rel)}; rename one")
        outputs[_output_path(rel)] = rel
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise DrfhqError(f"--out {out}: must not be inside the source folder {root}")
    with FolderLock(out, "enhance"):
        translator = translator or GanFaceTranslator(cfg, out)
        settings = {"translator": translator.key, "region": cfg.region, "source_detail": cfg.source_detail,
                    "feather": cfg.feather, "min_face_px": cfg.min_face_px, "detector": cfg.detector, "background": cfg.background,
                    "paste_collapsed": cfg.paste_collapsed, "max_lpips": cfg.max_lpips,
                    "min_truncation": cfg.min_truncation, "paste_gave_up": cfg.paste_gave_up}
        atomic_write_json(out / "enhance.json", {"config": asdict(cfg), "paste": settings,
                                                 "translator": getattr(translator, "describe", dict)()})
        all_rows, redone = [], 0
        for n, (path, rel) in enumerate(zip(files, rels)):
            rows_file = out / "rows" / f"{hashlib.sha256(rel.encode()).hexdigest()[:16]}.json"
            try:
                key = _digest({"file_sha256": sha256_file(path), **settings})
            except OSError as exc:
                all_rows.append(_row(rel, status="failed", reason=f"cannot read: {exc}"))
                continue
            saved = json.loads(rows_file.read_text()) if rows_file.is_file() else None
            outputs_there = saved and all(r["output"] is None or png_text(out / r["output"], KEY_CHUNK) == key for r in saved["rows"])
            if saved and saved["key"] == key and outputs_there:
                all_rows.extend(saved["rows"])
            else:
                rows = enhance_image(path, rel, cfg, translator, key, out)
                atomic_write_json(rows_file, {"key": key, "rows": rows})
                all_rows.extend(rows)
                redone += 1
            if progress:
                progress(n + 1, len(files))
        table = pa.Table.from_pylist(all_rows, schema=ENHANCE_SCHEMA)
        atomic_write_parquet(out / "enhance.parquet", table)
        from ..report.enhance_page import write_enhance_page

        write_enhance_page(out, root, all_rows)
    count = {status: sum(r["status"] == status for r in all_rows) for status in ("enhanced", "skipped", "unchanged", "failed")}
    log(f"enhance: {len(files)} images ({redone} processed, {len(files) - redone} reused): {count['enhanced']} faces enhanced, "
        f"{count['skipped']} faces left as rendered, {count['unchanged']} images without a usable face, {count['failed']} unreadable "
        f"(reasons in {out / 'enhance.parquet'}); before/after: {out / 'index.html'}")
    return out / "enhance.parquet"
