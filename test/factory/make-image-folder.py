"""Writes a small "own images" data set for the factory tests: one folder per class of RGB JPEGs, non-square (3:2),
of several sizes, cut from real photographs that Debian's python3-skimage ships (skimage/data). A class is one
surface: crops of random position and scale from its photograph, with random brightness and contrast, so the
classes are real textures rather than flat colours.

    /usr/bin/python3 test/factory/make-image-folder.py OUT [--per-class 320,280,240,160] [--seed 0] [--bad]

--bad adds two files the factory must skip and count: a text file named .jpg and a JPEG cut in half.
"""
import argparse
import io
import os

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data as photos

# class name -> the skimage photograph it is cut from (gray ones are stored as RGB JPEGs like any camera's)
SURFACES = {'brick': photos.brick, 'grass': photos.grass, 'gravel': photos.gravel, 'tissue': photos.immunohistochemistry,
            'coffee': photos.coffee, 'cat-fur': photos.chelsea}


def crops(photo: np.ndarray, count: int, rng) -> list:
    image = Image.fromarray(photo).convert('RGB')
    out = []
    for _ in range(count):
        w = int(rng.integers(60, min(image.width, 3 * image.height // 2, 240) + 1))
        h = w * 2 // 3
        x, y = int(rng.integers(0, image.width - w + 1)), int(rng.integers(0, image.height - h + 1))
        crop = image.crop((x, y, x + w, y + h))
        crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.75, 1.25)))
        crop = ImageEnhance.Contrast(crop).enhance(float(rng.uniform(0.75, 1.25)))
        out.append(crop)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('out')
    parser.add_argument('--per-class', default='320,280,240,160', help='images per class, one count per class')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--bad', action='store_true')
    args = parser.parse_args()
    counts = [int(n) for n in args.per_class.split(',')]
    rng = np.random.default_rng(args.seed)
    for (name, photo), count in zip(SURFACES.items(), counts):
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        for i, crop in enumerate(crops(photo(), count, rng)):
            crop.save(os.path.join(folder, f'{name}-{i:04d}.jpg'), quality=90)
    if args.bad:
        first = os.path.join(args.out, next(iter(SURFACES)))
        with open(os.path.join(first, 'notes.jpg'), 'w') as f:
            f.write('not a picture\n')
        buffer = io.BytesIO()
        crops(photos.brick(), 1, rng)[0].save(buffer, 'JPEG', quality=90)
        with open(os.path.join(first, 'cut-in-half.jpg'), 'wb') as f:
            f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])


if __name__ == '__main__':
    main()
