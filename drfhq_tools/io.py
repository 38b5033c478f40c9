"""Files that a later run trusts: atomic writes, content hashes, an exclusive lock per output folder."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DrfhqError

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the body succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with _atomic_target(Path(path)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


def atomic_write_parquet(path: str | os.PathLike, table: pa.Table) -> None:
    with _atomic_target(Path(path)) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def atomic_save_image(path: str | os.PathLike, image, png_text: dict[str, str] | None = None) -> None:
    """Save a PIL image atomically; the format follows the final suffix. png_text: text chunks
    (a PNG's own record of what made it)."""
    path = Path(path)
    options = {}
    if png_text:
        from PIL import PngImagePlugin

        options["pnginfo"] = PngImagePlugin.PngInfo()
        for key, value in png_text.items():
            options["pnginfo"].add_text(key, value)
    with _atomic_target(path) as tmp:
        image.save(tmp, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG"), **options)


def png_text(path: str | os.PathLike, key: str) -> str | None:
    """A text chunk of an image file, or None (no such chunk, no such file, not an image)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return getattr(img, "text", {}).get(key)
    except (OSError, ValueError):
        return None


class FolderLock:
    """An exclusive advisory lock on a folder, released by the OS if the holder dies.

    A second holder is refused at once with a message naming the folder and the first holder's pid.
    """

    def __init__(self, folder: Path, what: str):
        self.path = Path(folder) / ".lock"
        self.what = what
        self._handle = None

    def __enter__(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DrfhqError(
                f"{self.path.parent}: another {self.what} is running on this folder (pid {holder}); "
                "wait for it to finish or choose another output folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
