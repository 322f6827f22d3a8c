"""--budget: the knobs chosen for the user. Parses the time budget and the compute cap (--max-macs, or one derived
from a device profile), fits the cheap-base architecture's width and depth under the cap, times a short probe of
every training job and plans the search (K x expert epochs) and the epochs inside the time budget, dropping what
does not fit. search.py runs the plan."""
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import List, Tuple

import torch

from export import measure
from models import Arch, Branch, Classifier, Gate, JointMoE, Trunk
from train import Schedule, train_classifier, train_expert, train_generalist, train_joint

DEVICES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'devices')
# The device rule (an estimate, not a measurement): a profile's effective throughput on small CNNs at batch 1, in
# MAC/s, divided by FRAME_RATE x the profile's batch.maxSize (the streams it is sized for). Known profiles: the
# figures below, conservative for kernel-launch-bound tiny models; a profile file not listed: 2.5 GMAC/s per CPU
# thread (intraOp, 0 = 4), or 5 GMAC/s when it lists a tensorrt or cuda provider.
FRAME_RATE = 30
THROUGHPUT = {'jetson-orin-nano': 5e9, 'jetson-orin-nx': 8e9, 'jetson-agx-orin': 15e9, 'jetson-xavier-nx': 4e9,
              'x86_64-nvidia': 30e9, 'x86_64-cpu': 10e9}
DEVICE_RULE = (f'cap = estimated effective throughput of the profile (MAC/s, small CNNs at batch 1) / ({FRAME_RATE} '
               'fps x the profile\'s batch.maxSize streams); an estimate from a table, not a measurement')
# The ladder the architecture is fitted on: base and expert widths x 1/4 .. 1, the expert's first stage 1 or 2 blocks.
# Its top is the cheap-base recipe itself (sized for a 30-minute full run): a cap only ever shrinks it, since the
# time budget pays for every MAC of training.
SCALES = tuple(s / 8 for s in range(2, 9))
EXPERT_DEPTHS = (1, 2)
K_CANDIDATES = (2, 4, 8)
# Time that is not a training job: per search candidate (k-means, gate, calibration, in the main process) and the
# package stage (export, latency, parity checks). Fixed estimates; the report prints them beside the actual times.
CANDIDATE_MAIN_SECONDS = 4.0
PACKAGE_SECONDS = {'quick': 20.0, 'full': 45.0}  # measured: 1-12 s quick, 20 s full
TOLERANCE = 0.25  # the run should finish within budget x (1 + TOLERANCE): estimates from a probe on a shared machine
HARD_SHARE_GUESS = 0.3  # share of training samples the base is unsure of, before the base exists (Fashion-MNIST ~0.28)


def parse_duration(text: str) -> float:
    """'20m', '90s', '1h', '1.5h', '300' (seconds) -> seconds > 0; ValueError otherwise."""
    match = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*', text or '')
    if not match or float(match.group(1)) <= 0:
        raise ValueError(text)
    return float(match.group(1)) * {'': 1, 's': 1, 'm': 60, 'h': 3600}[match.group(2)]


def device_cap(profile: str) -> Tuple[int, dict]:
    """A profile name (devices/<name>.json) or file -> (MACs cap per sample, how it was derived)."""
    path = profile if os.path.isfile(profile) else os.path.join(DEVICES_DIR, f'{profile}.json')
    if not os.path.isfile(path):
        raise ValueError(f'no device profile "{profile}" (known: {", ".join(known_devices())}, or a .json file)')
    with open(path) as f:
        spec = json.load(f)
    name = spec.get('name', os.path.basename(path))
    providers = [p.get('name') for p in spec.get('executionProviders', [])]
    if name in THROUGHPUT:
        throughput, source = THROUGHPUT[name], 'table'
    elif {'tensorrt', 'cuda'} & set(providers):
        throughput, source = 5e9, 'GPU provider default'
    else:
        threads = spec.get('threads', {}).get('intraOp') or 4
        throughput, source = 2.5e9 * threads, f'{threads} CPU threads x 2.5 GMAC/s'
    streams = max(1, int(spec.get('batch', {}).get('maxSize', 1)))
    cap = int(throughput / (FRAME_RATE * streams))
    return cap, {'device': name, 'file': os.path.relpath(path), 'throughputMacsPerSecond': throughput,
                 'throughputSource': source, 'frameRate': FRAME_RATE, 'streams': streams, 'rule': DEVICE_RULE}


def known_devices() -> List[str]:
    return sorted(f[:-5] for f in os.listdir(DEVICES_DIR) if f.endswith('.json'))


