"""AWD-LSTM encoder and language model (Merity et al. 2017, https://arxiv.org/abs/1708.02182),
with the dropouts and sizes ULMFiT uses (Howard & Ruder 2018; fastai ``text/models/awdlstm.py``).

- :class:`AWDLSTMConfig` holds sizes and dropouts (``drop_mult`` scales every dropout).
- :class:`AWDLSTMEncoder`: embedding (with embedding dropout) -> input dropout -> n stacked
  single-layer LSTMs with DropConnect on their hidden-to-hidden weights, RNN dropout between
  layers. The last LSTM has ``emb_size`` units so the decoder can tie to the embedding.
  The hidden state stays on the module between calls (truncated BPTT over a stream) and is
  detached each call.
- :class:`AWDLSTMLanguageModel`: encoder + output dropout + a Linear decoder tied to the
  embedding, with bias.
- :func:`lm_loss`: cross-entropy + AR + TAR (paper section 4.6; fastai ``RNNRegularizer``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm.dropouts import EmbeddingDropout, RNNDropout, WeightDrop

__all__ = ["AWDLSTMConfig", "AWDLSTMEncoder", "AWDLSTMLanguageModel", "LMOutput", "lm_loss", "linear_cross_entropy"]

Hidden = list[tuple[torch.Tensor, torch.Tensor]]

_PRESETS = {"paper": dict(emb_size=400, n_hid=1152, n_layers=3), "small": dict(emb_size=200, n_hid=400, n_layers=3)}


@dataclass
class AWDLSTMConfig:
    """Sizes and dropouts of an AWD-LSTM. Dropout fields are the unscaled (fastai LM) values;
    the ``*_dropout`` properties give them multiplied by ``drop_mult``."""

    vocab_size: int
    emb_size: int = 400
    n_hid: int = 1152
    n_layers: int = 3
    pad_id: int = 1
    bidir: bool = False
    output_p: float = 0.1
    hidden_p: float = 0.15
    input_p: float = 0.25
    embed_p: float = 0.02
    weight_p: float = 0.2
    drop_mult: float = 1.0
    lstm_autocast: bool = True  # under autocast run the LSTMs in bf16/fp16 (False: keep them fp32)

    def __post_init__(self):
        for name in ("vocab_size", "emb_size", "n_hid", "n_layers"):
            if int(getattr(self, name)) < 1:
                raise UlmfitError(f"AWD-LSTM setting '{name}' must be a positive integer, got {getattr(self, name)}")
        for name in ("output_p", "hidden_p", "input_p", "embed_p", "weight_p"):
            p = getattr(self, name) * self.drop_mult
            if not 0.0 <= p <= 1.0:
                raise UlmfitError(f"AWD-LSTM setting '{name}' x drop_mult = {p} is not a probability in [0, 1]")
        if self.bidir and (self.n_hid % 2 or self.emb_size % 2):
            raise UlmfitError("AWD-LSTM setting 'bidir' needs even 'n_hid' and 'emb_size'")

    @classmethod
    def preset(cls, name: str, vocab_size: int, **overrides) -> "AWDLSTMConfig":
        """``paper`` (emb 400, hidden 1152, 3 layers) or ``small`` (emb 200, hidden 400, 3 layers)."""
        if name not in _PRESETS:
            raise UlmfitError(f"unknown AWD-LSTM preset '{name}': choose one of {sorted(_PRESETS)}")
        return cls(vocab_size=vocab_size, **{**_PRESETS[name], **overrides})

    def dropout(self, name: str) -> float:
        """The effective dropout ``name`` ('output', 'hidden', 'input', 'embed', 'weight')."""
        return getattr(self, f"{name}_p") * self.drop_mult

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AWDLSTMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UlmfitError(f"unknown AWD-LSTM config keys {unknown}; known: {sorted(known)}")
        return cls(**d)


class AWDLSTMEncoder(nn.Module):
    """Embedding + stacked weight-dropped LSTMs. ``forward(ids)`` -> last-layer output (bs, seq, emb).

    Stateful use (language modelling): ``forward(ids)`` starts from the hidden state left by the
    previous call (zeros after :meth:`reset` or when the batch size changes) and stores the new
    one, detached. Explicit use (BPT3C chunks): ``forward_hidden(ids, hidden)`` takes and returns
    the hidden state and leaves the module's state alone; ``hidden=None`` means zeros.
    """

    initrange = 0.1  # fastai's embedding init, uniform(-0.1, 0.1)

    def __init__(self, config: AWDLSTMConfig):
        super().__init__()
        c = self.config = config
        self.n_dir = 2 if c.bidir else 1
        self.emb = nn.Embedding(c.vocab_size, c.emb_size, padding_idx=c.pad_id)
        self.emb.weight.data.uniform_(-self.initrange, self.initrange)
        self.emb_dp = EmbeddingDropout(self.emb, c.dropout("embed"))
        self.input_dp = RNNDropout(c.dropout("input"))
        sizes = [c.emb_size] + [c.n_hid] * (c.n_layers - 1) + [c.emb_size]
        self.rnns = nn.ModuleList(
            WeightDrop(nn.LSTM(sizes[i], sizes[i + 1] // self.n_dir, 1, batch_first=True, bidirectional=c.bidir),
                       c.dropout("weight"), autocast=c.lstm_autocast)
            for i in range(c.n_layers)
        )
        # fastai keeps a dropout after every layer but applies it to all but the last.
        self.hidden_dps = nn.ModuleList(RNNDropout(c.dropout("hidden")) for _ in range(c.n_layers))
        self.hidden: Hidden | None = None

    def reset(self) -> None:
        """Forget the carried hidden state (the next call starts from zeros)."""
        self.hidden = None

    def init_hidden(self, bs: int) -> Hidden:
        """Zero hidden state for a batch of ``bs`` sequences."""
        p = self.emb.weight
        return [
            tuple(p.new_zeros(self.n_dir, bs, r.module.hidden_size) for _ in range(2))
            for r in self.rnns
        ]

    def forward_hidden(self, ids: torch.Tensor, hidden: Hidden | None = None,
                       return_all: bool = False):
        """Run on ``ids`` (bs, seq) from ``hidden``; returns ``(output, new_hidden)``.

        With ``return_all`` the first element is the list of every layer's raw output.
        Gradients flow into ``hidden``; detach it yourself to truncate backpropagation.
        """
        if ids.dim() != 2:
            raise ValueError(f"AWDLSTMEncoder expects ids of shape (batch, seq), got {tuple(ids.shape)}")
        if hidden is None:
            hidden = self.init_hidden(ids.size(0))
        x = self.input_dp(self.emb_dp(ids))
        new_hidden, outs = [], []
        last = len(self.rnns) - 1
        for i, (rnn, dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            x, h = rnn(x, hidden[i])
            new_hidden.append(h)
            outs.append(x)
            if i != last:
                x = dp(x)
        return (outs if return_all else x), new_hidden

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Stateful forward: carry the hidden state across calls, reset it on a batch size change."""
        if self.hidden is None or self.hidden[0][0].size(1) != ids.size(0):
            self.hidden = None
        out, new_hidden = self.forward_hidden(ids, self.hidden)
        self.hidden = [(h.detach(), c.detach()) for h, c in new_hidden]
        return out

    def layer_groups(self) -> list[nn.Module]:
        """Classifier split (fastai ``awd_lstm_clas_split``): embedding first, then each LSTM
        layer with its dropout. A classifier appends its head as the top group."""
        groups: list[nn.Module] = [nn.ModuleList([self.emb, self.emb_dp])]
        groups += [nn.ModuleList([r, d]) for r, d in zip(self.rnns, self.hidden_dps)]
        return groups


