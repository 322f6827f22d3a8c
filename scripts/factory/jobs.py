"""Entry points run in worker processes (one thread each, the machine has 2 cores): plain arguments in (data = the
source tuple of data.load), state dicts and training histories out."""
import signal

import torch

import budget
from data import load
from models import Arch, Branch, Classifier, JointMoE
from train import Schedule, train_classifier, train_expert, train_generalist, train_joint


def init_worker() -> None:
    torch.set_num_threads(1)
    # Ctrl-C reaches every process of the terminal's group: the main process stops the workers and says so, once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _val(splits, val_idx):
    """The validation samples that early-stop a job: all, or (--budget) the first validation half."""
    return splits.val if val_idx is None else splits.val.take(val_idx)


def classifier_job(name: str, arch: Arch, schedule: Schedule, data: tuple, train_size: int, val_idx=None):
    splits = load(data)
    torch.manual_seed(schedule.seed)
    model = Classifier(arch)
    history = train_classifier(name, model, splits.train.take(slice(0, train_size)), _val(splits, val_idx), schedule)
    return model.state_dict(), history


def generalist_job(name: str, arch: Arch, expert_arch: Arch, base_state: dict, schedule: Schedule, data: tuple,
                   train_size: int, val_idx=None):
    """The generalist expert: the expert architecture on the frozen trunk, trained on all the training data."""
    splits = load(data)
    base = Classifier(arch)
    base.load_state_dict(base_state)
    torch.manual_seed(schedule.seed)
    expert = Branch(expert_arch)
    history = train_generalist(name, base.trunk, expert, splits.train.take(slice(0, train_size)),
                               _val(splits, val_idx), schedule)
    return expert.state_dict(), history


def expert_job(name: str, arch: Arch, base_state: dict, train_idx: torch.Tensor, val_idx: torch.Tensor,
               base_weight: float, schedule: Schedule, data: tuple, expert_arch: Arch = None, start: dict = None):
    """One SGMoE expert, trained on the samples routed to it; it starts from `start` (the generalist's weights, with
    expert_arch) or else from the base branch."""
    splits = load(data)
    base = Classifier(arch)
    base.load_state_dict(base_state)
    expert = Branch(expert_arch or arch)
    expert.load_state_dict(start if start is not None else base.branch.state_dict())
    history = train_expert(name, base.trunk, base.branch, expert, splits.train.take(train_idx),
                           splits.val.take(val_idx), base_weight, schedule)
    return expert.state_dict(), history


def joint_job(name: str, arch: Arch, experts: int, schedule: Schedule, data: tuple, train_size: int, val_idx=None):
    splits = load(data)
    torch.manual_seed(schedule.seed)
    model = JointMoE(arch, experts)
    history = train_joint(name, model, splits.train.take(slice(0, train_size)), _val(splits, val_idx), schedule)
    return model.state_dict(), history


def probe_job(arch: Arch, expert_arch: Arch, batch_size: int, dense_arch: Arch, data: tuple) -> dict:
    """--budget: seconds per training sample of each job, timed in a worker (budget.probe)."""
    return budget.probe(arch, expert_arch, batch_size, load(data), dense_arch)
