"""Writes an anomaly sgmoe-package/1 directory: parts and baselines as ONNX (score + map outputs), samples/,
selftest.json (golden cases away from every decision boundary), manifest.json with the calibration, REPORT.md; the
package is renamed into place only once ONNX Runtime reproduces its golden outputs."""
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image

import build
import markdown
import ort
import rule
from export import describe_part, fleet_tar_bytes, sha256, write_json
from selftest import RELATIVE_TOLERANCE

OPSET = 17
# Absolute part: a score near 0 is the difference of two sums over hundreds of features (ONNX Runtime measured up to
# 1.9e-5 away); the relative part (RELATIVE_TOLERANCE) holds the scores of a foreign product, up to 6.8e4.
TOLERANCE = 1e-3
# Golden cases stay this far (in normalised score), plus what the tolerance lets ONNX Runtime move, from the exit point,
# the threshold and a gate tie, so no float difference within tolerance flips a verdict, an exit or an expert.
MARGIN = 0.05
# Golden cases: one routed to each expert (good and anomalous ones alternating), both verdicts, an early exit when
# there is one, and at least MIN_CASES. Each case's input is the whole image (49,152 numbers at 128x128 RGB, 0.5 MB
# of JSON), so they are kept few: every part, every expert included, is compared on every case anyway.
MIN_CASES = 4
CANDIDATES = 50  # images of each kind the golden cases are picked from
SAMPLES = 6  # images of each kind in samples/ (the golden cases' images are added)


def _export(module, example, path: str, input_name: str, outputs: list) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    axes = {name: {0: 'N'} for name in [input_name, *outputs]}
    with torch.no_grad():
        torch.onnx.export(module.eval(), example, path, opset_version=OPSET, input_names=[input_name],
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)


def export_parts(folder: str, model: build.Model, shape: tuple) -> dict:
    image = torch.zeros(2, *shape)
    features = model.trunk(image)
    _export(model.trunk, image, os.path.join(folder, 'trunk.onnx'), 'image', ['features'])
    _export(model.base, features, os.path.join(folder, 'base.onnx'), 'features', ['score', 'map'])
    _export(model.gate, features, os.path.join(folder, 'gate.onnx'), 'features', ['gate_logits'])
    experts = []
    for k, expert in enumerate(model.experts):
        experts.append(f'experts/expert-{k:02d}.onnx')
        _export(expert, features, os.path.join(folder, experts[-1]), 'features', ['score', 'map'])
    _export(model.global_model, features, os.path.join(folder, 'baselines/global.onnx'), 'features', ['score', 'map'])
    _export(model.separate, features, os.path.join(folder, 'baselines/separate.onnx'), 'features', ['score', 'map'])
    return {'trunk': describe_part(folder, 'trunk.onnx'), 'base': describe_part(folder, 'base.onnx'),
            'gate': describe_part(folder, 'gate.onnx'), 'experts': [describe_part(folder, e) for e in experts]}


def _floats(t: torch.Tensor) -> list:
    return [float(f'{v:.8g}') for v in t.flatten().tolist()]


def per_kind(kinds: list, count: int, seed: int) -> list:
    """Up to `count` positions of each kind (good first), a seeded draw; a larger count extends a smaller one's."""
    rng = np.random.default_rng(seed)
    chosen = []
    for kind in sorted(set(kinds), key=lambda k: (k != 'good', k)):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        chosen += [int(i) for i in rng.permutation(idx)[:count]]
    return chosen


def write_samples(folder: str, pixels: np.ndarray, labels: np.ndarray, kinds: list, chosen: list) -> list:
    """The chosen images as PNGs, labels.json: name -> 0 good / 1 anomalous. Returns their names, in order."""
    os.makedirs(os.path.join(folder, 'samples'), exist_ok=True)
    names = {}
    for n, i in enumerate(chosen):
        name = f'{n:03d}-{kinds[i]}.png'
        image = pixels[i][..., 0] if pixels.shape[-1] == 1 else pixels[i]
        Image.fromarray(image).save(os.path.join(folder, 'samples', name), optimize=True)
        names[name] = int(labels[i])
    write_json(os.path.join(folder, 'samples', 'labels.json'), names)
    return list(names)


