"""AWD-LSTM model: dropouts, weight drop, hidden state, tying, layer groups, loss, training."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm import model as awd_lstm
from ulmfit.text.awd_lstm.model import (AWDLSTMConfig, AWDLSTMEncoder, AWDLSTMLanguageModel,
                                  linear_cross_entropy, lm_loss)
from ulmfit.text.awd_lstm.dropouts import EmbeddingDropout, RNNDropout, WeightDrop


pytestmark = pytest.mark.usefixtures("one_thread")


V = 50


def tiny(**kw):
    return AWDLSTMConfig(vocab_size=V, emb_size=8, n_hid=12, n_layers=3, **kw)


def ids(bs=3, seq=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (bs, seq), generator=g)


def test_rnn_dropout_mask_shared_across_time():
    torch.manual_seed(0)
    d = RNNDropout(0.5).train()
    out = d(torch.ones(4, 10, 16))
    assert torch.equal(out, out[:, :1].expand_as(out))  # same mask at every time step
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(d.eval()(torch.ones(4, 10, 16)), torch.ones(4, 10, 16))


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(1)
    emb = nn.Embedding(V, 6)
    d = EmbeddingDropout(emb, 0.5).train()
    x = torch.arange(V).repeat(2, 1)  # every word twice
    out = d(x)
    for w in range(V):
        a, b = out[0, w], out[1, w]
        assert torch.equal(a, b)
        assert torch.allclose(a, torch.zeros(6)) or torch.allclose(a, 2 * emb.weight[w])
    assert (out.abs().sum(-1) == 0).any() and (out.abs().sum(-1) > 0).any()
    assert torch.equal(d.eval()(x), emb(x))


def _plain_lstm_with(wd: WeightDrop, w_hh: torch.Tensor) -> nn.LSTM:
    ref = nn.LSTM(wd.module.input_size, wd.module.hidden_size, batch_first=True)
    ref.load_state_dict(wd.module.state_dict())
    with torch.no_grad():
        ref.weight_hh_l0.copy_(w_hh)
    return ref


def test_weight_drop_uses_dropped_weights_in_training_only():
    torch.manual_seed(0)
    wd = WeightDrop(nn.LSTM(5, 7, batch_first=True), weight_p=0.5)
    x = torch.randn(2, 9, 5)
    hx = (torch.zeros(1, 2, 7), torch.zeros(1, 2, 7))
    wd.train()
    torch.manual_seed(123)
    out, _ = wd(x, hx)
    torch.manual_seed(123)
    w_drop = F.dropout(wd.module.weight_hh_l0.detach(), 0.5, training=True)
    assert (w_drop == 0).any()
    ref_out, _ = _plain_lstm_with(wd, w_drop)(x, hx)
    assert torch.allclose(out, ref_out, atol=1e-6)
    # gradient reaches the raw parameter, only through kept entries
    out.sum().backward()
    g = wd.module.weight_hh_l0.grad
    assert g is not None and torch.all(g[w_drop == 0] == 0) and g.abs().sum() > 0
    # weight_p = 1 removes the recurrent weights entirely
    wd.weight_p = 1.0
    out1, _ = wd(x, hx)
    ref1, _ = _plain_lstm_with(wd, torch.zeros(28, 7))(x, hx)
    assert torch.allclose(out1, ref1, atol=1e-6)
    # evaluation uses the full weights, deterministically
    wd.eval()
    ev, _ = wd(x, hx)
    full, _ = _plain_lstm_with(wd, wd.module.weight_hh_l0.detach())(x, hx)
    assert torch.allclose(ev, full, atol=1e-6)


def test_config_presets_and_drop_mult():
    c = AWDLSTMConfig.preset("paper", 1000, drop_mult=0.5)
    assert (c.emb_size, c.n_hid, c.n_layers) == (400, 1152, 3)
    assert c.dropout("weight") == pytest.approx(0.1) and c.dropout("input") == pytest.approx(0.125)
    s = AWDLSTMConfig.preset("small", 1000)
    assert (s.emb_size, s.n_hid, s.n_layers) == (200, 400, 3)
    assert AWDLSTMConfig.from_dict(s.to_dict()) == s
    m = AWDLSTMLanguageModel(AWDLSTMConfig(vocab_size=V, emb_size=8, n_hid=12, drop_mult=0.5))
    assert m.encoder.rnns[0].weight_p == pytest.approx(0.1)
    with pytest.raises(UlmfitError, match="preset"):
        AWDLSTMConfig.preset("huge", 10)
    with pytest.raises(UlmfitError, match="bogus"):
        AWDLSTMConfig.from_dict({"vocab_size": 3, "bogus": 1})


def test_shapes_and_tied_weights():
    m = AWDLSTMLanguageModel(tiny())
    out = m(ids())
    assert out.logits.shape == (3, 7, V) and out.raw.shape == (3, 7, 8) and out.dropped.shape == (3, 7, 8)
    assert m.decoder.weight is m.encoder.emb.weight
    assert [r.module.hidden_size for r in m.encoder.rnns] == [12, 12, 8]


def test_hidden_state_carried_and_reset():
    m = AWDLSTMLanguageModel(tiny()).eval()
    x = ids(seq=10)
    with torch.no_grad():
        full = m(x).logits
        m.reset()
        a = m(x[:, :4]).logits
        b = m(x[:, 4:]).logits  # continues from a's state
        assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-5)
        m.reset()
        fresh_b = m(x[:, 4:]).logits
        assert not torch.allclose(fresh_b, b, atol=1e-4)
        assert all(not h.requires_grad for pair in m.encoder.hidden for h in pair)


def test_batch_size_change_resets_state():
    m = AWDLSTMLanguageModel(tiny()).eval()
    with torch.no_grad():
        m(ids(bs=4))
        small = m(ids(bs=2, seed=5)).logits  # no error, starts from zeros
        m.reset()
        assert torch.allclose(small, m(ids(bs=2, seed=5)).logits)


def test_explicit_hidden_for_chunks():
    enc = AWDLSTMEncoder(tiny()).eval()
    x = ids(seq=12)
    with torch.no_grad():
        full, _ = enc.forward_hidden(x)
        h, outs = None, []
        for s in range(0, 12, 5):
            o, h = enc.forward_hidden(x[:, s:s + 5], h)
            outs.append(o)
        assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)
        assert enc.hidden is None  # explicit calls leave the module's state alone
        layers, _ = enc.forward_hidden(x, return_all=True)
        assert [t.shape[-1] for t in layers] == [12, 12, 8]


def _params_once(groups, model):
    seen = [id(p) for g in groups for p in g.parameters()]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in model.parameters()}


def test_layer_groups_cover_every_parameter_once():
    m = AWDLSTMLanguageModel(tiny())
    groups = m.layer_groups()
    assert len(groups) == 4
    assert any(p is m.decoder.bias for p in groups[-1].parameters())
    _params_once(groups, m)
    enc_groups = m.encoder.layer_groups()
    assert len(enc_groups) == 4 and any(p is m.encoder.emb.weight for p in enc_groups[0].parameters())
    _params_once(enc_groups, m.encoder)


def test_fused_cross_entropy_matches_logits_path(monkeypatch):
    torch.manual_seed(0)
    h = torch.randn(40, 8, requires_grad=True)
    w = torch.randn(V, 8, requires_grad=True)
    b = torch.randn(V, requires_grad=True)
    t = torch.randint(0, V, (40,))
    ref = F.cross_entropy(F.linear(h, w, b), t)
    g_ref = torch.autograd.grad(2 * ref, [h, w, b])
    got = linear_cross_entropy(h, w, b, t, chunk=7)
    g_got = torch.autograd.grad(2 * got, [h, w, b])
    assert torch.allclose(ref, got, atol=1e-5)
    for a, c in zip(g_ref, g_got):
        assert torch.allclose(a, c, atol=1e-5)
    with torch.no_grad():  # validation path: loss only
        assert torch.allclose(linear_cross_entropy(h, w, b, t, chunk=7), ref, atol=1e-5)
    # several gradient blocks (the last one short), one block holding every row, and fp32
    # logits computed in vocabulary slices (the last one short)
    for block, cols in ((14, 2048), (70, 2048), (14, 7)):
        monkeypatch.setattr(awd_lstm, "_CPU_COLS", cols)
        got_blk = linear_cross_entropy(h, w, b, t, chunk=7, block=block)
        assert torch.allclose(got_blk, ref, atol=1e-5)
        g_blk = torch.autograd.grad(2 * got_blk, [h, w, b])
        for a, c in zip(g_ref, g_blk):
            assert torch.allclose(a, c, atol=1e-5)
    t2 = t.clone()
    t2[:5] = -100  # ignored rows
    assert torch.allclose(linear_cross_entropy(h, w, b, t2, chunk=6), F.cross_entropy(F.linear(h, w, b), t2), atol=1e-5)
    g_ign = torch.autograd.grad(linear_cross_entropy(h, w, b, t2, chunk=6, block=12), [h, w, b])
    g_ign_ref = torch.autograd.grad(F.cross_entropy(F.linear(h, w, b), t2), [h, w, b])
    for a, c in zip(g_ign_ref, g_ign):
        assert torch.allclose(a, c, atol=1e-5)
    assert g_ign[0][:5].abs().max() == 0  # ignored rows get no gradient
    # and inside the model, with dropouts on: same loss with and without targets
    m = AWDLSTMLanguageModel(tiny()).train()
    x = ids(seq=9)
    torch.manual_seed(7)
    l1 = lm_loss(m(x[:, :-1]), x[:, 1:])
    m.reset()
    torch.manual_seed(7)
    l2 = lm_loss(m(x[:, :-1], x[:, 1:]), x[:, 1:])
    assert torch.allclose(l1, l2, atol=1e-5)


def test_fused_cross_entropy_under_bf16_autocast():
    torch.manual_seed(0)
    h = torch.randn(50, 16, requires_grad=True)
    w = (0.3 * torch.randn(V, 16)).requires_grad_()
    b = torch.randn(V, requires_grad=True)
    t = torch.randint(0, V, (50,))
    ref = F.cross_entropy(F.linear(h, w, b), t)
    g_ref = torch.autograd.grad(ref, [h, w, b])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(h, w, b, t, chunk=8, block=16)
    g_got = torch.autograd.grad(got, [h, w, b])
    assert got.dtype == torch.float32 and abs(float((got - ref).detach())) < 0.02 * float(ref.detach())
    for a, c in zip(g_ref, g_got):
        assert c.dtype == torch.float32
        assert (a - c).norm() < 0.02 * a.norm()  # bf16 matmuls: ~3 significant digits
    t2 = t.clone()
    t2[:6] = -100  # ignored rows: no loss, no gradient
    ref2 = F.cross_entropy(F.linear(h, w, b), t2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got2 = linear_cross_entropy(h, w, b, t2, chunk=8, block=16)
    g2 = torch.autograd.grad(got2, [h, w, b])
    assert abs(float((got2 - ref2).detach())) < 0.02 * float(ref2.detach())
    assert g2[0][:6].abs().max() == 0 and g2[0][6:].abs().max() > 0
    for a, c in zip(torch.autograd.grad(ref2, [h, w, b]), g2):
        assert (a - c).norm() < 0.02 * a.norm()


@pytest.mark.parametrize("bf16", [False, True])
def test_fused_cross_entropy_when_the_target_probability_underflows(bf16):
    """A target 400 nats below the best logit: its softmax probability is 0 in float32, so
    -log(p) would be inf; that row's loss is recomputed from its logits."""
    w = torch.zeros(V, 2)
    w[0, 0], w[1, 0] = 1.0, -1.0
    w.requires_grad_()
    h = torch.tensor([[200.0, 0.0], [0.5, 0.0], [0.0, 1.0]], requires_grad=True)
    t = torch.tensor([1, 1, 2])
    ref = F.cross_entropy(F.linear(h.double(), w.double()), t)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        got = linear_cross_entropy(h, w, None, t, chunk=2, block=2)
    assert torch.isfinite(got) and abs(float(got.detach()) - float(ref.detach())) < 1e-4 * float(ref.detach())
    g = torch.autograd.grad(got, [h, w])
    for a, c in zip(torch.autograd.grad(ref, [h, w]), g):
        assert (a.float() - c).norm() < (0.01 if bf16 else 1e-5) * a.norm()
    with torch.no_grad():  # the loss alone (evaluation) takes the same care
        assert abs(float(linear_cross_entropy(h, w, None, t, chunk=2)) - float(ref)) < 1e-4 * float(ref)


