"""A torchvision CNN split into layer groups, with a new concat-pooling head.

The body is any torchvision classification model with its classifier cut off; the head follows
fastai's `create_head` (Howard & Gugger 2020, fastai v1/v2 vision learner): adaptive concat pooling
(average and max side by side), then BN, dropout, Linear, ReLU, BN, dropout, Linear(n_classes).

Layer groups, bottom -> top: the stem, each stage of the body, the head. Weights come from
nowhere (random), a local torchvision state-dict file (read with `weights_only=True`, so loading
runs no code), or a saved ulmfit vision run (safetensors); nothing is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ulmfit.core import LayerGroups
from ulmfit.core.checkpoint import load_torch_state
from ulmfit.errors import UlmfitError

CONFIG_NAME = "vision_model.json"
WEIGHTS_NAME = "model.safetensors"


class AdaptiveConcatPool2d(nn.Module):
    """[adaptive max pool, adaptive average pool] concatenated on channels, then flattened."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


def concat_pool_head(n_features: int, n_classes: int, hidden: int = 512, dropout: float = 0.5) -> nn.Sequential:
    """fastai's head on pooled features (2 * n_features): the first dropout is half the last."""
    return nn.Sequential(
        nn.BatchNorm1d(2 * n_features), nn.Dropout(dropout / 2), nn.Linear(2 * n_features, hidden),
        nn.ReLU(inplace=True), nn.BatchNorm1d(hidden), nn.Dropout(dropout), nn.Linear(hidden, n_classes),
    )


class VisionModel(nn.Module):
    """body (image -> feature map) -> pool (parameter-free) -> head (pooled features -> logits).

    `features(x)` is what precomputed activations cache: the pool has no parameters, so the cached
    pooled features train exactly the same head as the live body would feed it.
    """

    def __init__(self, body: nn.Sequential, head: nn.Sequential, config: dict):
        super().__init__()
        self.body = body
        self.pool = AdaptiveConcatPool2d()
        self.head = head
        self.config = dict(config)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def group_modules(self) -> list:
        """Layer groups bottom -> top: the body's groups, then the head."""
        return [*self.body, self.head]

    def layer_groups(self, train_bn: bool = True) -> LayerGroups:
        """The core's LayerGroups; `train_bn` keeps BatchNorm trainable in frozen groups."""
        return LayerGroups(self, self.group_modules(), train_norm=train_bn)

    def freeze_bn_stats(self, trainable_groups) -> None:
        """Put BatchNorm layers of frozen groups in eval mode (fastai's BnFreeze callback)."""
        keep = set(trainable_groups)
        for i, mod in enumerate(self.group_modules()):
            if i not in keep:
                for m in mod.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()

    def save(self, out_dir: str | Path) -> Path:
        """Write model.safetensors and vision_model.json (architecture, classes) to `out_dir`."""
        from ulmfit.core.checkpoint import atomic_write_text, save_weights

        out = Path(out_dir)
        save_weights(self, out / WEIGHTS_NAME)
        atomic_write_text(out / CONFIG_NAME, json.dumps(self.config, indent=1))
        return out


# ---- splitting torchvision models ------------------------------------------------------------
def _chunks(mods: list, n: int) -> list[nn.Sequential]:
    n = max(1, min(n, len(mods)))
    size, extra = divmod(len(mods), n)
    out, i = [], 0
    for k in range(n):
        j = i + size + (1 if k < extra else 0)
        out.append(nn.Sequential(*mods[i:j]))
        i = j
    return out


def split_body(model: nn.Module, arch: str, n_feature_groups: int = 4) -> nn.Sequential:
    """The body of a torchvision classifier as a Sequential of layer groups (stem, stages...).

    ResNet-style models (resnet*, resnext*, wide_resnet*) split into the stem and layer1..layer4;
    models with a `features` Sequential (VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt, ...) into
    `n_feature_groups` consecutive chunks of it; RegNet into its stem and trunk stages.
    """
    if all(hasattr(model, a) for a in ("conv1", "bn1", "layer1", "layer4")):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return nn.Sequential(stem, model.layer1, model.layer2, model.layer3, model.layer4)
    if hasattr(model, "stem") and hasattr(model, "trunk_output"):
        return nn.Sequential(model.stem, *model.trunk_output)
    if isinstance(getattr(model, "features", None), nn.Sequential):
        return nn.Sequential(*_chunks(list(model.features), n_feature_groups))
    raise UlmfitError(
        f"architecture {arch!r}: cannot split it into layer groups; use a ResNet/ResNeXt, RegNet or a "
        "model with a `features` block (VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt)"
    )


