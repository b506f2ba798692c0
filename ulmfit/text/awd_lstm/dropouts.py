"""The three AWD-LSTM dropouts (Merity et al. 2017, https://arxiv.org/abs/1708.02182).

- :class:`EmbeddingDropout` drops whole words: rows of the embedding matrix, scaled by 1/(1-p)
  (paper section 4.3; salesforce/awd-lstm-lm ``embed_regularize.py``; fastai ``EmbeddingDropout``).
- :class:`RNNDropout` (alias :data:`LockedDropout`) is variational dropout: one mask per sequence
  and feature, shared by every time step (salesforce ``locked_dropout.py``; fastai ``RNNDropout``).
- :class:`WeightDrop` is DropConnect on an LSTM's hidden-to-hidden matrices (salesforce
  ``weight_drop.py``; fastai ``WeightDropout``).

Speed notes. Embedding dropout masks the *looked-up rows* (``emb[ids] * mask[ids]``) instead of
building a masked copy of the whole V x E matrix each step: same values and gradients, a fraction
of the memory traffic. WeightDrop never re-assigns module attributes: the raw weights stay the
LSTM's ordinary Parameters and the forward pass hands ``torch._VF.lstm`` (the op behind
``nn.LSTM``) a weight list in which ``weight_hh`` is replaced by one dropped copy. The fused
kernel (oneDNN on CPU, cuDNN on CUDA) runs over the whole sequence with that copy, and autograd
carries the gradient back to the raw Parameter through the dropout mask.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["dropout_mask", "EmbeddingDropout", "RNNDropout", "LockedDropout", "WeightDrop"]


def dropout_mask(x: torch.Tensor, size: tuple[int, ...], p: float) -> torch.Tensor:
    """A Bernoulli(1-p) mask of ``size`` with ``x``'s dtype and device, scaled by 1/(1-p)."""
    if p >= 1.0:
        return x.new_zeros(size)
    return x.new_empty(size).bernoulli_(1.0 - p).div_(1.0 - p)


class EmbeddingDropout(nn.Module):
    """Look ``ids`` up in ``emb`` while dropping whole words (rows) with probability ``p``.

    The mask has one entry per vocabulary row, so every occurrence of a dropped word in the
    batch is zero, as in the paper. In eval mode (or with ``p == 0``) it is a plain lookup.
    """

    def __init__(self, emb: nn.Embedding, p: float):
        super().__init__()
        # Not registered as a submodule: the owner registers the embedding, so its weight
        # appears once in state_dict() (fastai's layout stores it twice).
        self.__dict__["emb"] = emb
        self.p = float(p)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        weight = self.emb.weight
        pad = self.emb.padding_idx if self.emb.padding_idx is not None else -1
        out = F.embedding(ids, weight, pad)
        if self.training and self.p > 0:
            mask = dropout_mask(weight.detach(), (weight.size(0),), self.p)
            out = out * mask[ids].unsqueeze(-1).to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return f"p={self.p}"


class RNNDropout(nn.Module):
    """Dropout with one mask per (sequence, feature) shared across time steps.

    Input is batch-first ``(bs, seq, features)``; the mask has shape ``(bs, 1, features)``.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_mask(x.detach(), (x.size(0), 1, *x.shape[2:]), self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


LockedDropout = RNNDropout


class WeightDrop(nn.Module):
    """DropConnect on the hidden-to-hidden weights of a wrapped ``nn.LSTM``.

    ``module.weight_hh_l0`` (and ``weight_hh_l0_reverse`` when bidirectional) stay ordinary
    Parameters holding the *raw* weights. Each training forward draws one mask per matrix (not
    per time step, as in the paper) and calls the fused LSTM op with the dropped copies; in eval
    mode the raw weights are used as they are. ``forward(x, hx)`` takes and returns batch-first
    tensors like ``nn.LSTM``: ``output, (h, c)``.
    """

    def __init__(self, module: nn.LSTM, weight_p: float, autocast: bool = True):
        super().__init__()
        if not isinstance(module, nn.LSTM):
            raise TypeError(f"WeightDrop wraps an nn.LSTM, got {type(module).__name__}")
        if module.num_layers != 1 or not module.batch_first or module.proj_size:
            raise ValueError("WeightDrop expects a single-layer, batch_first LSTM without projection")
        self.module = module
        self.weight_p = float(weight_p)
        self.autocast = autocast  # False: run the LSTM in fp32 even inside an autocast region
        names = module._flat_weights_names
        self._hh_index = [i for i, n in enumerate(names) if n.startswith("weight_hh")]

    def flat_weights(self) -> list[torch.Tensor]:
        """The weight list the LSTM op will use: raw weights, ``weight_hh`` dropped in training."""
        weights = [getattr(self.module, n) for n in self.module._flat_weights_names]
        if self.training and self.weight_p > 0:
            for i in self._hh_index:
                weights[i] = F.dropout(weights[i], p=self.weight_p, training=True)
        return weights

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor]):
        m = self.module
        weights = self.flat_weights()
        dev = x.device.type
        ac = torch.is_autocast_enabled(dev)
        if ac and self.autocast:
            dtype = torch.get_autocast_dtype(dev)
        else:
            dtype = weights[0].dtype
        x = x.to(dtype)
        hx = [t.to(dtype) for t in hx]  # a carried state may come from a run in another dtype
        with warnings.catch_warnings(), torch.autocast(dev, enabled=ac and self.autocast):
            # cuDNN warns that the (partly fresh) weights are not one contiguous chunk; it copies
            # them into its workspace once per call, which is the price of one dropped copy.
            warnings.simplefilter("ignore", UserWarning)
            out, h, c = torch._VF.lstm(
                x, hx, weights, m.bias, 1, 0.0, self.training, m.bidirectional, True
            )
        return out, (h, c)

    def extra_repr(self) -> str:
        return f"weight_p={self.weight_p}"
