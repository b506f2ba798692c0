"""Hugging Face transformers models as ulmfit backbones: loading, layer groups, pooling, export.

Layer groups are found from the module structure, not from a table of names: the repeated
blocks are the `nn.ModuleList` holding the most parameters whose items all share one class
(BERT's `encoder.layer`, DistilBERT's `transformer.layer`, GPT-2's `h`, ...). Parameters that
come before the blocks (in registration order) form the embeddings group, those after them the
head group (final norm, pooler, classifier or LM head). A weight tied to the embeddings (an LM
decoder) belongs to the embeddings group. Groups, bottom -> top:
`[embeddings, blocks 0..k-1, blocks k..2k-1, ..., head]`.

Layer-wise LR decay (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification", sec. 5.3:
lr of layer l-1 = lr of layer l x decay) is ULMFiT's discriminative LR with
`lr_factor = 1 / layer_decay` (Howard & Ruder 2018, sec. 3.2).

Classifier pooling: `cls` uses the checkpoint's own `AutoModelForSequenceClassification` head
(BERT: pooler over [CLS]; GPT-2: last non-pad token), so the exported folder is an ordinary
transformers model. `mean`, `max` and `concat` ([first/last token, max, mean] over the real tokens,
ULMFiT's concat pooling, Howard & Ruder 2018 sec. 3.3) put a small `PoolingHead` on `AutoModel`;
their export is the `save_pretrained` encoder plus `ulmfit_head.safetensors` / `ulmfit_head.json`,
loaded back by `load_transformer_classifier`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ulmfit.errors import UlmfitError

POOLINGS = ("cls", "mean", "max", "concat")
HEAD_WEIGHTS, HEAD_CONFIG = "ulmfit_head.safetensors", "ulmfit_head.json"


# ---- loading ---------------------------------------------------------------------------------
def from_pretrained(cls, name_or_path, what: str, **kw):
    """`cls.from_pretrained` with one clear error for a missing folder or an offline Hub name."""
    import os

    s = str(name_or_path)
    p = Path(s).expanduser()
    local = p.exists()
    if not local and (s.startswith((".", "/", "~")) or s.count("/") > 1):
        raise UlmfitError(f"model folder {s!r} does not exist")
    try:
        return cls.from_pretrained(str(p) if local else str(name_or_path), **kw)
    except (OSError, ValueError, KeyError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (" (HF_HUB_OFFLINE=1: a Hub name only works if it is in the local cache; pass a "
                "local folder)") if offline and not local else ""
        raise UlmfitError(f"cannot load the {what} from {name_or_path!r}{hint}: {str(e).splitlines()[0]}") from None


def load_tokenizer(name_or_path):
    """The checkpoint's tokenizer; decoders without a pad token pad with their EOS token."""
    from transformers import AutoTokenizer

    tok = from_pretrained(AutoTokenizer, name_or_path, "tokenizer")
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise UlmfitError(f"the tokenizer of {name_or_path!r} has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok


def lm_kind(config) -> str:
    """'masked' for encoders (BERT-like), 'causal' for decoders (GPT-2-like)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

    if type(config) in MODEL_FOR_MASKED_LM_MAPPING and not getattr(config, "is_decoder", False):
        return "masked"
    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING:
        return "causal"
    raise UlmfitError(f"model type {config.model_type!r} has neither a masked- nor a causal-LM class in transformers")


# ---- layer groups ----------------------------------------------------------------------------
def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of repeated blocks: the one with most parameters whose items share a class."""
    best = None
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) >= 1 and len({type(c) for c in m}) == 1:
            n = sum(p.numel() for p in m.parameters())
            if n and (best is None or n > best[2]):
                best = (name, m, n)
    if best is None:
        raise UlmfitError(
            f"cannot split {type(model).__name__} into layer groups: it has no nn.ModuleList of "
            "repeated blocks; build ulmfit.core.LayerGroups with your own groups instead")
    return best[0], best[1]


class _Loose(nn.Module):
    """Holds parameters registered directly on a module that also holds other groups' modules."""

    def __init__(self, params: dict):
        super().__init__()
        for n, p in params.items():
            self.register_parameter(n.replace(".", "_"), p)


