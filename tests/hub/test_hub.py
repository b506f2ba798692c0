"""Hub export (issue #7): transformers loads the export without ulmfit, the card holds the run's real
metrics, export -> import round trip, ONNX parity, tampered files give one clear error."""

import csv
import json
import pickle
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ulmfit.errors import UlmfitError

from cli_helpers import DATA, ENV


def _texts(name: str, n: int = 100) -> list[str]:
    with open(DATA / name / "test.csv", newline="", encoding="utf-8") as f:
        return [row["text"] for _, row in zip(range(n), csv.DictReader(f))]


@pytest.fixture(scope="session")
def texts():
    return _texts("trec6") + _texts("imdb")  # 100 short questions + 100 long movie reviews


@pytest.fixture(scope="session")
def run_dir(tiny_run):
    return tiny_run[0]


@pytest.fixture(scope="session")
def exported(run_dir, tmp_path_factory):
    from ulmfit.hub import export_run

    base = tmp_path_factory.mktemp("hub")
    clas = export_run(run_dir, base / "clas", onnx=True)
    lm = export_run(run_dir / "finetune_lm", base / "lm")
    return {"clas": Path(clas["out"]), "lm": Path(lm["out"]), "summary": clas}


@pytest.fixture(scope="session")
def reference(run_dir):
    from ulmfit.text.awd_lstm.text_classifier import TextClassifier

    return TextClassifier.load(run_dir / "classifier")


# One fresh interpreter without site processing (-I -S): the venv's site-packages are added by
# hand, so the editable install's .pth finder never runs and `ulmfit` is not importable.
ISOLATED = r'''
import importlib.util, json, sys
sys.path.append(sys.argv[1])
assert importlib.util.find_spec("ulmfit") is None, "ulmfit must not be importable here"
import numpy as np, torch, transformers
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline
clas, lm, inp, out = sys.argv[2:6]
texts = json.load(open(inp))["texts"]
res = {}
tok = AutoTokenizer.from_pretrained(clas, trust_remote_code=True)
res["ids"] = [tok(t)["input_ids"] for t in texts]
model = AutoModelForSequenceClassification.from_pretrained(clas, trust_remote_code=True).eval()
res["id2label"] = {str(k): v for k, v in model.config.id2label.items()}
res["label2id"] = model.config.label2id
pipe = pipeline("text-classification", model=model, tokenizer=tok, top_k=None)
res["pipeline"] = [{d["label"]: d["score"] for d in row} for row in pipe(texts, batch_size=1)]
pipe2 = pipeline("text-classification", model=clas, trust_remote_code=True)
res["pipeline_top1"] = pipe2(texts[:3])
with torch.no_grad():
    for side in ("right", "left"):
        tok.padding_side = side
        b = tok(texts[:16], padding=True, return_tensors="pt")
        res["padded_" + side] = model(**b).logits.softmax(-1).tolist()
    lmodel = AutoModelForCausalLM.from_pretrained(lm, trust_remote_code=True).eval()
    ltok = AutoTokenizer.from_pretrained(lm, trust_remote_code=True)
    ids = ltok(texts[:4], padding=True, return_tensors="pt")["input_ids"]
    res["lm_ids"] = ids.tolist()
    res["lm_logits"] = lmodel(ids).logits.tolist()
res["ulmfit_loaded"] = any(m == "ulmfit" or m.startswith("ulmfit.") for m in sys.modules)
json.dump(res, open(out, "w"))
'''


