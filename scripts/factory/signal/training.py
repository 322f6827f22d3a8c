"""Training on precomputed front-end spectra (the front-end has no weights, so it runs once per window): Adam with
a cosine schedule, the best validation epoch kept."""
import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0


def progress(name: str, message: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] [{name}] {message}', flush=True)


def fit(name: str, params, loss_of, n: int, evaluate, schedule: Schedule, modules) -> list:
    """loss_of(idx) -> (loss, correct); evaluate() -> validation accuracy, None without validation windows; modules:
    what train()/eval() switch."""
    generator = torch.Generator().manual_seed(schedule.seed)
    params = list(params)
    optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    steps = schedule.epochs * -(-n // schedule.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, schedule.lr, total_steps=steps, pct_start=0.2)
    history, best, best_state = [], -1.0, None
    for epoch in range(1, schedule.epochs + 1):
        for m in modules:
            m.train()
        total, correct = 0.0, 0
        for idx in torch.randperm(n, generator=generator).split(schedule.batch_size):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss, hits = loss_of(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss) * len(idx)
            correct += int(hits)
        for m in modules:
            m.eval()
        val = evaluate()
        history.append({'epoch': epoch, 'loss': round(total / n, 5), 'trainAccuracy': round(correct / n, 5),
                        'valAccuracy': None if val is None else round(val, 5)})
        if val is None or val > best:  # nothing to choose on: the last epoch, not the first, is kept
            best, best_state = val, [copy.deepcopy(m.state_dict()) for m in modules]
    for m, state in zip(modules, best_state):
        m.load_state_dict(state)
        m.eval()
    progress(name, f'{schedule.epochs} epochs, ' + ('no validation windows, the last epoch kept' if best is None else
                   f'best val-acc {best:.4f} (epoch {max(history, key=lambda h: h["valAccuracy"])["epoch"]})'))
    return history


def accuracy(logits, labels) -> float:
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else None


def train_classifier(name, trunk, branch, spectra, labels, val_spectra, val_labels, schedule):
    """A learned trunk and a branch trained together on spectra (base, dense, per-regime)."""
    def loss_of(idx):
        logits = branch(trunk(spectra[idx]))
        return F.cross_entropy(logits, labels[idx]), (logits.argmax(1) == labels[idx]).sum()

    def evaluate():
        with torch.no_grad():
            return accuracy(branch(trunk(val_spectra)), val_labels)

    return fit(name, [*trunk.parameters(), *branch.parameters()], loss_of, len(labels), evaluate, schedule,
               [trunk, branch])


def train_gate(name, gate, pooled, targets, val_pooled, val_targets, schedule, smoothing=0.3):
    """The gate on the frozen trunk's pooled features against the cluster ids. Label smoothing keeps its logits
    moderate, so a window between the regimes it knows gets a low top probability (the unknown-regime score)."""
    def loss_of(idx):
        logits = gate.fc(pooled[idx])
        return (F.cross_entropy(logits, targets[idx], label_smoothing=smoothing),
                (logits.argmax(1) == targets[idx]).sum())

    def evaluate():
        with torch.no_grad():
            return accuracy(gate.fc(val_pooled), val_targets)

    return fit(name, gate.parameters(), loss_of, len(targets), evaluate, schedule, [gate])


def ensemble_log_probs(base_logits, expert_logits, base_weight):
    mixed = base_weight * F.softmax(base_logits, 1) + (1 - base_weight) * F.softmax(expert_logits, 1)
    return torch.log(mixed.clamp_min(1e-12))


def train_expert(name, expert, features, base_logits, labels, val_features, val_base_logits, val_labels,
                 base_weight, schedule):
    """One expert on the frozen trunk's features of its routed windows, through the ensemble with the frozen base."""
    def loss_of(idx):
        log_probs = ensemble_log_probs(base_logits[idx], expert(features[idx]), base_weight)
        return F.nll_loss(log_probs, labels[idx]), (log_probs.argmax(1) == labels[idx]).sum()

    def evaluate():
        if not len(val_labels):
            return None
        with torch.no_grad():
            return accuracy(ensemble_log_probs(val_base_logits, expert(val_features), base_weight), val_labels)

    return fit(name, expert.parameters(), loss_of, len(labels), evaluate, schedule, [expert])