def split_transformer(model: nn.Module, blocks_per_group: int = 1) -> tuple[list[list[nn.Module]], list[str]]:
    """Split `model` into `[embeddings, block groups..., head]` (empty ends dropped).

    Returns the groups (lists of modules, for `LayerGroups`) and a readable name for each.
    """
    if blocks_per_group < 1:
        raise UlmfitError(f"blocks_per_group must be >= 1, got {blocks_per_group}")
    bname, blocks = find_blocks(model)
    pos = {}
    for i, (_, p) in enumerate(model.named_parameters()):
        pos.setdefault(id(p), i)
    block_ids = {id(p) for p in blocks.parameters()}
    first = min(pos[i] for i in block_ids)
    side = lambda p: "emb" if pos[id(p)] < first else "head"  # noqa: E731
    parts = {"emb": [], "head": []}

    def walk(mod):
        own = {"emb": {}, "head": {}}
        for n, p in mod.named_parameters(recurse=False):
            own[side(p)][n] = p
        for s, ps in own.items():
            if ps:
                parts[s].append(_Loose(ps))
        for child in mod.children():
            ps = list(child.parameters())
            if child is blocks or not ps:
                continue
            sides = {side(p) for p in ps if id(p) not in block_ids}
            if any(id(p) in block_ids for p in ps) or len(sides) > 1:
                walk(child)
            elif sides:
                parts[sides.pop()].append(child)

    walk(model)
    n = len(blocks)
    k = blocks_per_group
    starts = list(range(n - k, 0, -k))[::-1]  # full groups at the top; the remainder lowest
    starts = [0] + starts if not starts or starts[0] != 0 else starts
    bounds = list(zip(starts, starts[1:] + [n]))
    groups, names = [], []
    if parts["emb"]:
        groups.append(parts["emb"]); names.append("embeddings")
    for a, b in bounds:
        groups.append([blocks[i] for i in range(a, b)])
        names.append(f"{bname}[{a}]" if b - a == 1 else f"{bname}[{a}:{b}]")
    if parts["head"]:
        groups.append(parts["head"]); names.append("head")
    return groups, names


def layer_groups(model: nn.Module, blocks_per_group: int = 1):
    """`LayerGroups` over a transformers model (norms in frozen groups stay frozen)."""
    from ulmfit.core import LayerGroups

    groups, names = split_transformer(model, blocks_per_group)
    lg = LayerGroups(model, groups, train_norm=False)
    lg.names = names
    return lg


def resolve_lr_factor(layer_decay: float | None, lr_factor: float | None) -> float | None:
    """`layer_decay` (each lower group gets lr x decay) -> the core's `lr_factor` (lr / factor)."""
    if layer_decay is not None and lr_factor is not None:
        raise UlmfitError("give layer_decay or lr_factor, not both (layer_decay=d means lr_factor=1/d)")
    if layer_decay is None:
        return lr_factor
    if not 0 < layer_decay <= 1:
        raise UlmfitError(f"layer_decay must be in (0, 1], got {layer_decay}")
    return 1.0 / layer_decay


# ---- model wrappers --------------------------------------------------------------------------
class LMWrapper(nn.Module):
    """`model(inputs_dict) -> logits` for the core trainer."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.hf(**inputs).logits


def lm_loss(kind: str):
    """Cross-entropy over labelled tokens; causal LMs predict token t+1 from tokens <= t."""

    def loss(logits, labels):
        if kind == "causal":
            logits, labels = logits[:, :-1], labels[:, 1:]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                           labels.reshape(-1), ignore_index=-100)

    return loss


class PoolingHead(nn.Module):
    """Masked pooling over token states -> dropout -> Linear (mean, max, or ULMFiT's concat).

    `normalize` scales each pooled row to unit L2 norm before the linear layer, as a
    sentence-transformers model's `Normalize` module does (SetFit's head reads such embeddings)."""

    def __init__(self, hidden: int, n_classes: int, pooling: str = "concat", dropout: float = 0.1,
                 summary: str = "first", normalize: bool = False):
        super().__init__()
        self.pooling, self.summary, self.normalize = pooling, summary, normalize
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden * (3 if pooling == "concat" else 1), n_classes)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.pool(h, mask)))

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The features the linear layer reads: (batch, hidden) or (batch, 3 x hidden) for concat."""
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        if self.pooling == "mean":
            x = mean
        else:
            mx = h.masked_fill(m == 0, torch.finfo(h.dtype).min).max(1).values
            if self.pooling == "max":
                x = mx
            else:
                if self.summary == "first":
                    tok = h[:, 0]
                else:  # last real token (right padding)
                    idx = (mask.sum(1) - 1).clamp(min=0)
                    tok = h[torch.arange(h.shape[0], device=h.device), idx]
                x = torch.cat([tok, mx, mean], -1)
        return nn.functional.normalize(x, dim=-1) if self.normalize else x


def mean_by_text(win: torch.Tensor, doc, n_texts: int) -> torch.Tensor:
    """(n_texts, n_classes): the mean of the window rows `win` of each text (`doc[i]`: row i's text)."""
    doc = torch.as_tensor(doc)
    out = torch.zeros(n_texts, win.shape[1], dtype=win.dtype).index_add_(0, doc, win)
    return out / torch.bincount(doc, minlength=n_texts).unsqueeze(1).to(win.dtype)


