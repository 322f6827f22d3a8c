"""The peer a Python shop would use: the same SGMoE in PyTorch eager on the CPU, for scripts/bench/engine.ts.

Builds the factory's own modules (scripts/factory/models.py) and loads the package's weights from its ONNX parts.
The ONNX parts have BatchNorm folded into the convolutions, so the modules get the same folding (BatchNorm
replaced by a bias): PyTorch runs exactly the shipped graph, and is spared the BatchNorm work.
Runs the decision per batch like the engine: trunk, base, early exit, gate on the rest, each expert once on its
sub-batch. Prints {"batch1": us_per_frame, "batch16": us_per_frame} on stdout.

  /usr/bin/python3 scripts/bench/engine_torch.py --model models/fashion-sgmoe --threads 1 --frames 2000
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'factory'))
from models import Arch, Branch, Gate, Trunk  # noqa: E402


def fold_batchnorm(module: nn.Module) -> None:
    """Replaces every BatchNorm by identity and gives every conv a bias, like the ONNX export's folding."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.Identity())
        elif isinstance(child, nn.Conv2d) and child.bias is None:
            conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding, bias=True)
            setattr(module, name, conv)
        else:
            fold_batchnorm(child)


def load_onnx_weights(module: nn.Module, path: str) -> nn.Module:
    """Conv and Gemm weights of the ONNX graph, in graph order, into the module's Conv2d and Linear, in order."""
    fold_batchnorm(module)
    graph = onnx.load(path).graph
    weights = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in graph.initializer}
    onnx_layers = [[weights[i] for i in node.input[1:] if i in weights] for node in graph.node if node.op_type in ('Conv', 'Gemm')]
    torch_layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if len(onnx_layers) != len(torch_layers):
        raise SystemExit(f'{path}: {len(onnx_layers)} Conv/Gemm nodes, the module has {len(torch_layers)} layers')
    with torch.no_grad():
        for layer, (weight, bias) in zip(torch_layers, onnx_layers):
            layer.weight.copy_(weight.reshape(layer.weight.shape))
            layer.bias.copy_(bias)
    return module.eval()


def test_images(mean: float, std: float, count: int) -> torch.Tensor:
    with gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz') as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:count]
    return (torch.from_numpy(raw.astype(np.float32)) / 255.0 - mean) / std


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--model', required=True)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--frames', type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    manifest = json.load(open(os.path.join(args.model, 'manifest.json')))
    report = json.load(open(os.path.join(args.model, 'report.json')))
    recipe = report['recipe']
    arch_of = lambda a: Arch(a['trunk_width'], tuple(a['widths']), tuple(a['blocks']), a['classes'], a['in_channels'])  # noqa: E731
    arch = arch_of(recipe['arch'])
    # The cheap-base recipe gives experts their own, larger branch and the gate a grid-pooled map of the features.
    expert_arch = arch_of(recipe['expert_arch']) if 'expert_arch' in recipe else arch
    part = lambda p: os.path.join(args.model, p['file'])  # noqa: E731
    parts = manifest['parts']
    trunk = load_onnx_weights(Trunk(arch), part(parts['trunk']))
    base = load_onnx_weights(Branch(arch), part(parts['base']))
    inp = manifest['input']
    with torch.no_grad():
        feature_size = tuple(trunk(torch.zeros(1, inp['channels'], inp['height'], inp['width'])).shape[2:])
    gate = load_onnx_weights(Gate(arch, len(parts['experts']), recipe.get('gate_grid', 1), feature_size), part(parts['gate']))
    experts = [load_onnx_weights(Branch(expert_arch), part(e)) for e in parts['experts']]
    threshold = manifest['routing']['earlyExit']['threshold']
    w = manifest['routing']['ensemble']['baseWeight']

    @torch.no_grad()
    def decide(images: torch.Tensor) -> torch.Tensor:
        features = trunk(images)
        p_base = torch.softmax(base(features), 1)
        conf, _ = p_base.max(1)
        final = p_base.clone()
        routed = (conf < threshold).nonzero().flatten()
        if len(routed) > 0:
            f = features[routed]
            top = torch.softmax(gate(f), 1).argmax(1)
            for e, expert in enumerate(experts):
                rows = (top == e).nonzero().flatten()
                if len(rows) > 0:
                    idx = routed[rows]
                    final[idx] = w * p_base[idx] + (1 - w) * torch.softmax(expert(f[rows]), 1)
        return final.argmax(1)

    # The weights are right when the modules reproduce the factory's golden outputs of every part.
    cases = json.load(open(os.path.join(args.model, manifest['selftest'])))['cases']
    with torch.no_grad():
        for c in cases:
            x = torch.tensor(c['input'], dtype=torch.float32).reshape(1, arch.in_channels, 28, 28)
            f = trunk(x)
            got = [f.flatten(), base(f)[0], gate(f)[0], *(e(f)[0] for e in experts)]
            want = [c['outputs']['features'], c['outputs']['logits'], c['outputs']['gate_logits'], *c['outputs']['experts']]
            diff = max(float((g - torch.tensor(v)).abs().max()) for g, v in zip(got, want))
            if diff > 1e-3:
                raise SystemExit(f'PyTorch peer does not reproduce the package ({c["id"]}: max |diff| {diff:.2e})')

    images = test_images(manifest['input']['mean'][0], manifest['input']['std'][0], args.frames)
    result = {}
    for batch in (1, 16):
        chunks = list(torch.split(images, batch))
        for c in chunks[:20]:
            decide(c)
        per_frame = []
        for c in chunks:
            t0 = time.perf_counter_ns()
            decide(c)
            per_frame.append((time.perf_counter_ns() - t0) / 1000 / len(c))
        result[f'batch{batch}'] = statistics.median(per_frame)
    print(json.dumps(result))


if __name__ == '__main__':
    main()
