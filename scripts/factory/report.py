"""report.json (machine-readable) and REPORT.md (the same facts for people)."""
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict

import torch

import calibrate
from sgmoe import HARD_CONFIDENCE, SHARE_RANGE

TITLES = {'base': 'Base model alone (trunk + base branch)',
          'dense': 'Dense, MACs = SGMoE worst case',
          'joint-moe': 'Jointly trained MoE (softmax gate, top-1, no base)',
          'sgmoe': 'SGMoE at its operating point',
          'random-gate': 'SGMoE ablation: random gate, no clustering'}


def _cpu() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            model = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        model = platform.processor() or '?'
    return f'{os.cpu_count()} x {model}'


def _best(history: list) -> dict:
    best = max(history, key=lambda h: h['valAccuracy'])
    return {'epochs': len(history), 'bestEpoch': best['epoch'], 'valAccuracy': round(best['valAccuracy'], 4)}


def check_targets(models: dict, statistics: dict) -> dict:
    """The done-when of issue 13, on the test split."""
    sg, base, dense, ablation = models['sgmoe'], models['base'], models['dense'], models['random-gate']
    vs_base, vs_random = statistics['mcnemar']['sgmoe-vs-base'], statistics['mcnemar']['sgmoe-vs-random-gate']
    return {
        'accuracyAtLeastBasePlus1PointSignificant': {
            'met': sg['accuracy'] >= base['accuracy'] + 0.01 - 1e-9 and vs_base['p'] < 0.05,
            'sgmoe': sg['accuracy'], 'base': base['accuracy'], 'p': vs_base['p']},
        'accuracyAtLeastDense': {'met': sg['accuracy'] >= dense['accuracy'], 'sgmoe': sg['accuracy'],
                                 'dense': dense['accuracy']},
        'meanMacsAtMost60PercentOfDense': {'met': sg['meanMacs'] <= 0.6 * dense['meanMacs'],
                                           'ratio': round(sg['meanMacs'] / dense['meanMacs'], 4)},
        'everyExpertShareBetween5And60Percent': {
            'met': all(SHARE_RANGE[0] <= s <= SHARE_RANGE[1] for s in sg['usage']['shares']),
            'shares': sg['usage']['shares']},
        'clusteredGateBeatsRandomGate': {'met': sg['accuracy'] > ablation['accuracy'] and vs_random['p'] < 0.05,
                                         'sgmoe': sg['accuracy'], 'randomGate': ablation['accuracy'],
                                         'p': vs_random['p']},
    }


def build(trained, models: dict, latency: dict, chosen, points: list, routing: dict, quick: bool, checks: list,
          statistics: dict, elapsed: float, export_seconds: float) -> dict:
    targets = check_targets(models, statistics)
    return {
        'format': 'sgmoe-report/1',
        'name': trained.splits.data.name,
        'mode': 'quick' if quick else 'full',
        'command': ' '.join(['npm run factory --', *map(shlex.quote, sys.argv[1:])]),
        'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'machine': {'cpu': _cpu(), 'torch': torch.__version__, 'python': platform.python_version()},
        'elapsedSeconds': round(elapsed, 1),
        'exportSeconds': round(export_seconds, 1),
        'recipe': {**asdict(trained.recipe), 'denseWidths': list(trained.dense_arch.widths)},
        'experts': chosen.k,
        'routing': routing,
        'models': models,
        'latency': latency,
        'targets': targets,
        'statistics': statistics,
        'data': {**trained.splits.data.facts,
                 'input': {**trained.splits.data.facts.get('input', {}), **trained.splits.data.input},
                 'labels': list(trained.splits.data.labels),
                 'splitFile': 'split.json' if trained.splits.data.files else None},
        'kSweep': trained.k_sweep,
        'budget': trained.budget,
        'gateBalancing': {'hardConfidence': HARD_CONFIDENCE, 'hardTrainSamples': chosen.setup['hardTrainSamples'],
                          'balancedOver': chosen.setup['balancedOver'],
                          'sharesAfter': chosen.setup['balancedHardShares'],
                          'routedTrain': chosen.setup['routedTrain']},
        'calibration': {'rule': calibrate.RULE, 'points': points, 'operatingPoint': chosen.operating},
        'randomGateCalibration': {'operatingPoint': trained.ablation.operating,
                                  'routedTrain': trained.ablation.setup['routedTrain']},
        'training': {'base': _best(trained.base_history), 'dense': _best(trained.dense_history),
                     'joint-moe': _best(trained.joint_history),
                     'generalist': _best(trained.generalist_history) if trained.generalist_history else None,
                     'experts': [_best(h) for h in chosen.setup['expertHistories']],
                     'randomGateExperts': [_best(h) for h in trained.ablation.setup['expertHistories']]},
        'checks': checks,
    }


