"""Contrastive training of a transformers encoder's mean-pooled sentence embeddings.

- `finetune_contrastive`: phase 2 for sentence encoders. Unsupervised SimCSE (Gao et al. 2021) on
  the domain's unlabelled texts: each batch holds every text twice, the two dropout views are the
  positive pair and the other texts of the batch the negatives (`core.contrastive.info_nce`). It
  moves the encoder towards the domain without an LM head, which a sentence-transformers
  checkpoint does not ship (masked-LM fine-tuning would start one from noise). Saves an ordinary
  transformers folder that phase 3 takes as its encoder; checkpoints every epoch and resumes.
- `sup_con_stage`: the supervised contrastive stage of phase 3, run before the head is trained.
  `loss="supcon"`: the labelled texts, each twice (two dropout views), under Khosla et al.'s loss
  (`core.contrastive.sup_con`), so every example has at least its own second view as a positive
  (a class with a single example still trains); a batch-wise loss sees every pair of the batch at
  once. `loss="pairs"`: SetFit's objective (Tunstall et al. 2022): for every example,
  `pairs_per_example` partners of its class (target cosine 1) and as many of other classes
  (target 0), drawn with the seed (`draw_pairs`), under `core.contrastive.cosine_pairs`. A batch
  encodes each distinct text once, however many of its pairs hold it (`PairCollate`).

Both run on the core trainer with the model's layer groups, layer decay and a schedule.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from ulmfit.core import Hooks, Stage, TrainConfig, Trainer, set_seed
from ulmfit.core.contrastive import cosine_pair_loss, sup_con_loss, two_view_info_nce
from ulmfit.errors import UlmfitError
from ulmfit.text.choices import CONTRASTIVE_LOSSES
from ulmfit.text.transformers import data as td
from ulmfit.text.transformers.backbone import from_pretrained, layer_groups, load_tokenizer, resolve_lr_factor


class SentenceEmbedder(nn.Module):
    """`model(inputs) -> (n, hidden)`: the mean of the encoder's last states over real tokens."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, inputs: dict) -> torch.Tensor:
        h = self.encoder(**inputs).last_hidden_state
        m = inputs["attention_mask"].unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1)


def base_encoder(hf: nn.Module) -> nn.Module:
    """The bare encoder of a transformers model (BertModel inside BertForSequenceClassification)."""
    return getattr(hf, "base_model", hf)


class TwoViews:
    """Collate rows with padding, then repeat the batch: rows i and i + n are two views of text i."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, rows):
        batch = self.pad(rows)
        return {k: torch.cat([v, v]) for k, v in batch.items()}


def split_views(batch):
    """(model inputs, labels or None) of a two-view batch."""
    return {k: v for k, v in batch.items() if k != "labels"}, batch.get("labels")


def two_view_loader(tokenizer, texts, labels, max_length: int, bs: int, shuffle: bool, seed: int):
    ds = td.Encoded(tokenizer, texts, max_length, labels)
    return td.length_batched_loader(ds, bs, shuffle, seed, TwoViews(tokenizer))


def draw_pairs(label_ids, per_example: int, seed: int) -> list[tuple[int, int, float]]:
    """(i, j, target) rows: for every example i, `per_example` partners j of its class (another
    example where the class has one; target 1.0) and `per_example` of other classes (target 0.0),
    drawn at random with `seed`, in a shuffled order."""
    import numpy as np

    if per_example < 1:
        raise UlmfitError(f"pairs_per_example must be at least 1, got {per_example}")
    y = np.asarray(list(label_ids))
    if len(set(y.tolist())) < 2:
        raise UlmfitError("contrastive pairs need at least 2 classes among the labelled texts")
    rng = np.random.default_rng(seed)
    same = {c: np.flatnonzero(y == c) for c in set(y.tolist())}
    other = {c: np.flatnonzero(y != c) for c in same}
    rows = []
    for _ in range(per_example):
        for i, c in enumerate(y.tolist()):
            pos = same[c][same[c] != i] if len(same[c]) > 1 else same[c]
            rows.append((i, int(rng.choice(pos)), 1.0))
            rows.append((i, int(rng.choice(other[c])), 0.0))
    return [rows[k] for k in rng.permutation(len(rows))]


class PairRows(Dataset):
    """Rows (i, j, target) of `draw_pairs`: the texts are looked up when a batch is collated."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, k):
        return self.pairs[k]


