"""Where a model runs: ``auto`` picks the GPU when torch sees one, else the CPU."""

from __future__ import annotations

import torch

from ulmfit.errors import UlmfitError


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None): the first GPU when torch sees one, else the CPU; ``cpu``, ``cuda``,
    ``cuda:N`` as given, with a clear error when that device is not here."""
    name = (device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UlmfitError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UlmfitError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UlmfitError(f"device {device!r} is not available here ({torch.cuda.device_count()} CUDA GPUs); "
                          "use --device cpu")
    return dev
