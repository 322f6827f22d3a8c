"""Scores a texture recipe on validation patches (from the training region only), the way the factory would, so
texture.py's choices never look at the test blocks:

    /usr/bin/python3 scripts/factory/anomaly/datasets.py textures DIR --validation
    /usr/bin/python3 scripts/factory/anomaly/texture_validation.py DIR [--experts 3] [--seed 0]

Prints each model's image/pixel AUROC and false-alarm rate (build.evaluate), then the expert-always-run AUROC per
defect kind and per texture (file names start with the texture)."""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

import build  # noqa: E402
import rule  # noqa: E402
from images import load  # noqa: E402
from macs import part_macs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('data')
    parser.add_argument('--experts', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0, help="the recipe's (trunk, k-means, good images' shares): "
                        'one draw moves by points between seeds, so a gain is judged on several')
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load(args.data)
    recipe = build.Recipe(experts=args.experts, stationary=True, seed=args.seed)
    model = build.fit(data.train.pixels, recipe, print, data.calibration.pixels if data.calibration else None)
    macs = part_macs(model, tuple(build.normalise(data.train.pixels[:1], model.mean, model.std).shape[1:]))
    for name, r in build.evaluate(model, data.test.pixels, data.test_labels, data.test_masks, model.held_out, 0.01,
                                  macs).items():
        print(name, ', '.join(f'{k} {v:.4f}' for k, v in r.items() if isinstance(v, float)))
    features = build.features_of(model.trunk, build.normalise(data.test.pixels, model.mean, model.std))
    final = build.apply_rule(model, build.run_all(model, features), rule.NEVER)['final'].numpy()
    kinds, labels = np.array(data.test_kinds), data.test_labels
    good = kinds == 'good'
    for kind in sorted(set(kinds) - {'good'}):
        picked = good | (kinds == kind)
        print(f'expert always run, good vs {kind}: AUROC {roc_auc_score(labels[picked], final[picked]):.4f}')
    textures = np.array([os.path.basename(n).split('-')[0] for n in data.test.names])
    for texture in sorted(set(textures)):
        picked = textures == texture
        print(f'expert always run, {texture}: AUROC {roc_auc_score(labels[picked], final[picked]):.4f}')
    print('MACs', macs)
    return 0


if __name__ == '__main__':
    sys.exit(main())
