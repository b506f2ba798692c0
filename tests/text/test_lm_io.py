"""Saving/loading our LM folders, fastai weights and vocabularies, vocabulary transfer."""

import os
import pickle

import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMLanguageModel
from ulmfit.text.awd_lstm.lm_io import load_fastai_lm, load_lm, read_fastai_vocab, save_lm, transfer_vocab


pytestmark = pytest.mark.usefixtures("one_thread")


V = 30


def model_and_config():
    torch.manual_seed(0)
    c = AWDLSTMConfig(vocab_size=V, emb_size=6, n_hid=10, n_layers=3)
    m = AWDLSTMLanguageModel(c)
    with torch.no_grad():
        m.decoder.bias.normal_()
    return m, c


def eval_logits(m, x):
    m.eval().reset()
    with torch.no_grad():
        return m(x).logits


X = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(3))


def test_save_load_round_trip_keeps_weights_and_tying(tmp_path):
    m, c = model_and_config()
    save_lm(m, c, tmp_path / "lm")
    assert sorted(os.listdir(tmp_path / "lm")) == ["lm_config.json", "model.safetensors"]
    m2, c2 = load_lm(tmp_path / "lm")
    assert c2 == c
    assert m2.decoder.weight is m2.encoder.emb.weight
    assert torch.equal(eval_logits(m, X), eval_logits(m2, X))
    m3, c3 = load_lm(tmp_path / "lm", drop_mult=0.5)
    assert c3.drop_mult == 0.5


def test_load_lm_errors(tmp_path):
    with pytest.raises(UlmfitError, match="model.safetensors"):
        load_lm(tmp_path)
    m, c = model_and_config()
    save_lm(m, c, tmp_path)
    (tmp_path / "lm_config.json").write_text('{"vocab_size": 31, "emb_size": 6, "n_hid": 10}')
    with pytest.raises(UlmfitError, match="vocab"):
        load_lm(tmp_path)


def fastai_state_dict(m):
    """Our weights in fastai's AWD-LSTM LM key layout (SequentialRNN(AWD_LSTM, LinearDecoder))."""
    sd = {"0.encoder.weight": m.encoder.emb.weight.detach().clone(),
          "0.encoder_dp.emb.weight": m.encoder.emb.weight.detach().clone(),
          "1.decoder.weight": m.encoder.emb.weight.detach().clone(),
          "1.decoder.bias": m.decoder.bias.detach().clone()}
    for i, r in enumerate(m.encoder.rnns):
        lstm = r.module
        sd[f"0.rnns.{i}.weight_hh_l0_raw"] = lstm.weight_hh_l0.detach().clone()
        # fastai v1 also saved the last dropped copy; it must not be used
        sd[f"0.rnns.{i}.module.weight_hh_l0"] = torch.zeros_like(lstm.weight_hh_l0)
        for n in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            sd[f"0.rnns.{i}.module.{n}"] = getattr(lstm, n).detach().clone()
    return sd


def test_fastai_layout_loads_to_identical_outputs(tmp_path):
    m, c = model_and_config()
    torch.save(fastai_state_dict(m), tmp_path / "lm.pth")
    itos = [f"w{i}" for i in range(V)]
    (tmp_path / "itos.pkl").write_bytes(pickle.dumps(itos))
    m2, c2, itos2 = load_fastai_lm(tmp_path / "lm.pth", tmp_path / "itos.pkl")
    assert itos2 == itos
    assert (c2.vocab_size, c2.emb_size, c2.n_hid, c2.n_layers) == (V, 6, 10, 3)
    assert m2.decoder.weight is m2.encoder.emb.weight
    assert torch.equal(eval_logits(m, X), eval_logits(m2, X))
    # also the {"model": ..., "opt": ...} wrapper and our round trip after it
    torch.save({"model": fastai_state_dict(m)}, tmp_path / "wrapped.pth")
    m3, _, _ = load_fastai_lm(tmp_path / "wrapped.pth")
    save_lm(m3, c2, tmp_path / "ours")
    m4, _ = load_lm(tmp_path / "ours")
    assert torch.equal(eval_logits(m, X), eval_logits(m4, X))


def test_fastai_vocab_size_mismatch_is_clear(tmp_path):
    m, _ = model_and_config()
    torch.save(fastai_state_dict(m), tmp_path / "lm.pth")
    (tmp_path / "itos.pkl").write_bytes(pickle.dumps(["a", "b"]))
    with pytest.raises(UlmfitError, match="itos.pkl.*2 words.*30 rows"):
        load_fastai_lm(tmp_path / "lm.pth", tmp_path / "itos.pkl")


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_vocab_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "itos.pkl"
    bad.write_bytes(pickle.dumps(["xxunk", _Evil(marker)]))
    with pytest.raises(UlmfitError, match="itos.pkl.*refusing"):
        read_fastai_vocab(bad)
    assert not marker.exists()
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UlmfitError, match="list of strings"):
        read_fastai_vocab(tmp_path / "dict.pkl")


def test_transfer_vocab_moves_rows_and_fills_means():
    m, _ = model_and_config()
    old = [f"w{i}" for i in range(V)]
    new = ["w5", "brand-new", "w0", "w29", "another"]
    sd = m.state_dict()
    out = transfer_vocab(sd, old, new)
    emb, bias = sd["encoder.emb.weight"], sd["decoder.bias"]
    assert out["encoder.emb.weight"].shape == (5, 6) and "decoder.weight" not in out
    for j, i in [(0, 5), (2, 0), (3, 29)]:
        assert torch.equal(out["encoder.emb.weight"][j], emb[i])
        assert torch.equal(out["decoder.bias"][j], bias[i])
    for j in (1, 4):
        assert torch.allclose(out["encoder.emb.weight"][j], emb.mean(0))
        assert torch.allclose(out["decoder.bias"][j], bias.mean())
    c = AWDLSTMConfig(vocab_size=5, emb_size=6, n_hid=10, n_layers=3)
    m2 = AWDLSTMLanguageModel(c)
    m2.load_state_dict({**out, "decoder.weight": out["encoder.emb.weight"]})
    with pytest.raises(UlmfitError, match="30 rows"):
        transfer_vocab(sd, old[:10], new)


def test_fastai_load_with_new_vocab(tmp_path):
    m, _ = model_and_config()
    torch.save(fastai_state_dict(m), tmp_path / "lm.pth")
    (tmp_path / "itos.pkl").write_bytes(pickle.dumps([f"w{i}" for i in range(V)]))
    m2, c2, itos = load_fastai_lm(tmp_path / "lm.pth", tmp_path / "itos.pkl", new_itos=["w3", "zz"])
    assert c2.vocab_size == 2 and itos == ["w3", "zz"]
    assert torch.equal(m2.encoder.emb.weight[0], m.encoder.emb.weight[3].detach())
