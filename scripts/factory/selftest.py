"""selftest.json: golden inputs from samples/ with the PyTorch outputs of every part and the final decisions; the
choice of robust cases and the end-of-run self check."""
import json
import os

import torch

from calibrate import decide

FORMAT = 'sgmoe-selftest/1'
TOLERANCE = 1e-4
# The relative part of every golden comparison (numpy.allclose's rtol; the SDK reads it as relativeTolerance): float32
# keeps a share of a value, and anomaly scores reach 6.8e4. ONNX Runtime (CPU) against PyTorch on every golden value of
# the four shipped packages and of a two-product anomaly package of own images: at most 8.6e-7 of values above 100 and
# 3.7e-6 of values above 1; no difference used more than 12% of (1e-4 + 1e-5 x |value|), 7% of (1e-3 + 1e-5 x |value|).
RELATIVE_TOLERANCE = 1e-5
# A case is kept only when no decision is within this distance of the threshold, a tie of the final
# probabilities or a tie of the gate, so that float differences between runtimes cannot flip it.
MARGIN = 1e-3


def share(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> float:
    """The largest share of its tolerance (tolerance + RELATIVE_TOLERANCE x |expected|) a difference uses: > 1 is
    outside, as `sgmoe model verify` compares."""
    actual, expected = actual.flatten().double(), expected.flatten().double()
    if actual.shape != expected.shape:
        return float('inf')
    return float(((actual - expected).abs() / (tolerance + RELATIVE_TOLERANCE * expected.abs())).max())


def _floats(t: torch.Tensor) -> list:
    return [float(f'{v:.8g}') for v in t.flatten().tolist()]


def _decisions(outputs: dict, routing: dict, top_k: int) -> dict:
    return decide(outputs['logits'], outputs['gate_logits'], outputs['experts'],
                  routing['earlyExit']['threshold'], top_k, routing['ensemble']['baseWeight'])


def _gap(values: torch.Tensor, rank: int) -> torch.Tensor:
    """Distance between the rank-th and the next largest value of each row (inf when there is no next)."""
    ordered = values.sort(dim=1, descending=True).values
    if ordered.shape[1] <= rank + 1:
        return torch.full((len(values),), float('inf'))
    return ordered[:, rank] - ordered[:, rank + 1]


def robust(outputs: dict, routing: dict) -> torch.Tensor:
    top1, top2 = _decisions(outputs, routing, 1), _decisions(outputs, routing, 2)
    gate = top1['gate']
    return (((top1['baseConfidence'] - routing['earlyExit']['threshold']).abs() > MARGIN)
            & (_gap(top1['probabilities'], 0) > MARGIN) & (_gap(top2['probabilities'], 0) > MARGIN)
            & (_gap(gate, 0) > MARGIN) & (_gap(gate, 1) > MARGIN))


def pick_samples(outputs: dict, routing: dict, count: int = 60, early_cases: int = 6, expert_cases: int = 12):
    """Positions of the test samples to ship and, among them, the selftest cases: robust early exits and robust
    expert cases spread round-robin over the experts, then the first test images to fill `count`."""
    decision = _decisions(outputs, routing, 1)
    ok = robust(outputs, routing)
    early = [int(i) for i in torch.nonzero(ok & decision['earlyExit']).flatten()[:early_cases]]
    per_expert = [torch.nonzero(ok & ~decision['earlyExit'] & (decision['experts'][:, 0] == e)).flatten().tolist()
                  for e in range(outputs['gate_logits'].shape[1])]
    routed = []
    while len(routed) < expert_cases and any(per_expert):
        for queue in per_expert:
            if queue and len(routed) < expert_cases:
                routed.append(queue.pop(0))
    cases = sorted(early + routed)
    fill = [i for i in range(len(decision['label'])) if i not in set(cases)][:max(0, count - len(cases))]
    return sorted(cases + fill), cases


def _decision_json(decision: dict, i: int) -> dict:
    early = bool(decision['earlyExit'][i])
    experts = [] if early else [int(e) for e in decision['experts'][i]]
    return {'label': int(decision['label'][i]), 'score': float(f'{float(decision["score"][i]):.8g}'),
            'probabilities': _floats(decision['probabilities'][i]), 'expert': experts[0] if experts else None,
            'experts': experts, 'earlyExit': early,
            'baseConfidence': float(f'{float(decision["baseConfidence"][i]):.8g}')}


def build(model, inputs: torch.Tensor, names: list, routing: dict) -> dict:
    """inputs: the normalised tensors of the case samples, in the order of names."""
    outputs = model.outputs(inputs)
    top1, top2 = _decisions(outputs, routing, 1), _decisions(outputs, routing, 2)
    cases = []
    for i, name in enumerate(names):
        cases.append({
            'id': f'case-{i:02d}',
            'sample': f'samples/{name}',
            'input': _floats(inputs[i]),
            'outputs': {'features': _floats(outputs['features'][i]), 'logits': _floats(outputs['logits'][i]),
                        'gate_logits': _floats(outputs['gate_logits'][i]),
                        'experts': [_floats(e) for e in outputs['experts'][i]]},
            'decision': _decision_json(top1, i),
            'decisionTop2': _decision_json(top2, i),
        })
    return {'format': FORMAT, 'tolerance': TOLERANCE, 'relativeTolerance': RELATIVE_TOLERANCE,
            'routing': {'threshold': routing['earlyExit']['threshold'], 'topK': routing['topK'],
                        'baseWeight': routing['ensemble']['baseWeight']},
            'cases': cases}


def check(model, out_dir: str, sample_inputs: dict) -> str:
    """Re-runs the PyTorch modules on the stored inputs, which must equal the sample files decoded again by the SDK's
    preprocessing (`sample_inputs`: samples/ name -> normalised tensor), and compares every output and decision with
    selftest.json. Raises AssertionError naming the case and field that differ."""
    with open(os.path.join(out_dir, 'selftest.json')) as f:
        selftest = json.load(f)
    routing = {'topK': selftest['routing']['topK'], 'earlyExit': {'threshold': selftest['routing']['threshold']},
               'ensemble': {'baseWeight': selftest['routing']['baseWeight']}}
    decoded = torch.stack([sample_inputs[os.path.basename(c['sample'])] for c in selftest['cases']])
    stored_inputs = torch.tensor([c['input'] for c in selftest['cases']]).reshape(decoded.shape)
    assert (decoded - stored_inputs).abs().max() < TOLERANCE, 'input differs from its sample decoded by the SDK'
    outputs = model.outputs(stored_inputs)
    worst = 0.0
    for i, case in enumerate(selftest['cases']):
        for key in ('features', 'logits', 'gate_logits', 'experts'):
            expected = torch.tensor(case['outputs'][key]).flatten()
            assert share(outputs[key][i], expected, TOLERANCE) <= 1, f'{case["id"]} {key} is outside the tolerance'
            worst = max(worst, float((outputs[key][i].flatten() - expected).abs().max()))
    for field, top_k in (('decision', 1), ('decisionTop2', 2)):
        decision = _decisions(outputs, routing, top_k)
        for i, case in enumerate(selftest['cases']):
            again = _decision_json(decision, i)
            for key in ('label', 'expert', 'experts', 'earlyExit'):
                assert again[key] == case[field][key], f'{case["id"]} {field}.{key}: {again[key]} != {case[field][key]}'
    return f'{len(selftest["cases"])} cases re-run in PyTorch, max |diff| {worst:.2e}, decisions identical'
