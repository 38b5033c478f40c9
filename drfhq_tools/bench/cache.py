"""A content-addressed store of features and per-image values, shared by every bench run.

Keys name everything that determines the value: the image's content hash (sha256 of the file), the
extractor, the sha256 of its weights and the preprocessing. A second bench, another slicing or a new
method therefore recomputes nothing already known. Each entry also records the device and precision
that computed it (cuda and cpu agree to about 1e-5, so they share keys, but one can always tell).
Content hashes themselves are cached per file state (path, size, mtime): an unchanged file is hashed
once, ever. SQLite gives atomic, concurrent-safe writes.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np

from ..io import sha256_file


class FeatureCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, dtype TEXT, shape TEXT, data BLOB)")
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(entries)")}
        for column in ("device", "precision"):          # caches written before these columns existed gain them
            if column not in columns:
                self.db.execute(f"ALTER TABLE entries ADD COLUMN {column} TEXT")
        self.db.execute("CREATE TABLE IF NOT EXISTS file_hashes (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT)")
        self.db.commit()
        self.hashed = 0                                  # files read to hash them in this process (tests read it)

    @staticmethod
    def key(*parts: str) -> str:
        return "|".join(parts)

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            query = f"SELECT key, dtype, shape, data FROM entries WHERE key IN ({','.join('?' * len(chunk))})"
            for key, dtype, shape, data in self.db.execute(query, chunk):
                dims = tuple(int(v) for v in shape.split(",") if v)
                found[key] = np.frombuffer(data, dtype=dtype).reshape(dims)
        return found

    def put_many(self, items: dict[str, np.ndarray], device: str = "cpu", precision: str = "float32") -> None:
        rows = [(k, str(v.dtype), ",".join(map(str, v.shape)), np.ascontiguousarray(v).tobytes(), device, precision)
                for k, v in items.items()]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO entries (key, dtype, shape, data, device, precision) "
                                "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def provenance(self, key: str) -> tuple[str, str] | None:
        row = self.db.execute("SELECT device, precision FROM entries WHERE key = ?", (key,)).fetchone()
        return tuple(row) if row else None

    def file_sha256(self, paths: list[str | Path]) -> list[str]:
        """sha256 of each file's content, read only for files whose (size, mtime) is new to the cache."""
        paths = [os.path.abspath(p) for p in paths]
        known = {}
        for start in range(0, len(paths), 500):
            chunk = paths[start:start + 500]
            query = f"SELECT path, size, mtime_ns, sha256 FROM file_hashes WHERE path IN ({','.join('?' * len(chunk))})"
            known.update({row[0]: row[1:] for row in self.db.execute(query, chunk)})
        out, fresh = [], {}
        for path in paths:
            stat = os.stat(path)
            row = known.get(path)
            if row and row[0] == stat.st_size and row[1] == stat.st_mtime_ns:
                out.append(row[2])
                continue
            if path not in fresh:
                fresh[path] = (stat.st_size, stat.st_mtime_ns, sha256_file(path))
                self.hashed += 1
            out.append(fresh[path][2])
        if fresh:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)",
                                    [(p, *v) for p, v in fresh.items()])
        return out

    def close(self) -> None:
        self.db.close()
