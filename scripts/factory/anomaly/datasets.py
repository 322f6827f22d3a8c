"""Writes the two benchmark data folders in the anomaly factory's layout (from Debian packages, no download):

    /usr/bin/python3 scripts/factory/anomaly/datasets.py fashion-loco DIR [--held-out 8]
        Fashion-MNIST, nine classes good (train/good), the test set with the held-out class as the defect kind
    /usr/bin/python3 scripts/factory/anomaly/datasets.py textures DIR [--validation]
        64x64 patches of skimage's brick, grass and gravel photographs (three products on one line). Each photograph
        is cut into a 4x4 grid of 128x128 blocks; four blocks, one in every block row and column, are the test
        region, the other twelve the training region, so train and test are disjoint yet drawn from the same
        positions and lighting. Good patches come from the training blocks; test patches from the test blocks: per
        texture 300 good and 60 with a synthetic defect (scratch, hole, stain, pasted patch; masks in test/masks/).
        --validation: the same from the training region only (three of its blocks play the test region, with
        other defects), for choosing the recipe without touching the test blocks. --seed N: another draw of
        patches and defects from the same blocks (a second validation set, to tell a real gain from noise).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from data import LABELS, load_splits  # noqa: E402
from export import label_slug  # noqa: E402

PER_CLASS = 3000  # good training images per class at most, as in benchmark.py
TEXTURES = ('brick', 'grass', 'gravel')
PATCH = 64
TRAIN_PATCHES, GOOD_TEST, DEFECTIVE_TEST = 1000, 300, 60  # per texture (300 good: a 1% false-alarm rate resolved)
BLOCK = 128  # the photographs' 4x4 grid of blocks
TEST_BLOCKS = ((0, 1), (1, 3), (2, 0), (3, 2))  # (row, column): one per block row and column
VALIDATION_BLOCKS = ((0, 3), (1, 0), (2, 2))  # training blocks standing in for the test region in --validation
DEFECTS = ('scratch', 'hole', 'stain', 'paste')


def _save(folder: str, name: str, pixels: np.ndarray) -> None:
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(pixels).save(os.path.join(folder, name))


def fashion_loco(out: str, held_out: int) -> None:
    splits = load_splits(0)
    train, test = splits.train, splits.test
    for k in range(10):
        if k == held_out:
            continue
        for i in np.nonzero(train.labels.numpy() == k)[0][:PER_CLASS]:
            _save(os.path.join(out, 'train', 'good'), f'{int(train.indices[i]):05d}-{label_slug(LABELS[k])}.png',
                  train.images[i].numpy())
    kind = label_slug(LABELS[held_out])
    for i, label in enumerate(test.labels.tolist()):
        _save(os.path.join(out, 'test', kind if label == held_out else 'good'), f'{i:05d}-{label_slug(LABELS[label])}.png',
              test.images[i].numpy())


def _defect(patch: np.ndarray, kind: str, rng, donor: np.ndarray):
    """A defective copy of a patch and its mask (True where changed)."""
    image = Image.fromarray(patch)
    mask = Image.new('L', image.size, 0)
    draw, mdraw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    c = rng.integers(12, PATCH - 12, 2)
    if kind == 'scratch':
        end = np.clip(c + rng.integers(-28, 29, 2), 0, PATCH - 1)
        shade = int(rng.choice([15, 240]))
        width = int(rng.integers(2, 4))
        draw.line([tuple(c), tuple(end)], fill=shade, width=width)
        mdraw.line([tuple(c), tuple(end)], fill=255, width=width)
    elif kind == 'hole':
        r = rng.integers(4, 9, 2)
        box = [int(c[0] - r[0]), int(c[1] - r[1]), int(c[0] + r[0]), int(c[1] + r[1])]
        draw.ellipse(box, fill=int(rng.integers(0, 30)))
        mdraw.ellipse(box, fill=255)
    elif kind == 'stain':
        r = int(rng.integers(6, 12))
        blob = Image.new('L', image.size, 0)
        ImageDraw.Draw(blob).ellipse([int(c[0] - r), int(c[1] - r), int(c[0] + r), int(c[1] + r)], fill=255)
        blob = np.asarray(blob.filter(ImageFilter.GaussianBlur(3))) / 255.0
        tint = float(rng.choice([0.45, 1.6]))
        stained = np.clip(np.asarray(image) * (1 + (tint - 1) * blob), 0, 255).astype(np.uint8)
        return stained, blob > 0.25
    else:  # paste: a square from another texture
        s = int(rng.integers(10, 18))
        y, x = rng.integers(0, PATCH - s, 2)
        dy, dx = rng.integers(0, donor.shape[0] - s, 2)
        out = np.asarray(image).copy()
        out[y:y + s, x:x + s] = donor[dy:dy + s, dx:dx + s]
        m = np.zeros((PATCH, PATCH), bool)
        m[y:y + s, x:x + s] = True
        return out, m
    return np.asarray(image), np.asarray(mask) > 0


def _crop(photo: np.ndarray, blocks: list, rng) -> np.ndarray:
    """A random 64x64 patch lying inside one of the blocks (so no patch straddles the train/test border)."""
    row, col = blocks[rng.integers(len(blocks))]
    y, x = row * BLOCK + rng.integers(0, BLOCK - PATCH + 1), col * BLOCK + rng.integers(0, BLOCK - PATCH + 1)
    return photo[y:y + PATCH, x:x + PATCH]


def textures(out: str, validation: bool = False, seed=None) -> None:
    from skimage import data as skdata
    rng = np.random.default_rng((1 if validation else 0) if seed is None else seed)
    photos = {name: getattr(skdata, name)() for name in TEXTURES}
    every = [(r, c) for r in range(4) for c in range(4)]
    train_blocks = [b for b in every if b not in TEST_BLOCKS]
    test_blocks = list(TEST_BLOCKS)
    if validation:
        train_blocks, test_blocks = [b for b in train_blocks if b not in VALIDATION_BLOCKS], list(VALIDATION_BLOCKS)
    for t, (name, photo) in enumerate(photos.items()):
        for n in range(TRAIN_PATCHES):
            _save(os.path.join(out, 'train', 'good'), f'{name}-{n:04d}.png', _crop(photo, train_blocks, rng))
        for n in range(GOOD_TEST + DEFECTIVE_TEST):
            patch = _crop(photo, test_blocks, rng)
            if n < GOOD_TEST:
                _save(os.path.join(out, 'test', 'good'), f'{name}-{n:04d}.png', patch)
                continue
            kind = DEFECTS[n % len(DEFECTS)]
            donor = photos[TEXTURES[(t + 1 + n % 2) % len(TEXTURES)]]
            defective, mask = _defect(patch, kind, rng, donor)
            _save(os.path.join(out, 'test', kind), f'{name}-{n:04d}.png', defective)
            _save(os.path.join(out, 'test', 'masks', kind), f'{name}-{n:04d}.png', (mask * 255).astype(np.uint8))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('which', choices=['fashion-loco', 'textures'])
    parser.add_argument('out')
    parser.add_argument('--held-out', type=int, default=8, help='fashion-loco: the foreign class (default 8, Bag)')
    parser.add_argument('--validation', action='store_true', help='textures: from the training region only')
    parser.add_argument('--seed', type=int, help='textures: another draw (default 0, or 1 with --validation)')
    args = parser.parse_args()
    if os.path.exists(args.out):
        parser.error(f'{args.out} exists: an empty or new folder expected')
    if args.which == 'fashion-loco':
        fashion_loco(args.out, args.held_out)
    else:
        textures(args.out, args.validation, args.seed)
    return 0


if __name__ == '__main__':
    sys.exit(main())
