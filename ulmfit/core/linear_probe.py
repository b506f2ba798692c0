"""A linear head fitted to convergence on fixed features: multinomial logistic regression with L2, or
a nearest-centroid head whose scale is fitted with the same objective (`fit_centroid`).

Fitting the head on the frozen encoder's features before any layer is unfrozen is "LP-FT" (Kumar
et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"):
a random head's large early gradients otherwise reach the body and distort what it learnt. It is
also the head SetFit (Tunstall et al. 2022) puts on its contrastively trained body (scikit-learn's
`LogisticRegression`, C = 1).

The objective is scikit-learn's: sum_i CE(x_i W^T + b, y_i) + ||W||^2 / (2C), bias not penalised,
minimised with L-BFGS in float64 over the whole (small) set of features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, n_classes: int, c: float = 1.0,
                 max_iter: int = 200, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (n_classes, d), bias (n_classes,)) minimising the L2-penalised multinomial log-loss."""
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"fit_logistic needs (n, d) features and n labels, got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    if c <= 0:
        raise ValueError(f"fit_logistic: C must be positive, got {c}")
    x = features.detach().to(torch.float64)
    y = labels.detach().long().to(x.device)
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, device=x.device, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y, reduction="sum") + (w * w).sum() / (2 * c)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_centroid(features: torch.Tensor, labels: torch.Tensor, n_classes: int, center: torch.Tensor,
                 c: float = 1.0, max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a nearest-centroid head: class k scores ``s * (x - center) . d_k``, where d_k is the
    unit direction from ``center`` to class k's mean feature (a class without rows scores 0).

    Its argmax is the class whose centroid has the largest cosine to ``x - center`` (prototypes as in Snell
    et al. 2017, "Prototypical Networks", with cosine). Only the scale s is fitted, with `fit_logistic`'s
    objective restricted to weights ``s * D``: the penalty is s^2 ||D||^2 / (2C). ``center`` is where the
    cosines are measured from; the mean feature of the domain's unlabelled texts puts it in the middle of
    the domain instead of the middle of a few labelled rows.
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"fit_centroid needs (n, d) features and n labels, got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    if c <= 0:
        raise ValueError(f"fit_centroid: C must be positive, got {c}")
    x = features.detach().to(torch.float64) - center.detach().to(torch.float64)
    y = labels.detach().long().to(x.device)
    d = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, device=x.device)
    for k in range(n_classes):
        rows = x[y == k]
        if len(rows):
            d[k] = F.normalize(rows.mean(0), dim=0)
    m = x @ d.T
    log_s = torch.zeros((), dtype=torch.float64, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([log_s], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        s = log_s.exp()
        loss = F.cross_entropy(s * m, y, reduction="sum") + s * s * (d * d).sum() / (2 * c)
        loss.backward()
        return loss

    opt.step(closure)
    w = log_s.detach().exp() * d
    return w, -(center.detach().to(torch.float64) @ w.T)
