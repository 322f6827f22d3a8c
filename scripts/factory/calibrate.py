"""The SGMoE decision (the PyTorch reference of docs/DESIGN.md's rule) and the early-exit threshold calibration."""
from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 1.000001)
# The experts train through the ensemble at the recipe's baseWeight; the shipped mix is calibrated with the threshold.
BASE_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
ACCURACY_TOLERANCE = 0.001
RULE = ('the operating point is the (ensemble baseWeight, early-exit threshold) pair with the lowest mean MACs whose '
        'validation accuracy is within 0.1 point of the best validation accuracy of the sweep over baseWeight in '
        f'{{{", ".join(map(str, BASE_WEIGHTS))}}} and the thresholds (threshold 0 = base only, 1.000001 = always an '
        'expert); ties go to the higher accuracy, then to the baseWeight nearest 0.5')


@dataclass(frozen=True)
class PartMacs:
    trunk: int
    base: int
    gate: int
    expert: int

    @property
    def always(self) -> int:
        """Spent on every sample: trunk, base branch and gate (the gate runs before the early-exit test)."""
        return self.trunk + self.base + self.gate

    def worst(self, top_k: int = 1) -> int:
        return self.always + top_k * self.expert


def decide(base_logits, gate_logits, expert_logits, threshold: float, top_k: int, base_weight: float) -> dict:
    """Batched decision: expert_logits is [N,K,L]. Early exit when max softmax(base) >= threshold; otherwise the
    top_k experts by gate softmax (ties to the lowest index), weights renormalised, final = w*pBase + (1-w)*pExp."""
    p_base = F.softmax(base_logits, dim=1)
    confidence = p_base.max(dim=1).values
    early_exit = confidence >= threshold
    gate = F.softmax(gate_logits, dim=1)
    chosen = torch.sort(gate, dim=1, descending=True, stable=True).indices[:, :top_k]
    weights = torch.gather(gate, 1, chosen)
    weights = weights / weights.sum(dim=1, keepdim=True)
    p_experts = F.softmax(expert_logits, dim=2)
    picked = torch.gather(p_experts, 1, chosen[:, :, None].expand(-1, -1, p_experts.shape[2]))
    p_expert = (picked * weights[:, :, None]).sum(dim=1)
    final = torch.where(early_exit[:, None], p_base, base_weight * p_base + (1 - base_weight) * p_expert)
    return {'probabilities': final, 'label': final.argmax(dim=1), 'score': final.max(dim=1).values,
            'earlyExit': early_exit, 'experts': chosen, 'baseConfidence': confidence, 'gate': gate}


def expert_share(decision: dict, experts: int) -> List[float]:
    """Share of each expert (top-1) among the samples that reach an expert."""
    routed = decision['experts'][~decision['earlyExit'], 0]
    counts = torch.bincount(routed, minlength=experts).float()
    return (counts / max(1, len(routed))).tolist()


def evaluate(outputs: dict, labels, threshold: float, macs: PartMacs, base_weight: float, top_k: int = 1) -> dict:
    decision = decide(outputs['logits'], outputs['gate_logits'], outputs['experts'], threshold, top_k, base_weight)
    expert_rate = 1.0 - float(decision['earlyExit'].float().mean())
    return {
        'threshold': threshold,
        'baseWeight': base_weight,
        'accuracy': round(float((decision['label'] == labels).float().mean()), 6),
        'expertRate': round(expert_rate, 6),
        'meanMacs': round(macs.always + expert_rate * top_k * macs.expert, 1),
        'expertShare': [round(s, 6) for s in expert_share(decision, outputs['gate_logits'].shape[1])],
    }


def sweep(outputs: dict, labels, macs: PartMacs, base_weights=BASE_WEIGHTS) -> List[dict]:
    return [evaluate(outputs, labels, t, macs, w) for w in base_weights for t in THRESHOLDS]


def operating_point(points: List[dict]) -> dict:
    best = max(p['accuracy'] for p in points)
    eligible = [p for p in points if p['accuracy'] >= best - ACCURACY_TOLERANCE - 1e-9]
    return min(eligible, key=lambda p: (p['meanMacs'], -p['accuracy'], abs(p['baseWeight'] - 0.5)))


def at_base_weight(points: List[dict], base_weight: float) -> List[dict]:
    """The threshold sweep at one baseWeight (what the manifest's calibration.points describe)."""
    return [p for p in points if p['baseWeight'] == base_weight]
