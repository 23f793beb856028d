"""Reading and writing audio files as ``[1, channels, samples]`` float32 tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ChannelError, SampleRateError

__all__ = ["read_audio", "write_audio", "conform_audio"]


def read_audio(path: str | Path) -> tuple[Tensor, int]:
    """``(audio [1, channels, samples] float32, sample_rate)`` from any file soundfile reads."""
    import soundfile

    data, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data.T))[None], int(sample_rate)


def write_audio(path: str | Path, audio: Tensor, sample_rate: int) -> None:
    """Write ``[1, channels, samples]`` (or ``[channels, samples]``) audio as 16-bit PCM WAV
    unless the extension names another format soundfile knows."""
    import soundfile

    if audio.dim() == 3:
        audio = audio[0]
    data = audio.detach().to("cpu", torch.float32).numpy().T
    subtype = "PCM_16" if str(path).lower().endswith(".wav") else None
    soundfile.write(str(path), np.clip(data, -1.0, 1.0), sample_rate, subtype=subtype)


def conform_audio(
    audio: Tensor,
    sample_rate: int,
    *,
    target_rate: int,
    target_channels: int,
    resample: bool = False,
    mix: bool = False,
) -> Tensor:
    """Make file audio fit a model: check (or, when allowed, convert) rate and channel count."""
    channels = audio.shape[1]
    if channels != target_channels:
        if mix and target_channels == 1:
            audio = audio.mean(dim=1, keepdim=True)
        elif mix and channels == 1:
            audio = audio.expand(-1, target_channels, -1).contiguous()
        else:
            raise ChannelError(
                f"the file has {channels} channel(s), the model takes {target_channels}; "
                "pass --mix to down-mix or duplicate channels"
            )
    if sample_rate != target_rate:
        if not resample:
            raise SampleRateError(
                f"the file is at {sample_rate} Hz, the model runs at {target_rate} Hz; "
                "pass --resample (needs soxr: pip install 'codecstream[audio]')"
            )
        try:
            import soxr
        except ImportError as exc:
            raise SampleRateError("resampling needs soxr: pip install 'codecstream[audio]'") from exc
        data = soxr.resample(audio[0].numpy().T, sample_rate, target_rate, quality="HQ")
        audio = torch.from_numpy(np.ascontiguousarray(np.asarray(data, dtype=np.float32).T))[None]
    return audio
