"""Decoding image files the way the SDK does: through decode.js, i.e. src/ingest/preprocess.ts itself."""
import json
import os
import subprocess
import tempfile
from typing import List, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def decode(paths: List[str], spec: dict) -> Tuple[np.ndarray, list, list]:
    """uint8 [N,C,H,W] of the files the SDK decodes with the manifest input `spec`, their positions in paths, and
    (position, code, reason) of the files it refuses."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'pixels.u8')
        with open(os.path.join(tmp, 'spec.json'), 'w') as f:
            json.dump({'input': spec, 'files': paths, 'out': out}, f)
        done = subprocess.run(['node', os.path.join(HERE, 'decode.js'), os.path.join(tmp, 'spec.json')],
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f'node decode.js failed: {done.stderr.strip()}')
        result = json.loads(done.stdout)
        c, h, w = spec['channels'], spec['height'], spec['width']
        pixels = np.fromfile(out, np.uint8).reshape(len(result['decoded']), h, w, c).transpose(0, 3, 1, 2)
    rejected = [(r['index'], r['code'], r['message']) for r in result['rejected']]
    return np.ascontiguousarray(pixels), result['decoded'], rejected
