"""On-disk cache of tokenized ids, keyed by the input's content hash and the tokenizer hash.

An entry is a folder ``<cache_dir>/<key>/`` holding ``ids.npy`` (flat ids, uint16/uint32) and
``lengths.npy`` (tokens per text); written to a temporary folder and renamed, so a crash never
leaves a half-written entry. Default cache dir: ``$ULMFIT_CACHE`` or ``~/.cache/ulmfit``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np


def default_cache_dir() -> Path:
    return Path(os.environ.get("ULMFIT_CACHE", Path.home() / ".cache" / "ulmfit"))


def file_hash(path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes (or of all files under a folder, in sorted order)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            while b := fh.read(chunk):
                h.update(b)
    return h.hexdigest()


def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


class TokenCache:
    """``get_or_encode(tokenizer, texts, key)`` -> (ids, lengths); ``hits``/``misses`` counters."""

    def __init__(self, cache_dir=None):
        self.dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.hits = self.misses = 0

    def key(self, content_hash: str, tokenizer) -> str:
        return f"{content_hash[:24]}-{tokenizer.hash}"

    def load(self, key: str):
        d = self.dir / key
        if (d / "ids.npy").is_file() and (d / "lengths.npy").is_file():
            return np.load(d / "ids.npy", mmap_mode="r"), np.load(d / "lengths.npy")
        return None

    def save(self, key: str, ids: np.ndarray, lengths: np.ndarray) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=".tmp-"))
        np.save(tmp / "ids.npy", ids)
        np.save(tmp / "lengths.npy", lengths)
        dest = self.dir / key
        if dest.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, dest)
        return dest

    def get_or_encode(self, tokenizer, texts: Sequence[str], content_hash: str | None = None):
        """Ids for ``texts``; computed once, then read back from disk."""
        key = self.key(content_hash or texts_hash(texts), tokenizer)
        got = self.load(key)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        ids, lengths = tokenizer.encode_flat(list(texts))
        ids = ids.astype(tokenizer.id_dtype)
        self.save(key, ids, lengths)
        return ids, lengths

    @staticmethod
    def split(ids: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """Per-text id arrays (views) from the flat form."""
        return np.split(np.asarray(ids), np.cumsum(lengths)[:-1]) if len(lengths) else []