class PairCollate:
    """Pad the distinct texts of a batch of pairs once each: a text drawn into several pairs of the
    batch goes through the encoder once (with 8 labelled texts per class most batches repeat some).
    A text paired with itself (its class has one example) keeps a second row, its second dropout
    view, as its only positive. `pairs` holds (index of each pair's two rows in the padded batch,
    targets)."""

    def __init__(self, tokenizer, encoded: "td.Encoded"):
        from transformers import DataCollatorWithPadding

        self.pad, self.encoded = DataCollatorWithPadding(tokenizer), encoded

    def __call__(self, rows):
        # a row is keyed (text, view): view 1 only for the partner in a pair of a text with itself
        keys = [((i, 0), (j, int(i == j))) for i, j, _ in rows]
        texts = list(dict.fromkeys([a for a, _ in keys] + [b for _, b in keys]))
        row_of = {t: r for r, t in enumerate(texts)}
        batch = self.pad([self.encoded[t] for t, _ in texts])
        index = torch.tensor([[row_of[a], row_of[b]] for a, b in keys], dtype=torch.long)
        batch["pairs"] = (index, torch.tensor([t for _, _, t in rows], dtype=torch.float32))
        return batch


def split_pairs(batch):
    """(model inputs, (pair index, targets)) of a `PairCollate` batch."""
    return {k: v for k, v in batch.items() if k != "pairs"}, batch["pairs"]


def pair_loader(tokenizer, texts, label_ids, max_length: int, bs: int, per_example: int, seed: int):
    from torch.utils.data import DataLoader

    enc = td.Encoded(tokenizer, texts, max_length)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(PairRows(draw_pairs(label_ids, per_example, seed)), batch_size=bs, shuffle=True,
                      generator=g, collate_fn=PairCollate(tokenizer, enc))


def all_groups_stage(epochs, lr, layer_decay, name: str, schedule: str = "linear", schedule_args=None) -> Stage:
    """One stage training every group, lower groups at lr x layer_decay per group."""
    return Stage(epochs=epochs, unfreeze="all", lr=lr, lr_factor=resolve_lr_factor(layer_decay, None),
                 schedule=schedule, schedule_args=dict(schedule_args or {}), name=name)


def side_config(train_config: TrainConfig | None, seed: int) -> TrainConfig:
    """The trainer settings of a stage run beside phase 3's own loop: no checkpoints of its own."""
    return dataclasses.replace(train_config or TrainConfig(optimizer="adamw", seed=seed), checkpoint=False)


# ---- phase 2 --------------------------------------------------------------------------------
@dataclasses.dataclass
class ContrastiveResult:
    out_dir: Path
    history: list
    valid_loss: float | None
    train_seconds: float
    kind: str = "contrastive"


