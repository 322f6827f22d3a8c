"""The networks: a small ResNet split into trunk (stem + first stage) and branch (the rest), the single linear gate,
the SGMoE assembly, and the jointly trained MoE baseline."""
from dataclasses import dataclass, replace
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Arch:
    """ResNet for CxHxW inputs (Fashion-MNIST: 1x28x28): the trunk runs at half resolution (stride-2 stem), each
    branch stage halves it again."""
    trunk_width: int = 16
    # Most branch blocks run at 7x7, where MACs are cheap in parameters: each expert ONNX file stays ~0.35 MB.
    widths: Tuple[int, ...] = (32, 48)
    blocks: Tuple[int, ...] = (3, 1)
    classes: int = 10
    in_channels: int = 1

    def widened(self, scale: float) -> 'Arch':
        return replace(self, widths=tuple(int(round(w * scale)) for w in self.widths))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class Trunk(nn.Module):
    """image [N,C,H,W] -> features [N,trunk_width,H/2,W/2]; shared by base, gate and experts."""

    def __init__(self, arch: Arch):
        super().__init__()
        w = arch.trunk_width
        self.stem = nn.Sequential(nn.Conv2d(arch.in_channels, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stage = BasicBlock(w, w, 1)

    def forward(self, image):
        return self.stage(self.stem(image))


class Branch(nn.Module):
    """features -> logits: the base model after the trunk; every expert has this architecture."""

    def __init__(self, arch: Arch):
        super().__init__()
        layers, cin = [], arch.trunk_width
        for width, count in zip(arch.widths, arch.blocks):
            for i in range(count):
                layers.append(BasicBlock(cin, width, 2 if i == 0 else 1))
                cin = width
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, arch.classes)

    def embed(self, features):
        """The penultimate (globally pooled) features, which k-means clusters."""
        return self.stages(features).mean(dim=(2, 3))

    def forward(self, features):
        return self.fc(self.embed(features))


def _cell_means(size: int, grid: int) -> torch.Tensor:
    """[grid, size]: row i averages the positions adaptive average pooling gives to cell i."""
    means = torch.zeros(grid, size)
    for i in range(grid):
        start, end = i * size // grid, -(-(i + 1) * size // grid)
        means[i, start:end] = 1.0 / (end - start)
    return means


def grid_pool(features: torch.Tensor, grid: int) -> torch.Tensor:
    """[N,C,H,W] -> [N, C x grid x grid]: the mean of each cell of a grid x grid partition (as adaptive average
    pooling cuts it). For precomputing the gate's input; the Gate module holds the same matrices as constants."""
    if grid == 1:
        return F.adaptive_avg_pool2d(features, 1).flatten(1)
    h, w = features.shape[2:]
    return (_cell_means(h, grid) @ features @ _cell_means(w, grid).t()).flatten(1)


class Gate(nn.Module):
    """features -> gate_logits [N,K]: average pool (global, or a grid x grid map for a better-informed gate) + one
    linear layer. The grid pooling is two MatMuls with constant matrices (built for the trunk's feature size), so it
    exports to ONNX for any H and W."""

    def __init__(self, arch: Arch, experts: int, grid: int = 1, feature_size: Tuple[int, int] = None):
        super().__init__()
        self.grid = grid
        self.fc = nn.Linear(arch.trunk_width * grid * grid, experts)
        if grid > 1:
            self.register_buffer('rows', _cell_means(feature_size[0], grid), persistent=False)
            self.register_buffer('cols', _cell_means(feature_size[1], grid).t().contiguous(), persistent=False)

    def forward(self, features):
        if self.grid == 1:
            return self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1))
        return self.fc((self.rows @ features @ self.cols).flatten(1))


class Classifier(nn.Module):
    """trunk + branch: the base model alone and the dense baseline."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.trunk = Trunk(arch)
        self.branch = Branch(arch)

    def forward(self, image):
        return self.branch(self.trunk(image))


@dataclass
class SGMoE:
    """The shipped parts; `outputs` is the PyTorch reference of every part for given images."""
    trunk: Trunk
    base: Branch
    gate: Gate
    experts: List[Branch]

    def eval(self) -> 'SGMoE':
        for m in self.modules():
            m.eval()
        return self

    def modules(self):
        return [self.trunk, self.base, self.gate, *self.experts]

    @torch.no_grad()
    def outputs(self, images: torch.Tensor, batch_size: int = 1000) -> dict:
        chunks = []
        for start in range(0, len(images), batch_size):
            features = self.trunk(images[start:start + batch_size])
            chunks.append({
                'features': features,
                'logits': self.base(features),
                'gate_logits': self.gate(features),
                'experts': torch.stack([e(features) for e in self.experts], 1),  # [N,K,L]
            })
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}


class JointMoE(nn.Module):
    """Baseline: trunk + softmax gate + K branch experts trained end to end, top-1 routing, no base branch and
    no clustering init. Output = gate probability of the chosen expert x its logits (Switch-style), no balancing loss."""

    def __init__(self, arch: Arch, experts: int):
        super().__init__()
        self.trunk = Trunk(arch)
        self.gate = Gate(arch, experts)
        self.experts = nn.ModuleList(Branch(arch) for _ in range(experts))

    def route(self, image):
        features = self.trunk(image)
        probs = F.softmax(self.gate(features), dim=1)
        top = probs.argmax(dim=1)
        return features, probs, top

    def forward(self, image):
        """The exported graph: every expert runs and the top-1 is selected (the effective MACs count one expert)."""
        features, probs, top = self.route(image)
        logits = torch.stack([e(features) for e in self.experts], 1)
        chosen = torch.gather(logits, 1, top[:, None, None].expand(-1, 1, logits.shape[2])).squeeze(1)
        return chosen * torch.gather(probs, 1, top[:, None])

    def sparse_forward(self, image):
        """Training/evaluation path: each expert only sees the samples routed to it."""
        features, probs, top = self.route(image)
        out = features.new_zeros(len(image), self.experts[0].fc.out_features)
        for e, expert in enumerate(self.experts):
            mask = top == e
            if mask.any():
                out[mask] = expert(features[mask]) * probs[mask, e:e + 1]
        return out, top
