"""Self-training on the domain's unlabelled texts, after phase 3 (ULMFiT's semi-supervised setting,
Howard & Ruder 2018 sec. 4; pseudo-labelling as in Lee 2013, "Pseudo-Label").

The trained classifier labels a pool of unlabelled texts; for each class it keeps the texts it
predicts for that class most confidently (at most `ratio` x that class's labelled count, each at
least `min_confidence`), so a class the model over-predicts cannot flood the set; and at most the
`top_fraction` of the texts predicted as that class, so a class the pool holds few of is not
filled up with its least likely members (per-class portions as in class-balanced self-training,
Zou et al. 2018, "Unsupervised Domain Adaptation for Semantic Segmentation via Class-Balanced
Self-Training"). Then either
(`self_train`) the classifier trains on the labelled and the pseudo-labelled texts together for a
few more epochs, every group trainable with the recipe's layer decay, on the core trainer; or
(`self_train_head`) only its fitted head is fitted again, as the logistic regression of the frozen
encoder's features of both sets (the encoder is not touched, so its labelled rows stay where the
contrastive stage put them), for one round or, with `rounds`, until the refitted head picks the same
pseudo labels again.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ulmfit.core import Hooks, LayerGroups, TrainConfig, Trainer
from ulmfit.text.transformers import data as td
from ulmfit.text.transformers.contrastive import all_groups_stage, side_config
from ulmfit.text.transformers.linear_probe import features_in_order, fit_head_on, head_proba, resolve_head


def pick_confident(probs: np.ndarray, quota: dict[int, int], min_confidence: float,
                   top_fraction: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, their predicted classes): per class c, the `quota[c]` rows predicted c with
    the highest probability, each at least `min_confidence`, and no more than `top_fraction` of
    the rows predicted c (rounded down)."""
    pred, conf = probs.argmax(1), probs.max(1)
    rows, labels = [], []
    for c, k in sorted(quota.items()):
        k = min(k, int(np.sum(pred == c) * top_fraction + 1e-9))
        idx = np.flatnonzero((pred == c) & (conf >= min_confidence))
        idx = idx[np.argsort(-conf[idx], kind="stable")][:k]
        rows.append(idx)
        labels.append(np.full(len(idx), c))
    if not rows:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(rows), np.concatenate(labels)


def draw_pool(texts, unlabelled, pool: int | None = 2000, seed: int = 42) -> list:
    """The distinct `unlabelled` texts that are not labelled ones (`texts`), at most `pool` of them (a
    seeded sample, in their file's order)."""
    seen = set(texts)
    pool_texts = [t for t in dict.fromkeys(td.check_texts(unlabelled, "self-training texts")) if t not in seen]
    if pool and len(pool_texts) > pool:
        keep = np.sort(np.random.default_rng(seed).choice(len(pool_texts), pool, replace=False))
        pool_texts = [pool_texts[i] for i in keep]
    return pool_texts


def read_pool(model, texts, unlabelled, pool: int | None = 2000, seed: int = 42, bs: int = 64):
    """The pooled features (float64, one row per text) of `draw_pool`'s texts; None for an empty pool."""
    pool_texts = draw_pool(texts, unlabelled, pool, seed)
    return features_in_order(model, pool_texts, bs) if pool_texts else None


def class_quota(label_ids, n_classes: int, ratio: float) -> dict[int, int]:
    """Pseudo labels each class may take: `ratio` x its labelled count (classes without rows get none)."""
    counts = np.bincount(np.asarray(label_ids, dtype=int), minlength=n_classes)
    return {c: int(round(ratio * n)) for c, n in enumerate(counts) if n}


def pseudo_label(model, texts, label_ids, unlabelled, *, ratio: float = 4.0, min_confidence: float = 0.5,
                 top_fraction: float = 1.0, pool: int | None = 2000,
                 seed: int = 42) -> tuple[list, np.ndarray, dict]:
    """(confident unlabelled texts, their predicted class ids, the quota per class): the pool is the
    distinct unlabelled texts that are not labelled ones, at most `pool` of them (a seeded sample),
    labelled by the model's `predict_proba`."""
    pool_texts = draw_pool(texts, unlabelled, pool, seed)
    quota = class_quota(label_ids, len(model.labels), ratio)
    probs = model.predict_proba(pool_texts).numpy() if pool_texts else np.zeros((0, len(model.labels)))
    rows, pseudo = pick_confident(probs, quota, min_confidence, top_fraction)
    return [pool_texts[i] for i in rows], pseudo, quota


def _per_class(model, pseudo: np.ndarray, quota: dict) -> dict:
    return {model.labels[c]: int((pseudo == c).sum()) for c in quota}


