"""A small classification problem for core tests (also run as a script under torchrun)."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ulmfit.core import LayerGroups, Trainer, TrainConfig


def make_data(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 3, generator=g)
    y = (x @ w).argmax(-1)
    return x, y


def make_model(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 3))


def split(m):
    return [m[0], m[3], m[5]]


def accuracy(p, t):
    return float((p == t).mean())


def make_trainer(out_dir=None, bs=32, shuffle=True, seed=0, dropout=0.1, **cfg):
    x, y = make_data()
    train = DataLoader(TensorDataset(x[:384], y[:384]), batch_size=bs, shuffle=shuffle)
    valid = DataLoader(TensorDataset(x[384:], y[384:]), batch_size=64)
    model = make_model(seed, dropout)
    cfg.setdefault("progress", False)
    return Trainer(model, LayerGroups(model, split(model)), nn.functional.cross_entropy, train, valid,
                   TrainConfig(seed=seed, **cfg), metrics={"accuracy": accuracy}, out_dir=out_dir)
