"""The signal SGMoE's networks: trunk = fixed spectral front-end + one learned conv layer; a light base branch (the
early exit), heavier expert branches, a linear gate on position-keeping pooled features (the regime is where the
lines sit on the frequency axis), and the dense and per-regime baselines."""
from dataclasses import dataclass, replace
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from frontend import BAND_HZ, BANDS, FrontEnd

GATE_POSITIONS = 8  # frequency positions the gate keeps: enough to see where the shaft harmonics sit


@dataclass(frozen=True)
class Arch:
    channels: int = 3
    window: int = 8192
    sample_rate: float = 25600.0
    classes: int = 4
    trunk_width: int = 24
    base_widths: tuple = (24, 32)
    expert_widths: tuple = (64, 96)
    band: tuple = BAND_HZ  # the front-end's envelope band in Hz

    def widened(self, scale: float) -> 'Arch':
        return replace(self, expert_widths=tuple(int(round(w * scale)) for w in self.expert_widths))


def _block(cin, cout, kernel, stride):
    return nn.Sequential(nn.Conv1d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm1d(cout),
                         nn.ReLU())


class Trunk(nn.Module):
    """signal [N, C, window] -> features [N, trunk_width, BANDS]."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.frontend = FrontEnd(arch.channels, arch.window, arch.sample_rate, arch.band)
        self.learned = LearnedTrunk(arch)

    def forward(self, signal):
        return self.learned(self.frontend(signal))


class LearnedTrunk(nn.Module):
    """The trainable part of the trunk; training runs it on precomputed front-end spectra."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.norm = nn.BatchNorm1d(2 * arch.channels)
        self.conv = _block(2 * arch.channels, arch.trunk_width, 5, 1)

    def forward(self, spectra):
        return self.conv(self.norm(spectra))


class Branch(nn.Module):
    """features -> logits; widths (a, b): conv k5 stride 2, conv k5, conv k3 stride 2, global pool, linear."""

    def __init__(self, arch: Arch, widths: tuple):
        super().__init__()
        a, b = widths
        self.stages = nn.Sequential(_block(arch.trunk_width, a, 5, 2), _block(a, a, 5, 1), _block(a, b, 3, 2))
        self.fc = nn.Linear(b, arch.classes)

    def embed(self, features):
        return self.stages(features).mean(dim=2)

    def forward(self, features):
        return self.fc(self.embed(features))


def gate_input(features):
    """Pooled to GATE_POSITIONS frequency positions and flattened: the gate's (and the clustering's) view."""
    return F.avg_pool1d(features, BANDS // GATE_POSITIONS).flatten(1)


class Gate(nn.Module):
    def __init__(self, arch: Arch, experts: int):
        super().__init__()
        self.fc = nn.Linear(arch.trunk_width * GATE_POSITIONS, experts)

    def forward(self, features):
        return self.fc(gate_input(features))


class Classifier(nn.Module):
    """A trunk and one branch: base alone, dense and per-regime baselines."""

    def __init__(self, arch: Arch, widths: tuple):
        super().__init__()
        self.trunk = Trunk(arch)
        self.branch = Branch(arch, widths)

    def forward(self, signal):
        return self.branch(self.trunk(signal))


@dataclass
class SGMoE:
    trunk: Trunk
    base: Branch
    gate: Gate
    experts: List[Branch]
    distance: Optional[nn.Module] = None  # regimes.RegimeDistance: pooled features -> distance to the regimes

    def eval(self) -> 'SGMoE':
        for m in (self.trunk, self.base, self.gate, *self.experts, *([self.distance] if self.distance else [])):
            m.eval()
        return self

    @torch.no_grad()
    def outputs(self, signals: torch.Tensor, batch_size: int = 256) -> dict:
        chunks = []
        for start in range(0, len(signals), batch_size):
            features = self.trunk(signals[start:start + batch_size])
            chunks.append({'features': features, 'logits': self.base(features), 'gate_logits': self.gate(features),
                           'experts': torch.stack([e(features) for e in self.experts], 1),
                           **({'regime_distance': self.distance(gate_input(features))} if self.distance else {})})
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