def _slack(magnitude: torch.Tensor) -> torch.Tensor:
    """How far ONNX Runtime may move a value of this size and still pass the self-test."""
    return TOLERANCE + RELATIVE_TOLERANCE * magnitude


def robust(model: build.Model, out: dict, decided: dict) -> torch.Tensor:
    """Samples whose exit, verdict and expert no difference within the self-test's tolerance can flip: farther than
    MARGIN plus that slack from the exit point, the threshold and the runner-up of the gate."""
    w = model.base_weight
    base, gate = out['base_score'], out['gate_logits'].sort(dim=1, descending=True).values
    chosen = out['expert_scores'].gather(1, out['gate_logits'].argmax(dim=1, keepdim=True))[:, 0]
    final_slack = torch.where(decided['early'], _slack(base.abs()), _slack(w * base.abs() + (1 - w) * chosen.abs()))
    return (((base - model.exit_below).abs() > MARGIN + _slack(base.abs()))
            & ((decided['final'] - model.threshold).abs() > MARGIN + final_slack)
            & (gate[:, 0] - gate[:, 1] > MARGIN + 2 * _slack(gate[:, :2].abs().max(dim=1).values)))


def pick_cases(decided: dict, clear: torch.Tensor, experts: int, exits: bool) -> list:
    """Positions of the golden cases among the clear ones: one routed to each expert (verdicts alternating), a good and
    an anomalous one, an early exit when the operating point has one, then more up to MIN_CASES."""
    order = torch.nonzero(clear)[:, 0].tolist()
    verdict = lambda i: int(decided['anomalous'][i])  # noqa: E731
    routed = lambda i: -1 if bool(decided['early'][i]) else int(decided['expert'][i])  # noqa: E731
    cases = []

    def take(wanted) -> bool:
        found = next((i for i in order if i not in cases and wanted(i)), None)
        if found is not None:
            cases.append(found)
        return found is not None

    for k in range(experts):
        want = len(cases) % 2
        take(lambda i: routed(i) == k and verdict(i) == want) or take(lambda i: routed(i) == k)
    for want in (0, 1):
        if not any(verdict(i) == want for i in cases):
            take(lambda i: verdict(i) == want)
    if exits:
        take(lambda i: routed(i) == -1)
    while len(cases) < MIN_CASES:
        want = len(cases) % 2
        if not (take(lambda i: verdict(i) == want) or take(lambda i: True)):
            break
    return cases


def selftest(model: build.Model, pixels: np.ndarray) -> tuple:
    """Golden cases: every part's outputs and the decision, only for images no float difference within tolerance can
    flip. Returns selftest.json's content (each case's `sample` still None) and the positions of its cases in pixels."""
    images = build.normalise(pixels, model.mean, model.std)
    features = build.features_of(model.trunk, images)
    out = build.run_all(model, features)
    decided = build.apply_rule(model, out, model.exit_below, model.threshold)
    chosen = pick_cases(decided, robust(model, out, decided), len(model.experts), model.exit_below > rule.NEVER)
    cases = []
    for i in chosen:
        early = bool(decided['early'][i])
        expert = None if early else int(decided['expert'][i])
        cases.append({
            'id': f'case-{len(cases):02d}', 'sample': None, 'input': _floats(images[i]),
            'outputs': {'features': _floats(features[i]), 'score': _floats(out['base_score'][i:i + 1]),
                        'map': _floats(out['base_map'][i]), 'gate_logits': _floats(out['gate_logits'][i]),
                        'experts': [{'score': _floats(out['expert_scores'][i, k:k + 1]), 'map': _floats(out['expert_maps'][i, k])}
                                    for k in range(len(model.experts))]},
            'decision': {'label': int(decided['anomalous'][i]), 'score': float(decided['final'][i]), 'probabilities': [],
                         'expert': expert, 'experts': [] if early else [expert], 'earlyExit': early,
                         'baseConfidence': float(out['base_score'][i])}})
    if len(cases) < 2 or not any(c['decision']['label'] for c in cases) or all(c['decision']['label'] for c in cases):
        raise RuntimeError('the samples give too few robust golden cases (need good and anomalous ones, each clear of '
                           'the threshold): add a few defective images in DIR/test/<kind>/')
    return ({'format': 'sgmoe-selftest/1', 'tolerance': TOLERANCE, 'relativeTolerance': RELATIVE_TOLERANCE,
             'routing': {'threshold': model.exit_below, 'topK': 1, 'baseWeight': model.base_weight}, 'cases': cases},
            chosen)


