"""w2v-BERT 2.0's input features, computed as Kaldi computes filter banks (SeamlessM4T's
feature extractor, which NeuCodec calls): 25 ms Povey windows every 10 ms, DC removal,
pre-emphasis 0.97, |rfft(512)|², 80 triangular mel filters (Kaldi mel scale, 20 Hz to
Nyquist), log; then each bin normalised over the utterance and pairs of frames stacked."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["kaldi_mel_filters", "log_mel_fbank", "semantic_features"]

FRAME = 400
HOP = 160
N_FFT = 512
PREEMPHASIS = 0.97
LOG_FLOOR = 1.192092955078125e-07  # float32 epsilon, as the reference
CMVN_EPS = 1e-7


def _mel(hz: Tensor) -> Tensor:
    return 1127.0 * torch.log1p(hz / 700.0)


def kaldi_mel_filters(n_mels: int = 80, sample_rate: int = 16_000, low_hz: float = 20.0) -> Tensor:
    """``[n_fft / 2 + 1, n_mels]`` triangles, equally spaced and triangular on the mel scale."""
    bins = torch.arange(N_FFT // 2 + 1, dtype=torch.float64) * (sample_rate / N_FFT)
    bin_mels = _mel(bins)
    edges = torch.linspace(float(_mel(torch.tensor(low_hz, dtype=torch.float64))),
                           float(_mel(torch.tensor(sample_rate / 2, dtype=torch.float64))), n_mels + 2, dtype=torch.float64)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels[:, None] - left) / (centre - left)
    falling = (right - bin_mels[:, None]) / (right - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def _povey_window() -> Tensor:
    n = torch.arange(FRAME, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (FRAME - 1))) ** 0.85


def log_mel_fbank(waveform: Tensor, filters: Tensor) -> Tensor:
    """``[T]`` samples in [-1, 1] → ``[frames, n_mels]`` log filter-bank energies (float64),
    ``frames = 1 + (T - 400) // 160`` (no edge padding)."""
    x = waveform.to(torch.float64) * 32768.0
    if x.shape[-1] < FRAME:
        return x.new_zeros(0, filters.shape[1])
    frames = x.unfold(0, FRAME, HOP)  # [F, 400]
    frames = frames - frames.mean(dim=1, keepdim=True)
    emphasised = torch.cat([frames[:, :1] * (1 - PREEMPHASIS), frames[:, 1:] - PREEMPHASIS * frames[:, :-1]], dim=1)
    spectrum = torch.fft.rfft(emphasised * _povey_window(), n=N_FFT).abs().square()
    return torch.log(torch.clamp(spectrum @ filters.to(torch.float64), min=LOG_FLOOR))


def semantic_features(waveform: Tensor, filters: Tensor) -> Tensor:
    """``[T]`` → ``[ceil(frames / 2), 160]``: per-bin mean/variance normalised log-mels (the
    variance unbiased), zero-padded to an even number of frames, pairs concatenated."""
    fbank = log_mel_fbank(waveform, filters)
    if fbank.shape[0] > 1:
        fbank = (fbank - fbank.mean(0)) / torch.sqrt(fbank.var(0, unbiased=True) + CMVN_EPS)
    if fbank.shape[0] % 2:
        fbank = torch.cat([fbank, fbank.new_zeros(1, fbank.shape[1])])
    return fbank.reshape(fbank.shape[0] // 2, 2 * fbank.shape[1])
