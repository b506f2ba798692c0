import torch

from ulmfit.core import LayerGroups
from ulmfit.text.awd_lstm.model import AWDLSTMConfig
from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier, align_to_chunks, masked_concat_pool

PAD = 1


def model(max_len=72 * 20, bptt=4, seed=0):
    torch.manual_seed(seed)
    cfg = AWDLSTMConfig(vocab_size=30, emb_size=8, n_hid=12, n_layers=2)
    return AWDLSTMClassifier(cfg, n_classes=3, bptt=bptt, max_len=max_len).eval()


def front_pad(rows, width):
    return torch.tensor([[PAD] * (width - len(r)) + r for r in rows])


def test_align_to_chunks():
    x = front_pad([[5, 6, 7, 8, 9], [3, 4]], 7)
    out, start = align_to_chunks(x, PAD, bptt=4)
    assert out.tolist() == [[5, 6, 7, 8, 9, 1], [1, 1, 1, 1, 3, 4]]  # the last chunk ends with the texts
    assert start.tolist() == [0, 4]
    out, start = align_to_chunks(front_pad([[5, 6], [3, 4, 7]], 3), PAD, bptt=4)
    assert out.tolist() == [[5, 6, 1], [3, 4, 7]] and start.tolist() == [0, 0]


def test_masked_pooling_ignores_padding():
    out = torch.randn(1, 5, 3)
    mask = torch.tensor([[False, True, True, True, False]])
    got = masked_concat_pool(out, mask)
    real = out[0, 1:4]
    assert torch.allclose(got[0], torch.cat([real[-1], real.max(0).values, real.mean(0)]))


def test_extra_padding_changes_nothing():
    m = model()
    text = [2, 9, 10, 11, 12, 13, 14]
    a = m(front_pad([text], 7))
    b = m(front_pad([text], 23))
    c = m(front_pad([text, [2, 5, 6] * 7], 21))[:1]
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)


def test_batch_size_one_equals_batch():
    m = model()
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(2, 30, (int(n),), generator=g).tolist() for n in torch.randint(1, 20, (9,), generator=g)]
    batch = m(front_pad(rows, 20))
    single = torch.cat([m(front_pad([r], len(r))) for r in rows])
    assert torch.allclose(batch, single, atol=1e-5)


def test_bpt3c_gradients_only_in_last_max_len():
    m = model(max_len=8, bptt=4).train()
    x = front_pad([list(range(10, 26))], 16)  # 16 tokens = 4 chunks; only the last 2 chunks keep grads
    emb = m.encoder.emb
    emb.weight.grad = None
    m.encoder.emb_dp.p = 0.0
    m(x).sum().backward()
    grad_rows = emb.weight.grad.abs().sum(1)
    early, late = list(range(10, 18)), list(range(18, 26))
    assert (grad_rows[early] == 0).all()
    assert (grad_rows[late] > 0).all()


def test_layer_groups_cover_everything():
    m = model()
    g = LayerGroups(m, m.layer_groups())
    assert len(g) == 4  # embedding, 2 LSTMs, head


def test_max_tokens_default_and_what_prediction_reads():
    """A classifier reads at most the last max_tokens tokens of a text, cut at a chunk boundary of
    the whole text (issue #24 item 8)."""
    import numpy as np

    from ulmfit.text.awd_lstm.classifier import default_max_tokens
    from ulmfit.text.awd_lstm.text_classifier import TextClassifier
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    assert default_max_tokens(1440, 72) == 2160 and default_max_tokens(100, 72) == 12 * 72
    m = model(max_len=8, bptt=4)
    assert m.max_tokens == (2 + 10) * 4
    tok = TextTokenizer.from_vocab(["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]
                                   + [f"w{i}" for i in range(m.config.vocab_size - 9)])
    clf = TextClassifier(m, tok, ["a", "b", "c"])
    rng = np.random.default_rng(0)
    long = np.concatenate([[2], rng.integers(9, m.config.vocab_size, 5000)]).astype(np.int64)  # 5001 = 4k + 1
    kept = long[-45:]  # whole chunks dropped: 45 <= 48 tokens, 45 = 4k + 1
    other = np.concatenate([[2], rng.integers(9, m.config.vocab_size, 2999), kept])  # another start, same end
    p = clf.predict_proba(None, ids=[long, kept, other])
    assert np.allclose(p[0], p[1], rtol=0, atol=1e-6) and np.allclose(p[0], p[2], rtol=0, atol=1e-6)
    m.max_tokens = 10 ** 9  # reading everything: the 40 warm-up tokens already gave the same answer
    assert np.allclose(clf.predict_proba(None, ids=[long])[0], p[0], rtol=0, atol=1e-4)
