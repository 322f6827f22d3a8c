"""The signal factory: the SGMoE recipe on windows of labelled recordings (`main.py --input signal ...`).

    /usr/bin/python3 scripts/signals/bearing.py --out /tmp/bearing
    /usr/bin/python3 scripts/signals/bearing.py --out /tmp/bearing --rpm 1350 --recordings 10 --seed 1
    npm run factory -- --input signal --data /tmp/bearing --holdout-rpm 1350 --out models/bearing-sgmoe

Base first (trunk = fixed spectral front-end + learned layer, light branch), then k-means on the front-end's
low-frequency spectra (the regime's view, see regime_view) -> the single linear gate -> one expert per cluster
trained on what the gate routes to it; baselines dense, base alone and one model per seen speed; the early-exit
threshold and the unknown-regime threshold are calibrated on validation; test and the held-out speed are evaluated
once, at the end.
"""
import argparse
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, replace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bundle  # noqa: E402
import calibrate  # noqa: E402
import recordings  # noqa: E402
import regimes  # noqa: E402
import report_signal  # noqa: E402
from export import measure  # noqa: E402
from kmeans import kmeans  # noqa: E402
from frontend import BAND_HZ  # noqa: E402
from nets import Arch, Branch, Gate, LearnedTrunk, SGMoE, Trunk, gate_input  # noqa: E402
from outdir import out_problem  # noqa: E402
from training import Schedule, progress, train_classifier, train_expert, train_gate  # noqa: E402


@dataclass(frozen=True)
class Recipe:
    epochs: Schedule
    experts: Schedule
    gate: Schedule
    kmeans_restarts: int = 5
    base_weight: float = 0.5
    extra_share: float = 0.1  # each expert also sees this share of the windows routed elsewhere


FULL = Recipe(Schedule(30), Schedule(25), Schedule(30, lr=1e-2, batch_size=128, weight_decay=1e-3))
QUICK = Recipe(Schedule(12), Schedule(8), Schedule(10, lr=1e-2, batch_size=128, weight_decay=1e-3), kmeans_restarts=2)