def finetune_contrastive(model_path, texts, out_dir, *, valid_texts=None, epochs=1, lr=3e-5,
                         layer_decay=None, schedule: str = "linear", schedule_args=None, temperature: float = 0.05,
                         max_length: int = 64, bs: int = 64, blocks_per_group: int = 1, seed: int = 42,
                         train_config: TrainConfig | None = None, resume: bool = False) -> ContrastiveResult:
    """SimCSE on `texts`; the encoder (save_pretrained) and its tokenizer are written to `out_dir`."""
    from transformers import AutoModel

    if bs < 2:
        raise UlmfitError(f"contrastive training needs at least 2 texts per batch (the negatives), got bs={bs}")
    set_seed(seed)
    texts = td.check_texts(texts, "unlabelled texts")
    tok = load_tokenizer(model_path)
    hf = from_pretrained(AutoModel, model_path, "model")
    model = SentenceEmbedder(hf)
    groups = layer_groups(model, blocks_per_group)
    train = two_view_loader(tok, texts, None, max_length, bs, True, seed)
    valid = None
    if valid_texts:
        valid = two_view_loader(tok, td.check_texts(valid_texts, "unlabelled valid texts"), None, max_length, bs,
                                False, seed)
    trainer = Trainer(model, groups, two_view_info_nce(temperature), train, valid,
                      train_config or TrainConfig(optimizer="adamw", seed=seed), Hooks(split_batch=split_views),
                      out_dir=out_dir)
    t0 = time.time()
    history = trainer.fit([all_groups_stage(epochs, lr, layer_decay, "simcse", schedule, schedule_args)],
                          resume=resume)
    secs = time.time() - t0
    out = Path(out_dir)
    hf.save_pretrained(out)
    tok.save_pretrained(out)
    last = history[-1] if history else {}
    res = ContrastiveResult(out, history, last.get("valid_loss"), secs)
    summary = {k: v for k, v in res.__dict__.items() if k != "out_dir"}
    (out / "lm_metrics.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    return res


# ---- phase 3's first stage ------------------------------------------------------------------


def sup_con_stage(classifier, texts, label_ids, *, epochs: float, lr: float, layer_decay=None,
                  temperature: float = 0.1, bs: int = 32, loss: str = "supcon", pairs_per_example: int = 20,
                  schedule: str = "linear", schedule_args=None, blocks_per_group: int = 1, seed: int = 42,
                  train_config: TrainConfig | None = None, mix: float = 1.0) -> list[dict]:
    """Train `classifier`'s encoder in place with a supervised contrastive loss (`loss`, see the
    module's docstring); its history rows. With `pairs`, an epoch is one pass over the drawn pairs.
    `mix` < 1 then moves each encoder weight back towards its value before the stage (`mix_weights`)."""
    if loss not in CONTRASTIVE_LOSSES:
        raise UlmfitError(f"contrastive loss {loss!r} is not one of {', '.join(CONTRASTIVE_LOSSES)}")
    check_mix(mix)  # before the stage trains, not after
    texts, label_ids, tok = list(texts), list(label_ids), classifier.tokenizer
    counts = {}
    for y in label_ids:
        counts[y] = counts.get(y, 0) + 1
    single = [classifier.labels[y] for y, c in counts.items() if c == 1]
    if single:
        import warnings

        warnings.warn(f"class(es) {single} have a single labelled example: their only contrastive positive is the "
                      "example's own second dropout view", stacklevel=2)
    set_seed(seed)
    model = SentenceEmbedder(base_encoder(classifier.hf))
    groups = layer_groups(model, blocks_per_group)
    if loss == "pairs":
        loader = pair_loader(tok, texts, label_ids, classifier.max_length, bs, pairs_per_example, seed)
        objective, split = cosine_pair_loss(), split_pairs
    else:
        loader = two_view_loader(tok, texts, label_ids, classifier.max_length, max(2, bs), True, seed)
        objective, split = sup_con_loss(temperature), split_views
    trainer = Trainer(model, groups, objective, loader, None, side_config(train_config, seed),
                      Hooks(split_batch=split))
    start = {k: v.detach().clone() for k, v in model.state_dict().items()} if mix < 1 else None
    history = trainer.fit([all_groups_stage(epochs, lr, layer_decay, "contrastive", schedule, schedule_args)])
    if start is not None:
        mix_weights(model, start, mix)
        history[-1]["mix"] = mix
    return history


# `mix: auto`: on SST-2 16 per class's selection draws the centroid head gained 1.2 points at 0.5 with a
# smaller spread, where TREC-6 8 per class's logistic head (its penalty chosen on pair-trained features)
# lost 6 (docs/results.md#a-weight-mix-after-the-pair-stage)
CENTROID_MIX = 0.5


def resolve_mix(mix: float | str, head: str | None, from_checkpoint: bool = False) -> float:
    """The weight `contrastive.mix` names for the head the linear probe fits (None: none): ``auto`` is
    CENTROID_MIX for the centroid head and 1 (no mix) otherwise, and 1 when the stage starts from the
    pretrained checkpoint itself (`from_checkpoint`: no phase 2), whose weights do not know the domain."""
    if mix == "auto":
        return CENTROID_MIX if head == "centroid" and not from_checkpoint else 1.0
    return float(mix)


def check_mix(mix: float) -> None:
    if not 0 < mix <= 1:
        raise UlmfitError(f"mix must be in (0, 1], got {mix}")


@torch.no_grad()
def mix_weights(model: nn.Module, start: dict, mix: float) -> None:
    """Set each floating-point weight of `model` to mix x its value + (1 - mix) x `start`'s, in place: the
    weight-space ensemble of the trained model and the one it started from (WiSE-FT, Wortsman et al. 2022)."""
    check_mix(mix)
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            v.copy_(mix * v + (1 - mix) * start[k])
