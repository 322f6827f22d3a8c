"""The training data: Fashion-MNIST (the Debian idx files, a fixed train/val/test split) or a folder of the user's
images (folder.py, cached for the workers); normalisation and augmentation of uint8 images."""
import functools
import gzip
import os
from dataclasses import dataclass, field
from typing import Tuple

import numpy as np
import torch

DATA_DIR = '/usr/share/datasets/fashion-mnist'
DEBIAN_PACKAGE = 'dataset-fashion-mnist'
LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
# Training-set pixel statistics, rounded once and shipped in the manifest so every consumer normalises identically.
MEAN = 0.286
STD = 0.353
VAL_SIZE = 5000
CROP_PADDING = 2


class DataMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Pixels:
    """How uint8 pixels become the model's input: per-channel statistics (shipped in the manifest) and augmentation."""
    mean: Tuple[float, ...] = (MEAN,)
    std: Tuple[float, ...] = (STD,)
    flip: bool = True  # horizontal flips in augmentation (off when the classes depend on left and right)


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 [N, 28, 28] (Fashion-MNIST) or [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    indices: torch.Tensor  # position of each sample in its source (idx file, or DataSet.files)
    pixels: Pixels = Pixels()
    # Imbalanced classes: the losses weight each class by n / (classes x its count), so every class counts alike.
    class_weights: torch.Tensor = None

    def __len__(self):
        return len(self.labels)

    def take(self, idx) -> 'Split':
        """The samples at idx (a slice or an index tensor)."""
        return Split(self.images[idx], self.labels[idx], self.indices[idx], self.pixels, self.class_weights)

    @property
    def shape(self) -> Tuple[int, int, int]:
        """C, H, W of one model input."""
        return tuple(self.images.shape[1:]) if self.images.dim() == 4 else (1, *self.images.shape[1:])

    def normalised(self, idx=slice(None)) -> torch.Tensor:
        return normalise(self.images[idx], self.pixels)

    def augmented(self, idx, generator: torch.Generator) -> torch.Tensor:
        return augment(self.images[idx], generator, self.pixels)


@dataclass(frozen=True)
class DataSet:
    """What the package and the report say about the data."""
    name: str  # the package name
    labels: tuple
    input: dict  # the manifest's input spec
    facts: dict  # for the report: source, split, class counts, unreadable files, imbalance
    files: tuple = ()  # folder data: the file of each sample (Split.indices point here)


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split
    data: DataSet = field(default=None)


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _file(data_dir: str, name: str) -> str:
    path = os.path.join(data_dir, name)
    if not os.path.exists(path):
        raise DataMissing(f'Fashion-MNIST not found: expected {path}. Install the Debian package '
                          f'"{DEBIAN_PACKAGE}" (apt-get install {DEBIAN_PACKAGE}) or pass --data-dir.')
    return path


@functools.lru_cache(maxsize=2)
def load_splits(seed: int, data_dir: str = DATA_DIR) -> Splits:
    """Train 55,000 / val 5,000 (a fixed-seed permutation of the official train file) / test 10,000."""
    def pair(prefix):
        images = torch.from_numpy(_read_idx(_file(data_dir, f'{prefix}-images-idx3-ubyte.gz')).copy())
        labels = torch.from_numpy(_read_idx(_file(data_dir, f'{prefix}-labels-idx1-ubyte.gz')).astype(np.int64))
        return images, labels

    train_images, train_labels = pair('train')
    test_images, test_labels = pair('t10k')
    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:VAL_SIZE], order[VAL_SIZE:]
    facts = {'source': 'fashion-mnist', 'description': 'Fashion-MNIST (Debian `dataset-fashion-mnist`)',
             'split': f'train {len(train_idx):,} / validation {len(val_idx):,} (fixed-seed split of the official '
                      f'training file) / test {len(test_labels):,}'}
    data = DataSet('fashion-sgmoe', tuple(LABELS), {
        'name': 'image', 'channels': 1, 'height': 28, 'width': 28, 'colorspace': 'gray', 'mean': [MEAN],
        'std': [STD], 'layout': 'NCHW', 'invert': False}, facts)
    return Splits(
        train=Split(train_images[train_idx], train_labels[train_idx], train_idx),
        val=Split(train_images[val_idx], train_labels[val_idx], val_idx),
        test=Split(test_images, test_labels, torch.arange(len(test_labels))),
        data=data,
    )


@functools.lru_cache(maxsize=2)
def load(source: tuple) -> Splits:
    """What a worker process trains on: ('fashion', seed, data_dir), or ('folder', cache file written by folder.py)."""
    if source[0] == 'fashion':
        return load_splits(*source[1:])
    return torch.load(source[1], weights_only=False)


def normalise(images: torch.Tensor, pixels: Pixels = Pixels()) -> torch.Tensor:
    """uint8 [N,H,W] or [N,C,H,W] -> float32 [N,C,H,W]: x/255, then (x - mean)/std per channel, as the SDK's
    preprocessing does (each step in float32)."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    mean = torch.tensor(pixels.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(pixels.std, dtype=torch.float32)[:, None, None]
    return (images.float() / 255.0 - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator, pixels: Pixels = Pixels()) -> torch.Tensor:
    """Random crop with zero padding (2 pixels per 28) and horizontal flip, on a uint8 batch; returns the normalised
    tensor."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    n, c, h, w = images.shape
    p = max(1, round(CROP_PADDING * min(h, w) / 28))
    padded = torch.nn.functional.pad(images, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    cropped = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if pixels.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        cropped = torch.where(flip[:, None, None, None], cropped.flip(-1), cropped)
    return normalise(cropped, pixels)


def batches(n: int, batch_size: int, generator: torch.Generator = None):
    """Index chunks over n samples; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