def _band(text: str) -> tuple:
    try:
        low, high = (float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected LOW,HIGH in Hz, found {text!r}')
    return low, high


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='npm run factory -- --input signal', description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', required=True, help='folder of DIR/<class>/*.wav|*.csv recordings')
    parser.add_argument('--out', required=True, help='package directory to (over)write')
    parser.add_argument('--name', help='package name (default: the out folder name)')
    parser.add_argument('--version', default='1.0.0')
    parser.add_argument('--window', type=int, default=8192, help='samples per window')
    parser.add_argument('--hop', type=int, default=4096, help='samples between window starts')
    parser.add_argument('--units', default='g', help='what a sample measures (written to the manifest)')
    parser.add_argument('--band', type=_band, default=BAND_HZ, metavar='LOW,HIGH',
                        help='Hz band around the structural resonances that the envelope demodulates '
                             f'(default {BAND_HZ[0]:g},{BAND_HZ[1]:g})')
    parser.add_argument('--experts', type=int, default=4, metavar='K')
    parser.add_argument('--holdout-rpm', type=float, help='recordings tagged with this speed are held out of training')
    parser.add_argument('--quick', action='store_true', help='few epochs, for CI')
    parser.add_argument('--seed', type=int, default=0)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.command = ' '.join(['npm run factory -- --input signal', *map(shlex.quote, argv)])  # the report's rebuild line
    if args.experts < 2:
        parser.error('--experts must be at least 2 (top-2 decisions are part of the selftest)')
    problem = out_problem(args.out, args.data)
    if problem:
        parser.error(problem)
    args.name = args.name or os.path.basename(os.path.abspath(args.out))
    recipe = QUICK if args.quick else FULL
    return args, replace(recipe, epochs=replace(recipe.epochs, seed=args.seed))


@dataclass
class Data:
    labels: list
    arch: Arch
    splits: dict  # name -> recordings.Windows
    spectra: dict  # name -> front-end output [N, 2C, BANDS]
    skipped: list  # files in the class folders that are no recordings: {'file', 'reason'}


def prepare(args) -> Data:
    labels, windows, rate, channels, skipped = recordings.load(args.data, args.window, args.hop)
    train, val, test, held = recordings.split(windows, args.seed, args.holdout_rpm)
    if args.holdout_rpm is not None and not len(held):
        raise recordings.RecordingError(f'--holdout-rpm {args.holdout_rpm:g}: no recording in {args.data} is tagged '
                                        f'rpm{args.holdout_rpm:g}')
    if not len(val) or not len(test):  # else calibration or the evaluation fails much later, on an empty tensor
        raise recordings.RecordingError(f'{args.data}: expected 4 or more recordings per class and regime (the split '
                                        f'by recording puts 60/20/20% of them in train/val/test), found val '
                                        f'{len(val)} and test {len(test)} windows')
    arch = Arch(channels=channels, window=args.window, sample_rate=rate, classes=len(labels), band=args.band)
    try:
        frontend = Trunk(arch).frontend.eval()
    except ValueError as error:
        raise recordings.RecordingError(f'--band: {error}') from error
    splits = {'train': train, 'val': val, 'test': test, 'heldout': held}
    with torch.no_grad():
        spectra = {k: torch.cat([frontend(w) for w in s.signals.split(256)]) if len(s) else torch.zeros(0)
                   for k, s in splits.items()}
    if skipped:  # on the console too, as the image factory does: a run should not hide what it left out
        shown = '; '.join(f'{u["file"]} ({u["reason"]})' for u in skipped[:5])
        progress('data', f'{len(skipped)} unsupported file(s) skipped: {shown}{" ..." if len(skipped) > 5 else ""} '
                         '(every one in REPORT.md)')
    progress('data', f'{len(windows.files)} recordings, {len(windows)} windows of {args.window} samples at {rate:g} Hz '
                     f'x {channels} channels; train {len(train)}, val {len(val)}, test {len(test)}' +
                     (f', held-out {len(held)} ({args.holdout_rpm:g} rpm)' if args.holdout_rpm is not None else ''))
    return Data(labels, arch, splits, spectra, skipped)


def assemble(arch: Arch, learned: LearnedTrunk, branch: Branch) -> tuple:
    trunk = Trunk(arch)
    trunk.learned = learned
    return trunk.eval(), branch.eval()


def classifier(name, arch, widths, data, recipe, mask=None, val_mask=None):
    """A learned trunk + branch on the training windows (or those selected by mask)."""
    torch.manual_seed(recipe.epochs.seed)
    learned, branch = LearnedTrunk(arch), Branch(arch, widths)
    train_s, train_y = data.spectra['train'], data.splits['train'].labels
    val_s, val_y = data.spectra['val'], data.splits['val'].labels
    if mask is not None:
        train_s, train_y, val_s, val_y = train_s[mask], train_y[mask], val_s[val_mask], val_y[val_mask]
    history = train_classifier(name, learned, branch, train_s, train_y, val_s, val_y, recipe.epochs)
    return (*assemble(arch, learned, branch), history)


def dense_widths(arch: Arch, worst: int) -> tuple:
    """Expert widths scaled until trunk + that branch costs closest to the SGMoE worst case."""
    example = torch.zeros(1, arch.channels, arch.window)
    trunk = Trunk(arch)
    trunk_macs = measure(trunk, example)['macs']
    features = trunk(example)
    scales = [1 + i / 10 for i in range(21)]
    return min((arch.widened(s).expert_widths for s in scales),
               key=lambda w: abs(trunk_macs + measure(Branch(arch, w), features)['macs'] - worst))


def regime_view(spectra: torch.Tensor, channels: int) -> torch.Tensor:
    """What the clustering sees of a window: its low-frequency spectra (front-end channels C..2C), where the shaft
    harmonics sit, i.e. the operating regime. The trunk's learned features serve the condition; with a clean
    envelope they carry the fault more than the speed, and k-means on them split by condition, not by regime."""
    return spectra[:, channels:].flatten(1)


def sgmoe(data: Data, recipe: Recipe, k: int, base_trunk: Trunk, base: Branch, seed: int) -> dict:
    """Clustering -> gate -> experts for K experts on the frozen base."""
    arch = data.arch
    with torch.no_grad():
        features = {s: base_trunk.learned(x) for s, x in data.spectra.items() if len(x)}
        pooled = {s: gate_input(f) for s, f in features.items()}
        base_logits = {s: base(f) for s, f in features.items()}
    view = {s: regime_view(x, arch.channels) for s, x in data.spectra.items() if len(x)}
    mean, std = view['train'].mean(0), view['train'].std(0) + 1e-6
    clustering = kmeans((view['train'] - mean) / std, k, recipe.kmeans_restarts, seed)
    clusters = clustering.assign((view['train'] - mean) / std)
    train = data.splits['train']
    cluster_purity = regimes.purity(clusters, train.rpm, train.load, k)
    progress('sgmoe', 'k-means clusters (training windows): ' + '; '.join(
        f'{c["windows"]} windows' + (f', {c["purity"]} at {c["majoritySpeed"]} rpm' if c['majoritySpeed'] else '')
        for c in cluster_purity))
    torch.manual_seed(seed + 1)
    gate = Gate(arch, k)
    gate_history = train_gate('gate', gate, pooled['train'], clusters, pooled['val'],
                              clustering.assign((view['val'] - mean) / std), recipe.gate)
    with torch.no_grad():
        routed = {s: gate.fc(p).argmax(1) for s, p in pooled.items()}
    generator = torch.Generator().manual_seed(seed + k)
    experts, histories = [], []
    for e in range(k):
        others = torch.nonzero(routed['train'] != e).flatten()
        idx = torch.cat([torch.nonzero(routed['train'] == e).flatten(),
                         others[torch.rand(len(others), generator=generator) < recipe.extra_share]])
        val_idx = torch.nonzero(routed['val'] == e).flatten()
        torch.manual_seed(seed + 100 + e)
        expert = Branch(arch, arch.expert_widths)
        histories.append(train_expert(f'expert-{e}', expert, features['train'][idx], base_logits['train'][idx],
                                      train.labels[idx], features['val'][val_idx], base_logits['val'][val_idx],
                                      data.splits['val'].labels[val_idx], recipe.base_weight, recipe.experts))
        experts.append(expert.eval())
    distance = regimes.fit_distance(pooled['train'], routed['train'], k)
    model = SGMoE(base_trunk, base, gate.eval(), experts, distance).eval()
    return {'model': model, 'clusterPurity': cluster_purity, 'gateHistory': gate_history,
            'expertHistories': histories, 'routedTrain': torch.bincount(routed['train'], minlength=k).tolist()}


def per_regime(data: Data, recipe: Recipe) -> dict:
    """One trunk + expert-sized model per seen speed, trained on that speed only (the oracle-routed baseline)."""
    speeds = sorted(set(data.splits['train'].rpm.tolist()))
    models = {}
    for rpm in speeds:
        models[rpm] = classifier(f'regime-{rpm:g}', data.arch, data.arch.expert_widths, data, recipe,
                                 data.splits['train'].rpm == rpm, data.splits['val'].rpm == rpm)
    return models


def main(argv=None) -> int:
    args, recipe = parse_args(argv)
    started = time.time()
    torch.set_num_threads(1)
    try:
        data = prepare(args)
    except recordings.RecordingError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    arch = data.arch
    base_trunk, base, base_history = classifier('base', arch, arch.base_widths, data, recipe)
    trained = sgmoe(data, recipe, args.experts, base_trunk, base, args.seed)
    model = trained['model']
    example = torch.zeros(1, arch.channels, arch.window)
    features = model.trunk(example)
    macs = calibrate.PartMacs(trunk=measure(model.trunk, example)['macs'], base=measure(base, features)['macs'],
                              gate=measure(model.gate, features)['macs'],
                              expert=measure(model.experts[0], features)['macs'])
    dense_trunk, dense_branch, dense_history = classifier('dense', arch, dense_widths(arch, macs.worst()), data,
                                                          recipe)
    regime_models = per_regime(data, recipe) if not any(math.isnan(r) for r in data.splits['train'].rpm.tolist()) \
        else {}

    val_outputs = model.outputs(data.splits['val'].signals)
    points = calibrate.sweep(val_outputs, data.splits['val'].labels, macs)
    operating = calibrate.operating_point(points)
    progress('calibrate', f'threshold {operating["threshold"]} baseWeight {operating["baseWeight"]} val-acc '
                          f'{operating["accuracy"]:.4f} expert rate {operating["expertRate"]:.3f}')
    val_scores = regimes.scores(val_outputs, operating['baseWeight'])
    unknown = regimes.thresholds(val_scores)

    summary = bundle.write(args, data, recipe, {
        'model': model, 'macs': macs, 'points': points, 'operating': operating, 'unknownThresholds': unknown,
        'trained': trained, 'base': (base_trunk, base, base_history),
        'dense': (dense_trunk, dense_branch, dense_history), 'regimeModels': regime_models, 'started': started})
    for line in report_signal.console(summary):
        progress('factory', line)
    progress('factory', f'done in {time.time() - started:.0f}s; the report: {os.path.join(args.out, "REPORT.md")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
