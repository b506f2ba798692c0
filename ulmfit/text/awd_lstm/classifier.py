"""AWD-LSTM text classifier: BPT3C encoding and a concat-pooling head (ULMFiT section 3.3).

BPT3C (backpropagation through time for text classification): the document goes through the
encoder in bptt-sized chunks with the hidden state carried over; only the chunks covering the
last `max_len` positions keep their outputs and gradients (earlier chunks run without autograd).
Earlier text only sets the hidden state the kept chunks start from, and its influence fades: a
classifier reads at most the last `max_tokens` tokens of a document (default `max_len` plus
WARMUP_CHUNKS chunks of warm-up, see `default_max_tokens`), so a 5 MB document costs what a long
review costs.

Layout: each row's text is moved so that it starts on a chunk boundary (whole chunks of padding
before it, the remainder after it), as fastai's `pad_input_chunk` does; rows whose text has not
started yet keep a zero hidden state, so extra padding changes nothing. Pooling is masked:
[last real hidden state, max-pool, mean-pool] over real tokens only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMEncoder

# chunks read before the pooled window: a pretrained encoder's pooled features no longer change
# (relative difference < 1e-5) after 4 (docs/results.md, "Very long documents")
WARMUP_CHUNKS = 10


def default_max_tokens(max_len: int, bptt: int) -> int:
    """Tokens a classifier reads per document by default: the pooled window (max_len rounded up
    to whole chunks) and WARMUP_CHUNKS chunks before it to warm the hidden state up."""
    return (math.ceil(max_len / bptt) + WARMUP_CHUNKS) * bptt


# fastai's classifier dropouts (awd_lstm_clas_config), before drop_mult
CLAS_DROPOUTS = dict(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)


def classifier_encoder_config(lm_config: AWDLSTMConfig, drop_mult: float) -> AWDLSTMConfig:
    """The LM's sizes with the classifier's dropouts."""
    d = {**lm_config.to_dict(), **CLAS_DROPOUTS, "drop_mult": drop_mult}
    return AWDLSTMConfig.from_dict(d)


def align_to_chunks(x: torch.Tensor, pad_id: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-lay rows (padded anywhere at the front or back) so each text starts on a chunk boundary.

    Returns (ids (bs, width), start (bs,)) where row r's tokens sit at [start_r, start_r+len_r).
    Every text ends in the last chunk, which stops at the last real token: padding after it would
    only cost steps (SST-2's 20-token sentences once ran 72 LSTM steps each), never change an output.
    """
    real = x != pad_id
    lengths = real.sum(1)
    if (lengths == 0).any():
        raise ValueError("a row of the batch has no tokens")
    first = torch.where(real.any(1), real.float().argmax(1), torch.zeros_like(lengths))
    n_chunks = max(1, math.ceil(int(lengths.max()) / bptt))
    width = n_chunks * bptt
    start = (n_chunks - torch.div(lengths + bptt - 1, bptt, rounding_mode="floor")) * bptt
    pos = torch.arange(width, device=x.device).unsqueeze(0)
    inside = (pos >= start[:, None]) & (pos < (start + lengths)[:, None])
    src = (first[:, None] + pos - start[:, None]).clamp(0, x.size(1) - 1)
    out = torch.where(inside, x.gather(1, src), torch.full_like(src, pad_id))
    return out[:, :int((start + lengths).max())], start


