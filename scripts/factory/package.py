"""Writes the sgmoe-package/1 directory: parts and baselines as ONNX, samples/, selftest.json, manifest.json,
latency measured in onnxruntime-node, report.json + REPORT.md, then the self check."""
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import torch

import calibrate
import evaluate
import ort
import report
import selftest
import stats
import folder
from data import Splits, normalise
from decode import decode
from export import count_macs, count_params, describe_part, export_onnx, manifest, sha256, write_json, write_samples
from models import Classifier, JointMoE


@dataclass
class Trained:
    recipe: object
    splits: Splits
    base: Classifier
    base_history: list
    dense: Classifier
    dense_arch: object
    dense_history: list
    joint: JointMoE
    joint_history: list
    sgmoe: object  # sgmoe.Variant, the shipped model
    ablation: object  # sgmoe.Variant with a random gate
    k_sweep: dict  # the saved results of the last --sweep-k run, or None
    generalist_history: list = None  # the cheap-base recipe's generalist expert
    budget: dict = None  # --budget: the cap, the fitted architecture, the plan, the search table (search.run)


def _export_parts(into: str, model, shape: tuple, prefix: str = '') -> dict:
    """trunk/base/gate/experts of an SGMoE under `into`, with the tensor names of docs/DESIGN.md; shape = C, H, W."""
    image = torch.zeros(2, *shape)
    features = model.trunk(image).detach()
    files = {'trunk': f'{prefix}trunk.onnx', 'base': f'{prefix}base.onnx', 'gate': f'{prefix}gate.onnx'}
    export_onnx(model.trunk, image, os.path.join(into, files['trunk']), 'image', 'features')
    export_onnx(model.base, features, os.path.join(into, files['base']), 'features', 'logits')
    export_onnx(model.gate, features, os.path.join(into, files['gate']), 'features', 'gate_logits')
    files['experts'] = []
    for e, expert in enumerate(model.experts):
        files['experts'].append(f'{prefix}experts/expert-{e:02d}.onnx')
        export_onnx(expert, features, os.path.join(into, files['experts'][-1]), 'features', 'logits')
    return files


def _latency(out: str, files: dict, ablation_dir: str, ablation_files: dict, trained: Trained, sgmoe_threshold,
             ablation_threshold, count: int) -> dict:
    """Per-sample latency (batch 1, 1 thread) of every model in onnxruntime-node on the first `count` test images."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, 'inputs.f32')
        test = trained.splits.test
        repeat = torch.arange(count) % len(test)  # a small test split is cycled through; latency needs no new images
        test.normalised(repeat).numpy().tofile(inputs)

        def parts(folder, f, threshold):
            return {'trunk': os.path.join(out, files['trunk']), 'base': os.path.join(out, files['base']),
                    'gate': os.path.join(folder, f['gate']),
                    'experts': [os.path.join(folder, e) for e in f['experts']], 'threshold': threshold}

        spec = {'inputs': inputs, 'shape': list(test.shape), 'count': count, 'models': [
            {'name': 'base', 'file': os.path.join(out, 'baselines/base.onnx')},
            {'name': 'dense', 'file': os.path.join(out, 'baselines/dense.onnx')},
            {'name': 'joint-moe', 'file': os.path.join(out, 'baselines/joint-moe.onnx')},
            {'name': 'sgmoe', **parts(out, files, sgmoe_threshold)},
            {'name': 'sgmoe-always-expert', **parts(out, files, calibrate.THRESHOLDS[-1])},
            {'name': 'random-gate', **parts(ablation_dir, ablation_files, ablation_threshold)},
        ]}
        with open(os.path.join(tmp, 'spec.json'), 'w') as f:
            json.dump(spec, f)
        return ort.node_helper('latency', os.path.join(tmp, 'spec.json'))


def _onnx_facts(path: str) -> dict:
    import onnx
    model = onnx.load(path)
    onnx.checker.check_model(model)
    return {'macs': count_macs(model), 'params': count_params(model)}


def _statistics(test, labels, predicted: dict) -> dict:
    """Test-split statistics: 95% Wilson intervals, exact McNemar tests of SGMoE against the base, the dense
    baseline and the random-gate ablation, and per-class accuracy."""
    correct = {name: p == test.labels for name, p in predicted.items()}
    return {
        'testSamples': len(test),
        'accuracy95': {name: {'accuracy': round(float(c.float().mean()), 4),
                              'interval': [round(x, 4) for x in stats.wilson(int(c.sum()), len(c))]}
                       for name, c in correct.items()},
        'mcnemar': {f'sgmoe-vs-{other}': stats.mcnemar(correct['sgmoe'], correct[other])
                    for other in ('base', 'dense', 'random-gate')},
        'perClass': {name: stats.per_class(p, test.labels, labels) for name, p in predicted.items()},
    }


def _sdk_parity(out: str, names: list, test, positions: list, spec: dict):
    """Decodes every samples/ file with the SDK's preprocessing and compares it with the pixels the model was
    evaluated on: at most one grey level apart (own images are decoded by the SDK in training too, so 0 is expected).
    Returns the normalised inputs by sample name, and the check's line for the report."""
    pixels, decoded, rejected = decode([os.path.join(out, 'samples', n) for n in names], spec)
    assert not rejected, f'the SDK cannot decode samples/: {rejected}'
    trained_on = test.images[torch.tensor(positions, dtype=torch.long)].reshape(pixels.shape).int()
    worst = int((torch.from_numpy(pixels).int() - trained_on).abs().max()) if len(names) else 0
    assert worst <= 1, f'samples/ decoded by the SDK differ from the training pixels by {worst} grey levels'
    inputs = normalise(torch.from_numpy(pixels), test.pixels)
    return ({n: inputs[i] for i, n in enumerate(names)},
            f'SDK preprocessing parity on all {len(names)} samples/ files: max |diff| {worst} grey level(s) '
            '(at most 1 allowed)')


