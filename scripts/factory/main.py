"""The model factory: trains a single-gate MoE on Fashion-MNIST, or on a folder of your own images, with the recipe
of "Revisiting Single-gated Mixtures of Experts" and its baselines, then writes an sgmoe-package/1 directory
(docs/DESIGN.md).

    npm run factory -- --out models/fashion-sgmoe            # full recipe (~20 min on 2 cores)
    npm run factory -- --quick --out /tmp/fashion-quick       # subset, few epochs (< 3 min)
    npm run factory -- --sweep-k 2,4,6,8                      # choose K on validation (saved in k-sweep.json)
    npm run factory -- --data DIR [--size WxH] [--channels 1|3] [--roi x,y,w,h] --out PKG   # your own images
    npm run factory -- [--data DIR] --budget 20m [--max-macs N | --device PROFILE] --out PKG   # knobs chosen for you
"""
import argparse
import json
import math
import os
import runpy
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import active_children, get_context

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import budget  # noqa: E402
import package  # noqa: E402
import report  # noqa: E402
import folder  # noqa: E402
import search  # noqa: E402
from data import DATA_DIR, DataMissing, load_splits  # noqa: E402
from export import measure, read_json, write_json  # noqa: E402
from outdir import out_problem  # noqa: E402
from jobs import classifier_job, generalist_job, init_worker, joint_job  # noqa: E402
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
    # The cheap-base recipe (issue 13 section 3, the default): experts larger than the base branch, started from a
    # generalist expert trained on all the data (trunk frozen), the base's unsure samples oversampled, a gate on a grid.
    expert_arch: Arch = None  # None: the base branch's architecture, experts start from the base branch
    generalist: Schedule = None  # None: no generalist
    hard_repeat: int = 1  # an expert sees each of its training samples the base is unsure of this many times
    gate_grid: int = 1  # the gate pools the trunk features on a grid x grid map (1: global average)


FULL = Recipe(arch=Arch(), train_size=55000, epochs=Schedule(10, 0.1), experts=Schedule(4, 0.1),
              gate=Schedule(15, 0.05, batch_size=256, weight_decay=0.0), sweep_expert_epochs=3, kmeans_restarts=5,
              latency_samples=1000)
QUICK = Recipe(arch=Arch(), train_size=10000, epochs=Schedule(3, 0.1), experts=Schedule(1, 0.02),
               gate=Schedule(4, 0.05, batch_size=256, weight_decay=0.0), sweep_expert_epochs=1, kmeans_restarts=2,
               latency_samples=200)
# A cheap always-on path (trunk + a 1-block-per-stage base branch) and experts with 1.5-2x the widths and two blocks
# at the first stage, so most of the worst-case MACs sit in the expert that runs only on the frames that need it.
CHEAP_BASE = dict(arch=Arch(widths=(24, 32), blocks=(1, 1)), expert_arch=Arch(widths=(48, 64), blocks=(2, 1)),
                  hard_repeat=3, gate_grid=4)
RECIPES = {
    'paper': {'full': FULL, 'quick': QUICK},
    'cheap-base': {'full': replace(FULL, **CHEAP_BASE, experts=Schedule(4, 0.05), generalist=Schedule(10, 0.1)),
                   'quick': replace(QUICK, **CHEAP_BASE, experts=Schedule(1, 0.02), generalist=Schedule(2, 0.1))},
}
SWEEP_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'k-sweep.json')
DEFAULT_K = 4  # used until a --sweep-k run has chosen K, and for own images (the sweep file is Fashion-MNIST's)


