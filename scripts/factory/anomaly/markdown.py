"""REPORT.md of an anomaly package, from report.json's facts."""

MODELS = [('sgmoe', 'SGMoE at the operating point (shipped)'), ('sgmoe-always-expert', 'SGMoE, expert always run'),
          ('global', 'one global model, no mixture'), ('separate', 'separate per-mode models, all run'),
          ('base-only', 'base alone')]


def _pct(v):
    return '—' if v is None else f'{100 * v:.2f}%'


def _num(v):
    return '—' if v is None else f'{v:.4f}'


def render(f: dict) -> str:
    lines = [f'# {f["name"]} {f["version"]}: line anomaly detection', '',
             'Trained on good images only (`npm run factory -- --task anomaly ' + ' '.join(f['args']) + '`).', '',
             '## Method', '',
             '- **Trunk**: fixed random zero-mean 5x5 filters (seeded, untrained); per cell of a coarse grid, mean '
             'intensity and mean contrast energy per filter.',
             '- **Base**: a Gaussian of the good images\' intensity cells; score = Mahalanobis distance, normalised by '
             'its own median and 99th percentile on held-out good images (0 and 1). Cheap; exits early below the '
             'early-exit point.',
             '- **Gate**: k-means on the good images\' trunk features, written as one linear layer '
             '(nearest centroid). **Experts**: one Gaussian on all trunk features per mode, normalised like the base.',
             '- **Decision**: final = base score on early exit, else `w*base + (1-w)*expert` (top-1); anomalous when '
             f'final ≥ threshold. w = 0.25. Score maps split each distance by grid cell (coarse localisation).',
             f'- Good images: {f["splitSizes"]["fit"]} fit the Gaussians, {f["splitSizes"]["norm"]} normalise the parts, '
             f'{f["splitSizes"]["threshold"]} (held out) set the threshold at the target false-alarm rate '
             f'{_pct(f["falseAlarmRate"])}: threshold {f["threshold"]:.4f}, early exit below {f["exitBelow"]:.4f}.',
             f'- Expert share (held-out good, op. point): {", ".join(_pct(s) for s in f["expertShare"])}.', '']
    if f['badFiles']:
        lines += [f'Unreadable files skipped: {len(f["badFiles"])} (' +
                  '; '.join(f'{p}: {r}' for p, r in f['badFiles'][:5]) + ')', '']
    lines += ['## Early-exit calibration (held-out good images)', '',
              '| exit quantile | exit below | expert rate | threshold at target rate | mean MACs |', '| ---: | ---: | ---: | ---: | ---: |']
    macs = f['macs']
    for p in f['points']:
        mean = macs['trunk'] + macs['base'] + macs['gate'] + p['expertRate'] * macs['expert']
        lines.append(f'| {p["exitQuantile"]} | {p["exitBelow"]:.4f} | {_pct(p["expertRate"])} | {p["threshold"]:.4f} | {mean:,.0f} |')
    lines += ['', f'## Test ({f["test"]} images: ' + ', '.join(f'{k} {n}' for k, n in f['testKinds'].items()) + ')', '',
              'Each model at its own threshold for the same target rate, set on the same held-out good images.', '',
              '| model | image AUROC | pixel AUROC | false alarms (good) | misses (defects) | mean MACs / frame | package bytes |',
              '| --- | ---: | ---: | ---: | ---: | ---: | ---: |']
    for key, label in MODELS:
        r = f['results'].get(key)
        if not r:
            continue
        size = f['packageBytes'].get(key.replace('-always-expert', ''), None)
        lines.append(f'| {label} | {_num(r.get("auroc"))} | {_num(r.get("pixelAuroc"))} | {_pct(r.get("falseAlarmRate"))} '
                     f'| {_pct(r.get("missRate"))} | {r["meanMacs"]:,.0f} | {"—" if size is None else f"{size:,}"} |')
    lines += ['', f'MACs per part: trunk {macs["trunk"]:,}, base {macs["base"]:,}, gate {macs["gate"]:,}, '
              f'expert {macs["expert"]:,}, global {macs["global"]:,}.', '']
    return '\n'.join(lines)
