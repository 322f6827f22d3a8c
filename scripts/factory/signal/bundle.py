"""Evaluates once on test and the held-out speed, then writes the signal package: parts (the trunk graph holds the
front-end), baselines, samples/ (WAV windows), selftest.json, manifest.json (input.kind signal), report.json and
REPORT.md, checked (onnx.checker, sha256, PyTorch re-run, onnxruntime-node parity) before it is swapped in."""
import os
import shutil
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from scipy.io import wavfile

import calibrate
import recordings
import regimes
import report_signal
from export import describe_part, export_onnx, label_slug, measure, sha256, write_json
import ort
from selftest import RELATIVE_TOLERANCE, TOLERANCE, robust, share


def _floats(t, digits=8):
    return [float(f'{v:.{digits}g}') for v in t.flatten().tolist()]


def _accuracy(probabilities_or_logits, labels):
    return round(float((probabilities_or_logits.argmax(1) == labels).float().mean()), 4) if len(labels) else None


def evaluate(data, recipe, result) -> dict:
    model, macs, operating = result['model'], result['macs'], result['operating']
    threshold, weight = operating['threshold'], operating['baseWeight']
    arch = data.arch
    example = torch.zeros(1, arch.channels, arch.window)
    out = {'splits': {}, 'purity': {}, 'unknown': {}}
    outputs = {s: model.outputs(data.splits[s].signals) for s in ('test', 'heldout') if len(data.splits[s])}
    base_trunk, base, _ = result['base']
    dense_trunk, dense_branch, _ = result['dense']
    dense_macs = measure(torch.nn.Sequential(dense_trunk, dense_branch), example)['macs']
    speeds = sorted(result['regimeModels'])
    regime_macs = (measure(torch.nn.Sequential(*result['regimeModels'][speeds[0]][:2]), example)['macs']
                   if speeds else None)
    for split, o in outputs.items():
        windows = data.splits[split]
        y = windows.labels
        decision = calibrate.decide(o['logits'], o['gate_logits'], o['experts'], threshold, 1, weight)
        expert_rate = 1 - float(decision['earlyExit'].float().mean())
        always = calibrate.decide(o['logits'], o['gate_logits'], o['experts'], 1.000001, 1, weight)
        with torch.no_grad():
            dense = dense_branch(dense_trunk(windows.signals))
            per_regime = None
            if speeds:
                nearest = [min(speeds, key=lambda s: abs(s - r)) for r in windows.rpm.tolist()]
                per_regime = torch.stack([result['regimeModels'][s][1](result['regimeModels'][s][0](x[None]))[0]
                                          for s, x in zip(nearest, windows.signals)])
        out['splits'][split] = {
            'windows': len(y),
            'sgmoe': {'accuracy': _accuracy(decision['probabilities'], y), 'expertRate': round(expert_rate, 4),
                      'meanMacs': round(macs.always + expert_rate * macs.expert)},
            'sgmoeAlwaysExpert': {'accuracy': _accuracy(always['probabilities'], y), 'meanMacs': macs.worst()},
            'base': {'accuracy': _accuracy(o['logits'], y), 'meanMacs': macs.trunk + macs.base},
            'dense': {'accuracy': _accuracy(dense, y), 'meanMacs': dense_macs},
            **({'perRegime': {'accuracy': _accuracy(per_regime, y), 'meanMacs': regime_macs}} if speeds else {}),
        }
        out['purity'][split] = regimes.purity(decision['gate'].argmax(1), windows.rpm, windows.load,
                                              len(model.experts))
        out['unknown'][split] = regimes.alarm_rates(regimes.scores(o, weight), result['unknownThresholds'])
    out['confusion'] = {}
    for split, o in outputs.items():
        decision = calibrate.decide(o['logits'], o['gate_logits'], o['experts'], threshold, 1, weight)
        k = len(data.labels)
        matrix = torch.zeros(k, k, dtype=torch.long)
        for t, p in zip(data.splits[split].labels.tolist(), decision['label'].tolist()):
            matrix[t, p] += 1
        out['confusion'][split] = matrix.tolist()
    return out, outputs


def _export(out, model, arch):
    example = torch.zeros(2, arch.channels, arch.window)
    features = model.trunk(example).detach()
    files = {'trunk': 'trunk.onnx', 'base': 'base.onnx', 'gate': 'gate.onnx',
             'experts': [f'experts/expert-{e:02d}.onnx' for e in range(len(model.experts))]}
    export_onnx(model.trunk, example, os.path.join(out, files['trunk']), 'signal', 'features')
    export_onnx(model.base, features, os.path.join(out, files['base']), 'features', 'logits')
    export_onnx(regimes.GatePart(model.gate, model.distance), features, os.path.join(out, files['gate']), 'features',
                ('gate_logits', 'regime_distance'))
    for expert, file in zip(model.experts, files['experts']):
        export_onnx(expert, features, os.path.join(out, file), 'features', 'logits')
    parts = {name: describe_part(out, files[name]) for name in ('trunk', 'base', 'gate')}
    parts['experts'] = [describe_part(out, f) for f in files['experts']]
    return parts


