"""The distillation loss (issue #23) against its formula on a hand-made batch."""

import math

import pytest
import torch
import torch.nn.functional as F

from ulmfit.core.distillation import distillation_loss, soft_targets_loss

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0]])
TEACHER = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])
HARD = torch.tensor([0, 2, -1])  # the third row is unlabelled


def _by_hand(w, t):
    total = 0.0
    for z, p, y in zip(LOGITS.tolist(), TEACHER.tolist(), HARD.tolist()):
        ce = -(z[y] - math.log(sum(math.exp(v) for v in z))) if y >= 0 else 0.0
        q = [math.exp(math.log(v) / t) for v in p]
        q = [v / sum(q) for v in q]
        zs = [v / t for v in z]
        log_s = [v - math.log(sum(math.exp(u) for u in zs)) for v in zs]
        kl = sum(qi * (math.log(qi) - si) for qi, si in zip(q, log_s))
        total += (1 - w) * ce + w * t * t * kl
    return total / 3


@pytest.mark.parametrize("w,t", [(0.5, 2.0), (0.3, 1.0), (1.0, 4.0)])
def test_loss_equals_the_formula(w, t):
    got = distillation_loss(LOGITS, TEACHER, HARD, weight=w, temperature=t)
    assert got.item() == pytest.approx(_by_hand(w, t), rel=1e-5)


def test_weight_zero_is_cross_entropy():
    hard = torch.tensor([0, 2, 1])
    assert distillation_loss(LOGITS, TEACHER, hard, weight=0.0).item() == pytest.approx(
        F.cross_entropy(LOGITS, hard).item(), rel=1e-6)


def test_trainer_loss_reads_probability_rows_and_plain_ids():
    loss = soft_targets_loss(3, weight=0.5, temperature=2.0)
    rows = torch.cat([TEACHER, HARD[:, None].float()], 1)
    assert loss(LOGITS, rows).item() == pytest.approx(_by_hand(0.5, 2.0), rel=1e-5)
    ids = torch.tensor([0, 2, 1])  # a validation batch
    assert loss(LOGITS, ids).item() == pytest.approx(F.cross_entropy(LOGITS, ids).item(), rel=1e-6)


def test_student_moves_towards_the_teacher():
    torch.manual_seed(0)
    z = torch.zeros(3, 3, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        distillation_loss(z, TEACHER, torch.full((3,), -1), weight=1.0, temperature=1.0).backward()
        opt.step()
    torch.testing.assert_close(torch.softmax(z, -1), TEACHER, atol=1e-3, rtol=0)


def _mse_by_hand(w):
    total = 0.0
    for z, p, y in zip(LOGITS.tolist(), TEACHER.tolist(), HARD.tolist()):
        ce = -(z[y] - math.log(sum(math.exp(v) for v in z))) if y >= 0 else 0.0
        lp = [math.log(v) for v in p]
        zc = [v - sum(z) / 3 for v in z]
        lc = [v - sum(lp) / 3 for v in lp]
        total += (1 - w) * ce + w * sum((a - b) ** 2 for a, b in zip(zc, lc)) / 3
    return total / 3


@pytest.mark.parametrize("w", [0.5, 1.0])
def test_mse_loss_equals_tangs_formula_on_centred_logits(w):
    got = distillation_loss(LOGITS, TEACHER, HARD, weight=w, temperature=7.0, soft="mse")
    assert got.item() == pytest.approx(_mse_by_hand(w), rel=1e-5)
    # a per-row constant added to the student's logits changes nothing (a softmax ignores it)
    shifted = LOGITS + torch.tensor([[3.0], [-2.0], [0.5]])
    assert distillation_loss(shifted, TEACHER, HARD, weight=w, soft="mse").item() == pytest.approx(got.item(), rel=1e-5)


def test_mse_student_reaches_the_teachers_probabilities():
    z = torch.zeros(3, 3, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        distillation_loss(z, TEACHER, torch.full((3,), -1), weight=1.0, soft="mse").backward()
        opt.step()
    torch.testing.assert_close(torch.softmax(z, -1), TEACHER, atol=1e-3, rtol=0)


def test_soft_loss_names_match_the_configs_choices():
    from ulmfit.core.distillation import SOFT_LOSSES
    from ulmfit.text.choices import DISTIL_LOSSES

    assert SOFT_LOSSES == DISTIL_LOSSES
    with pytest.raises(ValueError, match="not one of kl, mse"):
        distillation_loss(LOGITS, TEACHER, HARD, soft="l1")
