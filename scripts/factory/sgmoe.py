"""Steps (b)-(c) of the recipe for one K: k-means on base embeddings -> gate trained on the cluster ids (trunk
frozen) -> experts trained asynchronously in worker processes on the samples the gate routes to them. Then the
validation sweep of the early-exit threshold and the choice of K."""
from dataclasses import dataclass, field, replace
from typing import List

import torch
import torch.nn.functional as F

import calibrate
from data import Splits
from export import measure
from jobs import expert_job
from kmeans import kmeans
from models import Branch, Classifier, Gate, SGMoE, grid_pool
from train import predict, progress, train_gate

SHARE_RANGE = (0.05, 0.60)  # the no-collapse target: every expert's share among samples that reach an expert
# Training samples on which the base is less confident than this are the ones early exit will send to an expert.
HARD_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Embedded:
    """Frozen-base views of the training and validation images (no augmentation)."""
    train_pooled: torch.Tensor  # pooled trunk features (globally, or on the gate's grid): the gate's input
    train_embedding: torch.Tensor  # base penultimate features: what k-means clusters
    val_pooled: torch.Tensor
    val_embedding: torch.Tensor
    train_hard: torch.Tensor  # bool: base confidence below HARD_CONFIDENCE


def embed(base: Classifier, splits: Splits, train_size: int, grid: int = 1) -> Embedded:
    def pool(features):
        return features.mean(dim=(2, 3)) if grid == 1 else grid_pool(features, grid)

    def views(images):
        pooled = predict(lambda x: pool(base.trunk(x)), images)
        embedding = predict(lambda x: base.branch.embed(base.trunk(x)), images)
        return pooled, embedding

    train = splits.train.take(slice(0, train_size))
    confidence = predict(lambda x: F.softmax(base(x), dim=1).max(dim=1).values, train)
    return Embedded(*views(train), *views(splits.val), confidence < HARD_CONFIDENCE)


def balance_gate(gate: Gate, pooled: torch.Tensor, iterations: int = 300) -> List[float]:
    """Shifts the gate's biases until its top-1 choices over `pooled` are as uniform as it can find (multiplicative
    steps, scaled to the spread of the logits and decaying) and returns the shares reached. Applied to the hard
    training samples: the share target is over the samples that reach an expert, and the clusters of the whole
    training set split those very unevenly."""
    k = gate.fc.out_features
    with torch.no_grad():
        logits = gate.fc(pooled)
        scale = float(logits.std())
        shift, best = torch.zeros(k), (float('inf'), None, None)
        for i in range(iterations):
            shares = torch.bincount((logits + shift).argmax(dim=1), minlength=k).float() / len(logits)
            deviation = float((shares - 1 / k).abs().max())
            if deviation < best[0]:
                best = (deviation, shift.clone(), shares)
            shift -= 0.2 * scale * (1 - i / iterations) * torch.log((shares + 1e-3) * k)
        gate.fc.bias += best[1]
    return best[2].tolist()


@dataclass
class Variant:
    name: str
    k: int
    model: SGMoE
    macs: calibrate.PartMacs
    points: List[dict]  # validation sweep over (baseWeight, threshold)
    operating: dict  # the validation operating point
    setup: dict = field(default_factory=dict)  # clustering / gate / expert-training facts for the report


class PendingVariant:
    """Expert jobs in flight; result() waits for them and calibrates on validation."""

    def __init__(self, name, k, base, gate, futures, splits, recipe, setup):
        self.name, self.k, self.base, self.gate = name, k, base, gate
        self.futures, self.splits, self.recipe, self.setup = futures, splits, recipe, setup

    def result(self) -> Variant:
        experts, histories = [], []
        for future in self.futures:
            state, history = future.result()
            expert = Branch(self.recipe.expert_arch or self.recipe.arch)
            expert.load_state_dict(state)
            experts.append(expert.eval())
            histories.append(history)
        model = SGMoE(self.base.trunk, self.base.branch, self.gate, experts).eval()
        macs = calibrate.PartMacs(**part_macs(model, self.splits.val.shape))
        outputs = model.outputs(self.splits.val.normalised())
        points = calibrate.sweep(outputs, self.splits.val.labels, macs)
        operating = calibrate.operating_point(points)
        progress(self.name, f'validation operating point: threshold {operating["threshold"]} baseWeight '
                            f'{operating["baseWeight"]} accuracy '
                            f'{operating["accuracy"]:.4f} expert rate {operating["expertRate"]:.3f} '
                            f'mean MACs {operating["meanMacs"]:.0f} shares {operating["expertShare"]}')
        return Variant(self.name, self.k, model, macs, points, operating,
                       {**self.setup, 'expertHistories': histories})