def manifest(name: str, version: str, model: build.Model, parts: dict, shape: tuple, colorspace: str, far: float,
             macs: dict, roi) -> dict:
    channels, height, width = shape
    points = [{'threshold': p['exitBelow'], 'exitQuantile': p['exitQuantile'], 'expertRate': p['expertRate'],
               'anomalyThreshold': p['threshold'],
               'meanMacs': round(macs['trunk'] + macs['base'] + macs['gate'] + p['expertRate'] * macs['expert'])}
              for p in model.points]
    return {
        'format': 'sgmoe-package/1', 'name': name, 'version': version, 'task': 'anomaly',
        'description': 'Line anomaly detection trained on good parts only: one distance score per appearance mode, '
                       'the base as a cheap global score and early exit.',
        'labels': ['good', 'anomalous'],
        'input': {'kind': 'image', 'name': 'image', 'channels': channels, 'height': height, 'width': width,
                  'colorspace': colorspace, 'mean': model.mean, 'std': model.std, 'layout': 'NCHW', 'invert': False,
                  **({'roi': dict(zip(('x', 'y', 'width', 'height'), roi))} if roi else {})},
        'parts': parts,
        'routing': {'topK': 1, 'earlyExit': {'threshold': model.exit_below},
                    'ensemble': {'baseWeight': model.base_weight}},
        'calibration': {
            'points': points, 'expertShare': model.expert_share,
            'anomaly': {'falseAlarmRate': far, 'threshold': model.threshold, 'quantiles': model.quantiles,
                        'heldOutGood': model.split_sizes['threshold'], 'grid': list(model.base.grid)},
            'rule': 'early exit when base score < routing.earlyExit.threshold; else top-1 expert, '
                    'final = w*base + (1-w)*expert; anomalous when final >= calibration.anomaly.threshold',
        },
        'selftest': 'selftest.json', 'samples': 'samples', 'report': 'REPORT.md',
    }


def _cases_line(cases: list) -> str:
    decisions = [c['decision'] for c in cases]
    routed = sorted({d['expert'] for d in decisions if d['expert'] is not None})
    return (f'{len(cases)} golden cases ({sum(d["label"] for d in decisions)} anomalous), routed to '
            f'expert{"s" if len(routed) > 1 else ""} {", ".join(map(str, routed)) or "none"}'
            + (', early exits among them' if any(d['earlyExit'] for d in decisions) else ''))


