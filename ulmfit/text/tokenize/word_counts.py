"""Word counts for the word-level vocabulary, from the same numpy pass as encoding.

``TextTokenizer.train(kind="word")`` used to learn its vocabulary with the Rust ``WordLevelTrainer``:
the rules (``rules.preprocess_batch``) then a second, regex split of the whole text, four times the
cost of encoding it. Here the tokens come from ``fast_words.token_spans`` (the rules, the chunks,
the tokens, as in ``fast_words.encode_joined``) and are counted in numpy:

* a token of up to 8 bytes is its own 64-bit key (tokens hold no NUL byte), counted with one
  ``np.unique`` (a SIMD sort) over all the keys of a process;
* a token of 9-32 bytes is counted by its ``fast_words.word_keys`` hash, and then every one is
  compared with its group's first token, so two words with the same hash are never merged (that
  slice is counted again the slow way instead);
* longer tokens go through a ``Counter`` of strings, and so do the chunks that ``token_spans``
  routes to the Rust pre-tokenizer (``don't``, ``1,000``), each distinct one split once at the end.

Special tokens (``xxbos``, the case markers, ...) are not counted: the vocabulary has them at ids
0-8 whatever their counts. ``vocab_from_counts`` orders the words as the trainer does (count
descending, then code points ascending; under ``min_freq`` dropped; ``max_vocab`` entries in all),
so the list is the same, tie order included. A piece of texts the numpy pass cannot take
(``token_spans`` is None, or a lone surrogate) is counted from the rule output with the Rust
pre-tokenizer: exactly what the trainer counts.
"""
from __future__ import annotations

import numbers
from collections import Counter
from typing import Iterable

import numpy as np

from ulmfit.text.tokenize import fast_words as F
from ulmfit.text.tokenize import rules as R
from ulmfit.text.tokenize.special import SPECIAL_TOKENS

#: characters handed to the worker processes at a time (bounded memory for a streamed corpus)
BATCH_CHARS = 1 << 25
_SPECIAL = frozenset(SPECIAL_TOKENS)
_PAD = np.zeros(F.MAX_KEYED + 8, np.uint8)


def fast_path_applies(min_freq, max_vocab) -> bool:
    """Settings for which ``vocab_from_counts`` gives the trainer's list (other values go to the
    trainer itself, which also reports the bad ones)."""
    def whole(x, lo):
        return isinstance(x, numbers.Integral) and not isinstance(x, bool) and lo <= x < 1 << 63
    return whole(min_freq, 0) and whole(max_vocab, len(SPECIAL_TOKENS))


def vocab_from_counts(counts: dict[str, int], min_freq: int, max_vocab: int) -> list[str]:
    """Special tokens, then the words seen ``min_freq``+ times, most frequent first, equal counts
    in code point order (Rust's byte order of UTF-8); ``max_vocab`` entries at most."""
    words = sorted(w for w, c in counts.items() if c >= min_freq and w not in _SPECIAL)
    words.sort(key=counts.__getitem__, reverse=True)  # stable: ties stay in code point order
    return SPECIAL_TOKENS + words[:max_vocab - len(SPECIAL_TOKENS)]


def count_words(texts: Iterable[str], cfg: R.RuleConfig, pre_tokenizer,
                workers: int | None = None) -> Counter:
    """How often each token of the word pipeline (rules, then ``rules.WORD_PATTERN``) occurs in
    ``texts``, special tokens left out. ``workers``: as for ``TextTokenizer.encode_flat``."""
    splitter = F.WordSplitter(pre_tokenizer)
    total: Counter = Counter()
    for batch in _batches(texts):
        n = F.pick_workers(batch, workers)
        if n > 1:
            parts = F.fork_parts(lambda b: count_slice(b, cfg, splitter), batch, n)
        else:
            parts = [count_slice(batch, cfg, splitter)]
        for p in parts:
            total.update(p)
    return total


def count_slice(texts: list[str], cfg: R.RuleConfig, splitter: F.WordSplitter) -> Counter:
    """``count_words`` in this process, piece by piece (``fast_words.piece_bounds``)."""
    tally, slow = WordTally(splitter, cfg.lower), Counter()
    for lo, hi in F.piece_bounds(texts):
        if not tally.add(R.join_rules(texts[lo:hi], cfg)):
            slow.update(rust_counts(texts[lo:hi], cfg, splitter.pre))
    counts = tally.counts()
    if counts is None:  # two words with one hash
        return rust_counts(texts, cfg, splitter.pre)
    counts.update(slow)
    return counts


