"""A built dataset as later stages read it: its usable rows with landmarks in the aligned frame, the
inner-face box of an FFHQ-aligned image, and one loader of aligned images for training, translation
and benchmarks (a torch Dataset, so training streams from disk through DataLoader workers)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from ..errors import DrfhqError
from .align_geometry import apply_affine, quad_to_output_affine

FACE_BOX = (0.25, 0.25, 0.75, 0.81)   # inner face of an FFHQ-aligned image (x0, y0, x1, y1, fractions of its side)
# dlib's five points in an FFHQ-aligned image, as fractions of its side: the median over the shared
# fixture renders (60 faces; spread about 0.04). Faces aligned outside a dataset (enhance) use it for the
# identity term's chip transform, where translate uses its dataset's own median.
ALIGNED_LANDMARKS5 = ((0.6771, 0.4722), (0.5742, 0.4838), (0.3266, 0.4653), (0.4280, 0.4764), (0.5037, 0.6512))


def source_dir(source_path: str) -> str:
    """The folder a render came from, relative to the build's source ('.' at its top): what bench slices and
    build's summary count by, since a dataset gathered from several renderers or artists differs by it."""
    return str(PurePosixPath(source_path).parent)


def dataset_rows(dataset: Path, limit: int | None) -> tuple[list[dict], int]:
    """ok rows with their image file and landmarks in the aligned frame (pixel-centre coordinates)."""
    dataset = Path(dataset)
    table = pq.read_table(dataset / "manifest.parquet")
    rows = [r for r in table.to_pylist() if r["status"] == "ok"]
    rows.sort(key=lambda r: r["id"])
    if limit:
        rows = rows[:limit]
    if len(rows) < 2:
        raise DrfhqError(f"{dataset}: fewer than two usable (status ok) images")
    with Image.open(dataset / rows[0]["image_path"]) as img:
        size = img.size[0]
    for row in rows:
        row["image_file"] = str(dataset / row["image_path"])
        affine = quad_to_output_affine(np.asarray(row["align_quad"], dtype=np.float64).reshape(4, 2), size)
        row["aligned_lm68"] = apply_affine(affine, np.asarray(row["landmarks_68"]).reshape(68, 2)) - 0.5
        row["aligned_lm5"] = apply_affine(affine, np.asarray(row["landmarks_5"]).reshape(5, 2)) - 0.5
    return rows, size


def median_landmarks5(rows: list[dict], size: int, resolution: int) -> np.ndarray:
    """The dataset's typical five points, scaled from its image size to `resolution` (one chip
    transform serves every aligned image)."""
    return np.median(np.stack([r["aligned_lm5"] for r in rows]), axis=0) * resolution / size


def load_aligned(path: str | Path, size: int):
    """An aligned image as a 3 x size x size uint8 torch tensor (Lanczos when resized)."""
    import torch

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.LANCZOS, reducing_gap=3.0)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


class AlignedImages:
    """torch-style Dataset of aligned images at one resolution, read from disk on demand: memory does
    not grow with the dataset, and DataLoader workers decode in parallel. A bad file raises with its path."""

    def __init__(self, files: list[str], resolution: int):
        self.files, self.resolution = list(files), resolution

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        try:
            return load_aligned(self.files[index], self.resolution)
        except OSError as exc:
            raise DrfhqError(f"{self.files[index]}: aligned image could not be read: {exc}") from None
