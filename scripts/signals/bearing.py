"""A seeded, physically grounded rolling-bearing vibration generator (see README.md for the model and references).

    /usr/bin/python3 scripts/signals/bearing.py --out /tmp/bearing            # the factory's data set
    /usr/bin/python3 scripts/signals/bearing.py --out DIR --rpm 1350 --recordings 4 --classes healthy,outer

Writes DIR/<class>/rpm<R>-load<L>-sev<S>-<id>.wav (float32 WAV, 3 channels x, y, z in g at 25.6 kHz) and
DIR/recordings.csv with every recording's tags (class, severity, rpm, load, SNR, bearing resonances); a later run
into the same folder adds to it.
"""
import argparse
import csv
import os
from dataclasses import dataclass

import numpy as np
from scipy.io import wavfile

CLASSES = ('healthy', 'outer', 'inner', 'ball')
SAMPLE_RATE = 25600
AXES = 3
RATED_HZ = 30.0  # 1800 rpm: shaft harmonics are given at rated speed


@dataclass(frozen=True)
class Geometry:
    """SKF 6205-2RS JEM, the drive-end bearing of the CWRU data set: 9 balls, d = 7.94 mm, D = 39.04 mm, 0 deg."""
    balls: int = 9
    ball_diameter: float = 7.94
    pitch_diameter: float = 39.04
    contact_angle: float = 0.0

    def fault_orders(self) -> dict:
        """Characteristic frequencies per shaft revolution (Randall & Antoni 2011, eq. 1-4)."""
        r = self.ball_diameter / self.pitch_diameter * np.cos(self.contact_angle)
        return {'bpfo': self.balls / 2 * (1 - r), 'bpfi': self.balls / 2 * (1 + r),
                'bsf': self.pitch_diameter / (2 * self.ball_diameter) * (1 - r * r), 'ftf': (1 - r) / 2}


GEOMETRY = Geometry()


@dataclass(frozen=True)
class Recording:
    label: str
    severity: int  # 0 healthy, 1..3 growing defect
    rpm: float  # nominal shaft speed
    load: float  # 0..1 of rated load
    snr_db: float
    seconds: float
    seed: int


def _shaft_speed(rec: Recording, n: int, rng) -> np.ndarray:
    """Instantaneous shaft rate in Hz: induction-motor slip grows with load, plus a slow random speed wander."""
    nominal = rec.rpm / 60 * (1 - 0.02 * rec.load)
    wander = np.cumsum(rng.normal(0, 1, n))
    wander = wander / (np.abs(wander).max() + 1e-9) * 0.003 * nominal
    return nominal + wander


def _impact_times(rate_of, phase, seconds: float, jitter: float, rng) -> np.ndarray:
    """Times where the accumulated fault phase crosses an integer, each moved by slip jitter (a share of the
    period, random per impact: rolling elements slide, so impacts are not strictly periodic)."""
    crossings = np.nonzero(np.diff(np.floor(phase)) > 0)[0] + 1
    times = crossings / SAMPLE_RATE
    periods = 1 / rate_of[crossings]
    times = times + rng.normal(0, jitter, len(times)) * periods
    return times[(times >= 0) & (times < seconds)]


def _modulation(rec: Recording, t: np.ndarray, shaft_phase: np.ndarray, cage_phase: np.ndarray, rng) -> np.ndarray:
    """Load-zone amplitude modulation: fixed for the outer race, at shaft rate for an inner race defect (it turns
    with the shaft), at cage rate for a ball defect (the ball turns with the cage)."""
    if rec.label == 'outer':
        return np.ones_like(t)
    phase = shaft_phase if rec.label == 'inner' else cage_phase
    offset = rng.uniform(0, 2 * np.pi)
    return 0.15 + 0.85 * (0.5 * (1 + np.cos(2 * np.pi * phase + offset))) ** 1.5


def _harmonic_amplitudes(load: float) -> tuple:
    """1x, 2x, 3x shaft-rate amplitudes in g at rated speed: unbalance (1x), misalignment growing with load."""
    return 0.05, 0.02 + 0.03 * load, 0.01 + 0.01 * load


