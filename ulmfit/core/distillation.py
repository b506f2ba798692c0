"""Knowledge distillation loss (Hinton et al. 2015, "Distilling the Knowledge in a Neural
Network"; for an LSTM student of a BERT teacher: Tang et al. 2019).

Per row i, with the student's logits z_i, the teacher's probabilities p_i, hard label y_i (-1 when
the row has none, e.g. an unlabelled text the teacher labelled), weight w and temperature T:

    loss_i = (1 - w) * CE(z_i, y_i) * [y_i >= 0]  +  w * T^2 * KL(q_i || softmax(z_i / T))

where q_i = softmax(log p_i / T), the teacher's distribution softened by the same temperature.
The loss is the mean over rows; T^2 keeps the soft term's gradients on the hard term's scale. At
w = 0 it is plain cross-entropy.

With ``soft="mse"`` the soft term is Tang et al.'s instead: the mean squared error between the
student's logits and the teacher's, ``mean_c (z_ic - l_ic)^2``. The teacher comes as probabilities, so
its logits are taken as log p_i, and both sides are centred per row (z_i - mean(z_i), log p_i -
mean(log p_i)): a softmax ignores a per-row constant, so only the logits' differences are
comparable. T plays no part there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SOFT_LOSSES", "distillation_loss", "soft_targets_loss"]


SOFT_LOSSES = ("kl", "mse")


def distillation_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, hard: torch.Tensor,
                      weight: float = 0.5, temperature: float = 2.0, soft: str = "kl") -> torch.Tensor:
    """The mean of the per-row loss above. ``logits`` (n, C), ``teacher_probs`` (n, C), ``hard`` (n,)
    class ids with -1 where a row has no label; ``soft`` the soft term, ``kl`` or ``mse``."""
    logits = logits.float()
    hard = hard.long()
    labelled = hard >= 0
    ce = F.cross_entropy(logits, hard.clamp(min=0), reduction="none") * labelled
    if weight == 0:
        return ce.mean()
    if soft == "mse":
        teacher = torch.log(teacher_probs.float().clamp_min(1e-12))
        diff = (logits - logits.mean(-1, keepdim=True)) - (teacher - teacher.mean(-1, keepdim=True))
        return ((1 - weight) * ce + weight * diff.pow(2).mean(-1)).mean()
    if soft != "kl":
        raise ValueError(f"soft loss {soft!r} is not one of {', '.join(SOFT_LOSSES)}")
    t = float(temperature)
    target = torch.softmax(torch.log(teacher_probs.float().clamp_min(1e-12)) / t, -1)
    kl = (target * (torch.log(target.clamp_min(1e-12)) - torch.log_softmax(logits / t, -1))).sum(-1)
    return ((1 - weight) * ce + weight * t * t * kl).mean()


def soft_targets_loss(n_classes: int, weight: float, temperature: float, soft: str = "kl"):
    """The trainer's loss for batches whose labels are (n, n_classes + 1) rows: the teacher's
    probabilities, then the hard class id (-1: none). Plain class ids (validation batches) get
    plain cross-entropy."""
    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 1:
            return F.cross_entropy(out.float(), y)
        return distillation_loss(out, y[:, :n_classes], y[:, n_classes], weight, temperature, soft)
    return loss