@pytest.fixture(scope="session")
def isolated(exported, texts, tmp_path_factory):
    d = tmp_path_factory.mktemp("iso")
    (d / "iso.py").write_text(ISOLATED)
    (d / "in.json").write_text(json.dumps({"texts": texts}))
    env = {k: v for k, v in ENV.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["HF_MODULES_CACHE"] = str(d / "hf_modules")  # where transformers copies the remote code
    r = subprocess.run([sys.executable, "-I", "-S", str(d / "iso.py"), sysconfig.get_paths()["purelib"],
                        str(exported["clas"]), str(exported["lm"]), str(d / "in.json"), str(d / "out.json")],
                       cwd=d, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads((d / "out.json").read_text())


# ---- layout and generated code --------------------------------------------------------------------
def test_export_layout(exported, reference):
    d = exported["clas"]
    files = {p.name for p in d.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "configuration_ulmfit.py", "modeling_ulmfit.py", "tokenization_ulmfit.py", "model.onnx"} <= files
    assert not any(p.suffix in (".bin", ".pt", ".pth", ".pkl") for p in d.iterdir())
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model_type"] == "ulmfit" and cfg["architectures"] == ["UlmfitForSequenceClassification"]
    assert cfg["auto_map"]["AutoModelForSequenceClassification"] == "modeling_ulmfit.UlmfitForSequenceClassification"
    assert cfg["auto_map"]["AutoConfig"] == "configuration_ulmfit.UlmfitConfig"
    assert cfg["id2label"] == {str(i): c for i, c in enumerate(reference.classes)}
    tcfg = json.loads((d / "tokenizer_config.json").read_text())
    assert tcfg["auto_map"]["AutoTokenizer"][0] == "tokenization_ulmfit.UlmfitTokenizer"
    lm_cfg = json.loads((exported["lm"] / "config.json").read_text())
    assert lm_cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_ulmfit.UlmfitForCausalLM"
    assert "model.onnx" not in {p.name for p in exported["lm"].iterdir()}


def test_remote_code_is_generated_from_the_package(exported):
    import inspect

    from ulmfit.hub.code import generate_code
    from ulmfit.text.awd_lstm import classifier, dropouts
    from ulmfit.text.awd_lstm import model as awd_lstm
    from ulmfit.text.tokenize import rules, tokenizer

    d = exported["clas"]
    modeling = (d / "modeling_ulmfit.py").read_text()
    tokenization = (d / "tokenization_ulmfit.py").read_text()
    for obj in (dropouts.WeightDrop, awd_lstm.AWDLSTMEncoder, classifier.AWDLSTMClassifier, classifier.align_to_chunks):
        assert inspect.getsource(obj) in modeling
    for obj in (rules.preprocess_batch, rules.wrep_ids, tokenizer.TextTokenizer):
        assert inspect.getsource(obj) in tokenization
    for code in (modeling, tokenization):
        assert not [ln for ln in code.splitlines() if ln.lstrip().startswith(("from ulmfit", "import ulmfit"))]
        compile(code, "generated", "exec")
    gen = generate_code("test")
    assert gen["modeling_ulmfit.py"].split("\n", 3)[3] == modeling.split("\n", 3)[3]


# ---- transformers in a process without ulmfit -----------------------------------------------------
def test_transformers_tokenizer_ids_equal_ulmfit(isolated, reference, texts):
    assert not isolated["ulmfit_loaded"]
    assert isolated["ids"] == reference.tokenizer.encode_batch(texts)


def test_transformers_pipeline_probabilities_equal_ulmfit_predict(isolated, reference, texts):
    classes = reference.classes
    assert isolated["id2label"] == {str(i): c for i, c in enumerate(classes)}
    assert isolated["label2id"] == {c: i for i, c in enumerate(classes)}
    ours = reference.predict_proba(texts)  # what `ulmfit predict` prints
    theirs = np.array([[row[c] for c in classes] for row in isolated["pipeline"]])
    assert theirs.shape == (200, len(classes))
    assert np.abs(theirs - ours).max() < 1e-5
    labels = [r["label"] for r in reference.predict(texts[:3])]
    assert [r[0]["label"] if isinstance(r, list) else r["label"] for r in isolated["pipeline_top1"]] == labels
    for side in ("right", "left"):  # batched and padded on either side: same probabilities
        assert np.abs(np.array(isolated["padded_" + side]) - ours[:16]).max() < 1e-5


def test_transformers_causal_lm_logits_equal_ours(isolated, exported, run_dir):
    from ulmfit.text.awd_lstm.lm_io import load_lm

    model, _ = load_lm(run_dir / "finetune_lm")
    model.eval().reset()
    ids = torch.tensor(isolated["lm_ids"])
    with torch.no_grad():
        ours = model(ids).logits
    assert torch.allclose(torch.tensor(isolated["lm_logits"]), ours, atol=1e-5)


# ---- model card -----------------------------------------------------------------------------------
def test_card_has_metadata_recipe_and_real_metrics(exported, run_dir):
    card = (exported["clas"] / "README.md").read_text()
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    metrics = json.loads((run_dir / "classifier" / "metrics.json").read_text())
    assert meta["library_name"] == "transformers" and "license" in meta
    assert {"ulmfit", "awd-lstm"} <= set(meta["tags"]) and meta["pipeline_tag"] == "text-classification"
    assert "trec6" in meta["datasets"] and "wikitext-2" in meta["datasets"]
    res = meta["model-index"][0]["results"][0]
    values = {m["type"]: m["value"] for m in res["metrics"]}
    assert values["accuracy"] == metrics["test_accuracy"] and values["f1"] == metrics["test_macro_f1"]
    assert res["dataset"]["name"] == "trec6"
    body = card.split("---\n", 2)[2]
    assert f"| Accuracy | {metrics['test_accuracy']:.4f} |" in body and "trec6/test.csv" in body
    clas_cfg = yaml.safe_load((run_dir / "classifier" / "config.yaml").read_text())
    assert f"| learning rate | {clas_cfg['train']['lr']} |" in body
    assert f"| batch size | {clas_cfg['train']['bs']} |" in body
    for title in ("Language-model pretraining", "LM fine-tuning", "Classifier training", "Intended use and limitations",
                  "How to use", "trust_remote_code=True"):
        assert title in body
    pre = json.loads((run_dir / "pretrain" / "metrics.json").read_text())
    assert f"valid_perplexity = {pre['valid_perplexity']:.4f}" in body
    lm_meta = yaml.safe_load((exported["lm"] / "README.md").read_text().split("---\n")[1])
    assert lm_meta["pipeline_tag"] == "text-generation"


# ---- round trip back into ulmfit ------------------------------------------------------------------
def test_round_trip_export_import_predict_identical(exported, reference, texts, monkeypatch):
    from ulmfit.hub import load_exported_classifier
    from ulmfit.phases import load_classifier

    def refuse(*a, **k):
        raise AssertionError("loading an export must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    clf = load_exported_classifier(exported["clas"])
    monkeypatch.undo()  # loaded; prediction's forked processes send their results back pickled
    assert clf.classes == reference.classes and clf.multi_label == reference.multi_label
    assert np.array_equal(clf.predict_proba(texts), reference.predict_proba(texts))
    assert clf.predict(texts[:20], top_k=2) == reference.predict(texts[:20], top_k=2)
    assert type(load_classifier(exported["clas"])) is type(clf)


def test_exported_lm_round_trip_starts_phase_two(exported, run_dir):
    from ulmfit.hub import load_exported_lm
    from ulmfit.text.awd_lstm.lm_io import load_lm, transfer_vocab
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    model, tok = load_exported_lm(exported["lm"])
    ref, _ = load_lm(run_dir / "finetune_lm")
    assert tok.vocab == TextTokenizer.load(run_dir / "finetune_lm").vocab
    a, b = model.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model.decoder.weight is model.encoder.emb.weight  # still tied
    new = transfer_vocab(a, tok.vocab, tok.vocab[:50] + ["brandnewword"])  # what finetune-lm does next
    assert new["encoder.emb.weight"].shape[0] == 51


# ---- ONNX -----------------------------------------------------------------------------------------
def test_onnx_probabilities_match_pytorch(exported, reference, texts):
    pytest.importorskip("onnxruntime")
    from ulmfit.hub.onnx import OnnxPredictor, pad_batch

    pred = OnnxPredictor(exported["clas"] / "model.onnx", reference.tokenizer, threads=1)
    ours = reference.predict_proba(texts)
    assert np.abs(pred.predict_proba(texts, bs=7) - ours).max() < 1e-4
    seqs = reference.encode(texts[:5])  # left padding gives the same answer
    ids, mask = pad_batch(seqs, reference.tokenizer.pad_id)
    shift = [ids.shape[1] - len(s) for s in seqs]
    lids = np.stack([np.roll(r, k) for r, k in zip(ids, shift)])
    lmask = np.stack([np.roll(r, k) for r, k in zip(mask, shift)])
    probs = pred.session.run(["probabilities"], {"input_ids": lids, "attention_mask": lmask})[0]
    assert np.abs(probs - ours[:5]).max() < 1e-4


# ---- tampered files -------------------------------------------------------------------------------
def _copy(exported, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(exported["clas"], d)
    return d


def _rewrite_weights(d, change):
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "model.safetensors"))
    change(state)
    save_file(state, str(d / "model.safetensors"))


def _fails(d, *words):
    from ulmfit.hub import load_exported_classifier

    with pytest.raises(UlmfitError) as e:
        load_exported_classifier(d)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_tampered_wrong_shape(exported, tmp_path):
    d = _copy(exported, tmp_path)
    _rewrite_weights(d, lambda s: s.__setitem__("classifier.head.layers.6.weight", torch.zeros(7, 50)))
    _fails(d, "model.safetensors", "classifier.head.layers.6.weight", "(7, 50)")


def test_tampered_missing_and_unexpected_tensors(exported, tmp_path):
    d = _copy(exported, tmp_path)
    _rewrite_weights(d, lambda s: s.pop("classifier.encoder.rnns.1.module.weight_hh_l0"))
    _fails(d, "model.safetensors", "missing", "rnns.1.module.weight_hh_l0")
    d2 = _copy(exported, tmp_path / "b")
    _rewrite_weights(d2, lambda s: s.__setitem__("classifier.evil", torch.zeros(1)))
    _fails(d2, "model.safetensors", "classifier.evil")


def test_tampered_unknown_model_type_and_corrupt_files(exported, tmp_path):
    d = _copy(exported, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    _fails(d, "config.json", "'bert'")
    d2 = _copy(exported, tmp_path / "b")
    (d2 / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    _fails(d2, "model.safetensors")
    d3 = _copy(exported, tmp_path / "c")
    (d3 / "config.json").write_text("{not json")
    _fails(d3, "config.json")
    d4 = _copy(exported, tmp_path / "d")
    cfg4 = json.loads((d4 / "config.json").read_text())
    cfg4["awd_lstm"]["emb_size"] = 40
    (d4 / "config.json").write_text(json.dumps(cfg4))
    _fails(d4, "model.safetensors", "encoder.emb.weight")
    from ulmfit.hub import load_exported_lm

    with pytest.raises(UlmfitError, match="config.json"):
        load_exported_lm(exported["clas"])  # a classifier is not an LM


def test_export_errors(tmp_path, exported):
    from ulmfit.hub import export_run

    with pytest.raises(UlmfitError, match="holds no trained model"):
        export_run(tmp_path, tmp_path / "out")
    with pytest.raises(UlmfitError, match="does not exist"):
        export_run(tmp_path / "nope", tmp_path / "out")


# ---- push (everything up to the upload call) ------------------------------------------------------
def test_push_calls_upload_folder(exported, monkeypatch):
    import huggingface_hub

    from ulmfit.hub import push

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, **kw):
            calls.append(("create_repo", kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))
            return type("Info", (), {"commit_url": "https://huggingface.co/user/name/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push(exported["clas"], "user/name", token="tok", private=True)
    assert url.endswith("/commit/1")
    assert calls[0] == ("init", "tok")
    assert calls[1][1]["repo_id"] == "user/name" and calls[1][1]["private"] is True
    assert calls[2][1]["folder_path"] == str(exported["clas"]) and calls[2][1]["repo_id"] == "user/name"
    with pytest.raises(UlmfitError, match="user/name"):
        push(exported["clas"], "no-slash")
    with pytest.raises(UlmfitError, match="config.json"):
        push(exported["clas"].parent, "user/name")
