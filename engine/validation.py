"""Checks on what callers hand to models and streams, with messages that say how to fix it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import (
    ChannelError,
    CodeRangeError,
    DTypeError,
    NonFiniteError,
    SampleRateError,
    ShapeError,
)

__all__ = ["check_audio", "check_code_tensor", "check_feature_tensor", "check_sample_rate", "as_tensor"]


def as_tensor(value: Any, what: str) -> Tensor:
    """A torch tensor view of ``value`` (tensor or numpy array)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DTypeError(f"{what} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def check_sample_rate(sample_rate: int | None, model_rate: int) -> None:
    if sample_rate is not None and int(sample_rate) != model_rate:
        raise SampleRateError(
            f"audio is at {sample_rate} Hz but the model runs at {model_rate} Hz; "
            f"resample it first (e.g. soxr.resample(audio, {sample_rate}, {model_rate}))"
        )


def check_audio(
    audio: Any,
    *,
    channels: int,
    dtype: torch.dtype,
    device: torch.device,
    batch_size: int | None = None,
) -> Tensor:
    """Validate ``[B, C, T]`` float audio and return it on the model's device and dtype."""
    audio = as_tensor(audio, "audio")
    if audio.is_complex() or not audio.is_floating_point():
        hint = " (scale integer PCM to [-1, 1] floats first, e.g. pcm / 32768)" if not audio.is_complex() else ""
        raise DTypeError(f"audio must be a real floating-point tensor, got {audio.dtype}{hint}")
    if audio.dim() != 3:
        raise ShapeError(
            f"audio must be [batch, channels, samples], got shape {tuple(audio.shape)}"
            + ("; add the missing axes, e.g. audio[None, None] for mono" if audio.dim() < 3 else "")
        )
    if audio.shape[1] != channels:
        raise ChannelError(
            f"the model takes {channels}-channel audio, got {audio.shape[1]} channels "
            f"(shape {tuple(audio.shape)}, laid out [batch, channels, samples])"
        )
    if batch_size is not None and audio.shape[0] != batch_size:
        raise ShapeError(f"this stream was opened for batch size {batch_size}, got {audio.shape[0]}")
    if audio.numel() and not bool(torch.isfinite(audio).all()):
        raise NonFiniteError("audio contains NaN or infinite values")
    return audio.to(device=device, dtype=dtype)


def check_code_tensor(
    codes: Any,
    *,
    codebook_size: int,
    max_codebooks: int,
    device: torch.device,
    batch_size: int | None = None,
    what: str = "codes",
) -> Tensor:
    """Validate ``[B, K, T]`` integer codes with ``1 <= K <= max_codebooks``."""
    codes = as_tensor(codes, what)
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise DTypeError(f"{what} must be an integer tensor, got {codes.dtype}")
    if codes.dim() != 3:
        raise ShapeError(f"{what} must be [batch, codebooks, frames], got shape {tuple(codes.shape)}")
    if not 1 <= codes.shape[1] <= max_codebooks:
        raise ShapeError(
            f"{what} has {codes.shape[1]} codebooks; this model takes 1 to {max_codebooks}"
        )
    if batch_size is not None and codes.shape[0] != batch_size:
        raise ShapeError(f"this stream was opened for batch size {batch_size}, got {codes.shape[0]}")
    if codes.numel():
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= codebook_size:
            raise CodeRangeError(
                f"{what} must lie in [0, {codebook_size}), got values from {low} to {high}"
            )
    return codes.to(device=device, dtype=torch.long)


def check_feature_tensor(
    features: Any,
    *,
    channels: int,
    model: str,
    dtype: torch.dtype,
    device: torch.device,
    batch_size: int | None = None,
    what: str = "features",
) -> Tensor:
    """Validate ``[B, channels, frames]`` continuous features (mel, latents) for a decoder."""
    features = as_tensor(features, what)
    if features.is_complex() or not features.is_floating_point():
        raise DTypeError(f"{what} must be real floating point, got {features.dtype}")
    if features.dim() != 3 or features.shape[1] != channels:
        raise ShapeError(f"{model} decodes [batch, {channels}, frames] {what}, got shape {tuple(features.shape)}")
    if batch_size is not None and features.shape[0] != batch_size:
        raise ShapeError(f"this stream was opened for batch size {batch_size}, got {features.shape[0]}")
    if features.numel() and not bool(torch.isfinite(features).all()):
        raise NonFiniteError(f"{what} contain NaN or infinite values")
    return features.to(device=device, dtype=dtype)