def generate(rec: Recording) -> tuple:
    """Returns (samples [n, 3] float32 in g, facts dict)."""
    rng = np.random.default_rng(rec.seed)
    n = int(round(rec.seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    fr = _shaft_speed(rec, n, rng)
    shaft_phase = np.cumsum(fr) / SAMPLE_RATE
    orders = GEOMETRY.fault_orders()
    cage_phase = shaft_phase * orders['ftf']

    # Each bearing sits in its own housing: the structural resonances and their damping vary per recording.
    resonance = rng.uniform([2600, 3600, 5200], [3400, 4400, 6000])
    damping = rng.uniform(0.04, 0.08, AXES)
    gain = rng.uniform([0.8, 0.5, 0.3], [1.2, 0.8, 0.5])

    # Shaft harmonics: unbalance force grows with the square of speed, misalignment adds 2x and 3x with load.
    speed_factor = (fr / RATED_HZ) ** 2
    harmonics = np.zeros((n, AXES))
    for order, amplitude in enumerate(_harmonic_amplitudes(rec.load), start=1):
        phase = rng.uniform(0, 2 * np.pi, AXES)
        harmonics += amplitude * speed_factor[:, None] * np.sin(2 * np.pi * order * shaft_phase[:, None] + phase)

    impacts = np.zeros((n, AXES))
    facts = {'impacts': 0}
    if rec.label != 'healthy':
        order = {'outer': orders['bpfo'], 'inner': orders['bpfi'], 'ball': 2 * orders['bsf']}[rec.label]
        times = _impact_times(fr * order, shaft_phase * order, rec.seconds, 0.015, rng)
        facts['impacts'] = len(times)
        # Impact energy grows with rolling speed and load; the severity scales the defect size.
        strength = (0.25 * rec.severity) * (0.5 + 0.5 * rec.load) * (fr.mean() / 20) ** 0.5
        envelope = _modulation(rec, t, shaft_phase, cage_phase, rng)
        duration = int(SAMPLE_RATE * 6 / (damping.min() * 2 * np.pi * resonance.min()))
        tau = np.arange(duration) / SAMPLE_RATE
        responses = [np.exp(-damping[a] * 2 * np.pi * resonance[a] * tau)
                     * np.sin(2 * np.pi * resonance[a] * np.sqrt(1 - damping[a] ** 2) * tau) for a in range(AXES)]
        for time in times:
            start = int(time * SAMPLE_RATE)
            stop = min(n, start + duration)
            amplitude = strength * envelope[start] * rng.uniform(0.8, 1.2)
            for a in range(AXES):
                impacts[start:stop, a] += amplitude * gain[a] * responses[a][:stop - start]

    # Sensor and background noise do not follow the regime: the SNR is set against the shaft harmonics at rated
    # speed and full load, so the noise floor is the same at every speed and a defect adds energy on top of it.
    rated_power = sum(a * a / 2 for a in _harmonic_amplitudes(1.0))
    noise = rng.normal(0, np.sqrt(rated_power / 10 ** (rec.snr_db / 10)), (n, AXES))
    samples = harmonics + impacts + noise
    facts.update({'resonanceHz': [round(float(f)) for f in resonance], 'shaftHz': round(float(fr.mean()), 3)})
    return samples.astype(np.float32), facts


def file_name(rec: Recording, index: int) -> str:
    return f'rpm{rec.rpm:g}-load{rec.load:g}-sev{rec.severity}-{index:05d}.wav'


def plan(rpms, loads, classes, recordings: int, seconds: float, snr: tuple, seed: int):
    """`recordings` per (class, rpm, load); faulty severities cycle 1..3; SNR drawn uniformly in dB."""
    rng = np.random.default_rng(seed)
    index = 0
    for rpm in rpms:
        for load in loads:
            for label in classes:
                for i in range(recordings):
                    severity = 0 if label == 'healthy' else 1 + i % 3
                    yield index, Recording(label, severity, rpm, load, float(rng.uniform(*snr)), seconds,
                                           int(rng.integers(2 ** 31)))
                    index += 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--rpm', default='600,1000,1800,3000', help='shaft speeds, comma-separated')
    parser.add_argument('--load', default='0.25,1', help='loads (share of rated), comma-separated')
    parser.add_argument('--classes', default=','.join(CLASSES))
    parser.add_argument('--recordings', type=int, default=24, help='per class, speed and load')
    parser.add_argument('--seconds', type=float, default=1.0)
    parser.add_argument('--snr', default='10,20', help='SNR range in dB (broadband noise against the shaft harmonics at rated speed)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    classes = args.classes.split(',')
    unknown = set(classes) - set(CLASSES)
    if unknown:
        parser.error(f'--classes expects some of {",".join(CLASSES)}, found {",".join(sorted(unknown))}')
    rows = []
    for index, rec in plan([float(r) for r in args.rpm.split(',')], [float(x) for x in args.load.split(',')],
                           classes, args.recordings, args.seconds, tuple(float(x) for x in args.snr.split(',')),
                           args.seed):
        samples, facts = generate(rec)
        folder = os.path.join(args.out, rec.label)
        os.makedirs(folder, exist_ok=True)
        name = file_name(rec, index)
        wavfile.write(os.path.join(folder, name), SAMPLE_RATE, samples)
        rows.append({'file': f'{rec.label}/{name}', 'class': rec.label, 'severity': rec.severity, 'rpm': rec.rpm,
                     'load': rec.load, 'snrDb': round(rec.snr_db, 2), 'seed': rec.seed, **facts})
    listing = os.path.join(args.out, 'recordings.csv')
    if os.path.exists(listing):  # a second run into the same folder (say, a held-out speed) adds its rows
        with open(listing, newline='') as f:
            written = {row['file'] for row in rows}
            rows = [row for row in csv.DictReader(f) if row['file'] not in written] + rows
    with open(listing, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f'{len(rows)} recordings of {args.seconds:g} s at {SAMPLE_RATE} Hz, {AXES} axes -> {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
