"""The model factory: trains a single-gate MoE on Fashion-MNIST with the recipe of "Revisiting Single-gated Mixtures
of Experts" and its baselines, then writes an sgmoe-package/1 directory (docs/DESIGN.md).

    npm run factory -- --out models/fashion-sgmoe            # full recipe (~20 min on 2 cores)
    npm run factory -- --quick --out /tmp/fashion-quick       # subset, few epochs (< 3 min)
    npm run factory -- --sweep-k 2,4,6,8                      # choose K on validation (saved in k-sweep.json)
"""
import argparse
import os
import runpy
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import package  # noqa: E402
import report  # noqa: E402
from data import DATA_DIR, DataMissing, load_splits  # noqa: E402
from export import measure, read_json, write_json  # noqa: E402
from jobs import classifier_job, init_worker, joint_job  # noqa: E402
from models import Arch, Branch, Classifier, Gate, JointMoE, SGMoE, Trunk  # noqa: E402
from sgmoe import choose_k, embed, part_macs, train_sgmoe_variant  # noqa: E402
from train import Schedule, progress  # noqa: E402


@dataclass(frozen=True)
class Recipe:
    arch: Arch
    train_size: int
    epochs: Schedule  # base, dense and joint MoE (same budget for every trained-from-scratch model)
    experts: Schedule
    gate: Schedule
    sweep_expert_epochs: int  # the K sweep trains experts more briefly, so it stays cheap
    kmeans_restarts: int
    latency_samples: int
    base_weight: float = 0.5
    extra_share: float = 0.1  # each expert also sees this share of the samples routed elsewhere


FULL = Recipe(arch=Arch(), train_size=55000, epochs=Schedule(10, 0.1), experts=Schedule(4, 0.1),
              gate=Schedule(15, 0.05, batch_size=256, weight_decay=0.0), sweep_expert_epochs=3, kmeans_restarts=5,
              latency_samples=1000)
QUICK = Recipe(arch=Arch(), train_size=10000, epochs=Schedule(3, 0.1), experts=Schedule(1, 0.02),
               gate=Schedule(4, 0.05, batch_size=256, weight_decay=0.0), sweep_expert_epochs=1, kmeans_restarts=2,
               latency_samples=200)
SWEEP_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'k-sweep.json')
DEFAULT_K = 4  # used only until a --sweep-k run has chosen K


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='npm run factory --', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='models/fashion-sgmoe', help='package directory to (over)write')
    parser.add_argument('--quick', action='store_true', help='training subset and few epochs, for CI (< 3 min)')
    parser.add_argument('--experts', type=int, metavar='K',
                        help=f'number of experts (default: the K chosen by the last --sweep-k run, saved in '
                             f'{os.path.relpath(SWEEP_FILE)}, else {DEFAULT_K})')
    parser.add_argument('--sweep-k', metavar='K,K,...',
                        help='instead of a package: train the base and an SGMoE per K, compare them on validation, '
                             'save the table and the chosen K to --sweep-out')
    parser.add_argument('--sweep-out', default=SWEEP_FILE, help='where --sweep-k writes its results')
    parser.add_argument('--data-dir', default=DATA_DIR, help='folder of the Fashion-MNIST idx .gz files')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=2, help='training processes, one thread each')
    parser.add_argument('--version', default='1.0.0', help='package version written to the manifest')
    args = parser.parse_args(argv)
    if args.experts is not None and args.sweep_k:
        parser.error('--experts and --sweep-k exclude each other')
    try:
        args.sweep_k = tuple(int(k) for k in args.sweep_k.split(',')) if args.sweep_k else None
    except ValueError:
        parser.error(f'--sweep-k expects comma-separated integers, found "{args.sweep_k}"')
    if args.experts is None and not args.sweep_k:
        args.experts = read_json(SWEEP_FILE)['chosenK'] if os.path.exists(SWEEP_FILE) else DEFAULT_K
    if any(k < 2 for k in args.sweep_k or (args.experts,)):
        parser.error('K must be at least 2 (top-2 decisions are part of the selftest)')
    if args.workers < 1:
        parser.error('--workers must be at least 1')
    recipe = QUICK if args.quick else FULL
    return args, replace(recipe, epochs=replace(recipe.epochs, seed=args.seed))


