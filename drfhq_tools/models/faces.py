"""dlib face detection and landmarks, loaded from the weights home (one instance per process).

Detection policy (`auto`, the default): insightface's SCRFD detector when its weights and the
insightface package are present; otherwise dlib's HOG detector, upsampled so that small images still
show faces of ~80 px, with dlib's CNN (MMOD) detector as the fallback for images where HOG finds
nothing (hard CG pose and light). Boxes are (left, top, right, bottom) in source pixels.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import DrfhqError
from .weights import resolve, try_resolve

DETECTORS = ("auto", "hog", "cnn", "hog+cnn", "insightface")
_HOG_TARGET_SIDE = 400      # upsample small images until their short side reaches this (HOG's window is 80 px)
_CNN_MAX_SIDE = 720         # the CNN detector's cost grows with area: run it on a bounded copy


@dataclass(frozen=True)
class FaceBox:
    box: tuple[float, float, float, float]
    score: float
    detector: str

    @property
    def area(self) -> float:
        return max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0)


@functools.lru_cache(maxsize=None)
def _dlib():
    """dlib, imported where it runs: train never calls it, translate only with --face-check (a GPU image may lack it)."""
    try:
        import dlib
    except ImportError as exc:
        raise DrfhqError("dlib is not installed (face detection and landmarks need it): pip install dlib-bin") from exc
    return dlib


@functools.lru_cache(maxsize=None)
def _hog():
    return _dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn():
    return _dlib().cnn_face_detection_model_v1(str(resolve("dlib-mmod-detector").path))


@functools.lru_cache(maxsize=None)
def _predictor(name: str):
    return _dlib().shape_predictor(str(resolve(name).path))


def insightface_available() -> bool:
    return try_resolve("insightface-det") is not None and importlib.util.find_spec("insightface") is not None


def resolve_detector(detector: str) -> str:
    """The concrete detector `auto` means on this machine (recorded in build.json and the cache key)."""
    if detector == "auto":
        return "insightface" if insightface_available() else "hog+cnn"
    return detector


def model_names(detector: str) -> list[str]:
    names = ["dlib-landmarks-68", "dlib-landmarks-5"]
    if "cnn" in detector:
        names.append("dlib-mmod-detector")
    if detector == "insightface":
        names.append("insightface-det")
    return names


@functools.lru_cache(maxsize=None)
def _scrfd():
    from insightface.model_zoo.scrfd import SCRFD

    model = SCRFD(model_file=str(resolve("insightface-det").path))
    model.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    return model


def detect_insightface(rgb: np.ndarray) -> list[FaceBox]:
    boxes, _ = _scrfd().detect(np.ascontiguousarray(rgb[:, :, ::-1]), input_size=(640, 640))   # SCRFD takes BGR
    return [FaceBox(tuple(float(v) for v in b[:4]), float(b[4]), "insightface-scrfd") for b in boxes]


def _upsample_for(shape: tuple[int, ...], target: int) -> int:
    side, up = min(shape[:2]), 0
    while side * (2 ** up) < target and up < 2:
        up += 1
    return up


def detect_hog(rgb: np.ndarray, upsample: int | None = None) -> list[FaceBox]:
    """upsample: pyramid levels up (default: until the short side reaches _HOG_TARGET_SIDE)."""
    up = _upsample_for(rgb.shape, _HOG_TARGET_SIDE) if upsample is None else upsample
    rects, scores, _ = _hog().run(rgb, up, 0.0)
    return [FaceBox((r.left(), r.top(), r.right(), r.bottom()), float(s), "dlib-hog") for r, s in zip(rects, scores)]


def detect_cnn(rgb: np.ndarray, upsample: int | None = None) -> list[FaceBox]:
    """upsample: pyramid levels up (default: until the bounded copy's short side reaches 320)."""
    scale = min(1.0, _CNN_MAX_SIDE / max(rgb.shape[:2]))
    small = rgb
    if scale < 1.0:
        small = np.asarray(Image.fromarray(rgb).resize(
            (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), Image.BILINEAR, reducing_gap=2.0))
    up = _upsample_for(small.shape, 320) if upsample is None else upsample
    found = _cnn()(small, up)
    return [FaceBox(tuple(v / scale for v in (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom())),
                    float(d.confidence), "dlib-cnn") for d in found]


def detect_faces(rgb: np.ndarray, detector: str = "hog+cnn") -> list[FaceBox]:
    detector = resolve_detector(detector)
    if detector == "insightface":
        return detect_insightface(rgb)
    faces: list[FaceBox] = []
    if detector in ("hog", "hog+cnn"):
        faces = detect_hog(rgb)
    if not faces and detector in ("cnn", "hog+cnn"):
        faces = detect_cnn(rgb)
    return faces


def require_detectors() -> None:
    """Fail now, with what to install or where to put the file, if dlib or its CNN detector is missing."""
    _dlib()
    resolve("dlib-mmod-detector")


def _rect(box):                     # -> dlib.rectangle
    return _dlib().rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))


def landmarks(rgb: np.ndarray, box, points: int = 68) -> np.ndarray:
    """points x 2 float32 landmark coordinates (x, y) in source pixels."""
    shape = _predictor(f"dlib-landmarks-{points}")(rgb, _rect(box))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def face_chip(rgb: np.ndarray, box, landmarks5: np.ndarray, size: int, padding: float) -> np.ndarray:
    """dlib's aligned face chip (similarity from the 5 landmarks), size x size x 3 uint8."""
    parts = _dlib().points([_dlib().point(int(round(x)), int(round(y))) for x, y in landmarks5])
    shape = _dlib().full_object_detection(_rect(box), parts)
    details = _dlib().get_face_chip_details(shape, size, padding)
    return np.ascontiguousarray(_dlib().extract_image_chip(rgb, details))


REDETECT_PROTOCOL = "dlib-hog+cnn-on-max512-largest-face-68+5pt"


def find_faces_again(rgb: np.ndarray, max_side: int = 512) -> list[FaceBox]:
    """Every face in an image by dlib's HOG, then its CNN (`detect_faces`), looked for on a copy at most
    `max_side` pixels wide (aligned faces fill the frame; cost stays bounded); boxes in the image's own
    pixels. How bench finds an output's face again and how translate's face check looks for one, so that
    an output translate accepts is one bench measures."""
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    small = rgb if scale >= 1.0 else np.asarray(Image.fromarray(rgb).resize(
        (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), Image.BILINEAR, reducing_gap=2.0))
    return [FaceBox(tuple(v / scale for v in f.box), f.score, f.detector) for f in detect_faces(small, "hog+cnn")]


def redetect_landmarks(rgb: np.ndarray, max_side: int = 512) -> np.ndarray | None:
    """73 x 2 (68 landmarks, then dlib's 5) of the largest face in an image, found again from scratch
    (`find_faces_again`, the landmarks on the image itself): what bench measures an output's geometry and
    identity on. None when no face is found."""
    found = find_faces_again(rgb, max_side)
    if not found:
        return None
    box = max(found, key=lambda f: f.area).box
    return np.concatenate([landmarks(rgb, box, 68), landmarks(rgb, box, 5)]).astype(np.float64)
