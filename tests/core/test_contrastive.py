"""Contrastive losses: exact values against the formulas on hand-made batches, and training with
them pulls positive pairs together."""

import math

import pytest
import torch
from torch import nn

from ulmfit.core.contrastive import (
    cosine_pair_loss, cosine_pairs, info_nce, sup_con, sup_con_loss, two_view_info_nce,
)


def _cos(u, v):
    return float(u @ v / (u.norm() * v.norm()))


def test_info_nce_equals_the_formula():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.5], [0.1, 1.0], [-1.0, 1.0]])
    t = 0.5
    want = 0.0
    for i in range(3):
        num = math.exp(_cos(a[i], b[i]) / t)
        den = sum(math.exp(_cos(a[i], b[j]) / t) for j in range(3))
        want += -math.log(num / den) / 3
    assert info_nce(a, b, t).item() == pytest.approx(want, rel=1e-6)
    # the trainer's form: a batch whose second half repeats the first
    assert two_view_info_nce(t)(torch.cat([a, b])).item() == pytest.approx(want, rel=1e-6)


def test_sup_con_equals_khosla_l_out():
    z = torch.tensor([[1.0, 0.0], [0.9, 0.3], [0.0, 1.0], [-0.2, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1, 2])  # the last anchor has no positive: left out of the mean
    t = 0.2
    total, anchors = 0.0, 0
    for i in range(5):
        pos = [p for p in range(5) if p != i and y[p] == y[i]]
        if not pos:
            continue
        den = sum(math.exp(_cos(z[i], z[a]) / t) for a in range(5) if a != i)
        total += -sum(math.log(math.exp(_cos(z[i], z[p]) / t) / den) for p in pos) / len(pos)
        anchors += 1
    assert sup_con(z, y, t).item() == pytest.approx(total / anchors, rel=1e-6)
    assert sup_con_loss(t)(z, y).item() == pytest.approx(total / anchors, rel=1e-6)


def test_cosine_pairs_equals_the_formula():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.5], [0.1, 1.0], [-1.0, 1.0]])
    target = torch.tensor([1.0, 0.0, 1.0])
    want = sum((_cos(a[i], b[i]) - float(target[i])) ** 2 for i in range(3)) / 3
    assert cosine_pairs(a, b, target).item() == pytest.approx(want, rel=1e-6)
    # the trainer's form: pair k is two rows of a batch of distinct texts, which pairs may share
    rows = torch.cat([a, b])
    index = torch.tensor([[0, 3], [1, 4], [2, 5]])
    assert cosine_pair_loss()(rows, (index, target)).item() == pytest.approx(want, rel=1e-6)
    shared = torch.tensor([[0, 1], [2, 1], [1, 1]])          # row 1 in three pairs, once with itself
    want_shared = ((_cos(a[0], a[1]) - 1) ** 2 + (_cos(a[2], a[1]) - 0) ** 2 + (1 - 1) ** 2) / 3
    assert cosine_pair_loss()(a, (shared, target)).item() == pytest.approx(want_shared, rel=1e-6)
    with pytest.raises(ValueError, match="n targets"):
        cosine_pairs(a, b, target[:2])


def test_sup_con_without_any_pair_is_zero_and_keeps_the_graph():
    z = torch.randn(3, 4, requires_grad=True)
    loss = sup_con(z, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None and torch.all(z.grad == 0)


def test_info_nce_refuses_mismatched_views():
    with pytest.raises(ValueError, match="one shape"):
        info_nce(torch.zeros(3, 2), torch.zeros(4, 2))


def test_two_view_training_pulls_positive_pairs_together():
    """SimCSE on a toy encoder: the two dropout views of a text become more similar than before,
    relative to the other texts of the batch."""
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Embedding(50, 16), nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * 4, 8))
    x = torch.randint(0, 50, (16, 4))

    def margin():
        enc.train()
        torch.manual_seed(1)
        with torch.no_grad():
            e = nn.functional.normalize(enc(torch.cat([x, x])), dim=-1)
        sim = e[:16] @ e[16:].T
        return float(sim.diag().mean() - (sim.sum() - sim.diag().sum()) / (16 * 15))

    before = margin()
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    loss_fn = two_view_info_nce(0.1)
    for _ in range(30):
        loss = loss_fn(enc(torch.cat([x, x])))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert margin() > before + 0.2