class LMOutput(NamedTuple):
    """What :class:`AWDLSTMLanguageModel` returns.

    ``logits`` (bs, seq, V), or None when the model was given ``targets``; ``raw`` the last LSTM
    layer's output; ``dropped`` the same after output dropout (what the decoder saw); ``ce`` the
    mean cross-entropy when the model was given ``targets`` (fused, chunked decoder), else None.
    AR uses ``dropped``, TAR uses ``raw``.
    """

    logits: torch.Tensor | None
    raw: torch.Tensor
    dropped: torch.Tensor
    ce: torch.Tensor | None = None


class AWDLSTMLanguageModel(nn.Module):
    """Encoder + output dropout + decoder tied to the embedding (Press & Wolf 2017; Inan et al. 2017)."""

    def __init__(self, config: AWDLSTMConfig):
        super().__init__()
        self.config = config
        self.encoder = AWDLSTMEncoder(config)
        self.output_dp = RNNDropout(config.dropout("output"))
        self.decoder = nn.Linear(config.emb_size, config.vocab_size, bias=True)
        self.decoder.weight = self.encoder.emb.weight  # tied: one tensor
        nn.init.zeros_(self.decoder.bias)

    def reset(self) -> None:
        self.encoder.reset()

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None) -> LMOutput:
        """``ids`` (bs, seq) -> :class:`LMOutput`.

        Without ``targets`` the full logits are built. With ``targets`` (bs, seq) the decoder and
        cross-entropy run fused in chunks of rows (:func:`linear_cross_entropy`): the same loss
        and gradients without materialising the (bs*seq, V) logits, much faster on CPU.
        """
        raw = self.encoder(ids)
        dropped = self.output_dp(raw)
        if targets is None:
            return LMOutput(self.decoder(dropped), raw, dropped)
        ce = linear_cross_entropy(dropped.reshape(-1, dropped.size(-1)), self.decoder.weight,
                                  self.decoder.bias, targets.reshape(-1))
        return LMOutput(None, raw, dropped, ce)

    def layer_groups(self) -> list[nn.Module]:
        """fastai ``awd_lstm_lm_split``: each LSTM layer (with its dropout) bottom->top, then
        embedding + decoder as the top group."""
        enc = self.encoder
        groups: list[nn.Module] = [nn.ModuleList([r, d]) for r, d in zip(enc.rnns, enc.hidden_dps)]
        groups.append(nn.ModuleList([enc.emb, enc.emb_dp, self.output_dp, self.decoder]))
        return groups


