"""The fixed spectral front-end inside the trunk graph: only Conv, Abs, AveragePool, Mul, Add, Sqrt, Log and
MatMul, so every execution provider runs it and it matches the factory exactly.

Per channel, from one window of samples:
  envelope spectrum: band-pass around the structural resonances the impacts excite (a 31-tap FIR, evaluated at
    every 2nd sample) -> |x| (envelope) -> mean over 800 Hz periods -> DFT magnitude -> log-frequency bands -> log
  low-frequency spectrum: mean of 32 -> DFT magnitude -> the same bands -> log (shaft harmonics: the speed)
Both DFTs are one Conv1d with fixed cosine/sine kernels under a Hann window (no DFT operator needed).

Why a band-pass and not a plain high-pass: broadband noise above the resonance band swamped the envelope of weak
(severity 1, low speed, 5-8 dB SNR) defects, and those were the front-end's errors. Demodulating the resonance band
only is the classic envelope analysis (Randall & Antoni 2011, section 3); the band is a factory option (`--band`).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DECIMATION = 32
BANDS = 64
LOW_HZ, HIGH_HZ = 5.0, 390.0
BAND_HZ = (2000.0, 7000.0)  # the demodulated band: the generator's resonances lie in 2.6-6 kHz
TAPS = 31  # a Hamming-windowed band-pass of 31 taps: ~2.7 kHz transitions at 25.6 kHz
STRIDE = 2  # the envelope is averaged over 32 samples anyway: every 2nd band-pass output is enough


def band_pass(low: float, high: float, sample_rate: float) -> torch.Tensor:
    """A linear-phase FIR band-pass (windowed sinc): [TAPS]."""
    if not 0 < low < high < sample_rate / 2:
        raise ValueError(f'the envelope band must satisfy 0 < low < high < {sample_rate / 2:g} Hz (half the sample '
                         f'rate), found {low:g}..{high:g} Hz')
    m = torch.arange(TAPS, dtype=torch.float64) - (TAPS - 1) / 2

    def low_pass(cutoff):
        return 2 * cutoff / sample_rate * torch.special.sinc(2 * cutoff / sample_rate * m)

    return ((low_pass(high) - low_pass(low)) * torch.hamming_window(TAPS, periodic=False, dtype=torch.float64)).float()


def _band_matrix(bins: int, bin_hz: float, bands: int) -> torch.Tensor:
    """Triangular bands with geometric centres from LOW_HZ to HIGH_HZ: [bins, bands]. On a log-frequency axis a
    change of speed shifts every fault line by the same amount, which convolutions handle."""
    edges = torch.logspace(math.log10(LOW_HZ), math.log10(HIGH_HZ), bands + 2)
    freqs = torch.arange(bins) * bin_hz
    matrix = torch.zeros(bins, bands)
    for b in range(bands):
        lo, centre, hi = edges[b], edges[b + 1], edges[b + 2]
        rising = (freqs - lo) / (centre - lo)
        falling = (hi - freqs) / (hi - centre)
        matrix[:, b] = torch.clamp(torch.minimum(rising, falling), min=0)
        if matrix[:, b].sum() == 0:  # narrower than a DFT bin: take the nearest bin
            matrix[int(torch.argmin((freqs - centre).abs())), b] = 1
        matrix[:, b] /= matrix[:, b].sum()
    return matrix


class FrontEnd(nn.Module):
    """signal [N, C, window] -> spectra [N, 2C, BANDS] (C envelope spectra, then C low-frequency spectra)."""

    def __init__(self, channels: int, window: int, sample_rate: float, band: tuple = BAND_HZ):
        super().__init__()
        if window % DECIMATION:
            raise ValueError(f'the window ({window}) must be a multiple of {DECIMATION}')
        self.channels = channels
        length = window // DECIMATION
        rate = sample_rate / DECIMATION
        bins = length // 2
        n = torch.arange(length, dtype=torch.float64)
        hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / length)
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        # Rows: cos for every bin, then sin; scaled so a unit sinusoid has magnitude ~1.
        angle = 2 * math.pi * k * n[None] / length
        kernels = torch.cat([torch.cos(angle), torch.sin(angle)]) * hann[None] * (2 / hann.sum())
        self.register_buffer('bandpass', band_pass(*band, sample_rate)[None, None].repeat(channels, 1, 1))
        self.register_buffer('dft', kernels.float()[:, None, :])
        self.register_buffer('bands', _band_matrix(bins, rate / length, BANDS))
        self.bins, self.length = bins, length

    def _spectrum(self, x):
        """x [N, C, length] at the decimated rate -> log band magnitudes [N, C, BANDS]."""
        x = x - x.mean(dim=2, keepdim=True)
        # Constant shapes (python ints, not traced from x) keep the exported graph's shapes inferable.
        parts = F.conv1d(x.reshape(-1, 1, self.length), self.dft)  # [N*C, 2*bins, 1]
        re, im = parts[:, :self.bins, 0], parts[:, self.bins:, 0]
        magnitude = torch.sqrt(re * re + im * im + 1e-12)
        return torch.log(magnitude @ self.bands + 1e-4).reshape(-1, self.channels, BANDS)

    def forward(self, signal):
        resonance = F.conv1d(signal, self.bandpass, padding=TAPS // 2, stride=STRIDE, groups=self.channels)
        envelope = F.avg_pool1d(torch.abs(resonance), DECIMATION // STRIDE)
        low = F.avg_pool1d(signal, DECIMATION)
        return torch.cat([self._spectrum(envelope), self._spectrum(low)], dim=1)
