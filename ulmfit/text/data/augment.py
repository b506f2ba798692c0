"""Changed copies of labelled texts for a teacher to label, after Tang et al. (2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks", section 3.3): each word is, with
probability ``p_drop``, left out, or with probability ``p_swap`` replaced by a word drawn from the
texts' own word frequencies; then, with probability ``p_ngram``, the copy keeps only a random
n-gram of 1-5 of its words. Tang et al. mask words instead of leaving them out and swap words of
the same part of speech: a student and a teacher with different tokenizers share no mask token,
and no tagger is installed, so this is the nearest rule both models read alike.

Texts are split on whitespace (SST-2 and TREC-6 are tokenized that way already). Copies equal to a
labelled text or to an earlier copy are dropped, so a text can get fewer than ``copies``."""

from __future__ import annotations

import numpy as np

__all__ = ["augmented_copies"]


def augmented_copies(texts: list[str], copies: int, seed: int, p_drop: float = 0.1, p_swap: float = 0.1,
                     p_ngram: float = 0.25, max_n: int = 5) -> list[str]:
    """Up to ``copies`` changed copies of each text (text by text, in order), none equal to a text
    of ``texts`` or to another copy; the same for the same seed."""
    rng = np.random.default_rng(seed)
    split = [t.split() for t in texts]
    pool = [w for words in split for w in words]
    seen = set(texts) | {" ".join(words) for words in split}  # a text with other spacing is no copy either
    out = []
    for words in split:
        if not words:
            continue
        for _ in range(copies):
            copy = _change(words, pool, rng, p_drop, p_swap)
            if len(copy) > 1 and rng.random() < p_ngram:
                n = min(int(rng.integers(1, max_n + 1)), len(copy))
                start = int(rng.integers(0, len(copy) - n + 1))
                copy = copy[start:start + n]
            text = " ".join(copy)
            if text and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def _change(words: list[str], pool: list[str], rng: np.random.Generator, p_drop: float, p_swap: float) -> list[str]:
    draw = rng.random(len(words))
    picks = rng.integers(0, len(pool), len(words))
    return [pool[j] if p_drop <= x < p_drop + p_swap else w
            for w, x, j in zip(words, draw, picks) if x >= p_drop]
