"""k-means with k-means++ initialisation and restarts (torch), for the per-sample clustering that initialises the gate."""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Clustering:
    centroids: torch.Tensor  # [K, D]
    inertia: float

    def assign(self, points: torch.Tensor) -> torch.Tensor:
        return torch.cdist(points, self.centroids).argmin(dim=1)


def _plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++: each next centre is drawn with probability proportional to the squared distance to the nearest one."""
    centres = [points[torch.randint(len(points), (1,), generator=generator)].squeeze(0)]
    nearest = torch.cdist(points, centres[0][None]).squeeze(1) ** 2
    for _ in range(1, k):
        pick = torch.multinomial(nearest / nearest.sum(), 1, generator=generator)
        centres.append(points[pick].squeeze(0))
        nearest = torch.minimum(nearest, torch.cdist(points, centres[-1][None]).squeeze(1) ** 2)
    return torch.stack(centres)


def _lloyd(points: torch.Tensor, centroids: torch.Tensor, iterations: int) -> Clustering:
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(dim=1)
        updated = centroids.clone()
        for c in range(len(centroids)):
            members = points[assignment == c]
            if len(members):  # an emptied cluster keeps its centre
                updated[c] = members.mean(dim=0)
        if torch.allclose(updated, centroids):
            break
        centroids = updated
    distances = torch.cdist(points, centroids).min(dim=1).values
    return Clustering(centroids, float((distances ** 2).sum()))


def kmeans(points: torch.Tensor, k: int, restarts: int, seed: int, iterations: int = 100) -> Clustering:
    """The lowest-inertia clustering over `restarts` k-means++ initialisations."""
    generator = torch.Generator().manual_seed(seed)
    runs = [_lloyd(points, _plus_plus(points, k, generator), iterations) for _ in range(restarts)]
    return min(runs, key=lambda run: run.inertia)
