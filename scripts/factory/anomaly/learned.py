"""A small CNN trunk trained on the good images only, for lines of several products: class-conditional Gaussians
on discriminative features separate an unseen product far better than on random filters (Lee et al. 2018). No
product labels: the CNN learns to tell apart the k-means modes of the random trunk's features (DeepCluster-style)
and the rotation of the image (Golan & El-Yaniv 2018).

Experiment (LOCO validation, issue 14): build.fit uses it when the LOCO3 environment variable is set, e.g.
LOCO3=pseudo=18,rotate=1,epochs=3 (pseudo: k-means modes as labels, 0 = none; rotate: weight of the rotation loss;
width: learned channels; random=1: beside the random trunk's features instead of the intensity cells). Trained
trunks are cached in /tmp/loco3-cache per fit set and configuration."""
import hashlib
import os

import torch
from torch import nn
from torch.nn import functional as F

from kmeans import kmeans
from scorer import GRID, Trunk

CONFIG = {k: float(v) for k, v in (kv.split('=') for kv in os.environ.get('LOCO3', '').split(',') if kv)}
WIDTH = int(CONFIG.get('width', 16))
PSEUDO = int(CONFIG.get('pseudo', 18))
ROTATE = CONFIG.get('rotate', 1.0)
EPOCHS = int(CONFIG.get('epochs', 4))
RANDOM = CONFIG.get('random', 0.0)
CACHE = '/tmp/loco3-cache'


class LearnedTrunk(nn.Module):
    """Per grid cell: the mean intensity (first, for the base), then the CNN's channels."""

    def __init__(self, channels: int, height: int, width: int, learned: int = WIDTH, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.pool = max(1, round(min(height, width) / GRID))
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, learned, 3, padding=1), nn.ReLU())
        self.random = Trunk(channels, height, width, seed=seed) if RANDOM else None
        self.channels = channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        cells = F.avg_pool2d(image, self.pool)
        learned = F.avg_pool2d(self.body(image), self.pool // 4)
        if self.random is not None:
            return torch.cat([self.random(image), learned], dim=1)
        return torch.cat([cells, learned], dim=1)


def pseudo_labels(images: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    trunk = Trunk(images.shape[1], images.shape[2], images.shape[3], seed=seed).eval()
    with torch.no_grad():
        feats = torch.cat([trunk(images[i:i + 2048]).flatten(1) for i in range(0, len(images), 2048)])
    sample = torch.randperm(len(feats), generator=torch.Generator().manual_seed(seed))[:4000]
    return kmeans(feats[sample], k, 1, seed).assign(feats)


def fit_trunk(images: torch.Tensor, seed: int, progress=print) -> LearnedTrunk:
    key = hashlib.md5(images.numpy().tobytes()).hexdigest()[:12] + f'-{sorted(CONFIG.items())}-{seed}'
    path = os.path.join(CACHE, key + '.pt')
    _, channels, height, width = images.shape
    trunk = LearnedTrunk(channels, height, width, seed=seed)
    if os.path.exists(path):
        trunk.load_state_dict(torch.load(path))
        return trunk.eval()
    labels = pseudo_labels(images, PSEUDO, seed) if PSEUDO else None
    cells = trunk(images[:1]).shape[2] * trunk(images[:1]).shape[3]
    heads = nn.ModuleDict({'mode': nn.Linear(WIDTH * cells, max(PSEUDO, 1)), 'rotation': nn.Linear(WIDTH * cells, 4)})
    params = list(trunk.body.parameters()) + list(heads.parameters())
    optimiser = torch.optim.Adam(params, lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(EPOCHS):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for i in range(0, len(order), 128):
            idx = order[i:i + 128]
            x = images[idx]
            loss = 0.0
            if PSEUDO:
                z = F.avg_pool2d(trunk.body(x), trunk.pool // 4).flatten(1)
                loss = loss + F.cross_entropy(heads['mode'](z), labels[idx])
            if ROTATE:
                r = torch.arange(len(x)) % 4
                xr = torch.cat([torch.rot90(x[r == k], k, dims=(2, 3)) for k in range(4)])
                r = torch.cat([r[r == k] for k in range(4)])
                z = F.avg_pool2d(trunk.body(xr), trunk.pool // 4).flatten(1)
                loss = loss + ROTATE * F.cross_entropy(heads['rotation'](z), r)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss) * len(idx)
        progress(f'trunk epoch {epoch}: loss {total / len(images):.4f}')
    os.makedirs(CACHE, exist_ok=True)
    torch.save(trunk.state_dict(), path)
    return trunk.eval()
