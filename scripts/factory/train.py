"""Training loops: one generic `fit` (SGD + one-cycle, best epoch kept by validation) and the losses of each model."""
import copy
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from data import Split, batches


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float
    batch_size: int = 128
    weight_decay: float = 5e-4
    seed: int = 0


def progress(name: str, message: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] [{name}] {message}', flush=True)


@torch.no_grad()
def predict(fn, split: Split, batch_size: int = 1000) -> torch.Tensor:
    """fn applied in chunks to the normalised images of the split."""
    return torch.cat([fn(split.normalised(slice(i, i + batch_size))) for i in range(0, len(split), batch_size)])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean()) if len(labels) else 0.0


def fit(name: str, module: nn.Module, step, n: int, evaluate, schedule: Schedule) -> list:
    """Trains `module` for schedule.epochs over n samples. `step(idx, generator)` returns (loss, correct count) of
    one batch; `evaluate()` returns the validation accuracy. The weights of the best validation epoch are kept."""
    generator = torch.Generator().manual_seed(schedule.seed)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=schedule.lr, momentum=0.9, nesterov=True,
                                weight_decay=schedule.weight_decay)
    steps = schedule.epochs * -(-n // schedule.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, schedule.lr, total_steps=steps, pct_start=0.15)
    history, best, best_state, started = [], -1.0, None, time.time()
    for epoch in range(1, schedule.epochs + 1):
        module.train()
        total_loss, correct = 0.0, 0
        for idx in batches(n, schedule.batch_size, generator):
            loss, hits = step(idx, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss) * len(idx)
            correct += int(hits)
        module.eval()
        val = evaluate()
        history.append({'epoch': epoch, 'loss': total_loss / n, 'trainAccuracy': correct / n, 'valAccuracy': val})
        progress(name, f'epoch {epoch}/{schedule.epochs} loss {total_loss / n:.4f} train-acc {correct / n:.4f} '
                       f'val-acc {val:.4f} ({time.time() - started:.0f}s)')
        if val > best:
            best, best_state = val, copy.deepcopy(module.state_dict())
    module.load_state_dict(best_state)
    module.eval()
    return history


def train_classifier(name: str, model: nn.Module, train: Split, val: Split, schedule: Schedule) -> list:
    def step(idx, generator):
        logits = model(train.augmented(idx, generator))
        y = train.labels[idx]
        return F.cross_entropy(logits, y, weight=train.class_weights), (logits.argmax(1) == y).sum()

    return fit(name, model, step, len(train), lambda: accuracy(predict(model, val), val.labels), schedule)


def train_gate(name: str, gate: nn.Module, pooled: torch.Tensor, targets: torch.Tensor,
               val_pooled: torch.Tensor, val_targets: torch.Tensor, schedule: Schedule) -> list:
    """The gate is pool + linear, so it trains on the pooled frozen-trunk features directly."""
    def step(idx, _generator):
        logits = gate.fc(pooled[idx])
        return F.cross_entropy(logits, targets[idx]), (logits.argmax(1) == targets[idx]).sum()

    def evaluate():
        with torch.no_grad():
            return accuracy(gate.fc(val_pooled), val_targets)

    return fit(name, gate, step, len(targets), evaluate, schedule)


def ensemble_log_probs(base_logits, expert_logits, base_weight: float) -> torch.Tensor:
    """log(w * softmax(base) + (1 - w) * softmax(expert)): the SGMoE ensemble the experts are trained through."""
    mixed = base_weight * F.softmax(base_logits, 1) + (1 - base_weight) * F.softmax(expert_logits, 1)
    return torch.log(mixed.clamp_min(1e-12))


def train_expert(name: str, trunk, base, expert, train: Split, val: Split, base_weight: float,
                 schedule: Schedule) -> list:
    """Fine-tunes one expert on its routed samples with the ensemble objective; trunk and base stay frozen."""
    for frozen in (trunk, base):
        frozen.eval().requires_grad_(False)

    def step(idx, generator):
        with torch.no_grad():
            features = trunk(train.augmented(idx, generator))
            base_logits = base(features)
        log_probs = ensemble_log_probs(base_logits, expert(features), base_weight)
        y = train.labels[idx]
        return F.nll_loss(log_probs, y, weight=train.class_weights), (log_probs.argmax(1) == y).sum()

    def mixed(x):
        features = trunk(x)
        return ensemble_log_probs(base(features), expert(features), base_weight)

    def evaluate():  # an expert may receive no validation samples (e.g. under a random gate)
        return accuracy(predict(mixed, val), val.labels) if len(val) else 0.0

    return fit(name, expert, step, len(train), evaluate, schedule)


def train_generalist(name: str, trunk, expert, train: Split, val: Split, schedule: Schedule) -> list:
    """One expert trained alone on all the training data, trunk frozen: the common start of the specialised experts."""
    trunk.eval().requires_grad_(False)

    def step(idx, generator):
        with torch.no_grad():
            features = trunk(train.augmented(idx, generator))
        logits = expert(features)
        y = train.labels[idx]
        return F.cross_entropy(logits, y, weight=train.class_weights), (logits.argmax(1) == y).sum()

    return fit(name, expert, step, len(train), lambda: accuracy(predict(lambda x: expert(trunk(x)), val), val.labels),
               schedule)


def train_joint(name: str, model, train: Split, val: Split, schedule: Schedule) -> list:
    def step(idx, generator):
        logits, _ = model.sparse_forward(train.augmented(idx, generator))
        y = train.labels[idx]
        return F.cross_entropy(logits, y, weight=train.class_weights), (logits.argmax(1) == y).sum()

    return fit(name, model, step, len(train),
               lambda: accuracy(predict(lambda x: model.sparse_forward(x)[0], val), val.labels), schedule)