def _decision_json(decision, i):
    early = bool(decision['earlyExit'][i])
    experts = [] if early else [int(e) for e in decision['experts'][i]]
    return {'label': int(decision['label'][i]), 'score': float(f'{float(decision["score"][i]):.8g}'),
            'probabilities': _floats(decision['probabilities'][i]), 'expert': experts[0] if experts else None,
            'experts': experts, 'earlyExit': early,
            'baseConfidence': float(f'{float(decision["baseConfidence"][i]):.8g}')}


def _pick_cases(outputs, labels, routing, early_cases=4, expert_cases=4):
    """Robust cases: early exits of different conditions, then expert cases round-robin over the experts."""
    decision = calibrate.decide(outputs['logits'], outputs['gate_logits'], outputs['experts'],
                                routing['earlyExit']['threshold'], 1, routing['ensemble']['baseWeight'])
    ok = robust(outputs, routing)
    early = [int(i) for c in torch.unique(labels).tolist()
             for i in torch.nonzero(ok & decision['earlyExit'] & (labels == c)).flatten()[:1]][:early_cases]
    queues = [torch.nonzero(ok & ~decision['earlyExit'] & (decision['experts'][:, 0] == e)).flatten().tolist()
              for e in range(outputs['gate_logits'].shape[1])]
    routed = []
    while len(routed) < expert_cases and any(queues):
        for q in queues:
            if q and len(routed) < expert_cases:
                routed.append(q.pop(0))
    return sorted(early + routed)


def selftest_routing(outputs, routing) -> dict:
    """The routing the selftest decides at: the operating point's, unless no window reaches an expert there (the
    base alone is best on validation); then the median base confidence of the test windows, so that the golden
    cases cover early exits and the expert path (gather, gate weights, ensemble) alike."""
    confidence = F.softmax(outputs['logits'], 1).max(1).values
    if bool((confidence < routing['earlyExit']['threshold']).any()):
        return routing
    return {**routing, 'earlyExit': {'threshold': round(float(confidence.median()), 6)}}


def _samples_and_selftest(out, data, model, outputs, routing):
    """The selftest cases are test windows, shipped as float32 WAV files in samples/ (the node's own input)."""
    test = data.splits['test']
    routing = selftest_routing(outputs, routing)
    cases = _pick_cases(outputs, test.labels, routing)
    folder = os.path.join(out, 'samples')
    os.makedirs(folder)
    names = {}
    for i in cases:
        name = f'{i:04d}-{label_slug(data.labels[int(test.labels[i])])}.wav'
        wavfile.write(os.path.join(folder, name), int(data.arch.sample_rate), test.signals[i].T.numpy().copy())
        names[i] = name
    write_json(os.path.join(folder, 'labels.json'), {names[i]: int(test.labels[i]) for i in cases})
    inputs = test.signals[cases]
    o = model.outputs(inputs)
    decide = lambda k: calibrate.decide(o['logits'], o['gate_logits'], o['experts'],  # noqa: E731
                                        routing['earlyExit']['threshold'], k, routing['ensemble']['baseWeight'])
    top1, top2 = decide(1), decide(2)
    selftest = {'format': 'sgmoe-selftest/1', 'tolerance': TOLERANCE, 'relativeTolerance': RELATIVE_TOLERANCE,
                'routing': {'threshold': routing['earlyExit']['threshold'], 'topK': 1,
                            'baseWeight': routing['ensemble']['baseWeight']},
                'cases': [{'id': f'case-{n:02d}', 'sample': f'samples/{names[i]}', 'input': _floats(inputs[n], 9),
                           'outputs': {'features': _floats(o['features'][n]), 'logits': _floats(o['logits'][n]),
                                       'gate_logits': _floats(o['gate_logits'][n]),
                                       'regime_distance': _floats(o['regime_distance'][n]),
                                       'experts': [_floats(e) for e in o['experts'][n]]},
                           'decision': _decision_json(top1, n), 'decisionTop2': _decision_json(top2, n)}
                          for n, i in enumerate(cases)]}
    write_json(os.path.join(out, 'selftest.json'), selftest)
    return selftest