def _sample_pool(data):
    """The images samples/ and the self-test draw from: the test images, with the good training images when the test
    set has no good one. With no defective image among them (a line trained on good parts only), each good one also
    comes with a square of inverted pixels in its middle (kind `synthetic`), so the golden cases check both sides of
    the threshold."""
    pixels, labels, kinds = data.test.pixels, np.asarray(data.test_labels, np.int64), list(data.test_kinds)
    if not len(pixels) or labels.all():
        good = data.train.pixels
        pixels = np.concatenate([pixels, good]) if len(pixels) else good
        labels, kinds = np.r_[labels, np.zeros(len(good), np.int64)], kinds + ['good'] * len(good)
    if labels.any():
        return pixels, labels, kinds
    marked = pixels.copy()
    h, w = pixels.shape[1:3]
    marked[:, 3 * h // 8:5 * h // 8, 3 * w // 8:5 * w // 8] ^= 255
    return np.concatenate([pixels, marked]), np.r_[labels, np.ones_like(labels)], kinds + ['synthetic'] * len(kinds)


def write(out: str, name: str, version: str, model: build.Model, data, results, macs: dict, far: float, args,
          benchmark: dict = None, timing: str = None) -> list:
    """Builds in a sibling temporary folder, renamed into place when complete and checked (removed when the build or
    its check fails: RuntimeError). Returns the check's lines."""
    staging = out.rstrip('/') + '.tmp'
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        checks = _build(staging, name, version, model, data, results, macs, far, args, benchmark, timing)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.rename(staging, out)
    return checks


def _build(staging: str, name: str, version: str, model: build.Model, data, results, macs: dict, far: float, args,
           benchmark: dict, timing: str) -> list:
    shape = tuple(build.normalise(data.train.pixels[:1], model.mean, model.std).shape[1:])
    parts = export_parts(staging, model, shape)
    pixels, labels, kinds = _sample_pool(data)
    candidates = per_kind(kinds, CANDIDATES, 0)
    golden, cases = selftest(model, pixels[candidates])
    picked = [candidates[c] for c in cases]
    shown = per_kind(kinds, SAMPLES, 0)
    order = shown + [i for i in picked if i not in shown]
    names = write_samples(staging, pixels, labels, kinds, order)
    for case, i in zip(golden['cases'], picked):
        case['sample'] = f'samples/{names[order.index(i)]}'
    write_json(os.path.join(staging, 'selftest.json'), golden, compact=True)  # numbers one per line: 2x the bytes
    sizes = {'sgmoe': sum(os.path.getsize(os.path.join(staging, p['file'])) for p in [parts['trunk'], parts['base'], parts['gate'], *parts['experts']]),
             'global': os.path.getsize(os.path.join(staging, 'trunk.onnx')) + os.path.getsize(os.path.join(staging, 'baselines/global.onnx')),
             'separate': os.path.getsize(os.path.join(staging, 'trunk.onnx')) + os.path.getsize(os.path.join(staging, 'baselines/separate.onnx'))}
    os.remove(os.path.join(staging, 'baselines/separate.onnx'))  # K experts again: measured, not shipped
    write_json(os.path.join(staging, 'manifest.json'),
               manifest(name, version, model, parts, shape, data.colorspace, far, macs, data.roi))
    checks = [_cases_line(golden['cases']), ort.parity(staging)]
    facts = {'name': name, 'version': version, 'args': args, 'macs': macs, 'packageBytes': sizes,
             'splitSizes': model.split_sizes, 'modeSizes': model.mode_sizes, 'badFiles': data.unreadable(),
             'calibrated': model.calibrated, 'copies': data.copies, 'results': results,
             'threshold': model.threshold, 'exitBelow': model.exit_below, 'points': model.points,
             'expertShare': model.expert_share, 'falseAlarmRate': far, 'test': len(data.test.names),
             'testKinds': {k: data.test_kinds.count(k) for k in sorted(set(data.test_kinds))},
             'baseWeight': model.base_weight, 'exitQuantile': model.exit_quantile, 'stationary': model.stationary,
             'benchmark': benchmark, 'timing': timing, 'checks': checks, 'fleetTarBytes': 0}
    while True:  # the reports ship too: rewritten until the size they state counts them
        write_json(os.path.join(staging, 'report.json'), facts)
        with open(os.path.join(staging, 'REPORT.md'), 'w') as f:
            f.write(markdown.render(facts))
        if fleet_tar_bytes(staging) == facts['fleetTarBytes']:
            return checks
        facts['fleetTarBytes'] = fleet_tar_bytes(staging)
