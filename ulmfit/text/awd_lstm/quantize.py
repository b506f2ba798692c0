"""int8 prediction on the CPU: an AWD-LSTM classifier whose LSTMs hold int8 weights.

Dynamic quantization (``torch.ao.quantization.quantize_dynamic``): the LSTM weights are stored as
int8 once, activations are quantized on the fly, and the matrix products run on the CPU's int8
instructions (VNNI where present). Weight dropout only acts in training, so for prediction each
``WeightDrop`` is replaced by its plain LSTM first. The embedding and the small head stay fp32.
Accuracy and speed against fp32 are measured in docs/benchmarks.md ("Prediction").
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ulmfit.errors import UlmfitError


def int8_available() -> bool:
    """True where torch has a CPU int8 engine (x86 / fbgemm, or qnnpack on ARM)."""
    engines = set(torch.backends.quantized.supported_engines)
    return bool(engines & {"x86", "fbgemm", "qnnpack"})


class PlainLSTM(nn.Module):
    """An LSTM called like ``WeightDrop``: ``forward(x, (h, c))`` -> ``out, (h, c)``; ``module``
    is the LSTM (``init_hidden`` reads its ``hidden_size``)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, hx):
        out, (h, c) = self.module(x, (hx[0].contiguous(), hx[1].contiguous()))
        return out, (h, c)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of an AWD-LSTM classifier for CPU prediction with int8 LSTM weights."""
    if not int8_available():
        raise UlmfitError("this torch build has no CPU int8 engine; use --precision fp32")
    q = copy.deepcopy(model).cpu().eval()
    rnns = q.encoder.rnns
    for i, rnn in enumerate(rnns):
        rnns[i] = PlainLSTM(rnn.module)
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(q, {nn.LSTM}, dtype=torch.qint8)
