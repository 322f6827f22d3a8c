"""The anomaly factory's data folder: DIR/train/good/ (good parts only), an optional DIR/calibration/good/ (good parts
from another batch or day, which set the threshold instead of training images held out) and an optional
DIR/test/{good,<defect>...} with DIR/test/masks/<defect>/<name>.png. Any size, gray or RGB, an optional ROI;
unreadable files and copies of other images are listed."""
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from duplicates import groups

# Every format a node accepts and keeps for review (src/ingest/format.ts), so an exported review set loads whole.
EXTENSIONS = ('.png', '.jpg', '.jpeg', '.gif', '.bmp', '.tif', '.tiff', '.webp', '.pgm', '.ppm')
MIN_GOOD = 40  # a Gaussian per mode and two held-out good splits need at least this many good images
MIN_CALIBRATION = 20  # calibration/good/ is cut in two (normalise, threshold): at least 10 each


class DataError(RuntimeError):
    """A data folder the factory cannot train on; the message says what was expected and what was found."""


@dataclass
class Images:
    pixels: np.ndarray  # uint8 [N, H, W, C]
    names: list  # paths relative to the data folder
    bad: list = field(default_factory=list)  # (path, reason) of files that could not be read


@dataclass
class Dataset:
    train: Images  # good only
    test: Images  # good and defective, or empty
    test_labels: np.ndarray  # 0 good, 1 defective
    test_kinds: list  # the defect kind (folder name) of each test image
    test_masks: np.ndarray  # int8 [N, H, W] at model size: 1 defect, 0 not, -1 unknown (no mask); None when none came
    colorspace: str  # 'gray' or 'rgb'
    roi: tuple  # (x, y, width, height) or None
    calibration: Images = None  # good only, or None when the folder has no calibration/good/
    copies: list = field(default_factory=list)  # (path, reason) of training or calibration images left out as copies

    def unreadable(self) -> list:
        """(path, reason) of every file that could not be read."""
        return [bad for images in (self.train, self.calibration, self.test) if images for bad in images.bad]


def _files(folder: str) -> list:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))


def _gray_palette(image) -> bool:
    """A palette image (a GIF, a PNG-8) whose colours all have R = G = B: gray parts, however they were saved."""
    if image.mode not in ('P', 'PA'):
        return False
    palette = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)
    return bool(len(palette)) and bool((palette == palette[:, :1]).all())


def _open(path: str, roi):
    with Image.open(path) as image:
        image.load()
        gray = image.mode in ('L', 'I;16', 'I', '1', 'LA') or _gray_palette(image)
        image = image.convert('L' if gray else 'RGB')
    if roi:
        x, y, w, h = roi
        if x + w > image.width or y + h > image.height:
            raise ValueError(f'ROI {x},{y},{w},{h} lies outside the {image.width}x{image.height} image')
        image = image.crop((x, y, x + w, y + h))
    return image, gray


def _read(paths: list, root: str, roi, size, colorspace: str) -> Images:
    """Reads, crops and (with size) resizes; without size every image must already have one size."""
    images, names, bad, sizes = [], [], [], {}
    for path in paths:
        try:
            image, _ = _open(path, roi)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            bad.append((os.path.relpath(path, root), str(error)))
            continue
        sizes.setdefault(image.size, os.path.relpath(path, root))
        if size:
            image = image.resize(size, Image.BILINEAR)
        images.append(np.asarray(image.convert('L' if colorspace == 'gray' else 'RGB')))
        names.append(os.path.relpath(path, root))
    if not size and len(sizes) > 1:
        found = ', '.join(f'{w}x{h} (e.g. {name})' for (w, h), name in list(sizes.items())[:4])
        raise DataError(f'images of one size expected without --size, found {len(sizes)} sizes: {found}. '
                        f'Pass --size WxH to resize them all (or --roi to crop one region).')
    pixels = np.stack(images) if images else np.zeros((0, 1, 1), np.uint8)
    if pixels.ndim == 3:
        pixels = pixels[..., None]
    return Images(pixels, names, bad)


def _colorspace(paths: list, roi) -> str:
    for path in paths:
        try:
            if not _open(path, roi)[1]:
                return 'rgb'
        except (OSError, UnidentifiedImageError, ValueError):
            continue
    return 'gray'