def part_macs(model: SGMoE, shape: tuple) -> dict:
    """MACs of each part, counted on an ONNX export of the module as the shipped parts are; shape = C, H, W."""
    image = torch.zeros(1, *shape)
    features = model.trunk(image)
    return {'trunk': measure(model.trunk, image)['macs'],
            'base': measure(model.base, features)['macs'],
            'gate': measure(model.gate, features)['macs'],
            'expert': measure(model.experts[0], features)['macs']}


def train_sgmoe_variant(pool, name: str, base: Classifier, embedded: Embedded, recipe, splits: Splits, k: int,
                        data, clustered: bool, start: dict = None,
                        val_positions: torch.Tensor = None) -> PendingVariant:
    """clustered=False is the ablation: the gate keeps its random initialisation instead of the clustering. Either
    gate is then balanced over the hard training samples before the experts are trained on what it routes. The
    experts start from `start` (the generalist expert's weights) when given, else from the base branch.
    val_positions: where splits.val sits in the full validation split that the workers load (--budget: half A)."""
    seed = recipe.epochs.seed
    torch.manual_seed(seed + 1000 * k + (0 if clustered else 1))
    with torch.no_grad():
        feature_size = tuple(base.trunk(torch.zeros(1, *splits.train.shape)).shape[2:])
    gate = Gate(recipe.arch, k, recipe.gate_grid, feature_size)
    setup = {}
    if clustered:
        clustering = kmeans(embedded.train_embedding, k, recipe.kmeans_restarts, seed)
        targets = clustering.assign(embedded.train_embedding)
        setup['clusterSizes'] = torch.bincount(targets, minlength=k).tolist()
        setup['inertia'] = clustering.inertia
        progress(name, f'k-means: inertia {clustering.inertia:.1f}, cluster sizes {setup["clusterSizes"]}')
        setup['gateHistory'] = train_gate(f'{name}-gate', gate, embedded.train_pooled, targets, embedded.val_pooled,
                                          clustering.assign(embedded.val_embedding), recipe.gate)
    else:
        # Random hyperplanes through the mean pooled feature: the trunk features are all positive (ReLU), so an
        # uncentred random gate would send almost everything to one expert and ablate balance, not clustering.
        with torch.no_grad():
            gate.fc.bias.copy_(-gate.fc.weight @ embedded.train_pooled.mean(dim=0))
    gate.eval()
    setup['hardTrainSamples'] = int(embedded.train_hard.sum())
    # A small, easy data set may leave (almost) no hard samples: the gate is then balanced over all of them.
    hard = embedded.train_hard if setup['hardTrainSamples'] >= 10 * k else torch.ones_like(embedded.train_hard)
    setup['balancedOver'] = int(hard.sum())
    setup['balancedHardShares'] = [round(x, 4) for x in balance_gate(gate, embedded.train_pooled[hard])]
    progress(name, f'gate balanced over {setup["balancedOver"]} training samples ({setup["hardTrainSamples"]} with '
                   f'base confidence < {HARD_CONFIDENCE}): shares {setup["balancedHardShares"]}')
    with torch.no_grad():
        routed_train = gate.fc(embedded.train_pooled).argmax(dim=1)
        routed_val = gate.fc(embedded.val_pooled).argmax(dim=1)
    setup['routedTrain'] = torch.bincount(routed_train, minlength=k).tolist()
    generator = torch.Generator().manual_seed(seed + k)
    futures = []
    for e in range(k):
        others = torch.nonzero(routed_train != e).flatten()
        extra = others[torch.rand(len(others), generator=generator) < recipe.extra_share]
        routed = torch.nonzero(routed_train == e).flatten()
        # The samples the base is unsure of are the ones early exit sends to an expert: seen hard_repeat times.
        hard = routed[embedded.train_hard[routed]].repeat(recipe.hard_repeat - 1)
        train_idx = torch.cat([routed, hard, extra])
        val_idx = torch.nonzero(routed_val == e).flatten()
        val_idx = val_idx if val_positions is None else val_positions[val_idx]
        futures.append(pool.submit(expert_job, f'{name}-expert-{e}', recipe.arch, base.state_dict(), train_idx,
                                   val_idx, recipe.base_weight,
                                   replace(recipe.experts, seed=seed + e), data, recipe.expert_arch, start))
    progress(name, f'{k} expert jobs submitted; routed training samples {setup["routedTrain"]}')
    return PendingVariant(name, k, base, gate, futures, splits, recipe, setup)


def choose_k(variants: dict) -> int:
    """Among the K whose experts all get 5-60% of the routed validation samples (all K if none does), the best
    validation accuracy at the operating point; K within 0.1 point of it -> the smallest (fewer parts to ship)."""
    balanced = {k: v for k, v in variants.items()
                if all(SHARE_RANGE[0] <= s <= SHARE_RANGE[1] for s in v.operating['expertShare'])} or variants
    best = max(v.operating['accuracy'] for v in balanced.values())
    return min(k for k, v in balanced.items() if v.operating['accuracy'] >= best - calibrate.ACCURACY_TOLERANCE - 1e-9)
