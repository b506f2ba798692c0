"""Reading text data with Hugging Face ``datasets``: CSV, TSV, JSON lines, parquet, plain text
(one document per line or per file), a folder per class (aclImdb ``train/pos/*.txt``), and a
saved ``datasets`` folder. Every bad input ends in one ``UlmfitError`` naming the file/column/row.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ulmfit.errors import UlmfitError
from ulmfit.text.data.cache import default_cache_dir
from ulmfit.text.tokenize.rules import join_fields

log = logging.getLogger("ulmfit")
FORMATS = ("csv", "tsv", "json", "parquet", "text", "folder", "dataset")
_EXT = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet",
        ".txt": "text", ".tokens": "text", ".raw": "text"}


def detect_format(path: Path) -> str:
    """Format from the extension; a folder is a saved dataset or a folder per class."""
    if path.is_dir():
        return "dataset" if (path / "dataset_info.json").is_file() or \
            (path / "dataset_dict.json").is_file() else "folder"
    fmt = _EXT.get(path.suffix.lower())
    if fmt is None:
        raise UlmfitError(f"cannot tell the format of {path} from its extension; pass fmt= one of "
                          f"{', '.join(FORMATS)}")
    return fmt


def _read_bytes_text(p: Path) -> tuple[str, int]:
    """Decode UTF-8, replacing invalid bytes; returns (text, number of replaced characters)."""
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - raw.decode("utf-8", "ignore").count("\ufffd")


def _warn_bad_utf8(path, n, where: str = ""):
    """Warn about replaced bytes, saying where the first one is (``where``: row / column or line)."""
    if n:
        log.warning("%s: %d invalid UTF-8 byte sequence(s) replaced by U+FFFD%s", path, n,
                    f" (first in {where})" if where else "")


def _first_bad(fields: list[list[str]], cols: list[str]) -> str:
    """'data row R, column C' of the first text with a replaced byte, '' when none."""
    for r, row in enumerate(zip(*fields)):
        for c, v in zip(cols, row):
            if "\ufffd" in v:
                return f"data row {r + 1}, column {c!r}"
    return ""


def _first_bad_line(text: str) -> str:
    i = text.find("\ufffd")
    return f"line {text.count(chr(10), 0, i) + 1}" if i >= 0 else ""


def read_lines(path) -> list[str]:
    """Every line of a text file, blank ones included (invalid UTF-8 replaced, with a warning)."""
    text, nbad = _read_bytes_text(Path(path))
    _warn_bad_utf8(path, nbad, _first_bad_line(text))
    return text.splitlines()


def _load_table(path: Path, fmt: str):
    """(a ``datasets.Dataset`` for csv/tsv/json/parquet/dataset, number of invalid UTF-8
    sequences replaced); datasets' cache goes under ulmfit's cache folder."""
    import datasets
    datasets.disable_progress_bars()
    if fmt == "dataset":
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        return ds, 0
    if fmt in ("csv", "tsv", "json"):
        text, nbad = _read_bytes_text(path)
        if nbad:  # hand datasets a clean copy in memory
            import io
            import pandas as pd
            if fmt == "json":
                return datasets.Dataset.from_pandas(pd.read_json(io.StringIO(text), lines=True),
                                                    preserve_index=False), nbad
            return datasets.Dataset.from_pandas(
                pd.read_csv(io.StringIO(text), sep="\t" if fmt == "tsv" else ",",
                            keep_default_na=False, dtype=str), preserve_index=False), nbad
    kw = {"delimiter": "\t"} if fmt == "tsv" else {}
    kw["cache_dir"] = str(default_cache_dir() / "datasets")
    if fmt in ("csv", "tsv"):
        kw["keep_default_na"] = False
    builder = {"csv": "csv", "tsv": "csv", "json": "json", "parquet": "parquet"}[fmt]
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kw), 0
    except Exception as e:
        raise UlmfitError(f"cannot read {path} as {fmt}: {str(e).splitlines()[0][:200]}") from None


def _read_folder(path: Path):
    """A folder per class: ``path/<label>/*.txt``."""
    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    if not classes:
        raise UlmfitError(f"{path} has no class sub-folders (expected {path}/<label>/*.txt)")
    texts, labels, nbad = [], [], 0
    for c in classes:
        for f in sorted((path / c).glob("*.txt")):
            t, n = _read_bytes_text(f)
            texts.append(t)
            labels.append(c)
            nbad += n
    _warn_bad_utf8(path, nbad)
    return texts, labels


def read_texts(source, text_cols: str | Sequence[str] = "text", label_col: str | None = None,
               fmt: str | None = None, label_delim: str | None = None, strict: bool = False,
               mark_fields: bool | None = None) -> tuple[list[str], list | None]:
    """Texts (several ``text_cols`` joined with ``xxfld``) and labels (``None`` when
    ``label_col`` is None; lists of strings with ``label_delim``). Empty or whitespace-only texts
    are dropped with a warning (an error with ``strict=True``)."""
    path = Path(source)
    if not path.exists():
        raise UlmfitError(f"file not found: {path}")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise UlmfitError(f"unknown format {fmt!r} for {path}; choose one of {', '.join(FORMATS)}")
    cols = [text_cols] if isinstance(text_cols, str) else list(text_cols)
    if fmt == "folder":
        texts, labels = _read_folder(path)
    elif fmt == "text":
        text, nbad = _read_bytes_text(path)
        _warn_bad_utf8(path, nbad, _first_bad_line(text))
        texts, labels = text.splitlines(), None
        if label_col is not None:
            raise UlmfitError(f"{path} is a plain text file: it has no label column "
                              f"{label_col!r} (use a CSV/JSON file or a folder per class)")
    else:
        ds, nbad = _load_table(path, fmt)
        missing = [c for c in cols + ([label_col] if label_col else []) if c not in ds.column_names]
        if missing:
            raise UlmfitError(f"{path}: no column {', '.join(map(repr, missing))}; "
                              f"available columns: {', '.join(ds.column_names)}")
        fields = [["" if v is None else str(v) for v in ds[c]] for c in cols]
        _warn_bad_utf8(path, nbad, _first_bad(fields, cols) if nbad else "")
        texts = [join_fields(list(f), mark_fields) for f in zip(*fields)] if len(cols) > 1 \
            else fields[0]
        labels = list(ds[label_col]) if label_col else None
    if labels is not None:
        bad = [i for i, v in enumerate(labels) if v is None or (isinstance(v, float) and np.isnan(v))
               or (isinstance(v, str) and v.strip().lower() in ("", "nan"))]  # a literal NaN is no class
        if bad:
            raise UlmfitError(f"{path}: {len(bad)} row(s) have no label in column {label_col!r} "
                              f"(first: data row {bad[0] + 1})")
        if label_delim:
            labels = [[p for p in str(v).split(label_delim) if p] for v in labels]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        msg = (f"{path}: {len(empty)} empty or whitespace-only text(s) "
               f"(first: data row {empty[0] + 1})")
        if strict:
            raise UlmfitError(msg + "; remove them or run without strict")
        log.warning("%s dropped", msg)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        texts = [texts[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    if not texts:
        raise UlmfitError(f"{path}: no texts left after dropping empty ones")
    return texts, labels


@dataclass
class Split:
    """Texts and integer labels (or multi-hot float arrays for multi-label) of one split."""

    texts: list[str]
    labels: np.ndarray | None

    def __len__(self):
        return len(self.texts)


@dataclass
class ClassificationData:
    train: Split
    valid: Split | None              # None with valid_pct=0
    test: Split | None
    classes: list[str] = field(default_factory=list)
    multi_label: bool = False


def encode_labels(raw, classes, where, multi_label):
    index = {c: i for i, c in enumerate(classes)}
    if multi_label:
        y = np.zeros((len(raw), len(classes)), np.float32)
        for r, labs in enumerate(raw):
            for lab in labs:
                if lab not in index:
                    raise UlmfitError(f"{where}: label {lab!r} (data row {r + 1}) never appears in "
                                      f"the training set; known labels: {', '.join(classes)}")
                y[r, index[lab]] = 1
        return y
    unknown = [(r, v) for r, v in enumerate(raw) if str(v) not in index]
    if unknown:
        r, v = unknown[0]
        raise UlmfitError(f"{where}: {len(unknown)} label(s) never seen in the training set, e.g. "
                          f"{v!r} (data row {r + 1}); known labels: {', '.join(classes)}")
    return np.array([index[str(v)] for v in raw], np.int64)


def _stratified_split(labels_key, valid_pct, seed):
    rng = np.random.default_rng(seed)
    keys = np.asarray(labels_key)
    valid = []
    for k in np.unique(keys):
        idx = np.flatnonzero(keys == k)
        rng.shuffle(idx)
        valid.extend(idx[: int(round(len(idx) * valid_pct))].tolist())
    mask = np.zeros(len(keys), bool)
    mask[valid] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def load_classification(train, valid=None, test=None, text_cols="text", label_col="label",
                        valid_pct: float = 0.1, seed: int = 42, multi_label: bool = False,
                        label_delim: str = "|", fmt: str | None = None,
                        strict: bool = False) -> ClassificationData:
    """Train/valid(/test) splits with integer labels and the sorted class list. Without ``valid``,
    a seeded stratified ``valid_pct`` split of train (``valid_pct=0``: no validation split, ``valid`` is
    None). Integer labels are kept as their string
    form in ``classes`` (sorted numerically)."""
    delim = label_delim if multi_label else None
    rd = lambda s: read_texts(s, text_cols, label_col, fmt, delim, strict)  # noqa: E731
    tr_texts, tr_raw = rd(train)
    if multi_label:
        names = {lab for labs in tr_raw for lab in labs}
    else:
        names = {str(v) for v in tr_raw}
    is_int = all(re.fullmatch(r"-?\d+", c) for c in names)
    classes = sorted(names, key=(lambda c: int(c)) if is_int else None)
    y_tr = encode_labels(tr_raw, classes, str(train), multi_label)
    if valid is not None:
        va_texts, va_raw = rd(valid)
        va = Split(va_texts, encode_labels(va_raw, classes, str(valid), multi_label))
        tr = Split(tr_texts, y_tr)
    elif valid_pct == 0:  # no validation split: every row trains (few-shot runs on a fixed schedule)
        tr, va = Split(tr_texts, y_tr), None
    else:
        if not 0 < valid_pct < 1:
            raise UlmfitError(f"valid_pct={valid_pct} must be between 0 (no validation split) and 1 (or give a "
                              "validation file)")
        key = y_tr if not multi_label else [tuple(r) for r in y_tr.astype(int).tolist()]
        key = np.unique(np.asarray(key), axis=0, return_inverse=True)[1] if multi_label else key
        ti, vi = _stratified_split(np.ravel(key), valid_pct, seed)
        tr = Split([tr_texts[i] for i in ti], y_tr[ti])
        va = Split([tr_texts[i] for i in vi], y_tr[vi])
    te = None
    if test is not None:
        labelled = bool(label_col) and _has_col(test, label_col, fmt)
        if label_col and not labelled:
            log.warning("%s has no %r column: its texts are read unlabelled and no test metrics are reported",
                        test, label_col)
        te_texts, te_raw = read_texts(test, text_cols, label_col, fmt, delim, strict) if labelled else \
            (read_texts(test, text_cols, None, fmt, None, strict)[0], None)
        te = Split(te_texts, None if te_raw is None else
                   encode_labels(te_raw, classes, str(test), multi_label))
    if len(tr) == 0 or (va is not None and len(va) == 0):
        raise UlmfitError(f"{train}: the train/valid split is empty ({len(tr)}/{len(va)} rows); "
                          "use more data or another valid_pct")
    return ClassificationData(tr, va, te, classes, multi_label)


def _has_col(source, col, fmt):
    p = Path(source)
    f = fmt or detect_format(p) if p.exists() else None
    if f in ("folder",):
        return True
    if f in (None, "text"):
        return False
    return col in _load_table(p, f)[0].column_names


_re_title = re.compile(r"\n(?= = [^=\n](?:[^\n]*[^=\n])? = *\n)")


def load_corpus(source, text_cols=None, fmt: str | None = None, per_file: bool = False,
                wikitext_articles: bool = False) -> Iterator[str]:
    """Texts of an LM corpus, streamed. Text files: one document per line (blank lines skipped),
    the whole file as one document (``per_file``), or WikiText articles split on top-level
    `` = Title = `` headings (``wikitext_articles``). A folder of ``.txt`` files gives one
    document per file; tables need ``text_cols``."""
    path = Path(source)
    if not path.exists():
        raise UlmfitError(f"corpus not found: {path}")
    fmt = fmt or (detect_format(path) if not path.is_dir() or
                  (path / "dataset_info.json").exists() else "folder")
    if fmt == "folder":
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise UlmfitError(f"{path}: no .txt files found")
        for f in files:
            yield _read_bytes_text(f)[0]
        return
    if fmt != "text":
        if text_cols is None:
            raise UlmfitError(f"{path} is a {fmt} table: name the text column(s) with text_cols")
        yield from read_texts(path, text_cols, None, fmt)[0]
        return
    text, nbad = _read_bytes_text(path)
    _warn_bad_utf8(path, nbad, _first_bad_line(text))
    if per_file:
        yield text
    elif wikitext_articles:
        yield from split_wikitext_articles(text)
    else:
        yield from (line for line in text.splitlines() if line.strip())


def split_wikitext_articles(text: str) -> list[str]:
    """Split WikiText before each top-level `` = Title = `` line (as fastai did): 629 articles
    in WikiText-2 train."""
    return [a for a in _re_title.split(text) if a.strip()]