class PoolingHead(nn.Module):
    """[last, max, mean] -> BN, dropout, Linear(3*emb, hidden), ReLU, BN, dropout, Linear(hidden, n)."""

    def __init__(self, emb_size: int, n_classes: int, hidden: int = 50, ps=(0.4, 0.1)):
        super().__init__()
        self.layers = nn.Sequential(
            nn.BatchNorm1d(3 * emb_size), nn.Dropout(ps[0]), nn.Linear(3 * emb_size, hidden), nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden), nn.Dropout(ps[1]), nn.Linear(hidden, n_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and features.size(0) == 1:  # a last batch of one: BN cannot use batch stats
            bns = [m for m in self.layers if isinstance(m, nn.BatchNorm1d)]
            for m in bns:
                m.eval()
            try:
                return self.layers(features)
            finally:
                for m in bns:
                    m.train()
        return self.layers(features)


def masked_concat_pool(out: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """out (bs, T, d), mask (bs, T) True on real tokens -> (bs, 3d): [last real, max, mean]."""
    m = mask.unsqueeze(-1)
    lengths = mask.sum(1).clamp(min=1)
    last_idx = (mask.long() * torch.arange(mask.size(1), device=mask.device)).argmax(1)
    last = out[torch.arange(out.size(0), device=out.device), last_idx]
    mx = out.masked_fill(~m, float("-inf")).max(1).values
    mean = (out * m).sum(1) / lengths.unsqueeze(-1).to(out.dtype)
    return torch.cat([last, mx, mean], dim=1)


class AWDLSTMClassifier(nn.Module):
    """Encoder read with BPT3C + concat-pooling head. `forward(ids)` -> logits (bs, n_classes)."""

    def __init__(self, config: AWDLSTMConfig, n_classes: int, bptt: int = 72, max_len: int = 72 * 20,
                 head_hidden: int = 50, head_ps=None, max_tokens: int | None = None):
        super().__init__()
        self.config, self.bptt, self.max_len = config, bptt, max_len
        # what the data side feeds per document (ClassificationBatches' max_tokens)
        self.max_tokens = max_tokens or default_max_tokens(max_len, bptt)
        self.encoder = AWDLSTMEncoder(config)
        ps = head_ps or (CLAS_DROPOUTS["output_p"] * config.drop_mult, 0.1 * config.drop_mult)
        self.head = PoolingHead(config.emb_size, n_classes, head_hidden, ps)

    def layer_groups(self) -> list[nn.Module]:
        """Embedding, each LSTM layer, then the head (fastai's awd_lstm_clas_split)."""
        return self.encoder.layer_groups() + [self.head]

    def encode(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BPT3C: (outputs over the kept window (bs, T, emb), mask (bs, T))."""
        pad, bptt = self.config.pad_id, self.bptt
        x, start = align_to_chunks(ids, pad, bptt)
        width = x.size(1)
        n_chunks = math.ceil(width / bptt)
        keep_from = max(0, n_chunks - math.ceil(self.max_len / bptt)) * bptt if self.max_len else 0
        hidden = None
        outs, masks = [], []
        for i in range(0, width, bptt):
            chunk = x[:, i:i + bptt]
            active = start <= i
            all_active = bool(active.all())
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= keep_from):
                if not self.training and not all_active:
                    o, h = self._active_rows(chunk, hidden, active)
                else:
                    o, h = self.encoder.forward_hidden(chunk, hidden)
                    if not all_active:  # rows whose text starts later keep a zero state
                        keep = active.view(1, -1, 1)
                        h = [(torch.where(keep, a, torch.zeros_like(a)), torch.where(keep, b, torch.zeros_like(b)))
                             for a, b in h]
            hidden = h
            if i >= keep_from:
                outs.append(o)
                masks.append(chunk != pad)
        return torch.cat(outs, 1), torch.cat(masks, 1)

    def _active_rows(self, chunk, hidden, active):
        """Prediction: run only the rows whose text has started (fastai's SentenceEncoder skips
        them the same way); the others get zero outputs (masked padding) and a zero state."""
        rows = active.nonzero().squeeze(1)
        sub = None if hidden is None else [(a.index_select(1, rows), b.index_select(1, rows)) for a, b in hidden]
        o, h = self.encoder.forward_hidden(chunk.index_select(0, rows), sub)
        n = chunk.size(0)
        out = o.new_zeros((n,) + tuple(o.shape[1:])).index_copy_(0, rows, o)
        full = [tuple(t.new_zeros((t.size(0), n, t.size(2))).index_copy_(1, rows, t) for t in pair) for pair in h]
        return out, full

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        out, mask = self.encode(ids)
        return masked_concat_pool(out.float(), mask)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(ids))


def check_head_settings(settings: dict, where) -> None:
    """Refuse a saved classifier's bptt / max_len / head_hidden that are not positive integers
    (a hand-edited config would otherwise fail deep inside the model)."""
    for key in ("bptt", "max_len", "head_hidden", "max_tokens"):
        v = settings.get(key)
        if key == "max_tokens" and v is None:  # folders written before the cap: the default
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UlmfitError(f"{where}: {key} must be a positive integer, got {v!r}")