def lm_loss(output: LMOutput, targets: torch.Tensor, alpha: float = 2.0, beta: float = 1.0) -> torch.Tensor:
    """Cross-entropy + AR ``alpha * mean(dropped^2)`` + TAR ``beta * mean((raw[:,1:] - raw[:,:-1])^2)``.

    As fastai's ``RNNRegularizer`` (AR on the dropped, TAR on the raw last-layer output), computed
    in fp32 whatever the activations' dtype.
    """
    if output.ce is not None:
        loss = output.ce
    else:
        logits = output.logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
    if alpha:
        loss = loss + alpha * output.dropped.float().pow(2).mean()
    if beta and output.raw.size(1) > 1:
        raw = output.raw.float()
        loss = loss + beta * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    return loss


_CPU_COLS = 2048


def _fp32_logits(h, w, b, out, cols: int) -> None:
    """``out = h @ w.T + b`` in slices of ``cols`` vocabulary rows. For a few rows against tens
    of thousands of columns, MKL's fp32 GEMM on CPU ran at half speed in one call (36-43 against
    70-78 GFLOP/s on one Zen 4 core with 2,048-column slices through a cache-sized buffer)."""
    v = w.size(0)
    if cols >= v:
        torch.addmm(b, h, w.t(), out=out) if b is not None else torch.mm(h, w.t(), out=out)
        return
    flat = h.new_empty(h.size(0) * cols)
    for s in range(0, v, cols):
        e = min(s + cols, v)
        tmp = flat[: h.size(0) * (e - s)].view(h.size(0), e - s)
        torch.addmm(b[s:e], h, w[s:e].t(), out=tmp) if b is not None else torch.mm(h, w[s:e].t(), out=tmp)
        out[:, s:e].copy_(tmp)


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ weight.T + bias`` against ``targets``, in chunks of rows.

    The forward pass computes the loss *and* the gradients, so the (N, V) logits never exist in
    full: for N = 64 x 72 and V = 33k that is 0.6 GB fp32 per tensor, whose allocation,
    page-faulting and several memory passes (log-softmax, its backward, the bias reduction)
    cost more than the matmuls on a CPU. Softmax works on chunks of ``chunk`` rows (~16 MB, kept
    in cache); each chunk's gradient (softmax - one-hot) is written into a block buffer of
    ``block`` rows, and each block then takes two large matmuls, ``grad_h = G @ W`` and
    ``grad_w += G.T @ H``. Accumulating ``grad_w`` per small chunk instead re-reads and re-writes
    the whole V x E gradient dozens of times a step, which cost more than the matmuls themselves.
    Same FLOPs as the logits path. (The idea of "fused linear cross-entropy" kernels, e.g.
    Liger-Kernel / Apple's CCE.)
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk, block, ignore_index, compute_dtype, grad_enabled):
        n, v = h.size(0), weight.size(0)
        valid = targets != ignore_index
        n_valid = valid.sum().clamp(min=1).to(torch.float32)  # a tensor: no device sync
        want_grad = grad_enabled and any(ctx.needs_input_grad[:3])
        fp32 = compute_dtype == torch.float32
        w = weight.to(compute_dtype)
        hc_all = h.to(compute_dtype)
        b = bias.float() if bias is not None else None
        cols = _CPU_COLS if h.device.type == "cpu" else v
        total = h.new_zeros((), dtype=torch.float32)
        buf = None if want_grad and fp32 else torch.empty(min(chunk, n), v, dtype=torch.float32, device=h.device)
        if want_grad:
            grad_h = torch.empty_like(h, dtype=torch.float32)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device)
            grad_b = torch.zeros(v, dtype=torch.float32, device=h.device) if bias is not None else None
            gbuf = torch.empty(min(block, n), v, dtype=compute_dtype, device=h.device)
        for bs in range(0, n, block):
            be = min(bs + block, n)
            for s in range(bs, be, chunk):
                e = min(s + chunk, be)
                hc, tc, vc = hc_all[s:e], targets[s:e], valid[s:e]
                # fp32 training writes the logits straight into the gradient buffer's rows
                logits = gbuf[s - bs:e - bs] if buf is None else buf[: e - s]
                if fp32:
                    _fp32_logits(hc, w, b, logits, cols)
                else:
                    logits.copy_(hc @ w.t())
                    if b is not None:
                        logits.add_(b)
                safe_t = tc.clamp(0, v - 1).unsqueeze(1)
                picked = logits.gather(1, safe_t).squeeze(1)
                mx = logits.amax(dim=1, keepdim=True)
                probs = logits.sub_(mx).exp_()  # unnormalised softmax, in place: one exp pass
                z = probs.sum(dim=1, keepdim=True)
                lse = (mx + z.log()).squeeze(1)
                vf = vc.to(torch.float32)
                total += ((lse - picked) * vf).sum()
                if not want_grad:
                    continue
                scale = vf.unsqueeze(1) / n_valid
                probs.mul_(scale / z)  # softmax / n_valid, zero for ignored rows
                probs.scatter_add_(1, safe_t, -scale)
                if grad_b is not None:
                    grad_b += probs.sum(0)
                if buf is not None:
                    gbuf[s - bs:e - bs].copy_(probs)
            if not want_grad:
                continue
            g, hb = gbuf[: be - bs], hc_all[bs:be]
            if fp32:
                torch.mm(g, w, out=grad_h[bs:be])
                grad_w.addmm_(g.t(), hb)
            else:
                grad_h[bs:be] = g @ w
                grad_w += g.t() @ hb
        if want_grad:
            ctx.save_for_backward(grad_h, grad_w, grad_b if grad_b is not None else h.new_zeros(0))
        ctx.has_bias = bias is not None
        ctx.in_dtypes = (h.dtype, weight.dtype)
        return total / n_valid

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        gh = (grad_h * grad_out).to(ctx.in_dtypes[0])
        gw = (grad_w * grad_out).to(ctx.in_dtypes[1])
        gb = grad_b * grad_out if ctx.has_bias else None
        return gh, gw, gb, None, None, None, None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, chunk: int | None = None,
                         ignore_index: int = -100, block: int | None = None) -> torch.Tensor:
    """``F.cross_entropy(F.linear(h, weight, bias), targets)`` (mean over non-ignored rows)
    without materialising the logits; see :class:`_LinearCrossEntropy`.

    Under CPU/CUDA autocast the two matmuls run in the autocast dtype (softmax and the
    accumulated gradients stay fp32). ``chunk`` rows per softmax step default to ~16 MB of fp32
    logits; ``block`` rows per gradient matmul to ~128 MB of gradient buffer. On a GPU, where each
    chunk's dozen kernel launches rather than cache size set the pace, both are 16x larger.
    """
    v = max(weight.size(0), 1)
    dev = h.device.type
    big = 1 if dev == "cpu" else 16
    if chunk is None:
        chunk = max(16, (big << 22) // v)
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        dtype = torch.float32
    if block is None:
        n_blocks = -(-h.size(0) * v * dtype.itemsize // (big * 128 << 20))  # ceil
        block = -(-h.size(0) // max(n_blocks, 1))
        block = -(-block // chunk) * chunk  # whole chunks, blocks of even size
    else:
        block = max(chunk, block // chunk * chunk)  # whole chunks
    with torch.autocast(dev, enabled=False):
        return _LinearCrossEntropy.apply(h, weight, bias, targets, chunk, block, ignore_index, dtype,
                                         torch.is_grad_enabled())
