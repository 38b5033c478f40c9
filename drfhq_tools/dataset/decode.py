"""Decode any render file into RGB uint8 pixels, or say exactly why it cannot be used.

Handles PNG, JPEG, TIFF and WebP in 8 and 16 bit, grey, palette, CMYK and alpha, honouring EXIF
orientation. Transparent pixels are composited over a chosen background, since renders often come
on transparent backgrounds and detectors need a plain one.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"})
# Files beside renders that are not renders: metadata tables, notes, scene files. Everything else is an
# input and gets a manifest row, so a stray non-image file shows up as `rejected: not_an_image`.
SIDECAR_SUFFIXES = frozenset({".csv", ".json", ".jsonl", ".parquet", ".txt", ".md", ".yaml", ".yml",
                              ".duf", ".xmp", ".lock", ".tmp", ".db", ".ini"})

BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128)}


class RejectedImage(Exception):
    """The file cannot be used; `reason` is the manifest's reject_reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray          # H x W x 3 uint8, orientation applied, alpha composited
    pixel_sha256: str        # hash of the decoded pixels (mode-normalised): equal for lossless re-encodes
    had_alpha: bool
    source_mode: str


def _to_8bit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype in (np.uint16, np.int32, np.uint32, np.int16):
        peak = 65535 if array.max(initial=0) > 255 else 255
        return np.clip(np.rint(array.astype(np.float64) * (255.0 / peak)), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    raise RejectedImage("unsupported_pixels", f"pixel type {array.dtype}")


def _rgba_array(image: Image.Image) -> tuple[np.ndarray, bool]:
    """H x W x 4 uint8 (alpha 255 where the file has none) and whether the file had alpha."""
    mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = _to_8bit(np.asarray(image))
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)]), False
    if mode == "CMYK":
        image = image.convert("RGB")
    rgba = np.asarray(image.convert("RGBA"))
    return rgba, has_alpha


def decode_image(path: str | Path, background: str = "black", max_pixels: int = 100_000_000) -> DecodedImage:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RejectedImage("unreadable", str(exc)) from None
    if size == 0:
        raise RejectedImage("empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise RejectedImage("decompression_bomb", f"{width}x{height} pixels > limit {max_pixels}")
                image.load()
                image = ImageOps.exif_transpose(image) or image
                rgba, has_alpha = _rgba_array(image)
                mode = image.mode
    except RejectedImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RejectedImage("decompression_bomb", str(exc)) from None
    except UnidentifiedImageError:
        raise RejectedImage("not_an_image", "no image format recognised") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        reason = "truncated" if ("truncated" in text or "broken data stream" in text or isinstance(exc, EOFError)) else "corrupt"
        raise RejectedImage(reason, text) from None
    except Exception as exc:  # a decoder bug must not stop a build; keep the file as a rejected row
        raise RejectedImage("corrupt", f"{type(exc).__name__}: {exc}") from None
    if rgba.ndim != 3 or rgba.shape[0] < 8 or rgba.shape[1] < 8:
        raise RejectedImage("too_small", f"{rgba.shape[1]}x{rgba.shape[0]} pixels")
    digest = hashlib.sha256()
    digest.update(np.asarray(rgba.shape, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(rgba).tobytes())
    if has_alpha:
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        bg = np.asarray(BACKGROUNDS[background], dtype=np.float32)
        rgb = np.clip(np.rint(rgba[..., :3] * alpha + bg * (1.0 - alpha)), 0, 255).astype(np.uint8)
    else:
        rgb = np.ascontiguousarray(rgba[..., :3])
    return DecodedImage(rgb=rgb, pixel_sha256=digest.hexdigest(), had_alpha=has_alpha, source_mode=mode)


def list_inputs(root: Path) -> list[Path]:
    """Every input file below `root` (all but hidden ones and sidecars), sorted by relative path."""
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() not in SIDECAR_SUFFIXES:
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())
