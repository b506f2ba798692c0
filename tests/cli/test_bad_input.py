"""Bad input through the real CLI (issue #24): every case ends with exit 2 (130 for Ctrl-C), one line
on stderr (usage errors: typer's own short message), no traceback, and a good output folder that
was there before is byte-for-byte unchanged afterwards."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import DATA, ENV, ROOT, ulmfit

TREC = str(DATA / "trec6" / "train.csv")
# a random-encoder classifier small enough to train in seconds
SMALL = ["--set", "data.max_items=300", "--set", "train.bs=16", "--set", "train.bptt=24",
         "--set", "model.emb_size=32", "--set", "model.n_hid=48", "--set", "model.n_layers=2",
         "--set", "train.max_steps_per_epoch=4", "--set", "data.cache=false"]


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good(tiny_run, tmp_path_factory):
    """A finished classifier, its export, and files for the cases."""
    out, _ = tiny_run
    root = tmp_path_factory.mktemp("bad-input")
    clf = root / "clf"
    shutil.copytree(out / "classifier", clf)
    ulmfit("export", str(clf), "--out", str(root / "export"))
    (root / "afile").write_text("not a folder\n")
    (root / "nan.csv").write_text("text,label\nhow far is it ?,NUM\nwho is he ?,NaN\nwhat is it ?,DESC\n")
    import torch

    import numpy as np

    torch.save({"0.encoder.weight": torch.zeros(3, 2), "extra": np.arange(3)}, root / "lm.pth")
    (root / "vocab.pkl").write_bytes(b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x01a\x94e.")
    return root


def _broken_export(good: Path, name: str, **changes) -> Path:
    d = good / name
    if not d.exists():
        shutil.copytree(good / "export", d)
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, **changes}))
    return d


CASES = [  # id, args (G = the good fixture folder), what stderr says
    # held before #24
    ("unknown-key", ["pretrain", "--set", "train.epoch=3", "-o", "G/clf"], "did you mean 'epochs'"),
    ("wrong-type", ["pretrain", "--set", "train.bs=many", "-o", "G/clf"], "must be an integer"),
    ("missing-train-file", ["train-classifier", "--set", "data.train=/nope.csv", "-o", "G/clf", "--force"],
     "/nope.csv"),
    ("missing-column", ["train-classifier", "--set", f"data.train={TREC}", "--set", "data.text_cols=body",
                        "-o", "G/clf", "--force"], "no column 'body'"),
    ("missing-model", ["predict", "/nope-model", "hello"], "does not exist"),
    ("empty-predict", ["predict", "G/clf", ""], "no texts to classify"),
    ("bad-strategy", ["train-classifier", "--set", "train.strategy=gradul", "-o", "G/clf", "--force"],
     "did you mean 'gradual'"),
    ("config-missing", ["pretrain", "--config", "/nope.yaml"], "does not exist"),
    # numeric ranges, checked when the config is read
    ("bptt-0", ["finetune-lm", "-c", "configs/cpu-small.yaml", "--set", "train.bptt=0", "-o", "G/clf"],
     "'train.bptt' must be at least 1, got 0"),
    ("bs-0", ["train-classifier", "-c", "configs/cpu-small.yaml", "--set", "train.bs=0", "-o", "G/clf"],
     "'train.bs' must be at least 1"),
    ("bs-negative", ["train-classifier", "-c", "configs/cpu-small.yaml", "--set", "train.bs=-4", "-o", "G/clf"],
     "'train.bs' must be at least 1, got -4"),
    ("min-freq", ["pretrain", "--set", "tokenizer.min_freq=-1", "-o", "G/clf"], "'tokenizer.min_freq' must be"),
    ("clip-negative", ["train-classifier", "-c", "configs/cpu-small.yaml", "--set", "train.clip=-1", "-o", "G/clf"],
     "'train.clip' must be above 0"),
    ("max-len-0", ["train-classifier", "-c", "configs/cpu-small.yaml", "--set", "max_len=0", "-o", "G/clf"],
     "'max_len' must be at least 1"),
    ("export-bptt-0", ["predict", "EXPORT:bptt=0", "hello"], "bptt must be a positive integer, got 0"),
    ("export-max-len", ["predict", "EXPORT:max_len=-5", "hello"], "max_len must be a positive integer, got -5"),
    ("predict-precision", ["predict", "G/clf", "hello", "--precision", "fp8"], "--precision must be one of"),
    ("clf-max-tokens-0", ["train-classifier", "-c", "configs/cpu-small.yaml", "--set", "max_tokens=0", "-o", "G/c2"],
     "'max_tokens' must be at least 1"),
    # output folders checked before any work
    ("out-is-a-file", ["train-classifier", "-c", "configs/cpu-small.yaml", "-o", "G/afile"], "is an existing file"),
    ("export-out-file", ["export", "G/clf", "--out", "G/afile"], "is an existing file"),
    ("evaluate-out-file", ["evaluate", "G/clf", str(DATA / "trec6" / "test.csv"), "--out", "G/afile"],
     "is an existing file"),
    ("run-out-file", ["run", "configs/cpu-small.yaml", "--out", "G/afile"], "G/afile"),
    # unsafe or wrong files
    ("pth-with-code", ["finetune-lm", "-c", "configs/cpu-small.yaml", "--pretrained", "G/lm.pth",
                       "--set", "pretrained_vocab=G/vocab.pkl", "-o", "G/clf", "--force"], "could run code"),
    ("nan-label", ["train-classifier", "--set", "data.train=G/nan.csv", "-o", "G/clf", "--force"], "have no label"),
    # a finished folder is replaced only on purpose, and only by a run that finishes
    ("finished-no-force", ["train-classifier", "-c", "configs/cpu-small.yaml", "-o", "G/clf"],
     "holds a finished run; pass --force to replace it"),
    ("resume-finished", ["train-classifier", "-c", "configs/cpu-small.yaml", "-o", "G/clf", "--resume"],
     "holds a finished run: there is nothing to resume"),
]
USAGE = [  # usage errors: exit 2 with typer's message, whatever typer release pip installed
    ("unknown-option", ["predict", "G/clf", "--text", "hi"], "No such option: --text"),
    ("predict-bs-0", ["predict", "G/clf", "hi", "--bs", "0"], "--bs"),
    ("missing-argument", ["evaluate", "G/clf"], "Missing argument"),
]


def _args(args, good: Path) -> list[str]:
    out = []
    for a in args:
        if a.startswith("EXPORT:"):
            k, v = a[len("EXPORT:"):].split("=")
            a = str(_broken_export(good, f"export-{k}", **{k: int(v)}))
        out.append(a.replace("G/", f"{good}/"))
    return out


@pytest.mark.parametrize("case,args,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(good, case, args, needle):
    before = _digest(good / "clf")
    r = ulmfit(*_args(args, good), check=False)
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert needle.replace("G/", f"{good}/") in lines[0]
    assert _digest(good / "clf") == before


@pytest.mark.parametrize("case,args,needle", USAGE, ids=[c[0] for c in USAGE])
def test_usage_errors_exit_2(good, case, args, needle):
    r = ulmfit(*_args(args, good), check=False)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) <= 5


def test_predict_keeps_one_output_line_per_input_line(good):
    f = good / "lines.txt"
    f.write_text("How far is the moon ?\n\nWho wrote Hamlet ?\n")
    rows = [json.loads(x) for x in ulmfit("predict", str(good / "clf"), "--file", str(f)).stdout.splitlines()]
    assert [r["text"] for r in rows] == ["How far is the moon ?", "", "Who wrote Hamlet ?"]
    assert rows[1]["label"] is None and rows[0]["label"] and rows[2]["label"]
    stdin = ulmfit("predict", str(good / "clf"), input="a question ?\n\n").stdout.splitlines()
    assert len(stdin) == 2


def test_written_files_get_the_usual_mode(good):
    mode = (good / "export" / "config.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _train(out: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "cli.main", "train-classifier", "--set", f"data.train={TREC}", *SMALL,
            "--set", "train.epochs=[1, 1, 1, 5]", "-o", str(out), *extra]
    # a shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT: give the
    # child the default action so it installs its Ctrl-C handler however the tests were launched
    return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_exits_130_keeps_the_checkpoint_and_resumes_to_the_same_weights(tmp_path):
    ref = _train(tmp_path / "ref", "--quiet")
    assert ref.wait(timeout=600) == 0, ref.stderr.read()
    out = tmp_path / "run"
    p = _train(out, "--quiet")
    deadline = time.time() + 300
    while not (tmp_path / "run.partial" / "checkpoints" / "ckpt-2").exists() and p.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be interrupted"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert p.returncode == 130 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith("interrupted at epoch") and lines[0].endswith("resume with --resume")
    assert (tmp_path / "run.partial" / "checkpoints").is_dir() and not out.exists()
    resumed = _train(out, "--quiet", "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "ref" / "model.safetensors").read_bytes()
    assert not (tmp_path / "run.partial").exists()


def test_force_replaces_a_finished_run_only_when_the_new_one_finishes(tmp_path):
    import yaml

    out = tmp_path / "clf"
    assert _train(out, "--quiet").wait(timeout=600) == 0
    first = (out / "model.safetensors").read_bytes()
    again = _train(out, "--quiet", "--force", "--set", "train.seed=7")
    assert again.wait(timeout=600) == 0, again.stderr.read()
    assert (out / "model.safetensors").read_bytes() != first and not (tmp_path / "clf.partial").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["out"] == str(out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))  # no rows of the replaced run


def _poison(weights: Path, tensor_suffix: str) -> None:
    """Overwrite the first value of a float32 tensor in a safetensors file with NaN, in place."""
    raw = bytearray(weights.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    name = next(k for k, v in header.items() if k.endswith(tensor_suffix) and v.get("dtype") == "F32")
    start = 8 + n + header[name]["data_offsets"][0]
    raw[start:start + 4] = b"\x00\x00\xc0\x7f"  # float32 NaN
    weights.write_bytes(bytes(raw))


def test_changed_weights_and_vocabulary_are_refused(good, tmp_path):
    """Each run records the sha256 of its weights and tokenizer in run.json: flipped bytes or a
    swapped same-size vocabulary end in one line; --no-verify loads a hand-edited file, and weights
    holding NaN are refused even then."""
    clf = tmp_path / "clf"
    shutil.copytree(good / "clf", clf)
    _poison(clf / "model.safetensors", "head.layers.2.weight")
    r = ulmfit("predict", str(clf), "hello", check=False)
    assert r.returncode == 2 and "changed since it was written" in r.stderr and len(r.stderr.splitlines()) == 1
    r = ulmfit("predict", str(clf), "hello", "--no-verify", check=False)
    assert r.returncode == 2 and "NaN or inf" in r.stderr and "Traceback" not in r.stderr
    vocab = tmp_path / "vocab"
    shutil.copytree(good / "clf", vocab)
    tok = json.loads((vocab / "tokenizer.json").read_text())
    v = tok["model"]["vocab"]
    words = sorted(v, key=v.get)
    words[-1], words[-2] = words[-2], words[-1]  # same size, two ids swapped
    tok["model"]["vocab"] = {w: i for i, w in enumerate(words)}
    (vocab / "tokenizer.json").write_text(json.dumps(tok))
    r = ulmfit("evaluate", str(vocab), str(DATA / "trec6" / "test.csv"), check=False)
    assert r.returncode == 2 and "tokenizer.json changed since it was written" in r.stderr


def test_generate_with_a_mismatched_vocabulary_is_one_line(tiny_run, tmp_path):
    out, _ = tiny_run
    lm = tmp_path / "lm"
    shutil.copytree(out / "finetune_lm", lm)
    shutil.copy(out / "pretrain" / "tokenizer.json", lm / "tokenizer.json")  # another LM's vocabulary
    r = ulmfit("generate", str(lm), "What is", check=False)
    assert r.returncode == 2 and "changed since it was written" in r.stderr and "Traceback" not in r.stderr
    (lm / "run.json").unlink()  # an old folder without a manifest: the sizes still disagree
    r = ulmfit("generate", str(lm), "What is", check=False)
    assert r.returncode == 2 and "does not belong to these weights" in r.stderr and "Traceback" not in r.stderr


def test_a_5mb_document_reads_only_its_last_max_tokens(good):
    """Issue #24 item 8: one 5 MB row took minutes; the classifier reads its last max_tokens tokens
    (whole chunks), so evaluate and predict answer like for that tail alone."""
    words = "the film was long and the plot went on and on".split()
    tail = "who wrote this very last question ?"
    huge = " ".join(words[i % len(words)] for i in range(1_200_000)) + " " + tail  # ~5 MB
    f = good / "huge.csv"
    f.write_text(f'text,label\n"{huge}",DESC\nwhat is it ?,DESC\n')
    assert f.stat().st_size > 4_500_000
    metrics = json.loads(ulmfit("evaluate", str(good / "clf"), str(f)).stdout)
    assert "test_accuracy" in metrics
    cfg = json.loads((good / "clf" / "classifier_config.json").read_text())
    n = cfg["max_tokens"]
    assert n == (-(-cfg["max_len"] // cfg["bptt"]) + 10) * cfg["bptt"]  # max_len + 10 chunks
    # the probabilities of a text made of the last tokens alone (xxbos + the words after the cut,
    # as many tokens as the classifier keeps of the huge one): nothing before them was read
    n_tokens = len(huge.split()) + 1  # one token per word here, plus xxbos
    drop = -(-(n_tokens - n) // cfg["bptt"]) * cfg["bptt"]
    kept = " ".join(huge.split()[drop:])
    lines = good / "huge_and_tail.txt"
    lines.write_text(huge + "\n" + kept + "\n")
    # fp32: the exact model (bf16 / int8 kernels need not give two rows of a batch the same digits)
    a, b = [json.loads(x) for x in ulmfit("predict", str(good / "clf"), "--file", str(lines), "--top-k", "6",
                                          "--precision", "fp32").stdout.splitlines()]
    assert [k["label"] for k in a["top_k"]] == [k["label"] for k in b["top_k"]]
    assert all(abs(x["probability"] - y["probability"]) < 1e-5 for x, y in zip(a["top_k"], b["top_k"]))
