"""The anomaly factory: good images in, an anomaly sgmoe-package/1 out (docs/DESIGN.md, "Seams").

    npm run factory -- --task anomaly --data DIR --out models/NAME [--false-alarm-rate 0.01] [--experts K]
                       [--size WxH] [--roi X,Y,W,H] [--benchmark FILE] [--timing FILE]
    npm run factory -- --task anomaly --data DIR --check-data [--size WxH] [--roi X,Y,W,H]

The shipped Fashion-MNIST line also passes --benchmark scripts/factory/anomaly/fashion-benchmark.json and --timing
(the output of `npm run bench:anomaly` on a first build), so REPORT.md carries the protocols and the time per frame.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import build  # noqa: E402
import rule  # noqa: E402
import writer  # noqa: E402
from images import DataError, load  # noqa: E402
from macs import part_macs  # noqa: E402
from outdir import out_problem  # noqa: E402


def _pair(text: str, count: int, flag: str, parser):
    try:
        values = tuple(int(v) for v in text.lower().replace('x', ',').split(','))
    except ValueError:
        values = ()
    if len(values) != count or min(values) < (0 if count == 4 else 1):
        parser.error(f'{flag} expects {"WxH" if count == 2 else "X,Y,W,H"} (whole numbers), found "{text}"')
    return values


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='npm run factory -- --task anomaly', description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', required=True, help='DIR with train/good/ and optionally calibration/good/ (good images of '
                        'another batch: they set the threshold), test/{good,<defect>}/, test/masks/')
    parser.add_argument('--out', help='package directory to (over)write (required unless --check-data)')
    parser.add_argument('--check-data', action='store_true', help='read the data folder, print what the factory would train '
                        'and test on (JSON), and stop')
    parser.add_argument('--name', help='package name (default: the out folder name)')
    parser.add_argument('--version', default='1.0.0')
    parser.add_argument('--false-alarm-rate', type=float, default=0.01, help='target share of good frames flagged')
    parser.add_argument('--experts', type=int, default=4, help='appearance modes (products) on the line')
    parser.add_argument('--size', help='resize every image to WxH (needed when sizes differ)')
    parser.add_argument('--roi', help='crop X,Y,W,H before resizing (recorded in the manifest)')
    parser.add_argument('--stationary', action='store_true',
                        help='textures and webs: one Gaussian for every grid cell, the worst cell scores the image')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--benchmark', help="benchmark.py's JSON (Fashion-MNIST protocols): REPORT.md shows its table "
                        "and issue 14's targets")
    parser.add_argument('--timing', help="`npm run bench:anomaly` output for this package: REPORT.md shows its table")
    args = parser.parse_args(argv)
    if not 0 < args.false_alarm_rate < 0.5:
        parser.error(f'--false-alarm-rate expects a rate in (0, 0.5), found {args.false_alarm_rate}')
    if args.experts < 2:
        parser.error(f'--experts expects at least 2, found {args.experts}: the gate picks among appearance modes, and '
                     'a line of one product has them too (k-means finds them: lighting, pose, variants); use 2')
    if not args.check_data:
        problem = out_problem(args.out, args.data)
        if problem:
            parser.error(problem)
    args.size = _pair(args.size, 2, '--size', parser) if args.size else None
    args.roi = _pair(args.roi, 4, '--roi', parser) if args.roi else None
    return args


def facts_of(data) -> dict:
    """What --check-data prints: the images the factory would use, and those it leaves out with the reason."""
    height, width, channels = data.train.pixels.shape[1:]
    return {'input': {'width': int(width), 'height': int(height), 'channels': int(channels), 'colorspace': data.colorspace,
                      'roi': data.roi},
            'trainGood': len(data.train.names),
            'calibrationGood': len(data.calibration.names) if data.calibration else None,
            'test': {kind: data.test_kinds.count(kind) for kind in sorted(set(data.test_kinds))},
            'masks': data.test_masks is not None,
            'unreadable': [{'file': path, 'reason': reason} for path, reason in data.unreadable()],
            'copies': [{'file': path, 'reason': reason} for path, reason in data.copies]}


def main(argv=None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    started = time.time()
    torch.set_num_threads(1)
    say = lambda message: print(f'[anomaly factory {time.time() - started:5.0f}s] {message}', file=sys.stderr, flush=True)  # noqa: E731
    try:
        data = load(args.data, args.size, args.roi)
    except DataError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    if args.check_data:
        print(json.dumps(facts_of(data), indent=2))
        return 0
    for path, reason in data.unreadable():
        say(f'skipped unreadable {path}: {reason}')
    for path, reason in data.copies:
        say(f'left out {path}: {reason}')
    say(f'{len(data.train.names)} good training images {data.train.pixels.shape[1:]}, {len(data.test.names)} test images')
    recipe = build.Recipe(experts=args.experts, false_alarm_rate=args.false_alarm_rate, seed=args.seed,
                          stationary=args.stationary)
    try:
        model = build.fit(data.train.pixels, recipe, say, data.calibration.pixels if data.calibration else None)
    except RuntimeError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    for caveat in (build.modes_note(model.mode_sizes, model.stationary, model.calibrated),
                   rule.resolution_note(model.split_sizes, args.false_alarm_rate, model.calibrated)):
        if caveat:
            say(f'caution: {caveat}')
    shape = tuple(build.normalise(data.train.pixels[:1], model.mean, model.std).shape[1:])
    macs = part_macs(model, shape)
    results = {}
    if len(data.test.names):
        results = build.evaluate(model, data.test.pixels, data.test_labels, data.test_masks, model.held_out,
                                 args.false_alarm_rate, macs)
        for name, r in results.items():
            say(f'{name}: ' + ', '.join(f'{k} {v:.4f}' for k, v in r.items() if isinstance(v, float)))
    name = args.name or os.path.basename(os.path.abspath(args.out))
    benchmark, timing = None, None
    if args.benchmark:
        with open(args.benchmark) as f:
            benchmark = json.load(f)
    if args.timing:
        with open(args.timing) as f:
            timing = f.read()
    try:
        checks = writer.write(args.out, name, args.version, model, data, results, macs, args.false_alarm_rate, raw,
                              benchmark, timing)
    except RuntimeError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    for line in checks:
        say(f'self check: {line}')
    say(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