def _scaled(arch: Arch, scale: float) -> Arch:
    return replace(arch, widths=tuple(max(8, int(round(w * scale))) for w in arch.widths))


def fit_arch(recipe, shape: tuple, cap: int, k_max: int = max(K_CANDIDATES)):
    """The largest worst-case MACs (trunk + base + gate + one expert, counted on ONNX exports) at or under `cap` on the
    ladder: base and expert widths x s, the expert's first stage d blocks. Ties go to fewer blocks. Returns (recipe,
    facts); ValueError when even the smallest is over."""
    image = torch.zeros(1, *shape)
    trunk = Trunk(recipe.arch).eval()
    features = trunk(image)
    trunk_macs = measure(trunk, image)['macs']
    gate_macs = measure(Gate(recipe.arch, k_max, recipe.gate_grid, tuple(features.shape[2:])), features)['macs']
    base_macs = {s: measure(Branch(_scaled(recipe.arch, s)), features)['macs'] for s in SCALES}
    rows = []
    for depth in EXPERT_DEPTHS:
        for s in SCALES:
            expert = replace(_scaled(recipe.expert_arch, s), blocks=(depth, *recipe.expert_arch.blocks[1:]))
            worst = trunk_macs + gate_macs + base_macs[s] + measure(Branch(expert), features)['macs']
            rows.append({'scale': s, 'expertBlocks': list(expert.blocks), 'worstMacs': worst, 'expert': expert})
    smallest = min(r['worstMacs'] for r in rows)
    if cap < smallest:
        raise ValueError(f'{cap} MACs is under the smallest architecture of the ladder ({smallest} MACs worst case '
                         f'for a {"x".join(map(str, shape))} input)')
    best = max((r for r in rows if r['worstMacs'] <= cap), key=lambda r: (r['worstMacs'], -r['expertBlocks'][0]))
    fitted = replace(recipe, arch=_scaled(recipe.arch, best['scale']), expert_arch=best['expert'])
    return fitted, {'capMacs': cap, 'worstMacs': best['worstMacs'], 'scale': best['scale'],
                    'baseWidths': list(fitted.arch.widths), 'baseBlocks': list(fitted.arch.blocks),
                    'expertWidths': list(best['expert'].widths), 'expertBlocks': best['expertBlocks'],
                    'gateMacsCountedForK': k_max, 'ladderSize': len(rows)}


def probe(arch: Arch, expert_arch: Arch, batch_size: int, splits, dense_arch: Arch, samples: int = 256) -> dict:
    """Seconds per training sample of each job, timed on `samples` images for one epoch through the real training
    loops. Run in every worker at once (jobs.probe_job), so that the probes share the cores as the jobs will."""
    train = splits.train.take(slice(0, min(samples, len(splits.train))))
    val = splits.val.take(slice(0, 32))
    schedule = Schedule(1, 0.01, batch_size=min(64, batch_size))
    base = Classifier(arch)
    jobs = {
        'base': lambda: train_classifier('probe-base', base, train, val, schedule),
        'dense': lambda: train_classifier('probe-dense', Classifier(dense_arch), train, val, schedule),
        'generalist': lambda: train_generalist('probe-generalist', base.trunk, Branch(expert_arch), train, val,
                                               schedule),
        'expert': lambda: train_expert('probe-expert', base.trunk, base.branch, Branch(expert_arch), train, val, 0.5,
                                       schedule),
        'joint': lambda: train_joint('probe-joint', JointMoE(arch, 4), train, val, schedule),
    }
    seconds = {}
    for name, job in jobs.items():
        started = time.time()
        job()
        seconds[name] = (time.time() - started) / len(train)
        base.requires_grad_(True)  # the generalist and expert probes froze the trunk
    return seconds


