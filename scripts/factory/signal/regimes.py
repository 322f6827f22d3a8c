"""Whether the experts recovered the operating regimes, and the unknown-regime scores with their thresholds."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from nets import gate_input

TARGET_FALSE_ALARM = 0.01  # on validation windows of seen regimes; the target on test is <= 2%
SHIPPED = ('gate', 'distance')  # the node flags a window when either score is over its threshold


def regime_name(rpm: float, load: float) -> str:
    return f'{rpm:g} rpm' + ('' if math.isnan(load) else f', load {load:g}')


def purity(routed: torch.Tensor, rpm: torch.Tensor, load: torch.Tensor, experts: int) -> list:
    """Per expert: the windows the gate sends it (top-1), their regimes by speed and by speed+load, and the share
    of the most common speed (its purity). Untagged windows (nan rpm) have no regime: no speed, no purity."""
    rows = []
    for e in range(experts):
        mine = routed == e
        speeds, regimes = {}, {}
        for r, l in zip(rpm[mine].tolist(), load[mine].tolist()):
            if not math.isnan(r):
                speeds[f'{r:g}'] = speeds.get(f'{r:g}', 0) + 1
                regimes[regime_name(r, l)] = regimes.get(regime_name(r, l), 0) + 1
        count = int(mine.sum())
        top = max(speeds.items(), key=lambda kv: kv[1]) if speeds else (None, 0)
        rows.append({'expert': e, 'windows': count, 'speeds': speeds, 'regimes': regimes,
                     'majoritySpeed': top[0], 'purity': round(top[1] / count, 4) if speeds else None})
    return rows


class RegimeDistance(nn.Module):
    """How far the gate's input lies from the regimes it was trained on: the mean squared standardised distance to
    the nearest regime centroid (per-regime mean and spread of the pooled features). A softmax grows MORE confident
    when a linear gate extrapolates (a speed beyond the trained range); this distance grows instead."""

    def __init__(self, centroids: torch.Tensor, spread: torch.Tensor):
        super().__init__()
        self.register_buffer('centroids', centroids)  # [K, D]
        self.register_buffer('inverse_spread', 1 / spread)  # [K, D]

    def forward(self, pooled):
        standardised = (pooled[:, None, :] - self.centroids[None]) * self.inverse_spread[None]
        return (standardised * standardised).mean(2).min(1).values


def fit_distance(pooled: torch.Tensor, routed: torch.Tensor, experts: int, floor: float = 1e-2) -> RegimeDistance:
    """Centroids and spreads of the training windows the gate routes to each expert (its regime); the floor keeps a
    feature that never varies within a regime from dominating. An expert the gate routes nothing to gets the spread
    of all windows."""
    members = [pooled[routed == e] if bool((routed == e).any()) else pooled for e in range(experts)]
    centroids = torch.stack([m.mean(0) for m in members])
    spread = torch.stack([m.std(0, unbiased=False) for m in members]) + floor
    return RegimeDistance(centroids, spread).eval()


class GatePart(nn.Module):
    """gate.onnx: features -> gate_logits and regime_distance, one graph (the pooling is the gate's own)."""

    def __init__(self, gate: nn.Module, distance: RegimeDistance):
        super().__init__()
        self.gate, self.distance = gate, distance

    def forward(self, features):
        return self.gate(features), self.distance(gate_input(features))


def scores(outputs: dict, base_weight: float) -> dict:
    """Unknown-regime scores per window, higher = less known: 1 - the gate's top probability, the distance of the
    gate's input to the nearest regime centroid, and the total variation between the base's and the top-1 expert's
    class probabilities."""
    gate = F.softmax(outputs['gate_logits'], 1)
    top = gate.argmax(1)
    p_base = F.softmax(outputs['logits'], 1)
    p_expert = F.softmax(outputs['experts'][torch.arange(len(top)), top], 1)
    return {'gate': 1 - gate.max(1).values, 'distance': outputs['regime_distance'],
            'disagreement': 0.5 * (p_base - p_expert).abs().sum(1)}


def thresholds(val_scores: dict) -> dict:
    """Each score's threshold on validation windows of seen regimes: the shipped ones at half the target each, so
    that the node's rule (either one over) flags at most the target; the others, reported only, at the target."""
    return {name: calibrate(s, TARGET_FALSE_ALARM / 2 if name in SHIPPED else TARGET_FALSE_ALARM)
            for name, s in val_scores.items()}


def alarm_rates(split_scores: dict, limits: dict) -> dict:
    """Each score's alarm rate, and the node's rule's ('regime': gate or distance over its threshold)."""
    rates = {name: alarm_rate(s, limits[name]) for name, s in split_scores.items()}
    either = torch.stack([split_scores[n] > limits[n] for n in SHIPPED]).any(0)
    rates['regime'] = round(float(either.float().mean()), 4) if len(either) else None
    return rates


def calibrate(val_scores: torch.Tensor, target: float = TARGET_FALSE_ALARM) -> float:
    """The smallest threshold that flags at most `target` of the validation windows (all from seen regimes)."""
    ordered = val_scores.sort().values
    keep = math.ceil((1 - target) * len(ordered)) - 1
    return float(ordered[max(0, keep)])


def alarm_rate(values: torch.Tensor, threshold: float) -> float:
    return round(float((values > threshold).float().mean()), 4) if len(values) else None
