"""Test-split metrics of every model (used only for the final report; every choice was made on validation)."""
import math
from typing import List

import torch

import calibrate
from data import Split
from train import accuracy, predict


def usage(shares: List[float]) -> dict:
    """Expert-usage distribution: the shares, the largest, and the entropy normalised by log K (1 = uniform)."""
    entropy = max(0.0, -sum(s * math.log(s) for s in shares if s > 0))
    return {'shares': [round(s, 4) for s in shares], 'maxShare': round(max(shares), 4),
            'normalisedEntropy': round(entropy / math.log(len(shares)), 4)}


def classifier(model, split: Split) -> dict:
    return {'accuracy': round(accuracy(predict(model, split), split.labels), 4)}


def classifier_labels(model, split: Split) -> torch.Tensor:
    return predict(model, split).argmax(dim=1)


def sgmoe_labels(variant, outputs: dict) -> torch.Tensor:
    """The labels the variant decides at its operating point, from the outputs of evaluate.sgmoe."""
    return calibrate.decide(outputs['logits'], outputs['gate_logits'], outputs['experts'],
                            variant.operating['threshold'], 1, variant.operating['baseWeight'])['label']


def joint(model, split: Split) -> dict:
    with torch.no_grad():
        logits, routed = [], []
        for start in range(0, len(split), 1000):
            out, top = model.sparse_forward(split.normalised(slice(start, start + 1000)))
            logits.append(out)
            routed.append(top)
    routed = torch.cat(routed)
    shares = (torch.bincount(routed, minlength=len(model.experts)).float() / len(routed)).tolist()
    return {'accuracy': round(accuracy(torch.cat(logits), split.labels), 4), 'usage': usage(shares)}


def sgmoe(variant, split: Split):
    """The variant at its validation operating point (threshold and baseWeight), and with every sample sent to an
    expert at the same baseWeight; also returns the outputs of every part (the selftest cases are picked from them)."""
    outputs = variant.model.outputs(split.normalised())
    base_weight = variant.operating['baseWeight']
    at = calibrate.evaluate(outputs, split.labels, variant.operating['threshold'], variant.macs, base_weight)
    always = calibrate.evaluate(outputs, split.labels, calibrate.THRESHOLDS[-1], variant.macs, base_weight)
    return {'threshold': at['threshold'], 'baseWeight': base_weight, 'accuracy': round(at['accuracy'], 4),
            'expertRate': round(at['expertRate'], 4), 'meanMacs': at['meanMacs'], 'worstMacs': variant.macs.worst(),
            'usage': usage(at['expertShare']),
            'alwaysExpert': {'accuracy': round(always['accuracy'], 4), 'usage': usage(always['expertShare'])}}, outputs
