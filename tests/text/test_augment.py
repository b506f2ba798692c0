"""Augmented copies of labelled texts for distillation (Tang et al. 2019): seeded, never a copy of
a labelled text, words only from the texts, n-grams contiguous."""

from ulmfit.text.data.augment import augmented_copies

TEXTS = ["a stirring , funny and finally transporting film", "it 's a dull , lifeless mess of a movie",
         "the cast is superb", "one of the year 's best"]


def _is_run(part: list[str], words: list[str]) -> bool:
    return any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


def test_copies_are_seeded_new_and_made_of_the_texts_words():
    a = augmented_copies(TEXTS, 5, seed=0)
    assert a == augmented_copies(TEXTS, 5, seed=0)
    assert a != augmented_copies(TEXTS, 5, seed=1)
    assert 0 < len(a) <= 20 and len(set(a)) == len(a)
    assert not set(a) & set(TEXTS)
    vocab = {w for t in TEXTS for w in t.split()}
    assert all(t and set(t.split()) <= vocab for t in a)


def test_each_rule_alone():
    # nothing changed: every copy equals its text, so none is kept
    assert augmented_copies(TEXTS, 3, 0, p_drop=0, p_swap=0, p_ngram=0) == []
    # a text spaced otherwise is the same text, not a changed copy
    assert augmented_copies(["the  cast is\tsuperb "], 3, 0, p_drop=0, p_swap=0, p_ngram=0) == []
    # every word left out: nothing left to keep
    assert augmented_copies(TEXTS, 3, 0, p_drop=1, p_swap=0, p_ngram=0) == []
    # words left out only: each copy is its text with some words missing, in order
    dropped = augmented_copies(TEXTS[:1], 10, 0, p_drop=0.3, p_swap=0, p_ngram=0)
    words = TEXTS[0].split()
    for t in dropped:
        it = iter(words)
        assert all(w in it for w in t.split()) and len(t.split()) < len(words)
    # swaps only: same length, at least one word differs
    swapped = augmented_copies(TEXTS[:1], 10, 0, p_drop=0, p_swap=0.5, p_ngram=0)
    assert swapped and all(len(t.split()) == len(words) for t in swapped)
    # n-grams only: a run of 1-5 consecutive words of the text
    grams = augmented_copies(TEXTS[:2], 10, 0, p_drop=0, p_swap=0, p_ngram=1)
    assert grams
    for t in grams:
        part = t.split()
        assert 1 <= len(part) <= 5 and any(_is_run(part, s.split()) for s in TEXTS[:2])
