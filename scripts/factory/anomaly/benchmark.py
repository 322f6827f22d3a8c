"""Fashion-MNIST anomaly protocols, mean image AUROC over the 10 splits of each (in memory, same fit/evaluate as
the factory): one-vs-rest (one class good, the nine others anomalous) and leave-one-class-out (nine classes good,
the held-out one anomalous: a foreign product on a multi-product line).

    /usr/bin/python3 scripts/factory/anomaly/benchmark.py [--protocol ovr|loco] [--splits 0,1,...] [--out FILE]
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
from data import LABELS, load_splits  # noqa: E402
from macs import part_macs  # noqa: E402

EXPERTS = {'ovr': 4, 'loco': 9}
PER_CLASS = 1000  # good training images per class (LOCO: 9,000 over nine classes), to keep 2 shared cores free


def split(protocol: str, c: int, splits):
    train, test = splits.train, splits.test
    good = (train.labels == c) if protocol == 'ovr' else (train.labels != c)
    idx = torch.cat([torch.nonzero(good & (train.labels == k))[:PER_CLASS, 0] for k in range(10)])
    labels = ((test.labels != c) if protocol == 'ovr' else (test.labels == c)).numpy().astype(np.int64)
    return train.images[idx].numpy()[..., None], test.images.numpy()[..., None], labels


def run(protocol: str, c: int, splits, far: float) -> dict:
    started = time.time()
    train, test, labels = split(protocol, c, splits)
    recipe = build.Recipe(experts=EXPERTS[protocol], false_alarm_rate=far)
    model = build.fit(train, recipe, progress=lambda m: None)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(recipe.seed)).numpy()
    held = train[order[model.split_sizes['fit'] + model.split_sizes['norm']:]]
    results = build.evaluate(model, test, labels, None, held, far, part_macs(model, (1, 28, 28)))
    return {'split': c, 'normal' if protocol == 'ovr' else 'heldOut': LABELS[c], 'seconds': round(time.time() - started),
            **{name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for name, r in results.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--protocol', choices=['ovr', 'loco', 'both'], default='both')
    parser.add_argument('--splits', default=','.join(map(str, range(10))))
    parser.add_argument('--false-alarm-rate', type=float, default=0.01)
    parser.add_argument('--out', default=os.path.join(HERE, 'fashion-benchmark.json'))
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_splits(0)
    table = json.load(open(args.out)) if os.path.exists(args.out) else {}
    for protocol in (['ovr', 'loco'] if args.protocol == 'both' else [args.protocol]):
        rows = [run(protocol, int(c), splits, args.false_alarm_rate) for c in args.splits.split(',')]
        for r in rows:
            print(protocol, r['split'], {m: r[m]['auroc'] for m in ('sgmoe', 'sgmoe-always-expert', 'global', 'separate', 'base-only')},
                  f"{r['seconds']}s", flush=True)
        mean = {m: round(float(np.mean([r[m]['auroc'] for r in rows])), 4)
                for m in ('sgmoe', 'sgmoe-always-expert', 'global', 'separate', 'base-only')}
        table[protocol] = {'experts': EXPERTS[protocol], 'perClass': PER_CLASS, 'meanAuroc': mean, 'splits': rows}
        print(protocol, 'mean AUROC', mean, flush=True)
    with open(args.out, 'w') as f:
        json.dump(table, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
