"""Word vectors in the AWD-LSTM phases: the vocabulary they widen and the embedding they fill
(the recipe's `model.vectors`; the reading and placing is `text.awd_lstm.vectors`)."""

from __future__ import annotations

import torch

from ulmfit.errors import UlmfitError
from ulmfit.phases.common import log
from ulmfit.text.awd_lstm.vectors import WordVectors, embedding_from_vectors, freeze_rows, load_vectors, vocab_with_vectors
from ulmfit.text.tokenize.special import SPECIAL_TOKENS
from ulmfit.text.tokenize.tokenizer import TextTokenizer


def train_tokenizer(texts: list[str], tk, vec) -> tuple[TextTokenizer, WordVectors | None]:
    """The tokenizer a new model learns from ``texts`` (tokenizer section ``tk``) and, with
    ``vec.path``, the vectors, whose words widen the vocabulary (``vec.min_freq``, ``vec.extra_words``);
    a transformers checkpoint's vectors bring its WordPiece vocabulary instead."""
    if vec.path:
        vectors = load_vectors(vec.path, vec.max_words)
        if vectors.subword:  # a transformers checkpoint: its WordPiece vocabulary, whatever tokenizer.* says
            return TextTokenizer.from_wordpiece(vectors.words), vectors
    base = TextTokenizer.train(texts, kind=tk.kind, min_freq=tk.min_freq, max_vocab=tk.max_vocab,
                               vocab_size=tk.vocab_size)
    if not vec.path:
        return base, None
    if tk.kind != "word":
        raise UlmfitError(f"model.vectors holds one vector per word: it needs tokenizer.kind word, not {tk.kind!r}")
    wide = base.vocab
    if vec.min_freq and vec.min_freq < tk.min_freq:
        wide = TextTokenizer.train(texts, kind="word", min_freq=vec.min_freq, max_vocab=10**8).vocab
    itos = vocab_with_vectors(base.vocab, wide, vectors, vec.extra_words)
    return (base if len(itos) == len(base) else TextTokenizer.from_vocab(itos)), vectors


def place_vectors(encoder, tokenizer: TextTokenizer, vectors: WordVectors, vec, seed: int, quiet: bool) -> dict:
    """Fill an AWD-LSTM encoder's embedding from ``vectors`` (and freeze their entries with
    ``vec.freeze``); returns what it did, for the run's metrics."""
    emb = encoder.emb
    weight, found, cols = embedding_from_vectors(tokenizer.vocab, vectors, emb.weight.shape[1], vec.layout,
                                                 vec.scale, encoder.initrange, seed, skip=set(SPECIAL_TOKENS))
    with torch.no_grad():
        emb.weight.copy_(weight)
    if vec.freeze:
        freeze_rows(emb, found.nonzero().squeeze(1), cols)  # the hook lives on the parameter
    n = int(found.sum())
    log(f"word vectors: {n:,} of {len(found):,} words have a {vectors.dim}-d vector ({vec.layout}"
        f"{', frozen' if vec.freeze else ''})", quiet)
    return {"vector_words": n, "vocab_size": len(found)}
