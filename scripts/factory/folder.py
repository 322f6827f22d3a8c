"""The user's own images: DIR/<class>/<files> (or DIR/train|val|test/<class>/<files>), decoded through the SDK's own
preprocessing (decode.js) so that training sees the tensor a device computes from the same file; a seeded, stratified
split; unreadable files and duplicate copies left out and listed; class counts and imbalance for the report."""
import os
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from data import DataSet, Pixels, Split, Splits
from decode import decode
from duplicates import groups

SPLITS = ('train', 'val', 'test')
FRACTIONS = {'val': 0.2, 'test': 0.2}  # of each class; the rest trains
MIN_PER_CLASS = 10  # readable images a class needs before the factory splits it three ways
IMBALANCE_RATIO = 1.2  # largest / smallest training class above which the losses are class-weighted
LONG_SIDE = 64  # default model input: the images' aspect ratio, this many pixels on the long side


class DataError(RuntimeError):
    """A data folder the factory cannot train on; the message names the class and the numbers."""


@dataclass(frozen=True)
class Options:
    size: Optional[Tuple[int, int]] = None  # width, height of the model input
    channels: Optional[int] = None  # 1 or 3; default: 3 when any image is in colour
    roi: Optional[Tuple[int, int, int, int]] = None  # x, y, width, height in the oriented frame
    flip: bool = True
    seed: int = 0
    name: str = 'my-sgmoe'


def _entries(folder: str) -> List[str]:
    return sorted(e for e in os.listdir(folder) if not e.startswith('.'))


def _classes(folder: str) -> List[str]:
    return [e for e in _entries(folder) if os.path.isdir(os.path.join(folder, e))]


def _files(folder: str) -> List[str]:
    """Every visible regular file, in nested folders too (a class's batches): what sharp cannot read is listed as
    unreadable, not silently left out."""
    out = []
    for e in _entries(folder):
        path = os.path.join(folder, e)
        out.extend(_files(path) if os.path.isdir(path) else [path] if os.path.isfile(path) else [])
    return out


def _layout(root: str) -> Tuple[List[str], dict]:
    """The class names, and {split or None: {class: [files]}}; None = not split yet."""
    if not os.path.isdir(root):
        raise DataError(f'a folder of class folders expected at {root}, found none')
    top = _classes(root)
    if 'train' in top and ('test' in top or 'val' in top):
        if 'test' not in top:  # train/ and val/ alone would read as two classes called so
            raise DataError(f'a split folder needs train/ and test/ (val/ optional) in {root}, found '
                            f'{", ".join(s + "/" for s in SPLITS if s in top)}: add test/, or give one folder per class')
        splits = [s for s in SPLITS if s in top]
        labels = sorted(set().union(*(_classes(os.path.join(root, s)) for s in splits)))
        return labels, {s: {c: _files(os.path.join(root, s, c)) if os.path.isdir(os.path.join(root, s, c)) else []
                            for c in labels} for s in splits}
    return top, {None: {c: _files(os.path.join(root, c)) for c in top}}


def _is_colour(path: str) -> bool:
    try:
        with Image.open(path) as image:
            if image.mode == 'P':
                return image.convert('RGB').getextrema() != image.convert('L').convert('RGB').getextrema()
            return image.mode not in ('L', 'LA', 'I', 'I;16', 'F', '1')
    except Exception:  # unreadable: decode.js will say why
        return False


def _oriented_size(path: str) -> Optional[Tuple[int, int]]:
    try:
        with Image.open(path) as image:
            w, h = image.size
            return (h, w) if image.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
    except Exception:
        return None


def _default_size(paths: List[str], roi) -> Tuple[int, int]:
    """The median aspect ratio (or the ROI's), LONG_SIDE pixels on the long side, sides multiples of 4."""
    if roi:
        w, h = roi[2], roi[3]
    else:
        sizes = [s for s in (_oriented_size(p) for p in paths) if s]  # headers only: cheap for every file
        w, h = (float(np.median([s[0] for s in sizes])), float(np.median([s[1] for s in sizes]))) if sizes else (1, 1)
    scale = LONG_SIDE / max(w, h)
    return tuple(max(16, 4 * round(side * scale / 4)) for side in (w, h))


