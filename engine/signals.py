"""Test signals: a deterministic speech-like synthetic signal and the packaged speech clip.

Used by the benchmark, the loopback command (when the machine has no microphone) and tests.
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

import torch

__all__ = ["speech_like", "bundled_clip"]


def speech_like(seconds: float, sample_rate: int, channels: int, *, seed: int = 0) -> torch.Tensor:
    """A deterministic speech-like test signal ``[1, channels, T]``: gliding harmonics in
    syllable-rate bursts plus a little noise, peak about 0.5."""
    generator = torch.Generator().manual_seed(seed)
    n = int(round(seconds * sample_rate))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    pitch = 140 + 30 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / sample_rate
    voice = sum(torch.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + torch.sin(2 * math.pi * 3.1 * t)).clamp(min=0) ** 2
    noise = 0.02 * torch.randn(n, generator=generator, dtype=torch.float64)
    mono = 0.3 * envelope * voice / 2.5 + noise
    return mono.to(torch.float32).expand(1, channels, n).contiguous()


def bundled_clip() -> tuple[Any, int]:
    """The packaged speech clip (7.4 s, espeak-ng, 22.05 kHz): ``(float32 [n, 1], rate)``."""
    import soundfile

    with resources.as_file(resources.files("codecstream") / "data" / "speech.flac") as path:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data, int(rate)
