"""AWD-LSTM language-model training throughput (BENCHMARKS.md, "LM training throughput").

Prints one JSON object per measurement. Each measurement runs in its own child process so its
peak RSS is its own. A training step is: forward with fastai's LM dropouts, cross-entropy +
AR/TAR, backward, Adam step, on batch 64 x seq_len 72 windows of WikiText-2 train, vocabulary
from whitespace tokens of WikiText-2 train at min_freq 3 plus the 9 special tokens.

Implementations (``--impls``):
  ulmfit         our model, decoder + cross-entropy fused and chunked (``model(ids, targets)``)
  ulmfit-lstm32  as ulmfit, but the LSTMs stay fp32 under bf16 autocast (``lstm_autocast=False``)
  ulmfit-logits  our model, full logits then F.cross_entropy (what ``model(ids)`` gives)
  ulmfit-nowd    as ulmfit with weight dropout off (weight_p 0): the LSTM kernel on its own weights,
                 the reference for what weight dropout costs
  fastai         fastai's own model, loss (+ RNNRegularizer's AR/TAR) and Adam (fastai==2.8.12
                 installed in the same environment): the peer, side by side in one run
  fastai-style   a re-implementation of fastai's technique, for machines without fastai:
                 weight dropout by re-assigning the LSTM's weight attribute each forward,
                 embedding dropout by masking a full copy of the embedding matrix, full logits.

Devices (``--device``): ``cpu`` (the default; BENCHMARKS.md's 2 threads) or ``cuda`` (the first
GPU; steps timed after a synchronize, peak GPU memory reported, the matmul reference is 8192^3).

Usage: python scripts/bench_lm.py [--configs small,paper] [--dtypes fp32,bf16]
       [--impls ulmfit,fastai-style] [--steps 20] [--warmup 3] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ULMFIT_DATA", ROOT.parent / "shared" / "data")) / "wikitext-2" / "train.txt"
SPECIALS = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]
BS, SEQ = 64, 72


def cpu_info() -> dict:
    model, flags = platform.processor(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.*)", text)
        model = m.group(1).strip() if m else model
        f = re.search(r"flags\s*:\s*(.*)", text)
        have = set(f.group(1).split()) if f else set()
        flags = sorted(x for x in have if x.startswith(("avx512", "amx")) or x in ("avx2", "fma"))
    except OSError:
        pass
    return {"cpu_model": model, "nproc": os.cpu_count(), "cpu_flags": flags,
            "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def build_stream(path: Path, min_freq: int = 3):
    """Whitespace-split WikiText-2 train; ids with the 9 specials first (fastai order)."""
    import numpy as np

    words = path.read_text(encoding="utf-8").split()
    counts = Counter(words)
    itos = SPECIALS + sorted(w for w, c in counts.items() if c >= min_freq and w not in SPECIALS)
    stoi = {w: i for i, w in enumerate(itos)}
    ids = np.fromiter((stoi.get(w, 0) for w in words), dtype=np.int64, count=len(words))
    return ids, len(itos)


def fastai_style_model(vocab_size: int, preset: str):
    """fastai's weight/embedding dropout technique around our module layout (reference only)."""
    import torch.nn.functional as F
    from torch import nn

    from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMLanguageModel
    from ulmfit.text.awd_lstm.dropouts import dropout_mask

    class SetattrWeightDrop(nn.Module):
        def __init__(self, lstm: nn.LSTM, p: float):
            super().__init__()
            self.module, self.weight_p = lstm, p
            w = lstm.weight_hh_l0
            del lstm._parameters["weight_hh_l0"]
            self.weight_hh_l0_raw = nn.Parameter(w.data)
            setattr(lstm, "weight_hh_l0", w.data.clone())
            lstm.flatten_parameters = lambda: None

        def forward(self, x, hx):
            w = F.dropout(self.weight_hh_l0_raw, self.weight_p, self.training)
            setattr(self.module, "weight_hh_l0", w)
            return self.module(x, hx)

    class FullMatrixEmbDrop(nn.Module):
        def __init__(self, emb, p):
            super().__init__()
            self.emb, self.p = emb, p

        def forward(self, ids):
            w = self.emb.weight
            if self.training and self.p:
                w = w * dropout_mask(w.detach(), (w.size(0), 1), self.p)
            return F.embedding(ids, w, self.emb.padding_idx)

    cfg = AWDLSTMConfig.preset(preset, vocab_size)
    model = AWDLSTMLanguageModel(cfg)
    enc = model.encoder
    enc.rnns = nn.ModuleList(SetattrWeightDrop(r.module, r.weight_p) for r in enc.rnns)
    enc.emb_dp = FullMatrixEmbDrop(enc.emb, cfg.dropout("embed"))
    return model, cfg


def fastai_model(vocab_size: int, preset: str):
    """fastai's own AWD-LSTM language model (``get_language_model(AWD_LSTM, ...)``, fastai's LM
    dropouts), sized as our preset; needs fastai installed (e.g. fastai==2.8.12)."""
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config
    from fastai.text.models.core import get_language_model

    from ulmfit.text.awd_lstm.model import AWDLSTMConfig

    cfg = AWDLSTMConfig.preset(preset, vocab_size)
    conf = dict(awd_lstm_lm_config, emb_sz=cfg.emb_size, n_hid=cfg.n_hid, n_layers=cfg.n_layers)
    return get_language_model(AWD_LSTM, vocab_size, config=conf), cfg


