"""Honest statistics for the test split: Wilson 95% intervals of accuracies, exact McNemar tests of paired models,
and per-class accuracy."""
import math
from typing import List

import torch

Z95 = 1.959963984540054


def wilson(correct: int, total: int, z: float = Z95) -> List[float]:
    """The Wilson score interval of a binomial proportion (better than the normal one near 0 and 1)."""
    if total == 0:
        return [0.0, 1.0]
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n trials at p = 1/2: twice the smaller tail, at most 1."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def mcnemar(a_correct: torch.Tensor, b_correct: torch.Tensor) -> dict:
    """Exact McNemar test of two models on the same samples: only the discordant pairs count (A right and B wrong,
    or the reverse); under the null hypothesis of equal accuracy each is a fair coin."""
    a_only = int((a_correct & ~b_correct).sum())
    b_only = int((~a_correct & b_correct).sum())
    return {'aOnlyCorrect': a_only, 'bOnlyCorrect': b_only, 'p': binomial_two_sided(a_only, a_only + b_only)}


def per_class(predicted: torch.Tensor, labels: torch.Tensor, names) -> List[dict]:
    rows = []
    for c, name in enumerate(names):
        mask = labels == c
        n, k = int(mask.sum()), int((predicted[mask] == c).sum())
        rows.append({'label': name, 'samples': n, 'correct': k, 'accuracy': round(k / n, 4) if n else None})
    return rows
