"""``TextTokenizer``: ULMFiT rules + a Hugging Face ``tokenizers`` model (word, Unigram or BPE).

Word level (default): the fast batch rules (``rules.preprocess_batch``) then the Rust tokenizer
(``WordLevel`` model, a regex ``Split`` pre-tokenizer, see ``rules.WORD_PATTERN``), then the
word-repeat rule on ids; ``fast_words`` gives the same ids in numpy, and ``word_counts`` learns the
vocabulary in the same kind of pass (the Rust ``WordLevelTrainer``'s list, ``rust_word_itos``).
Subword (``unigram``/``bpe``, MultiFiT-style 15k vocab): the reference rules
(``rules.apply_rules``) then a SentencePiece-style (``Metaspace``) model. Special tokens sit
at fixed ids 0-8 (``special.py``) in both. Saved as ``tokenizer.json`` (the Rust tokenizer) and
``tokenizer_config.json`` (kind + rule settings); never pickled.
"""
from __future__ import annotations

import hashlib
import re
import json
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from ulmfit.errors import UlmfitError
from ulmfit.text.tokenize import fast_words as F
from ulmfit.text.tokenize import rules as R
from ulmfit.text.tokenize import word_counts as W
from ulmfit.text.tokenize.special import (BOS, EOS, PAD, SPECIAL_TOKENS, TK_MAJ, TK_REP, TK_UP, TK_WREP,
                                 UNK, UNK_ID, WREP_ID)

KINDS = ("word", "unigram", "bpe", "wordpiece")  # wordpiece: a transformers checkpoint's vocabulary (from_wordpiece)
_BATCH = 2000
_MARKERS = re.compile(r"\b(?:" + "|".join(SPECIAL_TOKENS) + r")\b")  # texts per Rust call in the streaming paths


def _word_pre_tokenizer():
    return pre_tokenizers.Split(Regex(R.WORD_PATTERN), behavior="removed", invert=True)


