"""Plumbing every phase shares: ranks and logging, reading an LM corpus, the strategy of a train
section, the token cache, and writing a finished phase's outputs."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ulmfit.core import build_strategy
from ulmfit.errors import UlmfitError
from ulmfit.phases import reports
from ulmfit.phases.config import save_yaml
from ulmfit.phases.runs import write_manifest
from ulmfit.text.data.cache import TokenCache
from ulmfit.text.data.readers import load_corpus

DATA_ROOT = Path(os.environ.get("ULMFIT_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def world() -> tuple[int, int]:
    """(rank, world size) of this process (torchrun sets RANK / WORLD_SIZE)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def log(msg: str, quiet: bool) -> None:
    """A progress line on stderr, from rank 0 only."""
    if not quiet and world()[0] == 0:
        print(msg, file=sys.stderr, flush=True)


def stages_for(t, n_groups: int):
    """The core stages of a train section (strategy, epochs, LRs, schedule) for ``n_groups`` groups."""
    return build_strategy(t.strategy, n_groups, epochs=t.epochs, lr=t.lr, lr_factor=t.lr_factor,
                          schedule=t.schedule, schedule_args=t.schedule_kwargs(), stages=t.stages)


def is_table(path: str) -> bool:
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def hush_transformers() -> None:
    """No progress bars or warnings from transformers (a quiet run)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def unlabelled_texts(source: str, text_cols: list[str], what: str) -> list[str]:
    """The non-empty texts of a file or folder of unlabelled domain text (a table's ``text_cols``);
    ``what`` names the recipe key in the error when there are none."""
    texts = [t for t in load_corpus(source, text_cols=text_cols if is_table(source) else None) if t.strip()]
    if not texts:
        raise UlmfitError(f"{what} {source}: no text in it")
    return texts


def token_cache(data):
    """The on-disk cache of tokenized texts a phase uses (None when ``data.cache`` is off)."""
    return TokenCache(data.cache_dir) if data.cache else None


def _limit(texts: list, n: int | None) -> list:
    return texts if not n else texts[:n]


def _split_docs(texts: list[str], valid_pct: float, seed: int) -> tuple[list[str], list[str]]:
    if not 0 < valid_pct < 1:
        raise UlmfitError(f"valid_pct={valid_pct} must be between 0 and 1 (or give data.valid)")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(texts))
    n_valid = max(1, int(round(len(texts) * valid_pct)))
    valid = set(idx[:n_valid].tolist())
    return [t for i, t in enumerate(texts) if i not in valid], [texts[i] for i in sorted(valid)]


def lm_texts(data, default_train: Path | None, allow_no_valid: bool = False) -> tuple[list[str], list[str]]:
    """Training and validation documents of an LM corpus from a DataConfig (with `allow_no_valid`,
    valid_pct 0 means no validation documents)."""
    train = data.train or (str(default_train) if default_train else None)
    if not train:
        raise UlmfitError("no training data: set data.train to a file or folder")
    def cols(source):  # each file by its own format: a text file of training documents, a CSV of valid ones
        return data.text_cols if is_table(source) else None

    texts = _limit(list(load_corpus(train, text_cols=cols(train), wikitext_articles=data.articles)), data.max_items)
    if data.valid:
        valid = _limit(list(load_corpus(data.valid, text_cols=cols(data.valid), wikitext_articles=data.articles)),
                       data.max_items and max(1, data.max_items // 10))
    elif allow_no_valid and data.valid_pct == 0:
        return _nonempty(texts, train), []
    else:
        texts, valid = _split_docs(texts, data.valid_pct, 0)
    if not texts or not valid:
        raise UlmfitError(f"{train}: no documents left for training or validation")
    return texts, valid


def _nonempty(texts: list[str], where) -> list[str]:
    if not any(t.strip() for t in texts):
        raise UlmfitError(f"{where}: no text to train on (the file is empty)")
    return texts


def last_metrics(history: list[dict], prefix: str = "valid_") -> dict:
    return {k: v for k, v in (history[-1] if history else {}).items() if k.startswith(prefix)}


def peak_memory() -> dict:
    """The process's peak resident memory (MB) so far and, on a GPU, torch's peak allocation there."""
    import resource

    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out = {"peak_rss_mb": round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def finish(out: Path, cfg, run: dict, title: str, what: str, started: float, metrics: dict, history: list[dict],
           quiet: bool) -> dict:
    """Write a finished phase's config.yaml, run.json, metrics, curves and report.md; clear its
    checkpoints and work files. ``run`` is the manifest: kind, backend, phase, parent, tokenizer."""
    metrics["wall_s"] = round(time.time() - started, 2)  # this process
    if history and "elapsed_s" in history[-1]:  # training + validation over every process of a resumed run
        metrics["train_s"] = round(history[-1]["elapsed_s"], 2)
    metrics.update(peak_memory())  # this process
    save_yaml(cfg, out / "config.yaml")
    write_manifest(out, **run)
    reports.write_metrics(out, metrics)
    reports.plot_history(history, out / "training_curves.png")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    shutil.rmtree(out / "work", ignore_errors=True)
    files = sorted(p.name for p in out.iterdir() if p.is_file()) + ["report.md"]
    reports.write_report(out, title, what, started, metrics, history, sorted(set(files)))
    return metrics
