"""Fashion-MNIST: loading the Debian idx files, the fixed train/val/test split, normalisation and augmentation."""
import functools
import gzip
import os
from dataclasses import dataclass

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
class Split:
    images: torch.Tensor  # uint8 [N, 28, 28]
    labels: torch.Tensor  # int64 [N]
    indices: torch.Tensor  # position of each sample in its source idx file (test indices name the samples/)

    def __len__(self):
        return len(self.labels)

    def take(self, idx) -> 'Split':
        """The samples at idx (a slice or an index tensor)."""
        return Split(self.images[idx], self.labels[idx], self.indices[idx])


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split


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
    return Splits(
        train=Split(train_images[train_idx], train_labels[train_idx], train_idx),
        val=Split(train_images[val_idx], train_labels[val_idx], val_idx),
        test=Split(test_images, test_labels, torch.arange(len(test_labels))),
    )


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,28,28] -> float32 [N,1,28,28]: x/255, then (x - mean)/std, as the SDK's preprocessing does."""
    return ((images.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, on a uint8 batch; returns the normalised tensor."""
    n, h, w = images.shape
    p = CROP_PADDING
    padded = torch.nn.functional.pad(images, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    cropped = padded[torch.arange(n)[:, None, None], rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    cropped = torch.where(flip[:, None, None], cropped.flip(-1), cropped)
    return normalise(cropped)


def batches(n: int, batch_size: int, generator: torch.Generator = None):
    """Index chunks over n samples; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