def _stratified(labels: np.ndarray, classes: int, seed: int) -> dict:
    """{split: positions}: per class, a seeded permutation cut into test, val and the rest for training."""
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for c in range(classes):
        members = rng.permutation(np.nonzero(labels == c)[0])
        n_test = max(1, round(FRACTIONS['test'] * len(members)))
        n_val = max(1, round(FRACTIONS['val'] * len(members)))
        parts['test'] += members[:n_test].tolist()
        parts['val'] += members[n_test:n_test + n_val].tolist()
        parts['train'] += members[n_test + n_val:].tolist()
    return {s: np.array(sorted(v), np.int64) for s, v in parts.items()}


def _counts(labels: np.ndarray, classes: int) -> List[int]:
    return np.bincount(labels, minlength=classes).tolist()


def slug(text: str) -> str:
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-') or 'model'


def load(root: str, options: Options) -> Splits:
    root = os.path.abspath(root)
    labels, layout = _layout(root)
    if len(labels) < 2:
        found = ', '.join(f'"{c}" ({sum(len(g[c]) for g in layout.values())} files)' for c in labels) or 'none'
        raise DataError(f'at least 2 class folders expected in {root} (one folder of images per class), found '
                        f'{len(labels)}: {found}')
    paths, label_of, split_of = [], [], []
    for split, groups in layout.items():
        for c, name in enumerate(labels):
            paths += groups[name]
            label_of += [c] * len(groups[name])
            split_of += [split] * len(groups[name])
    channels = options.channels or (3 if any(_is_colour(p) for p in paths) else 1)  # any image in colour: RGB
    width, height = options.size or _default_size(paths, options.roi)
    spec = {'name': 'image', 'channels': channels, 'height': height, 'width': width,
            'colorspace': 'gray' if channels == 1 else 'rgb', 'mean': [0.0] * channels, 'std': [1.0] * channels,
            'layout': 'NCHW', 'invert': False}
    if options.roi:
        spec['roi'] = dict(zip(('x', 'y', 'width', 'height'), options.roi))
    pixels, decoded, rejected = decode(paths, spec)
    unreadable = [{'file': os.path.relpath(paths[i], root), 'code': code, 'reason': reason}
                  for i, code, reason in rejected]
    bad_per_class = _counts(np.array([label_of[i] for i, _, _ in rejected], np.int64), len(labels))
    keep, duplicates = _without_copies(pixels, [(os.path.relpath(paths[i], root), labels[label_of[i]], split_of[i])
                                                for i in decoded])
    pixels, decoded = pixels[keep], [decoded[k] for k in keep]
    labels_ok = np.array([label_of[i] for i in decoded], np.int64)

    if None in layout:
        _check_sizes(labels, _counts(labels_ok, len(labels)), bad_per_class)
        positions = _stratified(labels_ok, len(labels), options.seed)
        how = (f'seeded stratified split (seed {options.seed}): per class {100 * FRACTIONS["test"]:.0f}% test, '
               f'{100 * FRACTIONS["val"]:.0f}% validation, the rest training')
    else:
        _check_sizes(labels, _counts(labels_ok, len(labels)), bad_per_class)  # over the splits together
        split_ok = np.array([split_of[i] for i in decoded])
        positions = {s: np.nonzero(split_ok == s)[0] for s in SPLITS}
        if 'val' not in layout:  # no val/ folder: validation comes out of train/, stratified
            inner = _stratified(labels_ok[positions['train']], len(labels), options.seed)
            positions['val'] = np.sort(positions['train'][inner['val']])
            positions['train'] = np.sort(np.concatenate([positions['train'][inner['train']],
                                                         positions['train'][inner['test']]]))
        for s in SPLITS:
            counts = _counts(labels_ok[positions[s]], len(labels))
            empty = [f'"{labels[c]}"' for c, n in enumerate(counts) if n == 0]
            if empty:
                # train/good/ alone, defects only under test/: the anomaly factory's layout
                only_good = s == 'train' and [labels[c] for c, n in enumerate(counts) if n > 0] == ['good']
                hint = ' (good parts only, defects in test/? add --task anomaly)' if only_good else ''
                raise DataError(f'every class needs readable images in {s}/, found none for {", ".join(empty)} '
                                f'(counts in {s}/: {dict(zip(labels, counts))}){hint}')
        how = 'the train/ val/ test/ folders as given' + ('' if 'val' in layout else
                                                          ' (no val/: 20% of train/ per class, seeded)')

    # Training order shuffled (seeded): a recipe that trains on the first N images must not get the first classes only.
    positions['train'] = np.random.default_rng(options.seed).permutation(positions['train'])
    train_counts = _counts(labels_ok[positions['train']], len(labels))
    train_pixels = torch.from_numpy(pixels[positions['train']])
    mean = tuple(round(float(v), 3) for v in train_pixels.float().div(255).mean(dim=(0, 2, 3)))
    std = tuple(max(0.001, round(float(v), 3)) for v in train_pixels.float().div(255).std(dim=(0, 2, 3)))
    spec.update(mean=list(mean), std=list(std))
    ratio = max(train_counts) / max(1, min(train_counts))
    weights = None
    if ratio > IMBALANCE_RATIO:
        weights = torch.tensor([sum(train_counts) / (len(labels) * n) for n in train_counts], dtype=torch.float32)
    facts = {
        'source': 'folder', 'root': root,
        'description': f'own images from `{root}`: {len(labels)} classes, {len(decoded):,} readable images',
        'split': how, 'seed': options.seed,
        'input': {'width': width, 'height': height, 'channels': channels, 'roi': spec.get('roi'),
                  'chosen': {'size': options.size is None, 'channels': options.channels is None}},
        'classes': [{'label': name, **{s: int(n) for s, n in zip(
            SPLITS, (_counts(labels_ok[positions[s]], len(labels))[c] for s in SPLITS))},
            'unreadable': bad_per_class[c]} for c, name in enumerate(labels)],
        'unreadable': unreadable,
        'unreadableCount': len(unreadable),
        'duplicates': duplicates,
        'imbalance': {'ratio': round(ratio, 3), 'largest': labels[int(np.argmax(train_counts))],
                      'smallest': labels[int(np.argmin(train_counts))],
                      'handling': ('class-weighted losses (weight n / (classes x count)): '
                                   + ', '.join(f'{labels[c]} {w:.3f}' for c, w in enumerate(weights.tolist()))
                                   if weights is not None else
                                   f'none needed (largest / smallest training class ≤ {IMBALANCE_RATIO})')},
        'flip': options.flip,
    }
    files = tuple(paths[i] for i in decoded)
    px = Pixels(mean, std, options.flip)

    def split(s):
        at = torch.from_numpy(positions[s])
        return Split(torch.from_numpy(pixels[positions[s]]), torch.from_numpy(labels_ok[positions[s]]), at, px,
                     weights)

    return Splits(split('train'), split('val'), split('test'),
                  DataSet(options.name, tuple(labels), spec, facts, files))