def sweep(candidates: dict, chosen_k: int, base_history: list, recipe) -> dict:
    """What a --sweep-k run saves (k-sweep.json): every K at its validation operating point."""
    return {
        'format': 'sgmoe-k-sweep/1',
        'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'rule': 'among the K whose experts all receive 5-60% of the routed validation samples, the best validation '
                'accuracy at the operating point; any K within 0.1 point of it -> the smallest such K',
        'expertEpochs': recipe.experts.epochs,
        'base': _best(base_history),
        'chosenK': chosen_k,
        'rows': [{'k': k, 'threshold': v.operating['threshold'], 'valAccuracy': v.operating['accuracy'],
                  'expertRate': v.operating['expertRate'], 'meanMacs': v.operating['meanMacs'],
                  'expertShare': v.operating['expertShare'], 'alwaysExpertValAccuracy': v.points[-1]['accuracy'],
                  'clusterSizes': v.setup['clusterSizes'],
                  'gateValAccuracy': _best(v.setup['gateHistory'])['valAccuracy']}
                 for k, v in sorted(candidates.items())],
    }


def _pct(x: float) -> str:
    return f'{100 * x:.2f}%'


def _usage(u: dict) -> str:
    return f'max {_pct(u["maxShare"])}, H/log K {u["normalisedEntropy"]:.3f} ({", ".join(_pct(s) for s in u["shares"])})'


