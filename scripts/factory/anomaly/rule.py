"""The anomaly decision (PyTorch reference of src/engine/tasks/anomaly.ts), the threshold from good images only,
and the metrics."""
import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

# Quantiles of the final score on held-out good images kept in the manifest: the device turns a false-alarm rate
# into a threshold with them at run time.
QUANTILES = [0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999]
# Early-exit points, as quantiles of the base score on held-out good images (0: the expert always runs).
EXIT_QUANTILES = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9]
NEVER = -1e9  # an early-exit threshold below every score


def decide(base_score: torch.Tensor, gate_logits: torch.Tensor, expert_scores: torch.Tensor, exit_below: float,
           base_weight: float, threshold: float, base_map=None, expert_maps=None) -> dict:
    """base_score [N], gate_logits [N,K], expert_scores [N,K] (every expert, for the reference; the device runs one).
    Early exit when the base score is below exit_below (clearly good); else the top-1 expert (ties: lowest index)
    and final = w * base + (1 - w) * expert; anomalous when final >= threshold."""
    early = base_score < exit_below
    expert = gate_logits.argmax(dim=1)
    index = torch.arange(len(expert))
    mixed = base_weight * base_score + (1 - base_weight) * expert_scores[index, expert]
    final = torch.where(early, base_score, mixed)
    out = {'final': final, 'early': early, 'expert': torch.where(early, -1, expert), 'anomalous': final >= threshold}
    if base_map is not None:
        mixed_map = base_weight * base_map + (1 - base_weight) * expert_maps[index, expert]
        out['map'] = torch.where(early[:, None, None], base_map, mixed_map)
    return out


def quantile_table(final: torch.Tensor) -> list:
    values = torch.quantile(final.double(), torch.tensor(QUANTILES, dtype=torch.float64))
    return [{'q': q, 'score': round(float(v), 6)} for q, v in zip(QUANTILES, values)]


def threshold_for(table: list, false_alarm_rate: float) -> float:
    """The score at quantile 1 - rate, linear between the stored quantiles (the device does the same)."""
    q = 1 - false_alarm_rate
    points = [(p['q'], p['score']) for p in table]
    if q <= points[0][0]:
        return points[0][1]
    if q >= points[-1][0]:
        return points[-1][1]
    for (q0, s0), (q1, s1) in zip(points, points[1:]):
        if q0 <= q <= q1:
            return s0 + (s1 - s0) * (q - q0) / (q1 - q0)
    raise AssertionError('unreachable')


def image_metrics(scores: torch.Tensor, labels: np.ndarray, threshold: float) -> dict:
    flagged = (scores >= threshold).numpy()
    good, bad = labels == 0, labels == 1
    metrics = {'falseAlarmRate': float(flagged[good].mean()) if good.any() else None,
               'missRate': float((~flagged[bad]).mean()) if bad.any() else None,
               'auroc': float(roc_auc_score(labels, scores.numpy())) if good.any() and bad.any() else None}
    return metrics


def pixel_auroc(maps: torch.Tensor, masks: np.ndarray) -> float:
    """Coarse maps [N,h,w] upsampled to the masks' size [N,H,W] (bilinear), AUROC over every pixel of the images
    whose mask is known (images.load marks the others -1)."""
    known = torch.from_numpy((masks >= 0).reshape(len(masks), -1).all(axis=1))
    up = torch.nn.functional.interpolate(maps[known][:, None].float(), size=masks.shape[1:], mode='bilinear',
                                         align_corners=False)[:, 0]
    return float(roc_auc_score(masks[known.numpy()].reshape(-1), up.numpy().reshape(-1)))


FIRM = 5  # held-out good images expected above the threshold for it to rest on more than the top few scores


def resolution_note(split_sizes: dict, rate: float, calibrated: bool = False):
    """A warning when too few held-out good images set the threshold for this rate, or None: with `held` of them,
    about held x rate lie above the threshold, so fewer than FIRM leave it to the top few scores of a small sample.
    split_sizes: the good images that fit, normalise, and (held out) threshold the model; calibrated: the last two
    came from calibration/good/ rather than train/good/."""
    held = split_sizes['threshold']
    if held * rate >= FIRM:
        return None
    pool = split_sizes['norm'] + held if calibrated else sum(split_sizes.values())
    needed = math.ceil(FIRM / rate * pool / held)
    return (f'only {held} held-out good images set the threshold for a {rate:.2%} false-alarm rate: about '
            f'{held * rate:.1f} of them lie above it, so it rests on the top few scores and the rate on the line may '
            f'differ; about {needed:,} good images in {"calibration" if calibrated else "train"}/good would give {FIRM}')
