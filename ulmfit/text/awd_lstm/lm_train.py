"""Language-model training pieces shared by phase 1 (pretrain) and phase 2 (finetune_lm).

The core loop knows nothing about LMs; this module supplies what it needs: the memory-mapped
streams, the loss (cross-entropy; AR/TAR as a training-only extra), the hidden-state resets,
the LR rescaling for variable-length BPTT (AWD-LSTM scales the LR by seq_len / bptt), and
perplexity / next-token accuracy as metrics. Also `generate` and `perplexity` for saved LMs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ulmfit.core import Hooks, LayerGroups, TrainConfig, Trainer
from ulmfit.text.data.lm_data import LMStream, numericalize_to_memmap


def ar_tar(output, alpha: float, beta: float):
    """AR on the dropped last-layer output, TAR on the raw one (Merity et al. 2017, 4.6)."""
    extra = None
    if alpha:
        extra = alpha * output.dropped.float().pow(2).mean()
    if beta and output.raw.size(1) > 1:
        raw = output.raw.float()
        tar = beta * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
        extra = tar if extra is None else extra + tar
    return extra


def lm_cross_entropy(output, targets):
    if getattr(output, "ce", None) is not None:  # fused decoder + loss (training)
        return output.ce
    logits = output.logits
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))


def next_token_accuracy(preds: np.ndarray, targets: np.ndarray) -> float:
    return float((preds == targets).mean()) if len(targets) else float("nan")


def lm_hooks(alpha: float, beta: float, bptt: int) -> Hooks:
    def reset(model, *_):
        model.reset()

    return Hooks(
        loss_extra=lambda model, out, y: ar_tar(out, alpha, beta),
        on_epoch_start=reset,
        on_eval_start=reset,
        lr_scale=lambda batch: batch[0].shape[1] / bptt,
        predict=lambda out: out.logits.argmax(-1),
        # training: the LM computes the loss chunk by chunk without building (bs*seq, V) logits;
        # evaluation: full logits, for next-token accuracy
        forward=lambda model, x, y, train: model(x, y) if train else model(x),
        get_carry=_hidden_tensors,
        set_carry=_set_hidden,
    )


def _hidden_tensors(model) -> list | None:
    """The LM's carried hidden state as a flat list [h0, c0, h1, c1, ...] (None: not started)."""
    hidden = model.encoder.hidden
    return None if hidden is None else [t for hc in hidden for t in hc]


def _set_hidden(model, tensors: list) -> None:
    model.encoder.hidden = [(tensors[i], tensors[i + 1]) for i in range(0, len(tensors), 2)]


def make_streams(tokenizer, train_texts, valid_texts, work_dir: Path, bs: int, bptt: int, seed: int,
                 backwards: bool = False, world: tuple[int, int] = (0, 1), cache=None,
                 variable_bptt: bool = True):
    """Numericalize both splits into memory-mapped files (under work_dir, or read back from the
    ``cache.TokenCache`` when one is given) and wrap them in streams."""
    rank, world_size = world

    def ids_of(texts, name):
        if cache is None:
            return numericalize_to_memmap(tokenizer, texts, work_dir / f"{name}.ids")
        ids, lengths = cache.get_or_encode(tokenizer, texts)
        return ids, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)

    tr_ids, tr_off = ids_of(train_texts, "train")
    va_ids, va_off = ids_of(valid_texts, "valid")
    valid_bs = max(1, min(bs, len(va_ids) // (4 * world_size)))
    train = LMStream(tr_ids, tr_off, bs=bs, bptt=bptt, shuffle=True, seed=seed, backwards=backwards,
                     variable_bptt=variable_bptt,
                     rank=rank, world_size=world_size)
    valid = LMStream(va_ids, va_off, bs=valid_bs, bptt=bptt, shuffle=False, variable_bptt=False,
                     backwards=backwards, rank=rank, world_size=world_size)
    return train, valid, int(len(tr_ids))


def lm_trainer(model, train_stream, valid_stream, config: TrainConfig, out_dir, alpha: float, beta: float,
               bptt: int) -> Trainer:
    """The core Trainer of an AWD-LSTM LM: cross-entropy plus AR/TAR, variable-length BPTT."""
    return Trainer(model, LayerGroups(model, model.layer_groups()), lm_cross_entropy, train_stream, valid_stream,
                   config=config, hooks=lm_hooks(alpha, beta, bptt),
                   metrics={"accuracy": next_token_accuracy},
                   loss_metrics={"perplexity": lambda loss: math.exp(min(loss, 50))}, out_dir=out_dir)


@torch.no_grad()
def generate(model, tokenizer, prompt: str, n_words: int = 40, temperature: float = 1.0, seed: int = 42,
             no_unk: bool = True) -> str:
    """Continue `prompt` by sampling n_words tokens (temperature 0 = greedy)."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    model.reset()
    ids = tokenizer.encode(prompt) if prompt else [tokenizer.bos_id]
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    out_ids = list(ids)
    for _ in range(n_words):
        logits = model(x).logits[0, -1].float().cpu()
        if no_unk:
            logits[tokenizer.unk_id] = -float("inf")
        logits[tokenizer.pad_id] = -float("inf")
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            nxt = int(torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=g))
        out_ids.append(nxt)
        x = torch.tensor([[nxt]], device=device)
    model.reset()
    return tokenizer.decode(out_ids)


@torch.no_grad()
def perplexity(model, tokenizer, texts, bptt: int = 72, bs: int = 16, work_dir: Path | None = None) -> dict:
    """Perplexity of a saved LM on texts (one stream, in order)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=work_dir) as d:
        ids, off = numericalize_to_memmap(tokenizer, texts, Path(d) / "eval.ids")
        bs = max(1, min(bs, len(ids) // 4))
        stream = LMStream(ids, off, bs=bs, bptt=bptt, shuffle=False, variable_bptt=False)
        model.eval()
        model.reset()
        total, count = 0.0, 0
        device = next(model.parameters()).device
        for x, y in stream:
            out = model(x.to(device))
            total += float(lm_cross_entropy(out, y.to(device))) * y.numel()
            count += y.numel()
        model.reset()
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "tokens": count}