class TransformerClassifier(nn.Module):
    """A transformers sequence classifier taking one dict of tensors; `predict(texts)` on top."""

    def __init__(self, hf: nn.Module, tokenizer, labels: list, head: PoolingHead | None = None,
                 max_length: int = 64, long_docs: str = "truncate"):
        super().__init__()
        self.hf, self.head = hf, head
        self.tokenizer, self.labels, self.max_length = tokenizer, list(labels), max_length
        self.long_docs = long_docs  # truncate | windows (a text's windows' probabilities are averaged)

    def forward(self, inputs: dict) -> torch.Tensor:
        if self.head is None:
            return self.hf(**inputs).logits
        out = self.hf(**inputs)
        return self.head(out.last_hidden_state, inputs["attention_mask"])

    def predict_proba(self, texts, bs: int = 64) -> torch.Tensor:
        """Class probabilities (n, n_classes); inputs are batched by length for speed. With
        `long_docs == "windows"` a text's probabilities are the mean over its windows of
        `max_length` tokens (every token is read); else its first `max_length` tokens decide."""
        win, doc = self.window_proba(texts, bs)
        if len(doc) == len(texts):
            return win
        return mean_by_text(win, doc, len(texts))

    @torch.no_grad()
    def window_proba(self, texts, bs: int = 64, long_docs: str | None = None) -> tuple[torch.Tensor, list]:
        """Probabilities of every input row (a text, or each window of it) and the text each row
        belongs to; a text's first row is its truncated reading."""
        from transformers import DataCollatorWithPadding

        from ulmfit.text.transformers.data import check_texts, encode

        texts = check_texts(texts, "predict")
        pad = DataCollatorWithPadding(self.tokenizer)
        rows, doc = encode(self.tokenizer, texts, self.max_length, long_docs or self.long_docs)
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        win = torch.empty(len(rows), len(self.labels))
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            enc = pad([rows[i] for i in idx])
            logits = self({k: v.to(dev) for k, v in enc.items()})
            win[idx] = logits.float().softmax(-1).cpu()
        self.train(was)
        return win, doc

    def predict(self, texts, bs: int = 64) -> list:
        """The predicted label (as given in the training labels) of every text."""
        return [self.labels[i] for i in self.predict_proba(texts, bs).argmax(-1).tolist()]

    def save_pretrained(self, out_dir) -> Path:
        """An ordinary transformers folder (+ ulmfit_head.* for mean/max/concat pooling)."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.hf.config.id2label = {i: str(v) for i, v in enumerate(self.labels)}
        self.hf.config.label2id = {str(v): i for i, v in enumerate(self.labels)}
        self.hf.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        meta = {"labels": self.labels, "max_length": self.max_length, "long_docs": self.long_docs, "pooling": "cls"}
        if self.head is not None:
            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(out / HEAD_WEIGHTS))
            meta.update(pooling=self.head.pooling, summary=self.head.summary, normalize=self.head.normalize,
                        dropout=self.head.drop.p, hidden=self.head.out.in_features // (3 if self.head.pooling == "concat" else 1))
        (out / HEAD_CONFIG).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return out


def build_classifier(name_or_path, labels: list, pooling: str = "cls", dropout: float = 0.1,
                     max_length: int = 64, tokenizer=None, long_docs: str = "truncate",
                     normalize: bool = False) -> TransformerClassifier:
    """A fresh classifier on a pretrained (or LM-fine-tuned) checkpoint (`normalize`: see PoolingHead)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    if pooling not in POOLINGS:
        raise UlmfitError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    tok = tokenizer or load_tokenizer(name_or_path)
    config = from_pretrained(AutoConfig, name_or_path, "model config")
    n = len(labels)
    if pooling == "cls" and normalize:
        raise UlmfitError("model.normalize scales a pooling head's features: set model.pooling to mean, max or concat")
    if pooling == "cls":
        hf = from_pretrained(AutoModelForSequenceClassification, name_or_path, "model", num_labels=n,
                              id2label={i: str(v) for i, v in enumerate(labels)},
                              label2id={str(v): i for i, v in enumerate(labels)})
        if hf.config.pad_token_id is None:
            hf.config.pad_token_id = tok.pad_token_id
        return TransformerClassifier(hf, tok, labels, None, max_length, long_docs)
    hf = from_pretrained(AutoModel, name_or_path, "model")
    summary = "last" if _is_decoder(config) else "first"
    head = PoolingHead(config.hidden_size, n, pooling, dropout, summary, normalize)
    return TransformerClassifier(hf, tok, labels, head, max_length, long_docs)


def _is_decoder(config) -> bool:
    try:
        return lm_kind(config) == "causal"
    except UlmfitError:
        return False


def load_transformer_classifier(path) -> TransformerClassifier:
    """Load a folder written by `TransformerClassifier.save_pretrained`."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForSequenceClassification

    path = Path(path)
    meta_file = path / HEAD_CONFIG
    if not meta_file.exists():
        raise UlmfitError(f"{path} is not a ulmfit transformers classifier folder: {HEAD_CONFIG} is missing")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    tok = load_tokenizer(path)
    long_docs = meta.get("long_docs", "truncate")  # folders written before windows existed truncate
    if meta["pooling"] == "cls":
        hf = from_pretrained(AutoModelForSequenceClassification, path, "model")
        return TransformerClassifier(hf, tok, meta["labels"], None, meta["max_length"], long_docs)
    hf = from_pretrained(AutoModel, path, "model")
    head = PoolingHead(meta["hidden"], len(meta["labels"]), meta["pooling"], meta["dropout"], meta["summary"],
                       meta.get("normalize", False))  # folders written before normalize existed: raw features
    head.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
    return TransformerClassifier(hf, tok, meta["labels"], head, meta["max_length"], long_docs)