def _without_copies(pixels: np.ndarray, entries: list):
    """The positions to keep, and the copies left out with the reason; entries: (file, class, split) per image. Of
    identical images one is kept: in a folder already split the one in test/ (then val/), so the test stays as given;
    else the first by path. Identical images under two classes keep neither: their label is unknown."""
    rank = {'test': 0, 'val': 1, 'train': 2, None: 3}
    dropped, left_out = set(), []
    for group in groups(pixels):
        group.sort(key=lambda k: (rank[entries[k][2]], k))
        files = [entries[k][0] for k in group]
        classes = sorted({entries[k][1] for k in group})
        if len(classes) > 1:
            dropped.update(group)
            left_out += [{'file': f, 'code': 'conflicting labels',
                          'reason': f'the same pixels as {", ".join(o for o in files if o != f)} under classes '
                                    f'{", ".join(classes)}: left out of every class'} for f in files]
        else:
            dropped.update(group[1:])
            left_out += [{'file': f, 'code': 'duplicate', 'reason': f'the same pixels as {files[0]} (kept)'}
                         for f in files[1:]]
    return [k for k in range(len(pixels)) if k not in dropped], left_out


def _check_sizes(labels: List[str], counts: List[int], bad: List[int]) -> None:
    small = [(labels[c], n, bad[c]) for c, n in enumerate(counts) if n < MIN_PER_CLASS]
    if small:
        detail = '; '.join(f'class "{name}" has {n} readable image{"s" * (n != 1)}'
                           + (f' ({b} unreadable)' if b else '') for name, n, b in small)
        raise DataError(f'{detail}: at least {MIN_PER_CLASS} per class are needed for training, validation and '
                        'test (add images)')


def split_record(splits: Splits) -> dict:
    """split.json: which file went where (paths relative to the data folder), so the test split can be re-run."""
    root = splits.data.facts['root']
    return {'format': 'sgmoe-split/1', 'root': root, 'how': splits.data.facts['split'], 'labels': list(splits.data.labels),
            **{s: [{'file': os.path.relpath(splits.data.files[int(i)], root), 'label': int(y)}
                   for i, y in zip(part.indices, part.labels)]
               for s, part in zip(SPLITS, (splits.train, splits.val, splits.test))}}