def dense_arch(arch: Arch, experts: int) -> Arch:
    """The base architecture widened until its MACs are closest to the SGMoE worst case
    (trunk + base + gate + one expert), all counted on ONNX exports."""
    worst = sum(part_macs(SGMoE(Trunk(arch), Branch(arch), Gate(arch, experts), [Branch(arch)])).values())
    scales = [1 + i / 20 for i in range(21)]
    return min((arch.widened(s) for s in scales),
               key=lambda a: abs(measure(Classifier(a), torch.zeros(1, 1, 28, 28))['macs'] - worst))


def loaded(module: torch.nn.Module, state: dict) -> torch.nn.Module:
    module.load_state_dict(state)
    return module.eval()


def sweep_k(pool, args, recipe: Recipe, splits, data) -> None:
    """Step (b)-(c) for every K on one base, experts trained for recipe.sweep_expert_epochs; K chosen on validation."""
    base_state, base_history = pool.submit(classifier_job, 'base', recipe.arch, recipe.epochs, data,
                                           recipe.train_size).result()
    base = loaded(Classifier(recipe.arch), base_state)
    embedded = embed(base, splits, recipe.train_size)
    brief = replace(recipe, experts=replace(recipe.experts, epochs=recipe.sweep_expert_epochs))
    pending = {k: train_sgmoe_variant(pool, f'sgmoe-k{k}', base, embedded, brief, splits, k, data, True)
               for k in args.sweep_k}
    candidates = {k: variant.result() for k, variant in pending.items()}
    chosen = choose_k(candidates)
    progress('factory', f'K = {chosen} chosen on validation')
    write_json(args.sweep_out, report.sweep(candidates, chosen, base_history, brief))


def build(pool, args, recipe: Recipe, splits, data) -> package.Trained:
    """The whole recipe for K = args.experts, with the baselines; the two workers are kept busy: dense starts with
    the base, the experts, the joint MoE and the ablation queue behind them."""
    k = args.experts
    dense = dense_arch(recipe.arch, k)
    dense_future = pool.submit(classifier_job, 'dense', dense, recipe.epochs, data, recipe.train_size)
    base_state, base_history = pool.submit(classifier_job, 'base', recipe.arch, recipe.epochs, data,
                                           recipe.train_size).result()
    base = loaded(Classifier(recipe.arch), base_state)
    embedded = embed(base, splits, recipe.train_size)
    sgmoe = train_sgmoe_variant(pool, f'sgmoe-k{k}', base, embedded, recipe, splits, k, data, True)
    joint_future = pool.submit(joint_job, 'joint-moe', recipe.arch, k, recipe.epochs, data, recipe.train_size)
    ablation = train_sgmoe_variant(pool, 'random-gate', base, embedded, recipe, splits, k, data, False)
    dense_state, dense_history = dense_future.result()
    joint_state, joint_history = joint_future.result()
    return package.Trained(recipe=recipe, splits=splits, base=base, base_history=base_history,
                           dense=loaded(Classifier(dense), dense_state), dense_arch=dense, dense_history=dense_history,
                           joint=loaded(JointMoE(recipe.arch, k), joint_state), joint_history=joint_history,
                           sgmoe=sgmoe.result(), ablation=ablation.result(),
                           k_sweep=read_json(SWEEP_FILE) if os.path.exists(SWEEP_FILE) else None)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ['--input', 'signal']:  # recordings, not images: the signal factory (scripts/factory/signal/)
        return runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'signal', 'signal_factory.py'))['main'](argv[2:])
    args, recipe = parse_args(argv)
    started = time.time()
    torch.set_num_threads(1)  # the workers use the cores; the main process only orchestrates and evaluates
    torch.manual_seed(args.seed)
    try:
        splits = load_splits(args.seed, args.data_dir)
    except DataMissing as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    what = f'K sweep {list(args.sweep_k)} -> {args.sweep_out}' if args.sweep_k else f'K = {args.experts} -> {args.out}'
    progress('factory', f'{"quick" if args.quick else "full"} run, {what}: train {recipe.train_size}, '
                        f'val {len(splits.val)}, test {len(splits.test)}')
    data = (args.seed, args.data_dir)
    with ProcessPoolExecutor(args.workers, mp_context=get_context('spawn'), initializer=init_worker) as pool:
        if args.sweep_k:
            sweep_k(pool, args, recipe, splits, data)
        else:
            package.write(args.out, build(pool, args, recipe, splits, data), args.version, quick=args.quick,
                          started=started)
    progress('factory', f'done in {time.time() - started:.0f}s')
    return 0


if __name__ == '__main__':
    if sys.argv[1:3] == ['--task', 'anomaly']:  # the anomaly factory has its own module (anomaly/)
        from anomaly.main import main  # noqa: F811
    sys.exit(main())