def _sweep_lines(k_sweep: dict, shipped_k: int) -> list:
    if not k_sweep:
        return [f'No `--sweep-k` results were saved; K = {shipped_k} was set by hand.']
    base = k_sweep['base']
    lines = [
        f'K = {shipped_k}. Chosen by `npm run factory -- --sweep-k {",".join(str(r["k"]) for r in k_sweep["rows"])}` '
        f'({k_sweep["date"]}, saved in `scripts/factory/k-sweep.json`): one base (validation accuracy '
        f'{_pct(base["valAccuracy"])}), then for each K the clustering, gate and experts (trained '
        f'{k_sweep["expertEpochs"]} epochs to keep the sweep cheap) and the threshold sweep on validation. '
        f'Rule: {k_sweep["rule"]}.',
        '',
        '| K | val acc (op. point) | threshold | expert rate | mean MACs | val acc, always expert | gate acc on clusters | cluster sizes | expert shares |',
        '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ]
    for s in k_sweep['rows']:
        lines.append(f'| {s["k"]}{" (chosen)" if s["k"] == k_sweep["chosenK"] else ""} | {_pct(s["valAccuracy"])} | '
                     f'{s["threshold"]} | {_pct(s["expertRate"])} | {s["meanMacs"]:,.0f} | '
                     f'{_pct(s["alwaysExpertValAccuracy"])} | {_pct(s["gateValAccuracy"])} | {s["clusterSizes"]} | '
                     f'{", ".join(_pct(x) for x in s["expertShare"])} |')
    return lines


def _budget_lines(b: dict, elapsed: float) -> list:
    """--budget: the cap and the fitted architecture, the search table, the plan against the time used."""
    def m(seconds):
        return '—' if seconds is None else f'{int(seconds) // 60} min {int(seconds) % 60:02d} s'

    cap, arch, plan = b['cap'], b['architecture'], b['plan']
    halves = b['validationHalves']
    lines = [f'Chosen by `--budget {m(b["budgetSeconds"])}`: validation cut in two seeded halves (A {halves["a"]}, '
             f'B {halves["b"]} samples). Half A early-stops every model and chooses K and the expert epochs; half B '
             'chooses the threshold and the ensemble weight; the test split is used once, for the figures above.', '']
    if cap:
        source = (f'device profile `{cap["device"]}` ({cap["rule"]}: {cap["throughputMacsPerSecond"]:.3g} MAC/s '
                  f'[{cap["throughputSource"]}] / ({cap["frameRate"]} fps x {cap["streams"]} streams))'
                  if cap['source'] == '--device' else '`--max-macs`')
        lines += [f'- MACs cap {cap["capMacs"]:,} per sample from {source}. Fitted architecture: base widths '
                  f'{arch["baseWidths"]} blocks {arch["baseBlocks"]}, expert widths {arch["expertWidths"]} blocks '
                  f'{arch["expertBlocks"]} (scale {arch["scale"]}), worst case {arch["worstMacs"]:,} MACs with the '
                  f'gate counted at K = {arch["gateMacsCountedForK"]} (the largest of {arch["ladderSize"]} ladder '
                  'steps under the cap).']
    else:
        lines.append('- No MACs cap: the cheap-base architecture as it is.')
    lines += [f'- Rule: {b["rule"]}. Chosen: K = {b["chosen"]["k"]}, expert epochs {b["chosen"]["expertEpochs"]}.',
              f'- Half B operating point: threshold {b["halfB"]["threshold"]}, baseWeight {b["halfB"]["baseWeight"]}, '
              f'half-B accuracy {_pct(b["halfB"]["accuracy"])} (half A: threshold {b["halfA"]["threshold"]}, '
              f'baseWeight {b["halfA"]["baseWeight"]}, {_pct(b["halfA"]["accuracy"])}).', '',
              '| K | expert epochs | half-A acc (op. point) | threshold | baseWeight | mean MACs | expert shares | '
              'balanced | best epoch per expert | wall |',
              '| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |']
    for r in b['search']:
        chosen = r['k'] == b['chosen']['k'] and r['expertEpochs'] == b['chosen']['expertEpochs']
        lines.append(f'| {r["k"]}{" (chosen)" if chosen else ""} | {r["expertEpochs"]} | {_pct(r["valAAccuracy"])} | '
                     f'{r["threshold"]} | {r["baseWeight"]} | {r["meanMacs"]:,.0f} | '
                     f'{", ".join(_pct(x) for x in r["expertShare"])} | {"yes" if r["balanced"] else "no"} | '
                     f'{r["bestExpertEpochs"]} | {m(r["seconds"])} |')
    used_before = sum(s['actualSeconds'] or 0 for s in plan['stages'])
    lines += ['', f'Plan (probe: seconds per training sample {b["probeSecondsPerSample"]}): base, dense and joint MoE '
                  f'{plan["epochs"]} epochs, generalist {plan["generalistEpochs"]}, candidates {plan["candidates"]}.',
              '', '| stage | estimate | actual |', '| --- | ---: | ---: |']
    for st in plan['stages']:
        actual = st['actualSeconds']
        if actual is None and st['stage'].startswith('package'):
            actual = elapsed - b['secondsBeforePackage']
        lines.append(f'| {st["stage"]} | {m(st["estimateSeconds"])} | {m(actual)} |')
    over = elapsed - b['budgetSeconds']
    lines += [f'| total (from the start, data loading, architecture fit and probe included) | '
              f'{m(plan["estimatedSeconds"])} | {m(elapsed)} |', '',
              f'Budget {m(b["budgetSeconds"])}, used {m(elapsed)}: '
              + (f'within it ({m(-over)} left).' if over <= 0 else
                 f'over by {m(over)} ({100 * over / b["budgetSeconds"]:.0f}%; stated tolerance '
                 f'{100 * b["tolerance"]:.0f}%).') + f' Stages before the package took {m(used_before)}.',
              '- Dropped by the plan: ' + ('; '.join(plan['dropped']) or 'nothing') + '.',
              '- Dropped at run time: ' + ('; '.join(plan['droppedAtRunTime']) or 'nothing') + '.',
              '- Dropped by the plan, then run as time was left: ' + ('; '.join(plan.get('reserveRun', [])) or 'none')
              + '.']
    return lines


def _gate_pool(grid: int) -> str:
    return 'global average pool' if grid == 1 else f'average pool on a {grid}x{grid} grid'


def _experts_line(recipe: dict, training: dict) -> str:
    if not recipe.get('expert_arch'):
        return 'Experts have the branch architecture and start from its weights.'
    e = recipe['expert_arch']
    return (f'Experts are larger than the base branch (widths {e["widths"]}, blocks {e["blocks"]}) and start from a '
            f'generalist expert: that architecture trained alone on all the training data with the trunk frozen, '
            f'{recipe["generalist"]["epochs"]} epochs (validation accuracy alone '
            f'{_pct(training["generalist"]["valAccuracy"])}); each expert sees the training samples the base is less '
            f'than {HARD_CONFIDENCE} confident of {recipe["hard_repeat"]} times.')


def _statistics_lines(st: dict) -> list:
    acc = st['accuracy95']
    lines = ['', '### Statistics (test split)', '',
             '95% Wilson intervals of the test accuracy: '
             + '; '.join(f'{TITLES.get(n, n).split(":")[0].split(" (")[0]} {_pct(a["accuracy"])} '
                         f'[{_pct(a["interval"][0])}, {_pct(a["interval"][1])}]' for n, a in acc.items()) + '.',
             '',
             'Exact McNemar tests (two-sided binomial test on the discordant test samples: the ones exactly one of the '
             'two models gets right):', '',
             '| comparison | only SGMoE right | only the other right | p |', '| --- | ---: | ---: | ---: |']
    for name, t in st['mcnemar'].items():
        lines.append(f'| {name} | {t["aOnlyCorrect"]} | {t["bOnlyCorrect"]} | {t["p"]:.3g} |')
    models = list(st['perClass'])
    lines += ['', 'Per-class test accuracy:', '', '| class | test images | ' + ' | '.join(models) + ' |',
              '| --- | ---: | ' + ' | '.join('---:' for _ in models) + ' |']
    for c, row in enumerate(st['perClass'][models[0]]):
        cells = [st['perClass'][m][c]['accuracy'] for m in models]
        lines.append(f'| {row["label"]} | {row["samples"]} | '
                     + ' | '.join('—' if a is None else _pct(a) for a in cells) + ' |')
    return lines + ['']


def _left_out(title: str, files: list) -> list:
    """A count, then the first 50 files with their reason."""
    lines = [f'- {title}: {len(files)}' + (':' if files else '.')]
    lines += [f'  - `{u["file"]}`: {u["code"]}: {u["reason"]}' for u in files[:50]]
    return lines + ([f'  - … and {len(files) - 50} more (all in report.json)'] if len(files) > 50 else [])


def _data_lines(d: dict) -> list:
    """Own images: where they came from, how they were split, what could not be read, and the class balance."""
    i = d['input']
    chosen = [what for what, by_factory in i.get('chosen', {}).items() if by_factory]
    lines = ['## Data', '',
             f'- {d["description"]}; {d["split"]} (which file went where: `split.json`).',
             f'- Model input {i["width"]}x{i["height"]}, {i["channels"]} channel(s)'
             + (f', ROI {i["roi"]}' if i.get('roi') else '')
             + (f' ({" and ".join(chosen)} chosen by the factory)' if chosen else '')
             + '; every image is decoded by the SDK\'s own preprocessing (sharp), in training as on the device.',
             f'- Class imbalance: largest / smallest training class = {d["imbalance"]["ratio"]} '
             f'("{d["imbalance"]["largest"]}" / "{d["imbalance"]["smallest"]}"); handling: {d["imbalance"]["handling"]}.',
             *_left_out('Unreadable files skipped', d['unreadable']),
             *_left_out('Duplicate copies left out (identical pixels)', d.get('duplicates', []))]
    lines += ['', '| class | train | val | test | unreadable |', '| --- | ---: | ---: | ---: | ---: |']
    lines += [f'| {c["label"]} | {c["train"]} | {c["val"]} | {c["test"]} | {c["unreadable"]} |' for c in d['classes']]
    return lines + ['']


def markdown(r: dict) -> str:
    m = r['models']
    recipe = r['recipe']
    lines = [
        f'# {r["name"]} — training report',
        '',
        f'Generated by `{r["command"]}` ({r["mode"]} run) on '
        f'{r["date"]}, {r["machine"]["cpu"]}, torch {r["machine"]["torch"]}; the run took '
        f'{r["elapsedSeconds"]:.0f} s wall (measured in-process).',
        '',
        f'## Models (test split, {r["statistics"]["testSamples"]:,} images)',
        '',
        'Accuracy on the test split; MACs per sample counted from the ONNX graphs (Conv/Gemm/MatMul at batch 1); '
        'parameters = ONNX initializer elements (BatchNorm folded); latency = mean per sample, batch 1, '
        f'onnxruntime-node, 1 intra-op thread, the first {r["recipe"]["latency_samples"]:,} test images (the first 20 '
        'of them warm-up, not timed), the models taking turns on each image.',
        '',
        '| model | test acc | mean MACs | worst MACs | params | latency µs | expert usage (samples reaching an expert) |',
        '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ]
    if r['data']['source'] == 'folder':
        lines[4:4] = _data_lines(r['data'])
    for name in ('base', 'dense', 'joint-moe', 'sgmoe', 'random-gate'):
        x = m[name]
        usage = _usage(x['usage']) if 'usage' in x else '—'
        extra = (f' (threshold {x["threshold"]}, baseWeight {x["baseWeight"]}, expert rate {_pct(x["expertRate"])})'
                 if 'threshold' in x else '')
        lines.append(f'| {TITLES[name]}{extra} | {_pct(x["accuracy"])} | {x["meanMacs"]:,.0f} | {x["worstMacs"]:,} | '
                     f'{x["params"]:,} | {x["latencyUs"]:.0f} | {usage} |')
    a = m['sgmoe']['alwaysExpert']
    lines += [
        f'| SGMoE, every sample to an expert (threshold 1.000001, same baseWeight) | {_pct(a["accuracy"])} | {m["sgmoe"]["worstMacs"]:,} | '
        f'{m["sgmoe"]["worstMacs"]:,} | {m["sgmoe"]["params"]:,} | {a["latencyUs"]:.0f} | {_usage(a["usage"])} |',
        '',
        f'The joint MoE graph in `baselines/joint-moe.onnx` runs every expert and selects the top-1 '
        f'({m["joint-moe"]["graphMacs"]:,} MACs, which its latency reflects); the MACs column counts what a top-1 '
        'runtime spends (trunk + gate + one expert). Its usage is over all test samples (it has no early exit).',
        '',
        *_statistics_lines(r['statistics']),
        '## Targets',
        '',
    ]
    t = r['targets']
    verdict = lambda ok: '**met**' if ok else '**not met**'  # noqa: E731
    lines += [
        f'- SGMoE ≥ base + 1.0 point with McNemar p < 0.05: '
        f'{verdict(t["accuracyAtLeastBasePlus1PointSignificant"]["met"])} '
        f'({_pct(t["accuracyAtLeastBasePlus1PointSignificant"]["sgmoe"])} vs '
        f'{_pct(t["accuracyAtLeastBasePlus1PointSignificant"]["base"])}, '
        f'p = {t["accuracyAtLeastBasePlus1PointSignificant"]["p"]:.3g}).',
        f'- SGMoE ≥ dense equal-worst-case-MACs baseline: {verdict(t["accuracyAtLeastDense"]["met"])} '
        f'({_pct(t["accuracyAtLeastDense"]["sgmoe"])} vs {_pct(t["accuracyAtLeastDense"]["dense"])}).',
        f'- SGMoE mean MACs ≤ 60% of the dense baseline: {verdict(t["meanMacsAtMost60PercentOfDense"]["met"])} '
        f'(ratio {_pct(t["meanMacsAtMost60PercentOfDense"]["ratio"])}).',
        f'- Every expert gets 5–60% of the samples that reach an expert: '
        f'{verdict(t["everyExpertShareBetween5And60Percent"]["met"])} '
        f'({", ".join(_pct(s) for s in t["everyExpertShareBetween5And60Percent"]["shares"])}).',
        f'- The clustered gate beats the random-gate ablation (McNemar p < 0.05): '
        f'{verdict(t["clusteredGateBeatsRandomGate"]["met"])} ({_pct(t["clusteredGateBeatsRandomGate"]["sgmoe"])} '
        f'vs {_pct(t["clusteredGateBeatsRandomGate"]["randomGate"])}, p = {t["clusteredGateBeatsRandomGate"]["p"]:.3g}'
        + ('' if t['clusteredGateBeatsRandomGate']['met'] else ': the clustering adds nothing measurable here') + ').',
        f'- Router collapse: the jointly trained MoE {_usage(m["joint-moe"]["usage"])} vs SGMoE '
        f'{_usage(m["sgmoe"]["usage"])}.',
        '',
        '## Choice of K (validation)',
        '',
    ]
    lines += _budget_lines(r['budget'], r['elapsedSeconds']) if r.get('budget') else _sweep_lines(r['kSweep'],
                                                                                                  r['experts'])
    lines += [
        '',
        '## Early-exit calibration (validation, chosen K)',
        '',
        f'Rule: {r["calibration"]["rule"]}. Operating point: threshold {r["routing"]["earlyExit"]["threshold"]}, '
        f'baseWeight {r["routing"]["ensemble"]["baseWeight"]} (the table shows the thresholds at that baseWeight).',
        '',
        '| threshold | val accuracy | expert rate | mean MACs |',
        '| ---: | ---: | ---: | ---: |',
    ]
    for p in r['calibration']['points']:
        lines.append(f'| {p["threshold"]} | {_pct(p["accuracy"])} | {_pct(p["expertRate"])} | {p["meanMacs"]:,.0f} |')
    arch = recipe['arch']
    tr = r['training']
    lines += [
        '',
        '## Recipe',
        '',
        f'- Data: {r["data"]["description"]}; {r["data"]["split"]}; training on {recipe["train_size"]:,} images; '
        f'inputs x/255, (x - mean)/std with mean {r["data"]["input"]["mean"]}, std {r["data"]["input"]["std"]}.',
        f'- Augmentation for every model: random crop with zero padding (2 pixels per 28)'
        f'{", horizontal flip" if r["data"].get("flip", True) else " (no flips: --no-flip)"}.',
        f'- Base: ResNet on {r["data"]["input"]["channels"]}x{r["data"]["input"]["height"]}x'
        f'{r["data"]["input"]["width"]} inputs, trunk = stride-2 stem + one basic block at half resolution '
        f'({arch["trunk_width"]} channels; the gate pools it); branch = stages of widths {arch["widths"]} with '
        f'{arch["blocks"]} basic blocks, each stage halving the resolution, global pool, linear. '
        + _experts_line(recipe, tr),
        f'- Dense baseline: the same trunk, branch widths {recipe.get("denseWidths")} (the widening whose ONNX MACs '
        'are closest to the SGMoE worst case).',
        f'- Base, dense and joint MoE: {recipe["epochs"]["epochs"]} epochs, SGD (Nesterov, momentum 0.9, weight decay '
        f'{recipe["epochs"]["weight_decay"]}), one-cycle LR peak {recipe["epochs"]["lr"]}, batch '
        f'{recipe["epochs"]["batch_size"]}; the epoch with the best validation accuracy is kept '
        f'(base: epoch {tr["base"]["bestEpoch"]}, dense: {tr["dense"]["bestEpoch"]}, joint: {tr["joint-moe"]["bestEpoch"]}).',
        f'- Clustering: k-means (k-means++ init, {recipe["kmeans_restarts"]} restarts, lowest inertia) on the base '
        'penultimate features of the training images.',
        f'- Gate: {_gate_pool(recipe.get("gate_grid", 1))} + linear on the frozen trunk, trained on the cluster ids for {recipe["gate"]["epochs"]} epochs, '
        f'then balanced: its biases are shifted until its top-1 choices are uniform over the '
        f'{r["gateBalancing"]["hardTrainSamples"]:,} training samples on which the base is less than '
        f'{r["gateBalancing"]["hardConfidence"]} '
        'confident (the ones early exit sends to an expert; the clusters of the whole training set split them very '
        'unevenly)'
        + ('' if r['gateBalancing'].get('balancedOver', r['gateBalancing']['hardTrainSamples'])
           == r['gateBalancing']['hardTrainSamples'] else
           f' — too few for K experts here, so over all {r["gateBalancing"]["balancedOver"]:,} training samples')
        + f'. Top-1 shares after balancing: {r["gateBalancing"]["sharesAfter"]}; routed training '
        f'samples per expert: {r["gateBalancing"]["routedTrain"]}.',
        f'- Experts: trained asynchronously, each in its own worker process (1 thread, 2 workers), on the training '
        f'samples the gate routes to it plus {100 * recipe["extra_share"]:.0f}% of the others, for '
        f'{recipe["experts"]["epochs"]} epochs (one-cycle LR peak {recipe["experts"]["lr"]}), with the ensemble '
        f'objective NLL(log(w softmax(base) + (1-w) softmax(expert))), w = {recipe["base_weight"]} during training, '
        'trunk and base frozen (the shipped baseWeight is calibrated on validation with the threshold, see below). Step (d), gate refinement, is not used.',
        '- Joint MoE: same trunk/branch architecture, K experts and a softmax gate trained end to end from scratch, '
        'top-1 routing with output = gate probability x expert logits, no load-balancing loss.',
        '- Random-gate ablation: the same experts recipe, but the gate keeps its random initialisation.',
        '',
        '## Self check',
        '',
        *[f'- {c}' for c in r['checks']],
        '',
        f'Rebuild: `{r["command"]}`. Machine-readable figures: `report.json`.',
        '',
    ]
    return '\n'.join(lines)