def test_lm_loss_adds_ar_and_tar():
    m = AWDLSTMLanguageModel(tiny()).eval()
    x = ids(seq=9)
    out = m(x[:, :-1])
    ce = F.cross_entropy(out.logits.reshape(-1, V), x[:, 1:].reshape(-1))
    ar = out.dropped.pow(2).mean()
    tar = (out.raw[:, 1:] - out.raw[:, :-1]).pow(2).mean()
    assert torch.allclose(lm_loss(out, x[:, 1:], alpha=2.0, beta=1.0), ce + 2 * ar + tar, atol=1e-6)
    assert torch.allclose(lm_loss(out, x[:, 1:], alpha=0, beta=0), ce, atol=1e-6)


def test_tiny_lm_learns_a_repetitive_sequence():
    torch.manual_seed(0)
    m = AWDLSTMLanguageModel(AWDLSTMConfig(vocab_size=V, emb_size=16, n_hid=32, n_layers=2, drop_mult=0.2)).train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-2)
    stream = torch.arange(10, 20).repeat(40)  # 10 11 ... 19 10 11 ...
    data = stream[: 4 * 100].view(4, 100)
    losses = []
    for step in range(80):
        s = (step * 12) % (100 - 13)
        x, y = data[:, s:s + 12], data[:, s + 1:s + 13]
        loss = lm_loss(m(x, y), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_bf16_autocast_switch_keeps_lstm_fp32():
    x = ids(seq=6)
    for flag, want in [(True, torch.bfloat16), (False, torch.float32)]:
        m = AWDLSTMLanguageModel(tiny(lstm_autocast=flag)).train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x[:, :-1], x[:, 1:])
            loss = lm_loss(out, x[:, 1:])
        assert out.raw.dtype == want and loss.dtype == torch.float32
        loss.backward()
        assert m.encoder.emb.weight.grad.dtype == torch.float32
