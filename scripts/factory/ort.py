"""ort.js from Python: the factories' one way to run onnxruntime-node (latency, and the ONNX Runtime parity check that
a package passes before any factory reports it written)."""
import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def node_helper(*args) -> dict:
    done = subprocess.run(['node', os.path.join(HERE, 'ort.js'), *args], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f'node ort.js {args[0]} failed: {done.stderr.strip()}')
    return json.loads(done.stdout)


def parity(out: str) -> str:
    """Every part of the package in `out` on its selftest inputs in onnxruntime-node against the PyTorch outputs in
    selftest.json, within its tolerance as `sgmoe model verify` compares them. Raises RuntimeError naming the cases and
    parts outside it; returns the report line."""
    result = node_helper('parity', out)
    tolerance = result['tolerance']
    said = f'{tolerance["absolute"]:g}' + (f' + {tolerance["relative"]:g} x |PyTorch|' if tolerance['relative'] else '')
    if not result['ok']:
        raise RuntimeError(f'onnxruntime-node parity failed (tolerance {said}): ' + '; '.join(result['failures']))
    return (f'onnxruntime-node parity on {result["cases"]} cases: max |diff| {result["maxAbsDiff"]:.2e}, at most '
            f'{result["worstShare"]:.1%} of the tolerance ({said})')
