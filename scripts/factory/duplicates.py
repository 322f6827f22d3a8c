"""Exact duplicates among decoded images: the same pixels from two files (a file copied twice, one frame saved under
two names). A copy in training and one in test would let the test score what the model memorised."""
import hashlib
from typing import List

import numpy as np


def groups(pixels: np.ndarray) -> List[List[int]]:
    """The positions of images whose pixels another image has too, in groups of two or more, each in position order."""
    found = {}
    for i, image in enumerate(pixels):
        found.setdefault(hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest(), []).append(i)
    return [group for group in found.values() if len(group) > 1]