def _swap_into(out: str, built: str) -> None:
    """Replaces out by the finished package in two renames, so readers never see a half-written package."""
    previous = f'{out}.previous-{os.getpid()}'
    if os.path.exists(out):
        os.rename(out, previous)
    os.rename(built, out)
    shutil.rmtree(previous, ignore_errors=True)


def write(out: str, trained: Trained, version: str, quick: bool, started: float) -> None:
    """Builds the package beside `out`, checks it, then swaps it in."""
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    built = tempfile.mkdtemp(prefix=f'.{os.path.basename(out)}.building-', dir=os.path.dirname(out))
    try:
        _build(built, trained, version, quick, started)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    os.chmod(built, 0o755)
    _swap_into(out, built)


def _build(out: str, trained: Trained, version: str, quick: bool, started: float) -> None:
    recipe, test = trained.recipe, trained.splits.test
    chosen = trained.sgmoe
    export_started = time.time()

    shape, data = test.shape, trained.splits.data
    files = _export_parts(out, chosen.model, shape)
    image = torch.zeros(2, *shape)
    export_onnx(trained.base, image, os.path.join(out, 'baselines/base.onnx'), 'image', 'logits')
    export_onnx(trained.dense, image, os.path.join(out, 'baselines/dense.onnx'), 'image', 'logits')
    export_onnx(trained.joint, image, os.path.join(out, 'baselines/joint-moe.onnx'), 'image', 'logits')
    parts = {name: describe_part(out, files[name]) for name in ('trunk', 'base', 'gate')}
    parts['experts'] = [describe_part(out, f) for f in files['experts']]

    # Test metrics (first use of the test split), then the shipped samples and the selftest cases.
    sgmoe_metrics, test_outputs = evaluate.sgmoe(chosen, test)
    ablation_metrics, ablation_outputs = evaluate.sgmoe(trained.ablation, test)
    metrics = {'base': evaluate.classifier(trained.base, test), 'dense': evaluate.classifier(trained.dense, test),
               'joint-moe': evaluate.joint(trained.joint, test), 'sgmoe': sgmoe_metrics,
               'random-gate': ablation_metrics}
    statistics = _statistics(test, data.labels, {
        'sgmoe': evaluate.sgmoe_labels(chosen, test_outputs), 'base': evaluate.classifier_labels(trained.base, test),
        'dense': evaluate.classifier_labels(trained.dense, test),
        'random-gate': evaluate.sgmoe_labels(trained.ablation, ablation_outputs)})
    routing = {'topK': 1, 'earlyExit': {'threshold': chosen.operating['threshold']},
               'ensemble': {'baseWeight': chosen.operating['baseWeight']}}
    sample_positions, case_positions = selftest.pick_samples(test_outputs, routing)
    names = write_samples(out, test.images[sample_positions], test.labels[sample_positions],
                          test.indices[sample_positions], data)
    name_of = dict(zip(sample_positions, names))
    sample_inputs, sample_parity = _sdk_parity(out, names, test, sample_positions, data.input)
    write_json(os.path.join(out, 'selftest.json'),
               selftest.build(chosen.model, test.normalised(torch.tensor(case_positions, dtype=torch.long)),
                              [name_of[p] for p in case_positions], routing))
    if data.files:
        write_json(os.path.join(out, 'split.json'), folder.split_record(trained.splits))

    points = [{k: p[k] for k in ('threshold', 'accuracy', 'expertRate', 'meanMacs')}
              for p in calibrate.at_base_weight(chosen.points, routing['ensemble']['baseWeight'])]
    on = 'Fashion-MNIST' if not data.files else f'own images ({len(data.labels)} classes)'
    description = (f'Single-gate MoE (Royer et al., BMVC 2022) on {on}: ResNet trunk + base branch (early exit '
                   f'and ensemble member), linear gate, {chosen.k} experts'
                   + (' (QUICK build: subset, few epochs, not for use)' if quick else ''))
    write_json(os.path.join(out, 'manifest.json'), manifest(
        parts, routing, {'points': points, 'expertShare': chosen.operating['expertShare'], 'rule': calibrate.RULE},
        description, version, data))

    # Latency, model facts counted from the ONNX graphs, then the self check and the reports.
    with tempfile.TemporaryDirectory() as ablation_dir:
        ablation_files = _export_parts(ablation_dir, trained.ablation.model, shape)
        latency = _latency(out, files, ablation_dir, ablation_files, trained, routing['earlyExit']['threshold'],
                           trained.ablation.operating['threshold'], recipe.latency_samples)
    graphs = {name: _onnx_facts(os.path.join(out, f'baselines/{name}.onnx')) for name in ('base', 'dense', 'joint-moe')}
    sgmoe_params = sum(p['params'] for p in (parts['trunk'], parts['base'], parts['gate'], *parts['experts']))
    facts = {
        'base': {'meanMacs': graphs['base']['macs'], 'worstMacs': graphs['base']['macs'], 'params': graphs['base']['params']},
        'dense': {'meanMacs': graphs['dense']['macs'], 'worstMacs': graphs['dense']['macs'],
                  'params': graphs['dense']['params']},
        # The exported joint graph runs every expert and selects one; a top-1 runtime spends trunk + gate + one expert.
        'joint-moe': {'meanMacs': parts['trunk']['macs'] + parts['gate']['macs'] + parts['experts'][0]['macs'],
                      'worstMacs': parts['trunk']['macs'] + parts['gate']['macs'] + parts['experts'][0]['macs'],
                      'graphMacs': graphs['joint-moe']['macs'], 'params': graphs['joint-moe']['params']},
        'sgmoe': {'params': sgmoe_params}, 'random-gate': {'params': sgmoe_params},
    }
    models = {name: {**metrics[name], **facts[name], 'latencyUs': round(latency[name]['meanUs'], 1)}
              for name in metrics}
    models['sgmoe']['alwaysExpert']['latencyUs'] = round(latency['sgmoe-always-expert']['meanUs'], 1)

    checks = [sample_parity, selftest.check(chosen.model, out, sample_inputs)]
    for part in (parts['trunk'], parts['base'], parts['gate'], *parts['experts']):
        assert sha256(os.path.join(out, part['file'])) == part['sha256'], f'{part["file"]}: sha256 changed'
    checks.append(f'sha256 of {3 + len(parts["experts"])} parts re-verified; onnx.checker passed on every graph')
    checks.append(ort.parity(out))
    for line in checks:
        print(f'self check: {line}', flush=True)

    summary = report.build(trained, models, latency, chosen, points, routing, quick, checks, statistics,
                           elapsed=time.time() - started, export_seconds=time.time() - export_started)
    write_json(os.path.join(out, 'report.json'), summary)
    with open(os.path.join(out, 'REPORT.md'), 'w') as f:
        f.write(report.markdown(summary))