def _check(out, model, selftest):
    """PyTorch re-run of the stored cases (inputs read back from the WAV samples), sha256, ORT parity."""
    worst = 0.0
    for case in selftest['cases']:
        _, samples = recordings.read_recording(os.path.join(out, case['sample']))
        x = torch.from_numpy(samples)[None]
        assert float((x.flatten() - torch.tensor(case['input'])).abs().max()) == 0, f'{case["id"]}: input != sample'
        o = model.outputs(x)
        for key in ('features', 'logits', 'gate_logits', 'regime_distance', 'experts'):
            expected = torch.tensor(case['outputs'][key])
            assert share(o[key][0], expected, TOLERANCE) <= 1, f'{case["id"]} {key} is outside the tolerance'
            worst = max(worst, float((o[key][0].flatten() - expected.flatten()).abs().max()))
    parity = ort.parity(out)
    routed = sum(1 for c in selftest['cases'] if not c['decision']['earlyExit'])
    return [f'{len(selftest["cases"])} cases ({routed} routed to an expert at the selftest threshold '
            f'{selftest["routing"]["threshold"]}) re-run in PyTorch from their WAV samples, max |diff| {worst:.2e}',
            parity]


def manifest(args, data, parts, routing, calibration, regime_facts):
    arch = data.arch
    return {
        'format': 'sgmoe-package/1', 'name': args.name, 'version': args.version, 'task': 'condition',
        'description': ('Single-gate MoE (Royer et al., BMVC 2022) on bearing-vibration windows: fixed spectral '
                        'front-end (envelope and low-frequency spectra) in the trunk, a light base branch (early '
                        f'exit), a linear gate, {len(parts["experts"])} experts, one per operating regime'
                        + (' (QUICK build: few epochs, not for use)' if args.quick else '')),
        'labels': data.labels,
        'input': {'kind': 'signal', 'name': 'signal', 'channels': arch.channels, 'sampleRate': arch.sample_rate,
                  'window': arch.window, 'hop': args.hop, 'units': args.units, 'layout': 'NCW'},
        'parts': parts, 'routing': routing, 'calibration': calibration, 'regimes': regime_facts,
        'selftest': 'selftest.json', 'samples': 'samples', 'report': 'REPORT.md',
    }


def write(args, data, recipe, result) -> dict:
    """The package at args.out, put in place only once checked; returns its report.json."""
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    built = tempfile.mkdtemp(prefix=f'.{os.path.basename(out)}.building-', dir=os.path.dirname(out))
    try:
        summary = _build(built, args, data, recipe, result)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    os.chmod(built, 0o755)
    previous = f'{out}.previous-{os.getpid()}'
    if os.path.exists(out):
        os.rename(out, previous)
    os.rename(built, out)
    shutil.rmtree(previous, ignore_errors=True)
    return summary


def _build(out, args, data, recipe, result):
    model, operating = result['model'], result['operating']
    metrics, outputs = evaluate(data, recipe, result)
    parts = _export(out, model, data.arch)
    example = torch.zeros(2, data.arch.channels, data.arch.window)
    for name, (trunk, branch, _) in (('base', result['base']), ('dense', result['dense'])):
        export_onnx(torch.nn.Sequential(trunk, branch), example, os.path.join(out, f'baselines/{name}.onnx'),
                    'signal', 'logits')
    routing = {'topK': 1, 'earlyExit': {'threshold': operating['threshold']},
               'ensemble': {'baseWeight': operating['baseWeight']}}
    selftest = _samples_and_selftest(out, data, model, outputs['test'], routing)
    points = [{k: p[k] for k in ('threshold', 'accuracy', 'expertRate', 'meanMacs')}
              for p in calibrate.at_base_weight(result['points'], operating['baseWeight'])]
    gate_threshold = result['unknownThresholds']['gate']
    regime_facts = {
        'experts': [{'expert': p['expert'], 'speedRpm': p['majoritySpeed'], 'purity': p['purity']}
                    for p in metrics['purity']['test']],
        'unknown': {'score': 'gate-confidence', 'minGateConfidence': round(1 - gate_threshold, 6),
                    'maxRegimeDistance': round(result['unknownThresholds']['distance'], 6),
                    'targetFalseAlarm': regimes.TARGET_FALSE_ALARM,
                    'rule': 'unknown regime when the top gate probability is below minGateConfidence or the gate\'s '
                            'regime_distance output is above maxRegimeDistance, thresholds set on validation windows '
                            'of seen regimes so that each flags 0.5% of them'},
    }
    write_json(os.path.join(out, 'manifest.json'), manifest(
        args, data, parts, routing, {'points': points, 'expertShare': operating['expertShare'],
                                     'rule': calibrate.RULE}, regime_facts))
    checks = _check(out, model, selftest)
    for part in (parts['trunk'], parts['base'], parts['gate'], *parts['experts']):
        assert sha256(os.path.join(out, part['file'])) == part['sha256'], f'{part["file"]}: sha256 changed'
    checks.append(f'sha256 of {3 + len(parts["experts"])} parts re-verified; onnx.checker passed on every graph')
    for line in checks:
        print(f'self check: {line}', flush=True)
    summary = report_signal.build(args, data, recipe, result, metrics, parts, routing, checks)
    write_json(os.path.join(out, 'report.json'), summary)
    with open(os.path.join(out, 'REPORT.md'), 'w') as f:
        f.write(report_signal.markdown(summary))
    return summary