def fastai_loss(out, y, alpha: float = 2.0, beta: float = 1.0):
    """fastai's LM loss: flattened cross-entropy, plus its RNNRegularizer (AR on the last layer's
    dropped output, TAR on its raw output)."""
    import torch.nn.functional as F

    logits, raw, dropped = out
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
    return loss + alpha * dropped[-1].float().pow(2).mean() + \
        beta * (raw[-1][:, 1:] - raw[-1][:, :-1]).float().pow(2).mean()


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(dtype, device: str = "cpu") -> tuple[int, float]:
    """(size, GFLOP/s) of a square matmul: 2048 on CPU, 8192 on a GPU."""
    import torch

    size = 8192 if device == "cuda" else 2048
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    a @ b
    times = []
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return size, 2 * size**3 / statistics.median(times) / 1e9


def step_flops(cfg) -> float:
    """Forward+backward FLOPs of one batch: 3x the forward matmuls (LSTM gates + decoder)."""
    sizes = [cfg.emb_size] + [cfg.n_hid] * (cfg.n_layers - 1) + [cfg.emb_size]
    per_tok = sum(2 * 4 * sizes[i + 1] * (sizes[i] + sizes[i + 1]) for i in range(cfg.n_layers))
    per_tok += 2 * cfg.emb_size * cfg.vocab_size
    return 3.0 * per_tok * BS * SEQ


def device_info(device: str) -> dict:
    import torch

    if device != "cuda":
        return cpu_info()
    return {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def measure(preset: str, dtype: str, impl: str, steps: int, warmup: int, threads: int = 2,
            device: str = "cpu") -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(42)
    from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMLanguageModel, lm_loss

    ids, vocab_size = build_stream(DATA)
    n = len(ids) // BS
    streams = torch.from_numpy(ids[: n * BS].reshape(BS, n)).to(device)
    if impl == "fastai":
        model, cfg = fastai_model(vocab_size, preset)
    elif impl == "fastai-style":
        model, cfg = fastai_style_model(vocab_size, preset)
    else:
        extra = {"weight_p": 0.0} if impl == "ulmfit-nowd" else {}
        cfg = AWDLSTMConfig.preset(preset, vocab_size, lstm_autocast=impl != "ulmfit-lstm32", **extra)
        model = AWDLSTMLanguageModel(cfg)
    model.to(device).train()
    if impl == "fastai":  # fastai's own optimizer (its Adam, as `Learner` builds it)
        from fastai.optimizer import Adam as FastaiAdam

        opt = FastaiAdam(list(model.parameters()), lr=1e-3, mom=0.8, sqr_mom=0.99, wd=0.01)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.99))
    bf16 = dtype == "bf16"
    fused = impl in ("ulmfit", "ulmfit-lstm32", "ulmfit-nowd")
    times = []
    for i in range(warmup + steps):
        s = (i * SEQ) % (n - SEQ - 1)
        x, y = streams[:, s:s + SEQ], streams[:, s + 1:s + SEQ + 1]
        sync(device)
        t = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out = model(x, y) if fused else model(x)
            loss = fastai_loss(out, y) if impl == "fastai" else lm_loss(out, y, alpha=2.0, beta=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    info = device_info(device)  # before the matmul reference: peak GPU memory of the steps alone
    ref_size, ref = matmul_gflops(torch.bfloat16 if bf16 else torch.float32, device)
    achieved = step_flops(cfg) / med / 1e9
    return {
        "bench": "lm_train_step", "config": preset, "impl": impl, "dtype": "bf16 autocast" if bf16 else "fp32",
        "vocab_size": vocab_size, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "batch": BS, "seq_len": SEQ, "steps": steps, "warmup": warmup,
        "tokens_per_second": round(BS * SEQ / med, 1), "median_step_seconds": round(med, 4),
        "min_step_seconds": round(min(times), 4), "max_step_seconds": round(max(times), 4),
        "final_loss": round(float(loss), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "achieved_gflops": round(achieved, 1), f"matmul_{ref_size}_gflops": round(ref, 1),
        "ratio_to_matmul": round(achieved / ref, 3), "device": device,
        "torch": torch.__version__, "threads": torch.get_num_threads(), **info,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="small,paper")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--impls", default="ulmfit,fastai-style")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (BENCHMARKS.md: 2)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--child", nargs=3, metavar=("CONFIG", "DTYPE", "IMPL"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure(*a.child, steps=a.steps, warmup=a.warmup, threads=a.threads,
                                        device=a.device)), flush=True)
        return
    for preset in a.configs.split(","):
        for dtype in a.dtypes.split(","):
            for impl in a.impls.split(","):
                cmd = [sys.executable, __file__, "--child", preset, dtype, impl,
                       "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads), "--device", a.device]
                if impl == "ulmfit-lstm32" and dtype == "fp32":
                    continue  # same as ulmfit
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    print(json.dumps({"config": preset, "dtype": dtype, "impl": impl,
                                      "error": r.stderr.strip().splitlines()[-1:]}), flush=True)
                else:
                    print(r.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
