"""A content-addressed store of features and per-image values, shared by every bench run.

Keys name everything that determines the value: the image's content hash (sha256 of the file), the
extractor, the sha256 of its weights and the preprocessing. A second bench, another slicing or a new
method therefore recomputes nothing already known. SQLite gives atomic, concurrent-safe writes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np


class FeatureCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, dtype TEXT, shape TEXT, data BLOB)")
        self.db.commit()

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

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        rows = [(k, str(v.dtype), ",".join(map(str, v.shape)), np.ascontiguousarray(v).tobytes()) for k, v in items.items()]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)

    def close(self) -> None:
        self.db.close()
