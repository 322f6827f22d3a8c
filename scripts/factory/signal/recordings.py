"""Labelled recordings -> windows: DIR/<class>/*.wav|*.csv, the regime tags in file names, the split by recording.

WAV: PCM 16/24/32-bit (scaled to [-1, 1)) or float32, one column per channel. CSV: a header row naming the
columns, the first one `time` in seconds (the sample rate is 1 / its mean step), then one column per channel.
The SDK reads both the same way, so training and the node see the same numbers.
"""
import csv
import math
import os
import re
from dataclasses import dataclass
from typing import List

import numpy as np
import torch
from scipy.io import wavfile

TAG = re.compile(r'(rpm|load)([0-9]+(?:\.[0-9]+)?)')


class RecordingError(ValueError):
    pass


def read_wav(path: str):
    # A file cut short fails in scipy with a reshape error that does not say so (or, cut between two samples, loses
    # its tail in silence): the RIFF header's size against the file's, as the SDK checks its data chunk.
    with open(path, 'rb') as f:
        head = f.read(8)
    declared, size = int.from_bytes(head[4:8], 'little') + 8, os.path.getsize(path)
    if head[:4] == b'RIFF' and size < declared:
        raise RecordingError(f'{path}: truncated: expected {declared} bytes as its header says, found {size}')
    try:
        rate, data = wavfile.read(path)
    except ValueError as error:
        raise RecordingError(f'{path}: expected a RIFF/WAVE file ({error})') from error
    if data.dtype == np.int16:
        data = data / 32768.0
    elif data.dtype == np.int32:  # scipy left-aligns 24-bit samples in int32
        data = data / 2147483648.0
    elif data.dtype != np.float32:
        raise RecordingError(f'{path}: expected PCM 16/24/32-bit or float32 samples, found {data.dtype}')
    # scipy gives a mono file as [n], others as [n, channels]
    return float(rate), np.ascontiguousarray(np.asarray(data, dtype=np.float32).reshape(len(data), -1).T)


def read_csv(path: str):
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    if len(rows) < 3 or rows[0][0].strip().lower() != 'time':
        raise RecordingError(f'{path}: expected a header "time,<channel>,..." and at least 2 rows, found '
                             f'{rows[0] if rows else "an empty file"}')
    try:
        values = np.array(rows[1:], dtype=np.float64)
    except ValueError as error:
        raise RecordingError(f'{path}: expected {len(rows[0])} numbers on every row ({error})') from error
    time = values[:, 0]
    if not np.all(np.isfinite(time)) or np.any(np.diff(time) <= 0):
        raise RecordingError(f'{path}: expected increasing times in seconds in the time column')
    # The mean step, as the SDK takes it (src/ingest/kinds/signal/csv.ts): a column written to the microsecond
    # averages to the true rate where one rounded step would not.
    mean = float(time[-1] - time[0]) / (len(time) - 1)
    uneven = np.nonzero(np.abs(np.diff(time) - mean) > mean / 2)[0]
    if len(uneven):  # a gap would read as another rate
        raise RecordingError(f'{path}: expected evenly spaced times, found a step of {time[uneven[0] + 1] - time[uneven[0]]:g} s '
                             f'on line {uneven[0] + 3} (the mean step is {mean:g} s)')
    return float(round(1 / mean)), np.ascontiguousarray(values[:, 1:].T.astype(np.float32))


def read_recording(path: str):
    """(sample rate, samples [channels, n] float32), every sample finite: one NaN would otherwise surface much later
    (in k-means or the export) without naming its file. The one reader of recordings and of the package's samples,
    so a mono file is [1, n] everywhere."""
    rate, samples = read_wav(path) if path.lower().endswith('.wav') else read_csv(path)
    bad = np.argwhere(~np.isfinite(samples))
    if len(bad):
        c, n = bad[0]
        raise RecordingError(f'{path}: expected finite samples, found {samples[c, n]} at sample {n} of channel {c}')
    return rate, samples


def tags(name: str) -> dict:
    """rpm and load from a file name such as rpm1800-load0.25-sev2-00017.wav (absent: None)."""
    found = {key: float(value) for key, value in TAG.findall(name)}
    return {'rpm': found.get('rpm'), 'load': found.get('load')}


@dataclass
class Windows:
    signals: torch.Tensor  # [N, C, window] float32
    labels: torch.Tensor  # [N]
    recording: torch.Tensor  # [N] index into files
    rpm: torch.Tensor  # [N] float, nan when untagged
    load: torch.Tensor
    files: List[str]

    def subset(self, mask: torch.Tensor) -> 'Windows':
        return Windows(self.signals[mask], self.labels[mask], self.recording[mask], self.rpm[mask], self.load[mask],
                       self.files)

    def __len__(self):
        return len(self.labels)


