"""Distillation in phase 3 (the recipe's `classifier.distil`): a trained teacher classifier, of
any backbone, labels the labelled texts and a sample of unlabelled domain texts with its
probabilities; the AWD-LSTM student trains on those soft targets mixed with the hard labels
(`core.distillation`). Tang et al. (2019) lifted a BiLSTM on SST-2 this way with a BERT teacher
over a large transfer set."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ulmfit.errors import UlmfitError
from ulmfit.phases.common import hush_transformers, log, unlabelled_texts
from ulmfit.text.data.augment import augmented_copies
from ulmfit.text.data.cache import file_hash, texts_hash

CHUNK = 1024  # texts the teacher labels between two progress-bar updates


@dataclass
class SoftTargets:
    texts: list[str]
    rows: np.ndarray                   # (n, n_classes + 1): the teacher's probabilities, then the hard id or -1
    info: dict = field(default_factory=dict)


def transfer_texts(dcfg, text_cols: list[str], seed: int, labelled: list[str] = ()) -> list[str]:
    """The unlabelled texts the teacher labels: ``dcfg.texts`` (a seeded sample of ``dcfg.max_texts``),
    then ``dcfg.augment`` changed copies of each ``labelled`` text."""
    extra = []
    if dcfg.texts:
        extra = unlabelled_texts(dcfg.texts, text_cols, "classifier.distil.texts")
        if dcfg.max_texts and len(extra) > dcfg.max_texts:
            keep = np.sort(np.random.default_rng(seed).choice(len(extra), dcfg.max_texts, replace=False))
            extra = [extra[i] for i in keep]
    if dcfg.augment:
        extra += augmented_copies(list(labelled), dcfg.augment, seed)
    return extra


def teacher_targets(dcfg, load_teacher, classes: list, texts: list[str], labels: np.ndarray, extra: list[str],
                    quiet: bool, cache_dir: Path | None = None) -> SoftTargets:
    """The labelled ``texts`` followed by the unlabelled ``extra``, each with the teacher's
    probabilities in ``classes`` order and its hard label (-1 for the unlabelled). With
    ``cache_dir`` the probabilities are kept there, keyed by the teacher's files and the texts, so
    a second student of the same teacher and texts skips the labelling."""
    if quiet:
        hush_transformers()  # a transformers teacher's loading bars
    teacher = _teacher(dcfg.teacher, load_teacher, classes)
    every = list(texts) + extra
    t_classes = [str(c) for c in teacher.classes]
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / "teacher" / f"{_key(dcfg.teacher, every, t_classes)}.npy"
    if cached is not None and cached.is_file():
        probs = np.load(cached, allow_pickle=False)
        log(f"distil: the teacher's probabilities of {len(every):,} texts from the cache", quiet)
    else:
        log(f"distil: the teacher labels {len(texts):,} labelled and {len(extra):,} unlabelled texts", quiet)
        probs = np.concatenate([teacher.predict_proba(every[i:i + CHUNK], bs=dcfg.bs)
                                for i in tqdm(range(0, len(every), CHUNK), desc="teacher", unit="chunk",
                                              disable=quiet, leave=False)]).astype(np.float32)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npy")
            np.save(tmp, probs)
            os.replace(tmp, cached)
    order = [t_classes.index(str(c)) for c in classes]
    probs = probs[:, order]
    hard = np.concatenate([np.asarray(labels, np.float32), np.full(len(extra), -1, np.float32)])
    agree = float((probs[:len(texts)].argmax(1) == np.asarray(labels)).mean())
    info = {"distil_texts": len(extra), "teacher_train_accuracy": agree}
    return SoftTargets(every, np.concatenate([probs, hard[:, None]], 1), info)


def _key(folder: str, texts: list[str], classes: list[str]) -> str:
    """The teacher (its run manifest, which holds its files' sha256, or all its files) and the texts."""
    manifest = Path(folder) / "run.json"
    h = hashlib.sha256((file_hash(manifest) if manifest.is_file() else file_hash(folder)).encode())
    h.update(texts_hash(texts).encode())
    h.update("\x00".join(classes).encode())
    return h.hexdigest()[:24]


def _teacher(folder: str, load_teacher, classes: list):
    if load_teacher is None:
        raise UlmfitError("classifier.distil.teacher: run the phase through ulmfit (train-classifier, run, or "
                          "ulmfit.train_classifier), which loads teachers")
    try:
        teacher = load_teacher(folder)
    except UlmfitError as e:
        raise UlmfitError(f"classifier.distil.teacher {folder}: {e}") from None
    if getattr(teacher, "multi_label", False):
        raise UlmfitError(f"classifier.distil.teacher {folder} is a multi-label classifier; distillation takes a "
                          "single-label one")
    mine, theirs = sorted(str(c) for c in classes), sorted(str(c) for c in teacher.classes)
    if mine != theirs:
        raise UlmfitError(f"classifier.distil.teacher {folder} predicts the labels {theirs}, the data has {mine}: "
                          "a teacher must know exactly the data's labels")
    return teacher
