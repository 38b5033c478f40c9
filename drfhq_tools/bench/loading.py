"""The bench's data path: images decoded (and resized for Inception) by DataLoader workers while the
networks run on `--device`. Items are paths or tuples of paths; `load` is a module-level function so
that worker processes can receive it."""

from __future__ import annotations


from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from ..models.inception import clean_resize


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def load_inception_input(path: str | Path) -> np.ndarray:
    return clean_resize(load_rgb(path))


def load_pair(paths: tuple) -> tuple[np.ndarray, np.ndarray]:
    return load_rgb(paths[0]), load_rgb(paths[1])


class _Items(torch.utils.data.Dataset):
    def __init__(self, items: list, load: Callable):
        self.items, self.load = items, load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.load(self.items[index])


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)          # decode workers must not compete with the network for cores


def batches(items: list, load: Callable, batch_size: int, workers: int) -> Iterator[list]:
    """Lists of `load(item)`, in order, `batch_size` at a time; decoded in `workers` processes (0: here)."""
    if workers <= 0 or len(items) <= batch_size:
        for start in range(0, len(items), batch_size):
            yield [load(item) for item in items[start:start + batch_size]]
        return
    loader = torch.utils.data.DataLoader(_Items(items, load), batch_size=batch_size, num_workers=workers,
                                         collate_fn=list, worker_init_fn=_one_thread, prefetch_factor=2)
    yield from loader