def cut(samples: np.ndarray, window: int, hop: int) -> np.ndarray:
    """[C, n] -> [count, C, window], windows starting every `hop` samples (a tail shorter than a window is dropped)."""
    n = samples.shape[1]
    count = 0 if n < window else 1 + (n - window) // hop
    return np.stack([samples[:, i * hop:i * hop + window] for i in range(count)]) if count else \
        np.zeros((0, samples.shape[0], window), np.float32)


def _common_format(folder: str, formats: list) -> tuple:
    """The (sample rate, channels) of most recordings, from (file, rate, channels); the others are named, beside one
    that has it (the first recording could itself be the odd one, and then every good file would be blamed)."""
    groups = {}
    for file, rate, channels in formats:
        groups.setdefault((rate, channels), []).append(file)
    (rate, channels), common = max(groups.items(), key=lambda kv: len(kv[1]))
    if len(groups) > 1:
        odd = '; '.join(f'{r:g} Hz and {c} channels in {", ".join(files[:5])}{" ..." if len(files) > 5 else ""}'
                        for (r, c), files in groups.items() if (r, c) != (rate, channels))
        raise RecordingError(f'{folder}: expected every recording at one sample rate and channel count, {rate:g} Hz '
                             f'and {channels} channels as {len(common)} of the {len(formats)} have (e.g. {common[0]}), '
                             f'found {odd}')
    return rate, channels


def load(folder: str, window: int, hop: int):
    """All recordings under folder/<class>/; returns (labels, Windows, sample rate, channels, skipped), skipped the
    files that are no .wav or .csv ({'file', 'reason'}), listed rather than silently left out."""
    if not os.path.isdir(folder):
        raise RecordingError(f'{folder}: no such folder')
    labels = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if len(labels) < 2:
        raise RecordingError(f'{folder}: expected one folder per class (at least 2), found {labels}')
    chunks, files, formats, skipped = [], [], [], []
    for y, label in enumerate(labels):
        for name in sorted(n for n in os.listdir(os.path.join(folder, label)) if not n.startswith('.')):
            path = os.path.join(folder, label, name)
            if not (os.path.isfile(path) and name.lower().endswith(('.wav', '.csv'))):
                skipped.append({'file': f'{label}/{name}', 'reason': 'not a .wav or .csv file'})
                continue
            file_rate, samples = read_recording(path)
            formats.append((f'{label}/{name}', file_rate, samples.shape[0]))
            chunks.append((cut(samples, window, hop), y, len(files), tags(name)))
            files.append(f'{label}/{name}')
    rate, channels = _common_format(folder, formats) if formats else (None, None)
    if not any(len(c[0]) for c in chunks):
        raise RecordingError(f'{folder}: expected recordings of at least one window ({window} samples) in the class '
                             f'folders, found {len(files)} recordings and no window')
    nan = float('nan')
    signals = torch.from_numpy(np.concatenate([c[0] for c in chunks]))
    per = lambda value: torch.cat([torch.full((len(c[0]),), value(c)) for c in chunks])  # noqa: E731
    windows = Windows(signals, per(lambda c: c[1]).long(), per(lambda c: c[2]).long(),
                      per(lambda c: nan if c[3]['rpm'] is None else c[3]['rpm']).float(),
                      per(lambda c: nan if c[3]['load'] is None else c[3]['load']).float(), files)
    return labels, windows, rate, channels, skipped


def split(windows: Windows, seed: int, holdout_rpm=None, shares=(0.6, 0.2)):
    """train / val / test by recording (windows of one recording never straddle splits: overlapping windows of
    one bearing in train and test would flatter the accuracy), stratified by class and regime; recordings at
    holdout_rpm form the held-out split."""
    generator = torch.Generator().manual_seed(seed)
    heldout = torch.zeros(len(windows), dtype=torch.bool) if holdout_rpm is None else windows.rpm == holdout_rpm
    assign = {}
    groups = {}
    for r in torch.unique(windows.recording[~heldout]).tolist():
        first = int(torch.nonzero(windows.recording == r)[0])
        # untagged is nan, which equals nothing, not even itself: as a key it would make a group of every recording
        key = (int(windows.labels[first]), *(None if math.isnan(v) else v
                                              for v in (float(windows.rpm[first]), float(windows.load[first]))))
        groups.setdefault(key, []).append(r)
    for members in groups.values():
        order = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        n_train = max(1, round(shares[0] * len(order)))
        n_val = max(1, round(shares[1] * len(order)))
        for i, r in enumerate(order):
            assign[r] = 0 if i < n_train else 1 if i < n_train + n_val else 2
    which = torch.tensor([assign.get(int(r), 3) for r in windows.recording])
    return [windows.subset(which == s) for s in range(4)]  # train, val, test, held-out
