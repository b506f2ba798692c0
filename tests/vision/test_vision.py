"""Vision on the shared core: layer groups, freezing, precomputed activations, TTA, input errors.

Small (16x16 images, a few dozen of them) so the file runs in well under a minute on 2 CPU cores.
Skipped where torchvision is not installed (the `vision` extra).
"""

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from ulmfit.core import LayerGroups, Stage, TrainConfig, Trainer, build_strategy  # noqa: E402
from ulmfit.errors import UlmfitError  # noqa: E402
from ulmfit.vision import (AugmentConfig, create_vision_model, eval_transform, from_arrays,  # noqa: E402
                           from_folder, load_vision_model, precompute, predict, train_vision)
from ulmfit.vision.data import loader  # noqa: E402
from ulmfit.vision.train import accuracy  # noqa: E402

CFG = dict(seed=0, progress=False, clip=None)
# a GPU's convolutions (TF32) round differently from the CPU's at ~1e-4
ATOL = 1e-3 if torch.cuda.is_available() else None


@pytest.fixture
def exact_gpu(monkeypatch):
    """On a GPU: full fp32 and deterministic convolutions, so that two routes to the same numbers
    agree as closely as on the CPU (Adam amplifies TF32's rounding differences)."""
    if torch.cuda.is_available():
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_images(n=48, size=16, seed=0):
    """Three classes: a bright top, middle or bottom band on noise (no flips in the augmentation)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0, 0.3, (n, size, size)).astype(np.float32)
    band = size // 3
    for i, k in enumerate(y):
        x[i, k * band:(k + 1) * band] += 0.7
    return from_arrays(x, y, classes=["top", "middle", "bottom"])


def toy_augment():
    return AugmentConfig(size=16, crop_scale=(0.8, 1.0), flip=False, rotate=5, mean=[0.4], std=[0.3])


_BASE = {}


def small_model():
    """A fresh copy of one randomly initialised resnet18 (1 channel, 3 classes; built once)."""
    if "m" not in _BASE:
        torch.manual_seed(0)
        _BASE["m"] = create_vision_model("resnet18", n_classes=3, in_channels=1, hidden=32)
    return copy.deepcopy(_BASE["m"])


def test_resnet_layer_groups_cover_every_parameter_once():
    for arch in ("resnet18", "resnet50"):
        model = small_model() if arch == "resnet18" else create_vision_model(arch, n_classes=5)
        groups = model.layer_groups()
        assert len(groups) == 6  # stem, layer1..layer4, head
        ids = [id(p) for g in groups.params for p in g]
        assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert len(create_vision_model("resnet34", 5).layer_groups()) == 6


@pytest.mark.parametrize("train_bn", [True, False])
def test_frozen_body_changes_only_head_and_bn(train_bn):
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    train_vision(model, toy_images(), None, toy_augment(), [Stage(epochs=1, unfreeze=1, lr=1e-2)],
                 train_bn=train_bn, batch_size=16, config=TrainConfig(**CFG))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k].cpu())}  # trained on a GPU if any
    assert any(k.startswith("head.") for k in changed)
    body = {k for k in changed if k.startswith("body.")}
    bn_names = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    is_bn = {k for k in before if k.rsplit(".", 1)[0] in bn_names}
    assert body <= is_bn  # conv weights never move
    if train_bn:
        assert any(k.endswith(".weight") for k in body)  # BN affine params trained
    else:
        assert body == set()  # BN frozen too, running statistics included


def test_precomputed_head_matches_live_frozen_body(tmp_path, exact_gpu):
    images, aug = toy_images(), toy_augment()
    live = small_model()
    cached = copy.deepcopy(live).to("cuda" if torch.cuda.is_available() else "cpu")  # features where live trains
    stage = [Stage(epochs=2, unfreeze=1, lr=1e-2, schedule="one_cycle")]
    # live: frozen body in eval mode (no BN training), plain images, same batches
    train_vision(live, images, None, aug, stage, augment_train=False, train_bn=False, batch_size=16,
                 config=TrainConfig(**CFG))
    feats = precompute(cached, images, eval_transform(aug), tmp_path / "f.safetensors")
    head = cached.head
    trainer = Trainer(head, LayerGroups(head, [head]), nn.functional.cross_entropy,
                      DataLoader(feats, batch_size=16, shuffle=True), config=TrainConfig(**CFG))
    trainer.fit(stage)
    for (name, a), b in zip(live.head.state_dict().items(), cached.head.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name
    # the cache is reused when the key matches, and rebuilt when the body changes
    again = precompute(cached, images, eval_transform(aug), tmp_path / "f.safetensors")
    assert torch.equal(again.tensors[0], feats.tensors[0])
    with torch.no_grad():
        cached.body[4][1].conv2.weight.mul_(2)
    changed = precompute(cached, images, eval_transform(aug), tmp_path / "f.safetensors")
    assert not torch.allclose(changed.tensors[0], feats.tensors[0])


def test_train_vision_precompute_then_live_with_sgdr_and_tta(tmp_path):
    images, aug = toy_images(), toy_augment()
    model = small_model()
    head_stage = [{"epochs": 3, "lr": "auto", "schedule": "one_cycle"}]  # "auto": LR finder
    stages = build_strategy("custom", 6, stages=[
        {"epochs": 1, "unfreeze": 1, "lr": 1e-2, "schedule": "constant"},
        {"epochs": 3, "unfreeze": "all", "lr": 1e-3, "lr_factor": 3.0, "schedule": "sgdr",
         "schedule_args": {"cycle_len": 1, "cycle_mult": 2}},
    ])
    res = train_vision(model, images, images, aug, stages, precompute_stages=head_stage, batch_size=16,
                       config=TrainConfig(**CFG), cache_dir=tmp_path / "cache", tta_n=2,
                       lr_find_args={"num_it": 12}, out_dir=tmp_path / "run")
    phases = [r["phase"] for r in res["history"]]
    assert phases == ["precomputed"] * 3 + ["live"] * 4
    assert res["lr_find"][0]["suggested_lr"] > 0
    assert 0 <= res["valid_accuracy"] <= 1 and 0 <= res["valid_accuracy_tta"] <= 1
    assert res["history"][2]["train_loss"] < res["history"][0]["train_loss"]  # the head learns from the cache
    loaded = load_vision_model(tmp_path / "run")
    assert torch.allclose(predict(loaded, images, aug), predict(model, images, aug), atol=ATOL or 1e-6)


def test_tta_with_zero_augmentations_is_plain_prediction():
    images, aug = toy_images(12), toy_augment()
    model = small_model()
    plain = predict(model, images, aug)
    assert torch.equal(predict(model, images, aug, tta_n=0), plain)
    assert torch.allclose(predict(model, images, aug, tta_n=2, beta=1.0), plain)
    tta = predict(model, images, aug, tta_n=2, beta=0.25)
    assert tta.shape == plain.shape and torch.allclose(tta.sum(-1), torch.ones(12))


def test_torchvision_weights_file_and_channel_adaptation(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    model = create_vision_model("resnet18", 4, in_channels=1, weights=tmp_path / "resnet18.pth")
    assert torch.allclose(model.body[0][0].weight, tv.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.body[4][1].conv2.weight, tv.layer4[1].conv2.weight)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UlmfitError, match="junk.pth"):
        create_vision_model("resnet18", 4, weights=tmp_path / "junk.pth")
    with pytest.raises(UlmfitError, match=r"resnet18.pth does not (fit|match) resnet34"):
        create_vision_model("resnet34", 4, weights=tmp_path / "resnet18.pth")
    with pytest.raises(UlmfitError, match="no model.safetensors"):
        create_vision_model("resnet18", 4, weights=tmp_path)
    with pytest.raises(UlmfitError, match="unknown torchvision architecture"):
        create_vision_model("resnet19", 4)


def _png(path, value=128):
    from PIL import Image

    Image.fromarray(np.full((10, 12, 3), value, np.uint8)).save(path)


def test_image_folder_reads_and_reports_bad_input(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            _png(tmp_path / cls / f"{i}.png", 60 * i)
    data = from_folder(tmp_path)
    assert data.classes == ["cat", "dog"] and len(data) == 4 and data.image(0).shape == (3, 10, 12)
    batch = next(iter(loader(data, eval_transform(AugmentConfig(size=8)), batch_size=4)))
    assert batch[0].shape == (4, 3, 8, 8)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(UlmfitError, match="broken.png"):
        from_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").unlink()
    (tmp_path / "bird").mkdir()
    with pytest.raises(UlmfitError, match="bird"):
        from_folder(tmp_path)


def test_array_input_errors_and_accuracy():
    with pytest.raises(UlmfitError, match="same number"):
        from_arrays(np.zeros((3, 8, 8)), [0, 1])
    with pytest.raises(UlmfitError, match=r"\(N, H, W\)"):
        from_arrays(np.zeros((3, 5, 8, 8)), [0, 1, 2])
    assert accuracy(np.array([1, 2]), np.array([1, 0])) == 0.5
