"""A small persistent key-value cache on SQLite (WAL), shared by the LLM layer and the generation cache.

Values are JSON. Each ``put`` commits on its own, so a killed process loses at most the write in flight
and never corrupts earlier ones.

Example:
    >>> cache = SQLiteCache(":memory:")
    >>> key = content_key({"model": "m", "prompt": "hi"})
    >>> cache.put(key, {"text": "hello"})
    >>> cache.get(key)
    {'text': 'hello'}
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["SQLiteCache", "content_key"]


def content_key(payload: Any) -> str:
    """SHA-256 of the canonical JSON form of ``payload`` (sorted keys, no whitespace)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class SQLiteCache:
    """Persistent JSON key-value store; safe to share between threads of one process.

    Args:
        path: database file (parents are created) or ``":memory:"``.
        table: table name, so several logical caches can share one file.
    """

    def __init__(self, path: str | Path, table: str = "cache") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if not table.isidentifier():
            raise ValueError(f"cache table name must be an identifier, got {table!r}")
        self.table = table
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._conn.commit()

    def get(self, key: str) -> Any | None:
        """Return the stored value or ``None``."""
        with self._lock:
            row = self._conn.execute(f"SELECT value FROM {self.table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the stored values of the keys that are present."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, value FROM {self.table} WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update({k: json.loads(v) for k, v in rows})
        return found

    def put(self, key: str, value: Any) -> None:
        """Store one value and commit."""
        self.put_many({key: value})

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store several values in one transaction."""
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()]
        with self._lock:
            self._conn.executemany(f"INSERT OR REPLACE INTO {self.table} (key, value) VALUES (?, ?)", rows)
            self._conn.commit()

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
