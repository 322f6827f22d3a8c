"""MACs per sample of each part, counted on in-memory ONNX exports (export.measure of the classification factory)."""
import torch

from export import measure


def part_macs(model, shape: tuple) -> dict:
    image = torch.zeros(1, *shape)
    features = model.trunk(image)
    return {'trunk': measure(model.trunk, image)['macs'], 'base': measure(model.base, features)['macs'],
            'gate': measure(model.gate, features)['macs'], 'expert': measure(model.experts[0], features)['macs'],
            'global': measure(model.global_model, features)['macs']}
