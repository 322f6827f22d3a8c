"""The anomaly SGMoE's parts as torch modules: a fixed feature trunk, distance scorers (a Gaussian for the base, as in
PaDiM; a principal subspace per mode for the experts) and the linear gate from k-means."""
import torch
from torch import nn
from torch.nn import functional as F

from kmeans import kmeans

SHRINK = 0.1  # covariance shrinkage towards a scaled identity: a few hundred good images per mode stay invertible
GRID = 8  # cells along the shorter side of the feature grid (the coarse score map)


class Trunk(nn.Module):
    """Fixed random zero-mean 5x5 filters (seeded): per grid cell, the mean intensity of each channel and the mean
    local contrast energy of each filter. Untrained, so good-only data cannot make it blind to a new defect."""

    def __init__(self, channels: int, height: int, width: int, filters: int = 16, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(filters, channels, 5, 5, generator=generator)
        weight -= weight.mean(dim=(2, 3), keepdim=True)
        weight /= weight.flatten(1).norm(dim=1)[:, None, None, None]
        self.conv = nn.Conv2d(channels, filters, 5, padding=2, bias=False)
        self.conv.weight.data.copy_(weight)
        self.pool = max(1, round(min(height, width) / GRID))
        self.channels = channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.avg_pool2d(image, self.pool), F.avg_pool2d(self.conv(image).abs(), self.pool)], dim=1)


class CellScorer(nn.Module):
    """A distance of the first `channels` feature channels from the good parts, summed over per-feature contributions
    (`raw`), normalised by its own quantiles on held-out good images (median -> 0, 99th percentile -> 1) so base and
    experts share one scale. The map splits the distance by grid cell (it sums to the score), for localisation."""

    def __init__(self, mean: torch.Tensor, channels: int, grid: tuple):
        super().__init__()
        self.register_buffer('mean', mean.float())
        self.register_buffer('loc', torch.zeros(()))
        self.register_buffer('scale', torch.ones(()))
        self.channels = channels
        self.grid = grid

    def raw(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: torch.Tensor):
        contributions = self.raw(features)
        h, w = self.grid
        cells = contributions.view(-1, self.channels, h, w).sum(dim=1)
        score = (contributions.sum(dim=1, keepdim=True) - self.loc) / self.scale
        return score, (cells - self.loc / (h * w)) / self.scale

    def normalise_on(self, features: torch.Tensor) -> None:
        with torch.no_grad():
            raw = self.raw(features).sum(dim=1)
            median, high = torch.quantile(raw.double(), torch.tensor([0.5, 0.99], dtype=torch.float64))
            self.loc.fill_(float(median))
            self.scale.fill_(float(max(high - median, 1e-6)))


class Gaussian(CellScorer):
    """Mahalanobis distance to a Gaussian of good parts (as in PaDiM)."""

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor, channels: int, grid: tuple):
        super().__init__(mean, channels, grid)
        self.register_buffer('precision', precision.float())

    def raw(self, features: torch.Tensor) -> torch.Tensor:
        d = features[:, :self.channels].flatten(1) - self.mean
        return d * (d @ self.precision)


class Subspace(CellScorer):
    """Squared distance from the good parts' principal subspace (their mean plus `basis`, orthonormal columns [D, d]):
    what a frame does that the good parts of its mode never vary along. d directions cost 2 D d MACs, not D^2."""

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, channels: int, grid: tuple):
        super().__init__(mean, channels, grid)
        self.register_buffer('basis', basis.float())

    def raw(self, features: torch.Tensor) -> torch.Tensor:
        d = features[:, :self.channels].flatten(1) - self.mean
        residual = d - (d @ self.basis) @ self.basis.T
        return residual * residual


def moments(x: torch.Tensor):
    """Mean and sample covariance (float64) of the rows of x [N, D]."""
    x = x.double()
    mean = x.mean(dim=0)
    d = x - mean
    return mean, d.T @ d / max(len(x) - 1, 1)


def covariance(features: torch.Tensor, channels: int):
    """Mean and sample covariance of the first `channels` feature channels, one vector per image."""
    return moments(features[:, :channels].flatten(1))


def shrunk_precision(cov: torch.Tensor, shrink: float = SHRINK) -> torch.Tensor:
    """The inverse of the covariance pulled `shrink` of the way towards a scaled identity (invertible however few
    good images there are)."""
    eye = torch.eye(cov.shape[0], dtype=torch.float64)
    return torch.linalg.inv((1 - shrink) * cov + shrink * cov.diagonal().mean() * eye + 1e-6 * eye)


def fit_gaussian(features: torch.Tensor, channels: int) -> Gaussian:
    """The good parts' mean and shrunk precision of their first `channels` feature channels."""
    mean, cov = covariance(features, channels)
    return Gaussian(mean, shrunk_precision(cov), channels, tuple(features.shape[2:]))


def fit_subspace(features: torch.Tensor, channels: int, dims: int) -> Subspace:
    """The mean and `dims` leading principal directions of the good parts' features."""
    mean, cov = covariance(features, channels)
    _, vectors = torch.linalg.eigh(cov)  # ascending
    return Subspace(mean, vectors[:, -dims:], channels, tuple(features.shape[2:]))


def fit_gate(features: torch.Tensor, k: int, restarts: int, seed: int) -> 'Gate':
    """k-means on the good images' features, their nearest centroid written as the gate."""
    flat = features.flatten(1)
    clustering = kmeans(flat, k, restarts, seed)
    spread = float(torch.cdist(flat, clustering.centroids).min(dim=1).values.pow(2).median())
    return Gate(clustering.centroids, max(spread, 1e-6)).eval()


class Gate(nn.Module):
    """The single linear gate: nearest k-means centroid as a linear map (2 c.x - |c|^2), over a temperature so its
    softmax says how clearly a frame belongs to its mode."""

    def __init__(self, centroids: torch.Tensor, temperature: float):
        super().__init__()
        self.linear = nn.Linear(centroids.shape[1], centroids.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(2 * centroids / temperature)
            self.linear.bias.copy_(-(centroids ** 2).sum(dim=1) / temperature)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.flatten(1))


class Separate(nn.Module):
    """Baseline 'one model per mode': every per-mode model runs, the frame is as good as the best fitting one."""

    def __init__(self, experts: list):
        super().__init__()
        self.experts = nn.ModuleList(experts)

    def forward(self, features: torch.Tensor):
        scores, maps = zip(*(e(features) for e in self.experts))
        scores, maps = torch.cat(scores, dim=1), torch.stack(maps, dim=1)
        best = scores.argmin(dim=1)
        index = torch.arange(len(best))
        return scores[index, best][:, None], maps[index, best]