def rust_counts(texts: list[str], cfg: R.RuleConfig, pre_tokenizer) -> Counter:
    """What the trainer counts: the Rust pre-tokenizer's split of ``rules.preprocess_batch``."""
    counts: Counter = Counter()
    for t in R.preprocess_batch(texts, cfg):
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(t))
    for s in _SPECIAL & counts.keys():
        del counts[s]
    return counts


class WordTally:
    """Tokens of joined pieces (``add``), kept as numpy keys until ``counts``."""

    def __init__(self, splitter: F.WordSplitter, lower: bool):
        self.splitter, self.lower = splitter, lower
        self.short: list[np.ndarray] = []  # keys of tokens of up to 8 bytes
        self.mid: list[tuple[np.ndarray, np.ndarray]] = []  # (words, hash) of 9-32 bytes
        self.other: Counter = Counter()
        self.routed: Counter = Counter()  # chunks (bytes) for the Rust pre-tokenizer: split once each

    def add(self, big: str) -> bool:
        """Count the tokens of ``big`` (after ``rules.join_rules``); False: it is not counted (the
        numpy pass cannot take it)."""
        sp = F.token_spans(big, self.splitter, self.lower)
        if sp is None or (not big.isascii() and _has_surrogate(sp.b0)):
            return False
        ts, tlen = sp.ts, sp.te - sp.ts
        buf = np.concatenate((sp.low, _PAD))
        small = tlen <= 8
        self.short.append(_first_words(buf, ts[small], tlen[small]))
        mid = np.flatnonzero(~small & (tlen <= F.MAX_KEYED))
        if len(mid):
            self.mid.append(F.word_keys(buf, ts[mid], tlen[mid]))
        raw = sp.low.tobytes()
        long_ = np.flatnonzero(tlen > F.MAX_KEYED)
        self.other.update(raw[s:e].decode("utf-8") for s, e in zip(ts[long_].tolist(), sp.te[long_].tolist()))
        rest = np.flatnonzero(sp.routed)
        self.routed.update([raw[s:e] for s, e in zip(sp.cs[rest].tolist(), sp.ce[rest].tolist())])
        return True

    def counts(self) -> Counter | None:
        """Token -> count, special tokens left out; None if two words share a hash."""
        out = Counter(self.other)
        if self.routed:
            chunks = [c.decode("utf-8") for c in self.routed]
            for toks, n in zip(self.splitter.split(chunks), self.routed.values()):
                for t in toks:
                    out[t] += n
        if self.short:
            keys, n = np.unique(np.concatenate(self.short), return_counts=True)
            out.update(dict(zip(_strings(keys, 8), n.tolist())))
        if self.mid:
            words = np.concatenate([w for w, _ in self.mid], axis=1)
            h = np.concatenate([h for _, h in self.mid])
            uh, n = np.unique(h, return_counts=True)
            group = np.searchsorted(uh, h)
            first = np.empty(len(uh), np.int64)
            first[group[::-1]] = np.arange(len(h) - 1, -1, -1)
            if not (words[:, first[group]] == words).all():
                return None
            out.update(dict(zip(_strings(np.ascontiguousarray(words[:, first].T), 32), n.tolist())))
        for s in _SPECIAL & out.keys():
            del out[s]
        return out


def _first_words(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``buf[s:s+n]`` (n <= 8) as one little-endian uint64 each, the bytes past the end zeroed."""
    view = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    w = view[starts]
    drop = ((8 - lens) * 8).astype(np.uint64)
    w <<= drop
    w >>= drop
    return w


def _strings(keys: np.ndarray, width: int) -> list[str]:
    """The tokens whose bytes, NUL-padded to ``width``, are ``keys`` (rows of uint64)."""
    raw = keys.astype("<u8", copy=False).view(f"S{width}").ravel().tolist()  # NULs stripped
    return b"\0".join(raw).decode("utf-8").split("\0")


def _has_surrogate(b: np.ndarray) -> bool:
    """Whether the (surrogatepass) UTF-8 bytes hold a lone surrogate (Rust strings cannot)."""
    lead = np.flatnonzero(b[:-1] == 0xED)
    return bool(len(lead)) and bool((b[lead + 1] >= 0xA0).any())


def _batches(texts: Iterable[str]):
    batch, size = [], 0
    for t in texts:
        batch.append(t)
        size += len(t)
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
