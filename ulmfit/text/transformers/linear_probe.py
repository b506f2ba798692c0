"""Fit a transformers classifier's head on its frozen encoder before any layer trains (LP-FT).

The encoder (dropout off) reads the labelled texts once; the head's linear layer becomes the
L2-penalised logistic regression of its pooled features (`ulmfit.core.linear_probe`). The
strategy's stages then start from a head that already separates the classes, instead of a random
one whose first gradients reach the body.
"""

from __future__ import annotations

import time

import torch

from ulmfit.core.linear_probe import fit_centroid, fit_logistic
from ulmfit.errors import UlmfitError
from ulmfit.text.choices import PROBE_HEADS
from ulmfit.text.transformers import data as td


@torch.no_grad()
def pooled_features(classifier, texts, label_ids, bs: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (n, d), labels (n,)) of the head's input, one row per text (order of the batches)."""
    loader = td.classification_loader(classifier.tokenizer, list(texts), list(label_ids), classifier.max_length, bs,
                                      False)
    was = classifier.training
    classifier.eval()
    dev = next(classifier.parameters()).device
    feats, ys = [], []
    try:
        for batch in loader:
            inputs, y = td.split_batch(batch)
            inputs = {k: v.to(dev) for k, v in inputs.items()}
            h = classifier.hf(**inputs).last_hidden_state
            feats.append(classifier.head.pool(h, inputs["attention_mask"]).float().cpu())
            ys.append(y)
    finally:
        classifier.train(was)
    return torch.cat(feats), torch.cat(ys)


def features_in_order(classifier, texts, bs: int = 64) -> torch.Tensor:
    """`pooled_features` of `texts`, one row per text in their order (float64)."""
    x, idx = pooled_features(classifier, texts, list(range(len(texts))), bs)
    out = torch.empty(x.shape, dtype=torch.float64)
    out[idx.long()] = x.double()
    return out


def resolve_head(head: str, n_classes: int) -> str:
    """The head `linear_probe.head` names for a task of `n_classes`: ``auto`` is the centroid head for two
    classes and the logistic one for more (docs/results.md#a-centroid-head-for-sentiment)."""
    if head not in PROBE_HEADS:
        raise UlmfitError(f"classifier.linear_probe.head {head!r} is not one of {', '.join(PROBE_HEADS)}")
    if head != "auto":
        return head
    return "centroid" if n_classes == 2 else "logistic"


def fit_head(classifier, texts, label_ids, *, c: float = 1.0, per_row: bool = False, bs: int = 64,
             max_iter: int = 200, head: str = "logistic", center: torch.Tensor | None = None) -> dict:
    """Set the head's linear layer to the logistic regression of the pooled features, or with
    ``head="centroid"`` to the nearest-centroid head measured from `center` (the mean feature of the
    domain's unlabelled texts; None: of the labelled texts), ``head="auto"`` to the one `resolve_head`
    picks; a history row."""
    head = resolve_head(head, len(classifier.labels))
    if classifier.head is None:
        raise UlmfitError("classifier.linear_probe fits a pooling head: set model.pooling to mean, max or concat "
                          "(pooling 'cls' uses the checkpoint's own head)")
    if classifier.long_docs != "truncate":
        raise UlmfitError("classifier.linear_probe reads each text's first window: use model.long_docs: truncate")
    t0 = time.time()
    x, y = pooled_features(classifier, texts, label_ids, bs)
    row = fit_head_on(classifier, x, y, c=c, per_row=per_row, max_iter=max_iter, head=head, center=center)
    row["epoch_s"] = time.time() - t0
    return row


def fit_head_on(classifier, x: torch.Tensor, y: torch.Tensor, *, c: float = 1.0, per_row: bool = False,
                max_iter: int = 200, head: str = "logistic", center: torch.Tensor | None = None) -> dict:
    """`fit_head` on features already read (`x`, (n, d), labels `y`); a history row. With `per_row` the
    inverse strength is c per row, C = c / n: the penalty weighs the same against the mean loss of n rows
    whatever n is (the objective mean CE + ||W||^2 / (2c))."""
    t0 = time.time()
    head = resolve_head(head, len(classifier.labels))
    y = torch.as_tensor(y).long()
    if per_row:
        c = c / max(1, len(y))
    if head == "centroid":
        mid = x.double().mean(0) if center is None else center
        w, b = fit_centroid(x, y, len(classifier.labels), mid, c=c, max_iter=max_iter)
    else:
        w, b = fit_logistic(x, y, len(classifier.labels), c=c, max_iter=max_iter)
    out = classifier.head.out
    out.weight.data.copy_(w.to(out.weight.dtype))
    out.bias.data.copy_(b.to(out.bias.dtype))
    logits = x.double() @ w.T + b
    # one pass over the labelled rows, reported as an epoch so the run report and its plot list it in order
    return {"epoch": 1, "stage": 0, "stage_name": "linear_probe", "train_loss": float(torch.nn.functional.cross_entropy(logits, y)),
            "train_accuracy": float((logits.argmax(1) == y).double().mean()), "epoch_s": time.time() - t0}


def head_proba(classifier, x: torch.Tensor) -> torch.Tensor:
    """The head's class probabilities (float64) of pooled features `x`: what `predict_proba` gives for the
    texts they were read from, without reading them again."""
    out = classifier.head.out
    with torch.no_grad():
        return torch.softmax(x.double() @ out.weight.double().T + out.bias.double(), 1)