class TextTokenizer:
    """Rules + Rust tokenizer. Build with ``train``, ``from_vocab`` or ``load``."""

    def __init__(self, tk: Tokenizer, kind: str = "word", rules: R.RuleConfig | None = None):
        if kind not in KINDS:
            raise UlmfitError(f"tokenizer kind {kind!r} is not one of {', '.join(KINDS)}")
        self._tk, self.kind, self.rules = tk, kind, rules or R.RuleConfig()
        vocab = tk.get_vocab(with_added_tokens=True)
        self.itos: list[str] = [""] * (max(vocab.values()) + 1)
        for s, i in vocab.items():
            self.itos[i] = s
        self.stoi: dict[str, int] = dict(vocab)
        for i, s in enumerate(SPECIAL_TOKENS):
            if self.itos[i] != s:
                raise UlmfitError(f"tokenizer vocab has {self.itos[i]!r} at id {i}; "
                                  f"special token {s!r} must be there (ids 0-8: {SPECIAL_TOKENS})")
        self._wrep_tables = None
        self._table = None  # fast_words.VocabTable, built on first use

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], kind: str = "word", min_freq: int = 3,
              max_vocab: int = 60000, vocab_size: int = 15000,
              rules: R.RuleConfig | None = None) -> "TextTokenizer":
        """Learn a vocabulary from raw texts. ``word``: words seen ``min_freq``+ times, at most
        ``max_vocab`` entries including the special tokens (most frequent first, ties in code
        point order: the Rust ``WordLevelTrainer``'s list, counted by ``word_counts``). Subword:
        ``vocab_size`` pieces."""
        rules = rules or R.RuleConfig()
        if kind == "word":
            if W.fast_path_applies(min_freq, max_vocab):
                counts = W.count_words(texts, rules, _word_pre_tokenizer())
                itos = W.vocab_from_counts(counts, min_freq, max_vocab)
            else:
                itos = rust_word_itos(texts, min_freq, max_vocab, rules)
            tk = _word_level(itos)
        elif kind in ("unigram", "bpe"):
            tk = _train_subword(texts, kind, vocab_size, rules)
        else:
            raise UlmfitError(f"tokenizer kind {kind!r} is not one of {', '.join(KINDS)}")
        if tk.get_vocab_size() <= len(SPECIAL_TOKENS):
            raise UlmfitError(f"no word reached min_freq={min_freq}; the training texts are too "
                              "few or too short (lower min_freq)")
        return cls(tk, kind, rules)

    @classmethod
    def from_vocab(cls, itos: list[str], rules: R.RuleConfig | None = None) -> "TextTokenizer":
        """A word tokenizer from an existing vocab list (e.g. a fastai ``itos``)."""
        if len(set(itos)) != len(itos):
            dup = next(s for i, s in enumerate(itos) if s in itos[:i])
            raise UlmfitError(f"vocab list has duplicate entry {dup!r}")
        return cls(_word_level(itos), "word", rules)

    @classmethod
    def from_wordpiece(cls, pieces: list[str], rules: R.RuleConfig | None = None) -> "TextTokenizer":
        """A WordPiece tokenizer (BERT's: ``##`` continues a word) over ``pieces``, e.g. a
        transformers checkpoint's vocabulary, after the special tokens; the rules' markers stay whole."""
        itos = SPECIAL_TOKENS + [p for p in dict.fromkeys(pieces) if p not in SPECIAL_TOKENS]
        tk = Tokenizer(models.WordPiece({w: i for i, w in enumerate(itos)}, unk_token=UNK,
                                        continuing_subword_prefix="##"))
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tk.decoder = decoders.WordPiece(prefix="##")
        tk.add_special_tokens([AddedToken(s, single_word=True, normalized=False, lstrip=True, rstrip=True)
                               for s in SPECIAL_TOKENS])
        return cls(tk, "wordpiece", rules)

    # --- persistence ----------------------------------------------------------------------------
    def save(self, directory) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._tk.save(str(d / "tokenizer.json"))
        cfg = {"format": "ulmfit-tokenizer", "version": 1, "kind": self.kind,
               "rules": self.rules.to_dict(), "special_tokens": SPECIAL_TOKENS}
        (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
        return d

    @classmethod
    def load(cls, directory) -> "TextTokenizer":
        d = Path(directory)
        f, c = d / "tokenizer.json", d / "tokenizer_config.json"
        for p in (f, c):
            if not p.is_file():
                raise UlmfitError(f"tokenizer file {p} not found (expected tokenizer.json and "
                                  "tokenizer_config.json, written by TextTokenizer.save)")
        try:
            cfg = json.loads(c.read_text())
            tk = Tokenizer.from_file(str(f))
        except Exception as e:  # corrupt JSON
            raise UlmfitError(f"cannot read tokenizer in {d}: {e}") from None
        return cls(tk, cfg.get("kind", "word"), R.RuleConfig.from_dict(cfg.get("rules", {})))

    @property
    def hash(self) -> str:
        """Content hash of vocab + rules (cache key)."""
        h = hashlib.sha256(self._tk.to_str().encode())
        h.update(json.dumps([self.kind, self.rules.to_dict()], sort_keys=True).encode())
        return h.hexdigest()[:16]

    # --- vocab ----------------------------------------------------------------------------------
    @property
    def vocab(self) -> list[str]:
        return self.itos

    def __len__(self) -> int:
        return len(self.itos)

    pad_id, bos_id, eos_id, unk_id = 1, 2, 3, 0

    @property
    def id_dtype(self):
        """Smallest unsigned dtype that holds every id."""
        return np.uint16 if len(self) <= 65536 else np.uint32

    # --- encoding -------------------------------------------------------------------------------
    def preprocess(self, texts: list[str]) -> list[str]:
        """Apply the rules; returns the strings handed to the Rust tokenizer."""
        if self.kind == "word":
            return R.preprocess_batch(texts, self.rules)
        return [R.apply_rules(t, self.rules) for t in texts]

    def encode_flat(self, texts: list[str], workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Fast path: all ids of ``texts`` in one int32 array plus per-text lengths. ``workers``:
        processes for a large batch (default: one per CPU core, at most 4, once the batch has a
        million characters; 1 keeps it in this process)."""
        texts = list(texts)
        if not texts:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        n = F.pick_workers(texts, workers)
        if n > 1:
            self._tables()  # built once, before the fork
            return F.fork_map(self._encode_here, texts, n)
        return self._encode_here(texts)

    def _encode_here(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids in this process, piece by piece (``fast_words.piece_bounds``: cache-sized)."""
        if self.kind != "word" or len(texts) < 2:
            return self._encode_piece(texts)
        parts = [self._encode_piece(texts[lo:hi]) for lo, hi in F.piece_bounds(texts)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _encode_piece(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        fast = self._encode_numpy(texts) if self.kind == "word" else None
        if fast is not None:
            ids, lengths = fast
        else:
            encs = self._tk.encode_batch_fast(self.preprocess(texts), add_special_tokens=False)
            parts = [np.array(e.ids, dtype=np.int32) for e in encs]
            lengths = np.array([len(p) for p in parts], dtype=np.int64)
            ids = np.concatenate(parts)
        if self.kind == "word" and self.rules.wrep:
            ids, lengths = R.wrep_ids(ids, lengths, *self._wrep_args())
        return ids, lengths

    def _tables(self):
        if self.kind == "word":
            self._wrep_args()
            if self._table is None:
                self._table = F.VocabTable(self.itos, self.stoi, self._tk.pre_tokenizer)
        return self._table

    def _encode_numpy(self, texts: list[str]):
        """Word level without the Rust tokenizer (``fast_words``); None: use the Rust path."""
        if not self._tables().usable:
            return None
        return F.encode_joined(R.join_rules(texts, self.rules), len(texts), self._table, self.rules)

    def encode_batch(self, texts: Iterable[str], as_numpy: bool = False) -> list:
        """Ids of each text (lists of int, or numpy int32 arrays with ``as_numpy``)."""
        ids, lengths = self.encode_flat(list(texts))
        out = np.split(ids, np.cumsum(lengths)[:-1]) if len(lengths) else []
        return out if as_numpy else [a.tolist() for a in out]

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def tokenize(self, text: str) -> list[str]:
        """Token strings of one text (for inspection)."""
        return [self.itos[i] for i in self.encode(text)]

    def _wrep_args(self):
        if self._wrep_tables is None:
            is_word = np.array([s.isalnum() or s.replace("_", "a").isalnum() for s in self.itos])
            is_word[: len(SPECIAL_TOKENS)] = False
            count_ids = np.array([self.stoi.get(str(n), UNK_ID) for n in range(1001)], np.int32)
            self._wrep_tables = (is_word, count_ids, WREP_ID)
        return self._wrep_tables

    # --- decoding -------------------------------------------------------------------------------
    def decode(self, ids) -> str:
        """Readable text: drops xxbos/xxeos/xxpad, undoes xxmaj/xxup/xxrep/xxwrep."""
        toks = [self.itos[int(i)] if 0 <= int(i) < len(self.itos) else UNK for i in ids]
        out, i, pending = [], 0, None
        while i < len(toks):
            t = toks[i]
            if t in (BOS, EOS, PAD):
                i += 1
                continue
            if t in (TK_REP, TK_WREP) and i + 2 < len(toks) and toks[i + 1].strip("▁").isdigit():
                n, w = int(toks[i + 1].strip("▁")), toks[i + 2]
                out.append(w.strip("▁") * n if t == TK_REP else " ".join([w] * n))
                i += 3
                continue
            if t in (TK_MAJ, TK_UP):
                pending = t
                i += 1
                continue
            if t in SPECIAL_TOKENS:
                pending = None
            elif pending and t.strip("▁"):
                lead = "▁" if t.startswith("▁") else ""
                w = t[len(lead):]
                t = lead + (w.upper() if pending == TK_UP else w[:1].upper() + w[1:])
                pending = None
            out.append(t)
            i += 1
        if self.kind == "word":
            return " ".join(out)
        if self.kind == "wordpiece":
            return " ".join(out).replace(" ##", "")
        return "".join(out).replace("▁", " ").replace("  ", " ").strip()


def _word_level(itos: list[str]) -> Tokenizer:
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(itos)}, unk_token=UNK))
    tk.pre_tokenizer = _word_pre_tokenizer()
    return tk


def rust_word_itos(texts: Iterable[str], min_freq: int, max_vocab: int,
                   rules: R.RuleConfig) -> list[str]:
    """The word vocabulary learnt by the Rust ``WordLevelTrainer`` (a second pass over the rule
    output): the reference for ``word_counts``, and ``train``'s path for odd settings."""
    tk = Tokenizer(models.WordLevel({}, unk_token=UNK))
    tk.pre_tokenizer = _word_pre_tokenizer()
    trainer = trainers.WordLevelTrainer(vocab_size=max_vocab + len(SPECIAL_TOKENS), min_frequency=min_freq,
                                        special_tokens=SPECIAL_TOKENS, show_progress=False)
    tk.train_from_iterator(_prepped(texts, lambda b: R.preprocess_batch(b, rules)), trainer=trainer)
    # the trainer re-numbers specials seen in the text: put them back
    words = sorted(tk.get_vocab().items(), key=lambda kv: kv[1])
    return (SPECIAL_TOKENS + [w for w, _ in words if w not in SPECIAL_TOKENS])[:max_vocab]


def _train_subword(texts: Iterable[str], kind: str, vocab_size: int, rules: R.RuleConfig) -> Tokenizer:
    """A SentencePiece-style (``Metaspace``) Unigram or BPE model, markers kept atomic."""
    tk = Tokenizer(models.Unigram() if kind == "unigram" else models.BPE(unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tcls = trainers.UnigramTrainer if kind == "unigram" else trainers.BpeTrainer
    extra = {"unk_token": UNK} if kind == "unigram" else {"min_frequency": 2}
    trainer = tcls(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False, **extra)
    # markers are added tokens, not pieces to learn: hide them from the trainer
    prep = lambda b: [_MARKERS.sub(" ", R.apply_rules(t, rules)) for t in b]  # noqa: E731
    tk.train_from_iterator(_prepped(texts, prep), trainer=trainer)
    tk.add_special_tokens([AddedToken(s, single_word=True, normalized=False, lstrip=True, rstrip=True)
                           for s in SPECIAL_TOKENS])
    return tk


def _prepped(texts: Iterable[str], prep) -> Iterable[str]:
    """Stream ``texts`` through ``prep`` in batches (bounded memory)."""
    batch = []
    for t in texts:
        batch.append(t)
        if len(batch) >= _BATCH:
            yield from prep(batch)
            batch = []
    if batch:
        yield from prep(batch)