def load(root: str, size=None, roi=None) -> Dataset:
    good = os.path.join(root, 'train', 'good')
    if not os.path.isdir(good):
        raise DataError(f'a folder of good images expected at {good}, found none (layout: DIR/train/good/*.png, '
                        f'optional DIR/test/good/, DIR/test/<defect>/, DIR/test/masks/<defect>/)')
    paths = _files(good)
    colorspace = _colorspace(paths, roi)
    train = _read(paths, root, roi, size, colorspace)
    if len(train.names) < MIN_GOOD:
        raise DataError(f'at least {MIN_GOOD} readable good images expected in {good}, found {len(train.names)}'
                        f'{f" ({len(train.bad)} unreadable)" if train.bad else ""}')
    size = size or (train.pixels.shape[2], train.pixels.shape[1])
    test_root = os.path.join(root, 'test')
    kinds = sorted(k for k in os.listdir(test_root) if k != 'masks' and os.path.isdir(os.path.join(test_root, k))) \
        if os.path.isdir(test_root) else []
    test_paths, test_kinds = [], []
    for kind in kinds:
        found = _files(os.path.join(test_root, kind))
        test_paths += found
        test_kinds += [kind] * len(found)
    test = _read(test_paths, root, roi, size, colorspace)
    bad_test = {os.path.join(root, name) for name, _ in test.bad}
    test_kinds = [k for p, k in zip(test_paths, test_kinds) if p not in bad_test]
    labels = np.array([0 if k == 'good' else 1 for k in test_kinds], np.int64)
    masks = _masks(root, test, test_kinds, size, roi) if os.path.isdir(os.path.join(test_root, 'masks')) else None
    train, copies = _without_copies(train, [test])
    calibration = _calibration(root, roi, size, colorspace, [test, train], copies)
    return Dataset(train, test, labels, test_kinds, masks, colorspace, roi, calibration, copies)


def _calibration(root: str, roi, size, colorspace: str, others: list, copies: list):
    """DIR/calibration/good/ less copies of the test or training images (appended to copies), or None without it."""
    folder = os.path.join(root, 'calibration', 'good')
    if not os.path.isdir(folder):
        return None
    calibration = _read(_files(folder), root, roi, size, colorspace)
    if len(calibration.names):
        calibration, found = _without_copies(calibration, others)
        copies += found
    if len(calibration.names) < MIN_CALIBRATION:
        raise DataError(f'at least {MIN_CALIBRATION} readable good images expected in {folder}, found '
                        f'{len(calibration.names)}: add good images of another batch, or remove the folder to set the '
                        'threshold on training images held out')
    return calibration


def _without_copies(images: Images, others: list):
    """The images less those with the pixels of an image in `others` (the test set first: an image scored as
    memorised is not scored as good) or of an earlier one of theirs, and those left out with the reason."""
    shown = [i for i in others if len(i.names)]
    pixels = np.concatenate([i.pixels for i in shown + [images]])
    names = [n for i in shown + [images] for n in i.names]
    first = len(pixels) - len(images.names)  # the images' first position
    dropped, copies = set(), []
    for group in groups(pixels):
        for k in group[1:]:
            if k >= first:
                dropped.add(k - first)
                copies.append((names[k], f'the same pixels as {names[group[0]]}'))
    keep = [k for k in range(len(images.names)) if k not in dropped]
    return Images(images.pixels[keep], [images.names[k] for k in keep], images.bad), copies


def _masks(root: str, test: Images, kinds: list, size, roi):
    """One mask per test image at model size: DIR/test/masks/<kind>/<stem>.png (1 defect, 0 not), all 0 for good
    images, all -1 (unknown: left out of pixel AUROC) for a defect image with none, such as one from an operator's
    review (`sgmoe audit export --reviewed --as-dataset`); None when no defect image has one."""
    masks = np.zeros((len(kinds), size[1], size[0]), np.int8)
    for i, (name, kind) in enumerate(zip(test.names, kinds)):
        if kind == 'good':
            continue
        stem = os.path.splitext(os.path.basename(name))[0]
        path = os.path.join(root, 'test', 'masks', kind, stem + '.png')
        if not os.path.exists(path):
            masks[i] = -1
            continue
        image, _ = _open(path, roi)
        masks[i] = np.asarray(image.convert('L').resize(size, Image.NEAREST)) > 127
    return masks if (masks == 1).any() else None