def _ints(text: str, count: int, flag: str, parser, sep: str = ',') -> tuple:
    try:
        values = tuple(int(v) for v in text.lower().split(sep))
    except ValueError:
        values = ()
    if len(values) != count or any(v < 0 for v in values):
        parser.error(f'{flag} expects {count} non-negative integers separated by "{sep}", found "{text}"')
    return values


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='npm run factory --', description=__doc__.split('\n\n')[0],
                                     epilog='Two more factories, with their own options: --task anomaly (good parts '
                                            'only; npm run factory -- --task anomaly --help) and --input signal '
                                            '(recordings; npm run factory -- --input signal --help).')
    parser.add_argument('--out', help='package directory to write: new, empty or an earlier package (replaced whole); '
                        'models/fashion-sgmoe rebuilds the bundled demo')
    parser.add_argument('--quick', action='store_true', help='training subset and few epochs, for CI (< 3 min)')
    parser.add_argument('--experts', type=int, metavar='K',
                        help=f'number of experts (default: the K chosen by the last --sweep-k run, saved in '
                             f'{os.path.relpath(SWEEP_FILE)}, else {DEFAULT_K})')
    parser.add_argument('--sweep-k', metavar='K,K,...',
                        help='instead of a package: train the base and an SGMoE per K, compare them on validation, '
                             'save the table and the chosen K to --sweep-out')
    parser.add_argument('--sweep-out', default=SWEEP_FILE, help='where --sweep-k writes its results')
    parser.add_argument('--data-dir', default=DATA_DIR, help='folder of the Fashion-MNIST idx .gz files')
    parser.add_argument('--data', metavar='DIR',
                        help='your own images instead of Fashion-MNIST: DIR/<class>/<images>, or DIR/train|val|test/'
                             '<class>/<images>')
    parser.add_argument('--size', metavar='WxH', help=f'model input size (own images; default: their median aspect '
                                                      f'ratio, {folder.LONG_SIDE} pixels on the long side)')
    parser.add_argument('--channels', type=int, choices=(1, 3), help='1 gray or 3 RGB (own images; default: 3 when '
                                                                      'any image is in colour)')
    parser.add_argument('--roi', metavar='x,y,w,h', help='the region of each (oriented) image the model looks at; '
                                                         'recorded as the package\'s default ROI')
    parser.add_argument('--no-flip', action='store_true', help='no horizontal flips in augmentation (own images '
                                                               'whose classes depend on left and right)')
    parser.add_argument('--name', help='package name (own images; default: from --out)')
    parser.add_argument('--check-data', action='store_true',
                        help='read and split --data, print what the report would say about it, train nothing')
    parser.add_argument('--recipe', choices=sorted(RECIPES), default='cheap-base',
                        help='cheap-base (default): a cheap base, larger experts started from a generalist, hard '
                             'samples oversampled, a 4x4 gate; paper: experts are copies of the base branch fine-tuned '
                             'per cluster (the --sweep-k recipe)')
    parser.add_argument('--budget', metavar='TIME',
                        help='choose K, the expert epochs, the threshold and the ensemble weight on validation within '
                             'TIME (e.g. 20m, 90s, 1h); cheap-base recipe')
    parser.add_argument('--max-macs', metavar='N', help='with --budget: the worst-case MACs per sample the fitted '
                                                        'architecture may spend')
    parser.add_argument('--device', metavar='PROFILE', help='with --budget: a MACs cap derived from a device profile '
                                                           '(a name from devices/*.json, or a file)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=2, help='training processes, one thread each')
    parser.add_argument('--version', default='1.0.0', help='package version written to the manifest')
    args = parser.parse_args(argv)
    _budget_args(args, parser)
    if args.experts is not None and args.sweep_k:
        parser.error('--experts and --sweep-k exclude each other')
    try:
        args.sweep_k = tuple(int(k) for k in args.sweep_k.split(',')) if args.sweep_k else None
    except ValueError:
        parser.error(f'--sweep-k expects comma-separated integers, found "{args.sweep_k}"')
    if args.data is None and any(v is not None for v in (args.size, args.channels, args.roi, args.name)):
        parser.error('--size, --channels, --roi and --name go with --data (Fashion-MNIST is 28x28 gray)')
    if args.sweep_k:
        args.recipe = 'paper'  # the sweep fine-tunes copies of the base branch (no generalist)
    if args.data and args.sweep_k:
        parser.error('--sweep-k runs on Fashion-MNIST only; pass --experts K with --data')
    if args.check_data and not args.data:
        parser.error('--check-data needs --data')
    if not (args.check_data or args.sweep_k):
        problem = out_problem(args.out, args.data)
        if problem:
            parser.error(problem)
    args.size = _ints(args.size, 2, '--size', parser, 'x') if args.size else None
    if args.size and min(args.size) < 8:
        parser.error(f'--size needs at least 8 pixels per side, found {args.size[0]}x{args.size[1]}')
    args.roi = _ints(args.roi, 4, '--roi', parser) if args.roi else None
    if args.roi and min(args.roi[2:]) < 1:
        parser.error('--roi needs a width and height of at least 1')
    if args.experts is None and not args.sweep_k:
        fashion_k = read_json(SWEEP_FILE)['chosenK'] if os.path.exists(SWEEP_FILE) else DEFAULT_K
        args.experts = DEFAULT_K if args.data else fashion_k
    if any(k < 2 for k in args.sweep_k or (args.experts,)):
        parser.error('K must be at least 2 (top-2 decisions are part of the selftest)')
    if args.workers < 1:
        parser.error('--workers must be at least 1')
    recipe = RECIPES[args.recipe]['quick' if args.quick else 'full']
    return args, replace(recipe, epochs=replace(recipe.epochs, seed=args.seed))


def _budget_args(args, parser) -> None:
    """--budget, --max-macs, --device: checked before any data is read (exit 2 with the usage, naming the flag)."""
    args.usage = parser.format_usage()
    args.cap, args.cap_facts, args.arch_facts = None, None, None
    if args.budget is None:
        if args.max_macs is not None or args.device is not None:
            parser.error('--max-macs and --device go with --budget')
        return
    try:
        args.budget = budget.parse_duration(args.budget)
    except ValueError:
        parser.error(f'--budget expects a positive duration such as 20m, 90s or 1h, found "{args.budget}"')
    if args.max_macs is not None and args.device is not None:
        parser.error('--max-macs and --device exclude each other')
    if args.experts is not None or args.sweep_k or args.recipe != 'cheap-base':
        parser.error('--budget chooses K itself on the cheap-base recipe: leave out --experts, --sweep-k and --recipe')
    if args.max_macs is not None:
        if not args.max_macs.isdigit() or int(args.max_macs) < 1:
            parser.error(f'--max-macs expects a positive integer (MACs per sample), found "{args.max_macs}"')
        args.cap, args.cap_facts = int(args.max_macs), {'source': '--max-macs', 'capMacs': int(args.max_macs)}
    if args.device is not None:
        try:
            args.cap, facts = budget.device_cap(args.device)
        except ValueError as error:
            parser.error(f'--device: {error}')
        args.cap_facts = {'source': '--device', 'capMacs': args.cap, **facts}


def dense_arch(recipe: Recipe, experts: int, shape: tuple) -> Arch:
    """The base architecture widened until its MACs are closest to the SGMoE worst case
    (trunk + base + gate + one expert), all counted on ONNX exports."""
    arch = recipe.arch
    trunk = Trunk(arch).eval()
    gate = Gate(arch, experts, recipe.gate_grid, tuple(trunk(torch.zeros(1, *shape)).shape[2:]))
    model = SGMoE(trunk, Branch(arch), gate, [Branch(recipe.expert_arch or arch)])
    worst = sum(part_macs(model, shape).values())
    scales = [1 + i / 20 for i in range(61)]
    return min((arch.widened(s) for s in scales),
               key=lambda a: abs(measure(Classifier(a), torch.zeros(1, *shape))['macs'] - worst))


def for_data(recipe: Recipe, splits) -> Recipe:
    """The recipe fitted to a folder of own images: its channels and classes; all its training images (up to the
    recipe's size); and for a data set smaller than the recipe's, smaller batches and more epochs (the square root of
    the size ratio, at most 8x), so that a few hundred images still get a few hundred optimiser steps."""
    n = min(recipe.train_size, len(splits.train))
    factor = max(1, min(8, round(math.sqrt(recipe.train_size / n))))
    batch = min(128, max(16, n // 20))

    def scaled(schedule):
        return replace(schedule, epochs=schedule.epochs * factor, batch_size=min(schedule.batch_size, batch))

    arch = replace(recipe.arch, in_channels=splits.train.shape[0], classes=len(splits.data.labels))
    classes = dict(in_channels=splits.train.shape[0], classes=len(splits.data.labels))
    return replace(recipe, arch=arch, train_size=n, epochs=scaled(recipe.epochs), experts=scaled(recipe.experts),
                   gate=replace(recipe.gate, epochs=recipe.gate.epochs * factor),
                   expert_arch=recipe.expert_arch and replace(recipe.expert_arch, **classes),
                   generalist=recipe.generalist and scaled(recipe.generalist))


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
    dense = dense_arch(recipe, k, splits.train.shape)
    dense_future = pool.submit(classifier_job, 'dense', dense, recipe.epochs, data, recipe.train_size)
    base_state, base_history = pool.submit(classifier_job, 'base', recipe.arch, recipe.epochs, data,
                                           recipe.train_size).result()
    base = loaded(Classifier(recipe.arch), base_state)
    start, generalist_history = None, None
    if recipe.generalist:  # the joint MoE waits behind the dense model; the generalist takes the free worker
        generalist_future = pool.submit(generalist_job, 'generalist', recipe.arch, recipe.expert_arch, base_state,
                                        recipe.generalist, data, recipe.train_size)
        joint_future = pool.submit(joint_job, 'joint-moe', recipe.arch, k, recipe.epochs, data, recipe.train_size)
        embedded = embed(base, splits, recipe.train_size, recipe.gate_grid)
        start, generalist_history = generalist_future.result()
    else:
        embedded = embed(base, splits, recipe.train_size, recipe.gate_grid)
    sgmoe = train_sgmoe_variant(pool, f'sgmoe-k{k}', base, embedded, recipe, splits, k, data, True, start)
    if not recipe.generalist:
        joint_future = pool.submit(joint_job, 'joint-moe', recipe.arch, k, recipe.epochs, data, recipe.train_size)
    ablation = train_sgmoe_variant(pool, 'random-gate', base, embedded, recipe, splits, k, data, False, start)
    dense_state, dense_history = dense_future.result()
    joint_state, joint_history = joint_future.result()
    return package.Trained(recipe=recipe, splits=splits, base=base, base_history=base_history,
                           dense=loaded(Classifier(dense), dense_state), dense_arch=dense, dense_history=dense_history,
                           joint=loaded(JointMoE(recipe.arch, k), joint_state), joint_history=joint_history,
                           sgmoe=sgmoe.result(), ablation=ablation.result(), generalist_history=generalist_history,
                           k_sweep=read_json(SWEEP_FILE) if os.path.exists(SWEEP_FILE) and not args.data else None)


def without(argv: list, flag: str, value: str):
    """argv less `flag value` (or `flag=value`) wherever it stands, or None when it is not there: how the line picks
    the anomaly and signal factories, which have their own modules and options."""
    for i, arg in enumerate(argv):
        if arg == f'{flag}={value}':
            return argv[:i] + argv[i + 1:]
        if arg == flag and argv[i + 1:i + 2] == [value]:
            return argv[:i] + argv[i + 2:]
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    recordings = without(argv, '--input', 'signal')
    if recordings is not None:  # recordings, not images: the signal factory (scripts/factory/signal/)
        return runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'signal', 'signal_factory.py'))['main'](recordings)
    anomaly = without(argv, '--task', 'anomaly')
    if anomaly is not None:  # good parts only: the anomaly factory (scripts/factory/anomaly/)
        from anomaly.main import main as anomaly_main
        return anomaly_main(anomaly)
    args, recipe = parse_args(argv)
    started = time.time()
    torch.set_num_threads(1)  # the workers use the cores; the main process only orchestrates and evaluates
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix='sgmoe-factory-') as scratch:
        try:
            if args.data:
                name = args.name or folder.slug(os.path.basename(os.path.abspath(args.out or args.data)))
                splits = folder.load(args.data, folder.Options(args.size, args.channels, args.roi, not args.no_flip,
                                                               args.seed, name))
                if args.check_data:
                    print(json.dumps(splits.data.facts, indent=2))
                    return 0
                data = ('folder', os.path.join(scratch, 'splits.pt'))
                torch.save(splits, data[1])  # the workers load the decoded images from here
                recipe = for_data(recipe, splits)
            else:
                splits = load_splits(args.seed, args.data_dir)
                data = ('fashion', args.seed, args.data_dir)
        except (DataMissing, folder.DataError) as error:
            print(f'error: {error}', file=sys.stderr)
            return 1
        if args.cap is not None:
            try:
                recipe, args.arch_facts = budget.fit_arch(recipe, splits.train.shape, args.cap)
            except ValueError as error:
                flag = '--max-macs' if args.max_macs is not None else '--device'
                print(f'{args.usage}npm run factory --: error: {flag}: {error}', file=sys.stderr)
                return 2
            progress('budget', f'architecture fitted under {args.cap:,} MACs: {args.arch_facts}')
        what = (f'K sweep {list(args.sweep_k)} -> {args.sweep_out}' if args.sweep_k
                else f'budget {budget.minutes(args.budget)}, K chosen on validation -> {args.out}' if args.budget
                else f'K = {args.experts} -> {args.out}')
        for what, key in (('unreadable file(s) skipped', 'unreadable'), ('duplicate copies left out', 'duplicates')):
            left_out = splits.data.facts[key] if args.data else []
            if left_out:  # said here too, not only in REPORT.md: a run should not hide what it left out
                shown = '; '.join(f'{u["file"]} ({u["code"]})' for u in left_out[:5])
                progress('factory', f'{len(left_out)} {what}: {shown}{" ..." if len(left_out) > 5 else ""} '
                                    '(every one with its reason in REPORT.md)')
        progress('factory', f'{"quick" if args.quick else "full"} run on {splits.data.facts["description"]}, {what}: '
                            f'train {recipe.train_size}, val {len(splits.val)}, test {len(splits.test)}, input '
                            f'{"x".join(map(str, splits.train.shape))}')
        with ProcessPoolExecutor(args.workers, mp_context=get_context('spawn'), initializer=init_worker) as pool:
            if args.sweep_k:
                sweep_k(pool, args, recipe, splits, data)
            elif args.budget:
                package.write(args.out, search.run(pool, args, recipe, splits, data, started, dense_arch),
                              args.version, quick=args.quick, started=started)
            else:
                package.write(args.out, build(pool, args, recipe, splits, data), args.version, quick=args.quick,
                              started=started)
    progress('factory', f'done in {time.time() - started:.0f}s')
    return 0


def interrupted(*_) -> None:
    """Ctrl-C: the workers (which ignore it) are killed now rather than left to finish their jobs first."""
    for child in active_children():
        child.kill()
    raise KeyboardInterrupt


if __name__ == '__main__':
    signal.signal(signal.SIGINT, interrupted)
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # one line, not a traceback per process: a package is only put in place once finished
        print('\nstopped (Ctrl-C)', file=sys.stderr)
        sys.exit(130)
