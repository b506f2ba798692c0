"""Checkpoints: weights in safetensors, training state in a weights-only torch file, written atomically.

A checkpoint is a folder `ckpt-<epoch>` (after that many epochs) or `ckpt-<epoch>-<step>` (``step``
optimizer steps into the next one) holding `model.safetensors` and `state.pt`. It is written
under a temporary name and renamed into place, then the `latest` pointer file is replaced
atomically, so a kill at any moment leaves either the old checkpoint or the new one, never a
half-written file that looks valid. Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from ulmfit.core.seed import rng_state
from ulmfit.errors import UlmfitError


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` then rename tmp over `path` (same folder, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _tied_groups(state: dict[str, torch.Tensor]) -> list[list[str]]:
    """State-dict names grouped by the tensor they name: tied weights (the LM decoder and the
    embedding) form one group, every other name a group of its own. Views of one buffer that are
    not the same tensor (cuDNN keeps an LSTM's weights as slices of one flat buffer on CUDA) stay
    apart, which safetensors' own save_model/load_model refuse."""
    groups: dict[tuple, list[str]] = {}
    for name, t in state.items():
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) if t.numel() else (name,)
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def weights_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state as separate CPU tensors, each tied group stored once (its first name)."""
    state = model.state_dict()
    return {g[0]: state[g[0]].detach().to("cpu", copy=True).contiguous() for g in _tied_groups(state)}


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Model weights to safetensors (tied tensors stored once), atomically."""
    state = weights_state(model)
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))


def load_weights(model: torch.nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load `path` into `model` (any device); a tied group loads from whichever of its names the
    file holds. With `strict`, a missing or unexpected name is an error."""
    path = Path(path)
    if not path.exists():
        raise UlmfitError(f"weights file {path} does not exist")
    try:
        saved = load_file(str(path))
    except Exception as e:  # not a safetensors file, or a truncated one
        raise UlmfitError(f"cannot read weights {path}: {e}") from None
    state = model.state_dict()
    full, missing = {}, []
    for group in _tied_groups(state):
        src = next((n for n in group if n in saved), None)
        if src is None:
            missing += group
        else:
            full.update((n, saved[src]) for n in group)
    unexpected = sorted(set(saved) - set(state))
    if strict and (missing or unexpected):
        raise UlmfitError(
            f"weights in {path} do not match the model: missing {sorted(missing)[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    bad = [f"{n} {tuple(t.shape)} vs {tuple(state[n].shape)}" for n, t in full.items() if t.shape != state[n].shape]
    if bad:
        raise UlmfitError(f"weights in {path} do not match the model's shapes: {bad[:3]}")
    model.load_state_dict(full, strict=False)


def _ckpt_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in path.name[5:].split("-"))


def save_checkpoint(root: str | Path, epoch: int, model: torch.nn.Module, state: dict, keep: int = 1,
                    step: int = 0) -> Path:
    """Write checkpoint `epoch` (`step` steps into the next epoch, when not 0) under `root` and point
    `root/latest` at it; keep the newest `keep`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{epoch}-{step}" if step else f"ckpt-{epoch}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_file(weights_state(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        torch.save(state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", final.name)
    ckpts = sorted((p for p in root.glob("ckpt-*") if p.is_dir() and re.fullmatch(r"ckpt-\d+(-\d+)?", p.name)),
                   key=_ckpt_key)
    for old in ckpts[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".ckpt-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    pointer = Path(root) / "latest"
    if not pointer.exists():
        return None
    path = Path(root) / pointer.read_text(encoding="utf-8").strip()
    return path if (path / "state.pt").exists() and (path / "model.safetensors").exists() else None


def load_error_text(e: Exception) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refused (torch's own text runs to
    several lines and advises turning the safety off)."""
    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"it holds a pickled {m.group(1)}, which could run code when loaded; only plain tensors are read"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(e).__name__)
    return first[:200]


def load_torch_state(path: str | Path, what: str = "weights file") -> dict:
    """A ``.pth``/``.pt`` state dict read with ``weights_only=True`` (no code runs); a file that is
    missing, refused or not a dict is one UlmfitError. A ``{"state_dict": ...}`` wrapper is opened."""
    path = Path(path)
    if not path.is_file():
        raise UlmfitError(f"{what} {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's own unpickling errors
        raise UlmfitError(f"refused {what} {path}: {load_error_text(e)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UlmfitError(f"{what} {path} does not hold a state dict")
    return state


def load_checkpoint(path: str | Path, model: torch.nn.Module) -> dict:
    """Load weights into `model` and return the training state (weights_only: no code runs)."""
    path = Path(path)
    load_weights(model, path / "model.safetensors")
    try:
        return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupted or foreign file
        raise UlmfitError(f"cannot read training state {path / 'state.pt'}: {load_error_text(e)}") from None


def save_training_state(out_dir: Path, epoch: int, model, optimizer, history: list[dict], best, bad_epochs: int,
                        partial: dict | None = None, ranks: list[dict] | None = None) -> Path:
    """The resumable state after ``epoch``: weights, optimizer, RNGs, history, early-stopping state.
    Inside an epoch, ``partial`` holds the next epoch's progress: ``step`` (optimizer steps done) and
    the sums its row is made of (floats only). ``ranks``: each process's own ``rng`` states and
    ``carry`` (the tensors its model carries between batches), where they are not only this one's."""
    state = {"epoch": epoch, "optimizer": optimizer.state_dict(), "rng": rng_state(),
             "history": json.dumps(history), "best": best, "bad_epochs": bad_epochs}
    if partial:
        state["partial"] = json.dumps(partial)
    if ranks:
        state["ranks"] = ranks
    step = int(partial["step"]) if partial else 0
    return save_checkpoint(Path(out_dir) / "checkpoints", epoch, model, state, step=step)


def load_training_state(out_dir: Path, model, optimizer) -> dict | None:
    """Load the weights and optimizer of the latest state saved by :func:`save_training_state` and
    return the rest (None when there is none); the RNG states come back as ``rng`` / ``ranks``, for the
    caller to restore each process's own."""
    path = latest_checkpoint(Path(out_dir) / "checkpoints")
    if path is None:
        return None
    state = load_checkpoint(path, model)
    optimizer.load_state_dict(state["optimizer"])
    partial = json.loads(state["partial"]) if state.get("partial") else None
    return {"epoch": int(state["epoch"]), "history": json.loads(state["history"]), "best": state.get("best"),
            "bad_epochs": int(state.get("bad_epochs", 0)), "path": path, "partial": partial, "rng": state["rng"],
            "ranks": state.get("ranks")}


def append_metrics(out_dir: Path, row: dict, history: list[dict]) -> None:
    """Append an epoch's row to metrics.jsonl and rewrite metrics.csv from the whole history."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    keys = list(dict.fromkeys(k for r in history for k in r))
    with open(out_dir / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