def self_train(model, groups: LayerGroups, texts, label_ids, unlabelled, *, ratio: float = 4.0,
               min_confidence: float = 0.5, top_fraction: float = 1.0, pool: int | None = 2000, epochs: float = 2,
               lr: float = 5e-5, layer_decay=None, bs: int = 16, seed: int = 42,
               train_config: TrainConfig | None = None):
    """Pseudo-label `unlabelled` with `model` and train it (its layer `groups`) on labelled +
    pseudo-labelled texts.

    Returns (history rows, number of pseudo-labelled texts per class)."""
    extra, pseudo, quota = pseudo_label(model, texts, label_ids, unlabelled, ratio=ratio,
                                        min_confidence=min_confidence, top_fraction=top_fraction, pool=pool, seed=seed)
    all_texts = list(texts) + extra
    all_labels = list(label_ids) + pseudo.tolist()
    loader = td.classification_loader(model.tokenizer, all_texts, all_labels, model.max_length, bs, True, seed,
                                      model.long_docs)
    trainer = Trainer(model, groups, torch.nn.functional.cross_entropy, loader, None, side_config(train_config, seed),
                      Hooks(split_batch=td.split_batch))
    history = trainer.fit([all_groups_stage(epochs, lr, layer_decay, "self-training")])
    return history, _per_class(model, pseudo, quota)


# `rounds: auto` for the centroid head: on the selection draws it moved SST-2 8 per class from 0.701 to
# 0.725 (converged by 10), where the logistic head's rounds were level or worse (TREC-6 8 per class -0.5)
CENTROID_ROUNDS = 10


def resolve_rounds(rounds: int | str, head: str) -> int:
    """The rounds `self_training.rounds` names for `head` (already resolved): ``auto`` is CENTROID_ROUNDS for
    the centroid head and 1 for the logistic one."""
    if rounds == "auto":
        return CENTROID_ROUNDS if head == "centroid" else 1
    return int(rounds)


def self_train_head(model, texts, label_ids, unlabelled, *, c: float = 1.0, per_row: bool = False,
                    max_iter: int = 200, head: str = "logistic", ratio: float = 4.0, min_confidence: float = 0.5,
                    top_fraction: float = 1.0, pool: int | None = 2000, bs: int = 64, seed: int = 42,
                    pool_features: torch.Tensor | None = None, rounds: int | str = 1):
    """Pseudo-label `unlabelled` with `model` (its head already fitted) and fit the head again on the
    frozen encoder's features of the labelled + pseudo-labelled texts (`linear_probe.fit_head_on`, C = `c`, or
    c per row of labelled + pseudo-labelled texts with `per_row`;
    a `centroid` head keeps measuring from the mean feature of the pool). With `rounds` > 1 (`auto`:
    `resolve_rounds`) the refitted head labels the same pool again and the head is refitted from the
    labelled rows and the new picks, until the picks repeat or `rounds` is reached (a cluster-then-label
    loop on the frozen features, as self-training's rounds in Yarowsky 1995 and in Zou et al. 2018). The
    pool and the labelled rows are read once (`pool_features`: the pool's features from the same encoder
    if the caller has them).

    Returns (history rows, number of pseudo-labelled texts per class)."""
    t0 = time.time()
    head = resolve_head(head, len(model.labels))
    rounds = resolve_rounds(rounds, head)
    if pool_features is None:
        pool_features = read_pool(model, texts, unlabelled, pool, seed, bs)
    x_pool = pool_features if pool_features is not None else torch.zeros(0, model.head.out.in_features,
                                                                             dtype=torch.float64)
    center = x_pool.mean(0) if head == "centroid" and len(x_pool) else None
    x_lab, y_lab = features_in_order(model, list(texts), bs), torch.as_tensor(list(label_ids)).long()
    quota = class_quota(label_ids, len(model.labels), ratio)
    picked, done = None, 0
    while done < max(1, rounds):
        rows, pseudo = pick_confident(head_proba(model, x_pool).numpy(), quota, min_confidence, top_fraction)
        if picked is not None and np.array_equal(rows, picked[0]) and np.array_equal(pseudo, picked[1]):
            break  # the head labels the pool as the last one did: refitting would give the same head
        picked, done = (rows, pseudo), done + 1
        row = fit_head_on(model, torch.cat([x_lab, x_pool[torch.as_tensor(rows, dtype=torch.long)]]),
                          torch.cat([y_lab, torch.as_tensor(pseudo, dtype=torch.long)]), c=c, per_row=per_row,
                          max_iter=max_iter, head=head, center=center)
    row.update(stage_name="self-training (head)", rounds=done, epoch_s=time.time() - t0)
    return [row], _per_class(model, picked[1], quota)
