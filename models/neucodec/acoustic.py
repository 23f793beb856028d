"""The acoustic branch (BigCodec-style): Snake-β convs whose activations are alias-free
(2x up-sampled, activated, low-passed back down), five strided stages to 50 Hz. Module names
follow neucodec's ``CodecEnc``. Offline only (the whole encoder is, see :mod:`.codec`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecstream.streaming.pointwise import SnakeBeta

__all__ = ["AcousticEncoder", "AliasFreeSnakeBeta", "kaiser_sinc_filter"]

FILTER_TAPS = 12


def kaiser_sinc_filter(cutoff: float, half_width: float, taps: int) -> Tensor:
    """A Kaiser-windowed sinc low-pass ``[taps]`` normalised to unit DC gain (float64)."""
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(taps, periodic=False, beta=beta, dtype=torch.float64)
    t = torch.arange(-half, half, dtype=torch.float64) + 0.5 if taps % 2 == 0 else torch.arange(taps, dtype=torch.float64) - half
    taps_ = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return taps_ / taps_.sum()


class AliasFreeSnakeBeta(nn.Module):
    """Up-sample 2x (replicate-padded transposed FIR), Snake-β, low-pass and decimate 2x
    (replicate-padded FIR). ``act`` holds the Snake-β parameters; the filters are fixed."""

    taps: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.act = SnakeBeta(channels)
        self.register_buffer("taps", kaiser_sinc_filter(0.25, 0.3, FILTER_TAPS).float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        taps = self.taps.to(x.dtype).view(1, 1, -1).expand(channels, -1, -1)
        pad = FILTER_TAPS // 2 - 1  # 5 input samples each side, then 15 output samples cropped
        up = 2 * F.conv_transpose1d(F.pad(x, (pad, pad), mode="replicate"), taps, stride=2, groups=channels)
        crop = pad * 2 + (FILTER_TAPS - 2) // 2
        up = up[..., crop : up.shape[-1] - crop]
        down = F.pad(self.act(up), (FILTER_TAPS // 2 - 1, FILTER_TAPS // 2), mode="replicate")
        return F.conv1d(down, taps, stride=2, groups=channels)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            AliasFreeSnakeBeta(dim), nn.Conv1d(dim, dim, 7, dilation=dilation, padding=3 * dilation),
            AliasFreeSnakeBeta(dim), nn.Conv1d(dim, dim, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        half = dim // 2
        self.block = nn.Sequential(
            ResidualUnit(half, 1), ResidualUnit(half, 3), ResidualUnit(half, 9), AliasFreeSnakeBeta(half),
            nn.Conv1d(half, dim, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class AcousticEncoder(nn.Module):
    """``[B, 1, T]`` at 16 kHz (T a multiple of the hop) → ``[B, hidden, T / hop]``."""

    def __init__(self, width: int, strides: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv1d(1, width, 7, padding=3)]
        for stride in strides:
            width *= 2
            blocks.append(EncoderBlock(width, stride))
        self.conv_blocks = nn.Sequential(*blocks)
        self.conv_final_block = nn.Sequential(AliasFreeSnakeBeta(width), nn.Conv1d(width, hidden, 3, padding=1))

    def forward(self, audio: Tensor) -> Tensor:
        return self.conv_final_block(self.conv_blocks(audio))


