"""Contrastive losses on sentence embeddings, for any encoder.

- `info_nce(a, b, t)`: row i of `a` and row i of `b` are a positive pair, every other row of `b`
  a negative: cross-entropy over the cosine similarities / t. With `a` and `b` two dropout views
  of the same texts this is unsupervised SimCSE (Gao et al. 2021, "SimCSE: Simple Contrastive
  Learning of Sentence Embeddings", eq. 1; t = 0.05 in the paper).
- `sup_con(z, labels, t)`: the supervised contrastive loss of Khosla et al. 2020 ("Supervised
  Contrastive Learning", eq. 2, L_out): for each anchor, the mean over its positives (the other
  rows with its label) of -log softmax over all other rows. Anchors without a positive in the
  batch are left out of the mean.
- `cosine_pairs(a, b, target)`: the mean of (cos(a_i, b_i) - target_i)^2, target 1 for a pair of
  one class and 0 otherwise: sentence-transformers' CosineSimilarityLoss (Reimers & Gurevych 2019),
  the objective SetFit (Tunstall et al. 2022) trains its body with on sampled pairs.

All take raw embeddings and normalise them here, so the similarity is the cosine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Mean over i of -log( exp(cos(a_i, b_i)/t) / sum_j exp(cos(a_i, b_j)/t) )."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"info_nce needs two (n, d) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def sup_con(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Khosla et al.'s L_out over the rows of `z` (n, d) with integer `labels` (n,)."""
    n = z.shape[0]
    zn = F.normalize(z.float(), dim=-1)
    sim = zn @ zn.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))          # an anchor is not its own candidate
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels.view(-1, 1) == labels.view(1, -1)) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0                                  # no pair in this batch: no signal
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has])
    return per_anchor.mean()


def cosine_pairs(a: torch.Tensor, b: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over i of (cos(a_i, b_i) - target_i)^2."""
    if a.shape != b.shape or a.ndim != 2 or target.shape != a.shape[:1]:
        raise ValueError(f"cosine_pairs needs two (n, d) tensors and n targets, got {tuple(a.shape)}, "
                         f"{tuple(b.shape)} and {tuple(target.shape)}")
    cos = F.cosine_similarity(a.float(), b.float(), dim=-1)
    return F.mse_loss(cos, target.float())


def two_view_info_nce(temperature: float = 0.05):
    """A trainer loss for a batch whose second half repeats its first half (two dropout views)."""

    def loss(emb: torch.Tensor, _targets=None) -> torch.Tensor:
        half = emb.shape[0] // 2
        return info_nce(emb[:half], emb[half:], temperature)

    return loss


def sup_con_loss(temperature: float = 0.1):
    """A trainer loss `(embeddings, labels) -> sup_con`."""

    def loss(emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sup_con(emb, labels, temperature)

    return loss


def cosine_pair_loss():
    """A trainer loss `(embeddings, (index, targets))`: pair k is rows index[k, 0] and index[k, 1]
    of the embeddings, with target `targets[k]` (a text in several pairs of a batch is one row)."""

    def loss(emb: torch.Tensor, pairs) -> torch.Tensor:
        index, targets = pairs
        return cosine_pairs(emb[index[:, 0]], emb[index[:, 1]], targets)

    return loss
