"""The nearest-centroid head: its rows point from the centre to each class's mean feature, its argmax is
the nearest centroid by cosine, and its one free number (the scale) minimises the logistic objective."""

import pytest
import torch
import torch.nn.functional as F

from ulmfit.core.linear_probe import fit_centroid


def _objective(s, m, y, d, c):
    return float(F.cross_entropy(s * m, y, reduction="sum") + s * s * (d * d).sum() / (2 * c))


def test_fit_centroid_points_each_row_from_the_centre_to_its_class_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64) + torch.arange(30).remainder(3).unsqueeze(1)
    y = torch.arange(30).remainder(3)
    center = torch.randn(5, generator=g, dtype=torch.float64)
    w, b = fit_centroid(x, y, 3, center, c=1.0)
    d = torch.stack([F.normalize(x[y == k].mean(0) - center, dim=0) for k in range(3)])
    s = w.norm(dim=1)
    assert torch.allclose(s, s[0].expand(3)) and s[0] > 0          # one scale for every class
    assert torch.allclose(w / s.unsqueeze(1), d)
    assert torch.allclose(b, -(center @ w.T))
    # the argmax is the class whose centroid has the largest cosine with (x - centre), for any x
    q = torch.randn(200, 5, generator=g, dtype=torch.float64) * 3
    cos = F.normalize(q - center, dim=1) @ d.T
    assert torch.equal((q @ w.T + b).argmax(1), cos.argmax(1))
    # the scale minimises sum CE + s^2 ||D||^2 / (2C): moving it either way costs
    m = (x - center) @ d.T
    best = _objective(s[0], m, y, d, 1.0)
    assert best < _objective(s[0] * 1.01, m, y, d, 1.0) and best < _objective(s[0] * 0.99, m, y, d, 1.0)
    # a stronger penalty (smaller C) gives a smaller scale
    w2, _ = fit_centroid(x, y, 3, center, c=0.01)
    assert w2.norm(dim=1)[0] < s[0]


def test_fit_centroid_scores_a_class_without_rows_zero_and_refuses_bad_input():
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    w, b = fit_centroid(x, torch.tensor([0, 0, 2]), 3, torch.zeros(2))
    assert torch.equal(w[1], torch.zeros(2, dtype=torch.float64)) and b[1] == 0
    assert w[0, 1] == 0 and w[2, 0] == 0 and w[0, 0] > 0
    with pytest.raises(ValueError, match="needs \\(n, d\\) features and n labels"):
        fit_centroid(torch.zeros(4, 2), torch.zeros(3), 2, torch.zeros(2))
    with pytest.raises(ValueError, match="C must be positive"):
        fit_centroid(x, torch.tensor([0, 0, 1]), 2, torch.zeros(2), c=0)
