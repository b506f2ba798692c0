"""On-disk cache of tokenized ids, keyed by the input's content hash and the tokenizer hash.

An entry is a folder ``<cache_dir>/<key>/`` holding what ``lm_data.numericalize_to_memmap``
writes: ``ids.bin`` (flat ids, uint16/uint32, read back memory-mapped), ``ids.bin.json`` and
``ids.bin.offsets.npy`` (where each text starts). Texts are encoded in chunks straight to disk, so
memory stays bounded for any corpus; the entry is written to a temporary folder and renamed, so a
crash never leaves a half-written one. Default cache dir: ``$ULMFIT_CACHE`` or
``~/.cache/ulmfit``. The phases key entries by the hash of the texts they read (after column
selection and splitting) and the tokenizer's hash.
"""
from __future__ import annotations

import hashlib
import json
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
        if not (d / "ids.bin.json").is_file():
            return None
        meta = json.loads((d / "ids.bin.json").read_text())
        offsets = np.load(d / "ids.bin.offsets.npy")
        ids = np.memmap(d / "ids.bin", dtype=np.dtype(meta["dtype"]), mode="r", shape=(int(meta["n_tokens"]),))
        return ids, np.diff(offsets)

    def get_or_encode(self, tokenizer, texts: Sequence[str], content_hash: str | None = None):
        """(ids, lengths) for ``texts``: encoded once (in chunks, to disk), then read back."""
        from ulmfit.text.data.lm_data import numericalize_to_memmap

        key = self.key(content_hash or texts_hash(texts), tokenizer)
        got = self.load(key)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=".tmp-"))
        try:
            numericalize_to_memmap(tokenizer, texts, tmp / "ids.bin")
            try:
                os.replace(tmp, self.dir / key)
            except OSError:  # another process (rank) wrote the same entry meanwhile
                if not (self.dir / key / "ids.bin.json").is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.load(key)

    @staticmethod
    def split(ids: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """Per-text id arrays (views) from the flat form."""
        return np.split(np.asarray(ids), np.cumsum(lengths)[:-1]) if len(lengths) else []
