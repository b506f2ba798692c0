"""Precomputed activations: run the frozen body once, cache its pooled features, train the head on them.

fastai v0.7's `precompute=True` (Howard, fast.ai course 2018, lesson 1): while the body is frozen and
no augmentation is used, the body's output for an image never changes, so it is computed once and
the head trains on the cache, an epoch taking a fraction of a second. The cache is the parameter-free
concat pooling of the body's last feature map (`VisionModel.features`), so it feeds exactly the head
the live body would. Features are computed with the body in eval mode (BatchNorm running stats).

A cache file (safetensors) records a key: the architecture, fingerprints of the images (in order), the
labels and the body's weights, and the transform, so a stale cache is recomputed, never reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from ulmfit.errors import UlmfitError
from ulmfit.vision.backbone import VisionModel
from ulmfit.vision.data import ImageSet


def body_fingerprint(model: VisionModel) -> str:
    """A hash of the body's weights and buffers (cheap: a few sums per tensor)."""
    h = hashlib.sha256()
    for name, t in model.body.state_dict().items():
        t = t.detach().float()
        h.update(name.encode())
        h.update(repr((tuple(t.shape), round(t.sum().item(), 5), round(t.abs().sum().item(), 5))).encode())
    return h.hexdigest()[:16]


def images_fingerprint(images: ImageSet) -> str:
    """A hash of the labels and the images: their bytes in memory, or each file's path, size and mtime."""
    h = hashlib.sha256(images.labels.numpy().tobytes())
    if isinstance(images.images, torch.Tensor):
        h.update(images.images.contiguous().numpy().tobytes())
    else:
        for p in images.images:
            st = Path(p).stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def compute_features(model: VisionModel, images: ImageSet, transform, batch_size: int = 128,
                     device: str | torch.device | None = None) -> torch.Tensor:
    """Pooled body features (N, 2 * n_features) of every image, in order, body in eval mode."""
    device = torch.device(device) if device else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for x, _ in DataLoader(images.dataset(transform), batch_size=batch_size, shuffle=False):
        out.append(model.features(x.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def precompute(model: VisionModel, images: ImageSet, transform, cache_file: str | Path | None = None,
               batch_size: int = 128, extra_key: str = "") -> TensorDataset:
    """A TensorDataset of (features, label), read from `cache_file` when its key matches, else computed
    (and written there). `extra_key` should describe the transform (e.g. the AugmentConfig)."""
    from safetensors.torch import load_file, save_file

    key = json.dumps({"arch": model.config.get("arch"), "n": len(images), "images": images_fingerprint(images),
                      "body": body_fingerprint(model), "transform": extra_key}, sort_keys=True)
    path = Path(cache_file) if cache_file else None
    if path is not None and path.exists():
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                same = (f.metadata() or {}).get("key") == key
            if same:
                t = load_file(str(path))
                return TensorDataset(t["features"], t["labels"])
        except Exception as e:  # unreadable cache: recompute below, but tell the user why
            print(f"warning: ignoring unreadable feature cache {path}: {e}")
    feats = compute_features(model, images, transform, batch_size)
    labels = images.labels.clone()
    if path is not None:
        from ulmfit.core.checkpoint import atomic_write

        try:
            atomic_write(path, lambda tmp: save_file({"features": feats.contiguous(), "labels": labels},
                                                     tmp, metadata={"key": key}))
        except OSError as e:
            raise UlmfitError(f"cannot write the feature cache {path}: {e}") from None
    return TensorDataset(feats, labels)
