"""ONNX export (opset 17, dynamic batch), MACs and parameters counted from the exported graph, sha256, the samples
folder and the manifest."""
import hashlib
import io
import json
import os
import re
import shutil

import numpy as np
import onnx
import torch
from PIL import Image

from data import DataSet

OPSET = 17


def export_onnx(module: torch.nn.Module, example: torch.Tensor, path: str, input_name: str, output_name) -> None:
    """output_name: one name, or a tuple of names for a module that returns several outputs."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    outputs = [output_name] if isinstance(output_name, str) else list(output_name)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, example, path, opset_version=OPSET, input_names=[input_name],
                          output_names=outputs, dynamic_axes={n: {0: 'N'} for n in [input_name, *outputs]},
                          do_constant_folding=True)


def _shapes_at_batch_one(model: onnx.ModelProto) -> dict:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def count_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates per sample of the Conv, Gemm and MatMul nodes, with shapes inferred at batch 1."""
    shapes = _shapes_at_batch_one(model)
    total = 0
    for node in model.graph.node:
        if node.op_type == 'Conv':
            weight = shapes[node.input[1]]  # [Cout, Cin/groups, kh, kw]
            total += int(np.prod(shapes[node.output[0]])) * int(np.prod(weight[1:]))
        elif node.op_type == 'Gemm':
            trans_a = next((a.i for a in node.attribute if a.name == 'transA'), 0)
            a = shapes[node.input[0]]
            total += int(np.prod(shapes[node.output[0]])) * (a[0] if trans_a else a[1])
        elif node.op_type == 'MatMul':
            total += int(np.prod(shapes[node.output[0]])) * shapes[node.input[0]][-1]
    return total


def count_params(model: onnx.ModelProto) -> int:
    """Elements of the graph's initializers (after BatchNorm folding)."""
    return int(sum(np.prod(init.dims) for init in model.graph.initializer))


def measure(module: torch.nn.Module, example: torch.Tensor) -> dict:
    """MACs and params of a module, counted on an in-memory ONNX export."""
    buffer = io.BytesIO()
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, example, buffer, opset_version=OPSET, input_names=['x'], output_names=['y'],
                          do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    return {'macs': count_macs(model), 'params': count_params(model)}


def sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def describe_part(out_dir: str, file: str) -> dict:
    """The manifest entry of one exported part."""
    model = onnx.load(os.path.join(out_dir, file))
    onnx.checker.check_model(model)
    return {'file': file, 'sha256': sha256(os.path.join(out_dir, file)), 'macs': count_macs(model),
            'params': count_params(model)}


def label_slug(label: str) -> str:
    return re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')


def write_samples(out_dir: str, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                  data: DataSet) -> list:
    """samples/NNNN-<label-slug>.<ext> and labels.json; returns the names. Own images: copies of the original test
    files (NNNN = position in the data set), so a sample is decoded exactly as the device decodes the camera's file;
    Fashion-MNIST: 8-bit grayscale PNGs of the idx pixels (NNNN = test-set index)."""
    folder = os.path.join(out_dir, 'samples')
    os.makedirs(folder, exist_ok=True)
    names = []
    for image, label, index in zip(images, labels, indices):
        stem = f'{int(index):04d}-{label_slug(data.labels[int(label)])}'
        if data.files:
            source = data.files[int(index)]
            name = stem + os.path.splitext(source)[1].lower()
            shutil.copyfile(source, os.path.join(folder, name))
        else:
            name = stem + '.png'
            Image.fromarray(image.reshape(image.shape[-2:]).numpy(), mode='L').save(os.path.join(folder, name),
                                                                                   optimize=True)
        names.append(name)
    with open(os.path.join(folder, 'labels.json'), 'w') as f:
        json.dump({n: int(l) for n, l in zip(names, labels)}, f, indent=1)
    return names


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def write_json(path: str, value, compact: bool = False) -> None:
    with open(path, 'w') as f:
        json.dump(value, f, **({'separators': (',', ':')} if compact else {'indent': 2}))
        f.write('\n')


# What `sgmoe model pack` leaves out of the fleet tar (src/fleet/pack.ts): baselines are measured on the workstation.
NOT_SHIPPED = ('baselines',)


def fleet_tar_bytes(folder: str) -> int:
    """The size of the tar `sgmoe model pack` writes for this package: a 512-byte header per file and folder, contents
    padded to 512 bytes, two zero blocks at the end."""
    total = 1024
    for root, dirs, files in os.walk(folder):
        if root != folder:
            total += 512
        dirs[:] = [d for d in dirs if not (root == folder and d in NOT_SHIPPED)]
        total += sum(512 + -(-os.path.getsize(os.path.join(root, f)) // 512) * 512 for f in files)
    return total


def manifest(parts: dict, routing: dict, calibration: dict, description: str, version: str, data: DataSet) -> dict:
    return {
        'format': 'sgmoe-package/1',
        'name': data.name,
        'version': version,
        'task': 'classification',
        'description': description,
        'labels': list(data.labels),
        'input': data.input,
        'parts': parts,
        'routing': routing,
        'calibration': calibration,
        'selftest': 'selftest.json',
        'samples': 'samples',
        'report': 'REPORT.md',
    }