@dataclass
class Plan:
    epochs: int  # base, dense and joint MoE
    generalist_epochs: int
    candidates: List[Tuple[int, int]]  # (K, expert epochs), cheapest first
    train_size: int
    val_size: int
    workers: int
    per_sample: dict
    package_seconds: float
    dropped: List[str] = field(default_factory=list)
    reserve: List[Tuple[int, int]] = field(default_factory=list)  # dropped candidates, cheapest first (search.run)
    hard_share: float = HARD_SHARE_GUESS

    def expert_samples(self, k: int, extra_share: float, hard_repeat: int) -> float:
        """Training samples of one epoch over all K experts: each routed sample once, the hard ones hard_repeat
        times, plus extra_share of the samples routed elsewhere."""
        n = self.train_size
        return n + n * self.hard_share * (hard_repeat - 1) + extra_share * n * (k - 1)

    def stages(self, recipe) -> List[Tuple[str, float]]:
        """(stage, estimated seconds) in run order, as main.build queues the jobs on the workers; the main process
        embeds, clusters, trains the gates and calibrates while they work (CANDIDATE_MAIN_SECONDS per candidate)."""
        p, n, w = self.per_sample, self.train_size, self.workers
        expert = {(k, e): p['expert'] * e * self.expert_samples(k, recipe.extra_share, recipe.hard_repeat)
                  for k, e in self.candidates}
        base = p['base'] * self.epochs * n
        dense = p['dense'] * self.epochs * n
        generalist = p['generalist'] * self.generalist_epochs * n
        joint = p['joint'] * self.epochs * n
        embed = p['base'] * (n + self.val_size) / 3  # forward passes only
        if w == 1:  # one queue: dense, base, then the generalist
            stages, busy = [('base + dense', dense + base), ('generalist + embedding', generalist + embed)], 0.0
        else:  # dense runs beside the base and the generalist; what is left of it delays the first candidate
            stages = [('base + dense', base), ('generalist + embedding', max(generalist, embed))]
            busy = max(0.0, dense - base - generalist)
        for c in self.candidates:
            stages.append((f'candidate K={c[0]} epochs={c[1]}', (expert[c] + busy) / w + CANDIDATE_MAIN_SECONDS))
            busy = 0.0
        # The joint MoE (K known now) is one job beside the ablation's experts.
        ablation = max(expert[c] for c in self.candidates)
        stages.append(('random-gate ablation + joint MoE', max(joint, (ablation + joint) / w) + CANDIDATE_MAIN_SECONDS))
        stages.append(('package (test split, export, checks)', self.package_seconds))
        return stages

    def total(self, recipe) -> float:
        return sum(s for _, s in self.stages(recipe))


def expert_epoch_candidates(epochs: int) -> Tuple[int, ...]:
    return (epochs, 2 * epochs) if epochs < 2 else (max(1, epochs // 2), epochs)


def make_plan(recipe, budget: float, per_sample: dict, val_size: int, workers: int, quick: bool) -> Plan:
    """The recipe's epochs and the grid K_CANDIDATES x expert_epoch_candidates, then, while the estimate is over the
    budget: drop the costliest candidate (keeping two K at the cheapest epochs), then halve the epochs of base, dense,
    joint MoE and generalist (down to 1); then bring back dropped candidates, cheapest first, that fit again. What was
    dropped is listed; a plan still over at its minimum says so."""
    grid = sorted(((k, e) for k in K_CANDIDATES for e in expert_epoch_candidates(recipe.experts.epochs)),
                  key=lambda c: (c[1], c[0]))
    plan = Plan(recipe.epochs.epochs, recipe.generalist.epochs, grid, recipe.train_size, val_size, workers,
                per_sample, PACKAGE_SECONDS['quick' if quick else 'full'])
    shrink(plan, recipe, budget)
    return plan


def shrink(plan: Plan, recipe, budget: float) -> None:
    def cost(c):
        return plan.per_sample['expert'] * c[1] * plan.expert_samples(c[0], recipe.extra_share, recipe.hard_repeat)

    min_epochs = min(e for _, e in plan.candidates)
    keep = [c for c in plan.candidates if c[1] == min_epochs][:2]
    cut, notes = [], []
    while plan.total(recipe) > budget:
        droppable = [c for c in plan.candidates if c not in keep]
        if droppable:
            cut.append(max(droppable, key=cost))
            plan.candidates.remove(cut[-1])
        elif plan.epochs > 1 or plan.generalist_epochs > 1:
            notes.append(f'epochs of base/dense/joint MoE {plan.epochs} -> {max(1, plan.epochs // 2)}, '
                         f'generalist {plan.generalist_epochs} -> {max(1, plan.generalist_epochs // 2)}')
            plan.epochs, plan.generalist_epochs = max(1, plan.epochs // 2), max(1, plan.generalist_epochs // 2)
        else:
            notes.append(f'nothing left to drop: the minimal plan is estimated at {plan.total(recipe):.0f}s, over the '
                         f'budget of {budget:.0f}s')
            break
    for c in sorted(cut, key=cost):  # halved epochs may have made room for some of them again, cheapest first
        plan.candidates = sorted(plan.candidates + [c], key=lambda x: (x[1], x[0]))
        if plan.total(recipe) > budget:
            plan.candidates.remove(c)
    plan.reserve = sorted((c for c in cut if c not in plan.candidates), key=cost)
    plan.dropped = [f'candidate K={k} epochs={e} (est. {cost((k, e)):.0f}s of experts)' for k, e in cut
                    if (k, e) in plan.reserve] + notes


def minutes(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f'{seconds // 60}m{seconds % 60:02d}s'

