"""Whether the experts recovered the operating regimes, and the unknown-regime score with its threshold."""
import math

import torch
import torch.nn.functional as F

TARGET_FALSE_ALARM = 0.01  # on validation windows of seen regimes; the target on test is <= 2%


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


def scores(outputs: dict, base_weight: float) -> dict:
    """Unknown-regime scores per window, higher = less known: 1 - the gate's top probability, and the total
    variation between the base's and the top-1 expert's class probabilities."""
    gate = F.softmax(outputs['gate_logits'], 1)
    top = gate.argmax(1)
    p_base = F.softmax(outputs['logits'], 1)
    p_expert = F.softmax(outputs['experts'][torch.arange(len(top)), top], 1)
    return {'gate': 1 - gate.max(1).values, 'disagreement': 0.5 * (p_base - p_expert).abs().sum(1)}


def calibrate(val_scores: torch.Tensor, target: float = TARGET_FALSE_ALARM) -> float:
    """The smallest threshold that flags at most `target` of the validation windows (all from seen regimes)."""
    ordered = val_scores.sort().values
    keep = math.ceil((1 - target) * len(ordered)) - 1
    return float(ordered[max(0, keep)])


def alarm_rate(values: torch.Tensor, threshold: float) -> float:
    return round(float((values > threshold).float().mean()), 4) if len(values) else None