def _first_conv(body: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for name, m in body.named_modules():
        if isinstance(m, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            return body.get_submodule(parent_name) if parent_name else body, attr, m
    raise UlmfitError("the model has no Conv2d layer to take the input channels")


def adapt_input_channels(body: nn.Module, in_channels: int) -> None:
    """Give the first conv `in_channels` inputs, reusing its weights (fastai's `_update_first_layer`
    idea: one channel gets the sum over RGB, more channels repeat RGB scaled by 3/n)."""
    parent, attr, conv = _first_conv(body)
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        w = conv.weight
        if in_channels == 1:
            new.weight.copy_(w.sum(1, keepdim=True))
        else:
            reps = -(-in_channels // w.shape[1])
            new.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent._modules[attr] = new


def _read_torchvision_weights(path: Path) -> dict:
    return load_torch_state(path, "weights file")


def _run_weights_path(path: Path) -> Path | None:
    """A saved ulmfit run: a .safetensors file or a folder holding model.safetensors."""
    if path.is_dir():
        if not (path / WEIGHTS_NAME).exists():
            raise UlmfitError(f"folder {path} is not a saved ulmfit run: it has no {WEIGHTS_NAME}")
        return path / WEIGHTS_NAME
    return path if path.suffix == ".safetensors" else None


def create_vision_model(arch: str = "resnet18", n_classes: int = 10, in_channels: int = 3,
                        weights: str | Path | None = None, hidden: int = 512, dropout: float = 0.5,
                        n_feature_groups: int = 4, load_head: bool = False) -> VisionModel:
    """Build `arch` from torchvision (never downloading), split it, and put a new head on top.

    `weights`: None (random init); a torchvision state-dict file (`.pth`/`.pt`, e.g. resnet18's
    ImageNet weights saved locally); or a saved ulmfit vision run (its folder or its
    `model.safetensors`), whose body is loaded (and its head too with `load_head`, when the shapes
    match, e.g. to continue training on the same classes).
    """
    try:
        import torchvision
    except ImportError:
        raise UlmfitError("vision models need torchvision: pip install 'ulmfit[vision]'") from None
    if n_classes < 2:
        raise UlmfitError(f"n_classes must be >= 2, got {n_classes}")
    try:
        tv = torchvision.models.get_model(arch, weights=None)
    except (ValueError, KeyError):
        known = ", ".join(n for n in torchvision.models.list_models(torchvision.models) if "resnet" in n)
        raise UlmfitError(f"unknown torchvision architecture {arch!r} (e.g. {known})") from None
    path = Path(weights) if weights else None
    run_file = _run_weights_path(path) if path is not None else None
    if path is not None and run_file is None:
        state = _read_torchvision_weights(path)
        try:
            missing, unexpected = tv.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches raise even without strict
            first = str(e).strip().splitlines()[-1].strip()
            raise UlmfitError(f"weights file {path} does not fit {arch}: {first}") from None
        body_missing = [k for k in missing if not k.startswith(("fc.", "classifier.", "head"))]
        if body_missing or unexpected:
            raise UlmfitError(f"weights file {path} does not match {arch}: missing {body_missing[:5]}, "
                              f"unexpected {list(unexpected)[:5]}")
    body = split_body(tv, arch, n_feature_groups)
    adapt_input_channels(body, in_channels)
    n_features = _n_features(body, in_channels)
    head = concat_pool_head(n_features, n_classes, hidden, dropout)
    config = {"arch": arch, "n_classes": n_classes, "in_channels": in_channels, "hidden": hidden,
              "dropout": dropout, "n_feature_groups": n_feature_groups, "n_features": n_features}
    model = VisionModel(body, head, config)
    if run_file is not None:
        load_run_weights(model, run_file, load_head)
    return model


def _n_features(body: nn.Module, in_channels: int) -> int:
    was = body.training
    body.eval()
    with torch.no_grad():
        n = body(torch.zeros(1, in_channels, 64, 64)).shape[1]
    body.train(was)
    return int(n)


def load_run_weights(model: VisionModel, path: str | Path, load_head: bool = False) -> None:
    """Load a saved ulmfit vision run's body (and head, with `load_head`) into `model`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise UlmfitError(f"weights file {path} does not exist")
    try:
        saved = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UlmfitError(f"cannot read {path} as safetensors: {e}") from None
    own = model.state_dict()
    prefixes = ("body.", "head.") if load_head else ("body.",)
    wanted = [k for k in own if k.startswith(prefixes)]
    missing = [k for k in wanted if k not in saved]
    wrong = [k for k in wanted if k in saved and saved[k].shape != own[k].shape]
    if missing or wrong:
        raise UlmfitError(f"weights in {path} do not fit this model ({model.config.get('arch')}, "
                          f"{model.config.get('in_channels')} input channels): missing {missing[:3]}, "
                          f"shape mismatch {wrong[:3]}")
    model.load_state_dict({k: saved[k] for k in wanted}, strict=False)


def load_vision_model(run_dir: str | Path) -> VisionModel:
    """Rebuild a saved run (vision_model.json + model.safetensors), head included."""
    run = Path(run_dir)
    cfg_path = run / CONFIG_NAME
    if not cfg_path.exists():
        raise UlmfitError(f"{run} is not a saved vision model: {CONFIG_NAME} is missing")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    model = create_vision_model(cfg["arch"], cfg["n_classes"], cfg["in_channels"], None,
                                cfg.get("hidden", 512), cfg.get("dropout", 0.5), cfg.get("n_feature_groups", 4))
    load_run_weights(model, run / WEIGHTS_NAME, load_head=True)
    model.config.update({k: v for k, v in cfg.items() if k not in model.config})
    return model
