"""The codes file: codes plus what is needed to decode them, in a safetensors container.

Layout (format ``codecstream-codes``, version 1):

- tensors ``codes.0``, ``codes.1``, ... : the arrays the model's ``codes_to_arrays`` gives,
  integers stored as int32 and floats as float32: one ``[B, K, frames]`` array per code level
  for most codecs (EnCodec has one level, SNAC one per temporal resolution), latents
  ``[B, D, frames]`` for continuous models (Oobleck), codes + scales + frames per segment for
  EnCodec 48 kHz;
- metadata (strings): ``format``, ``version``, ``model`` (registered name), ``sample_rate``
  (Hz), ``channels``, ``hop_length`` (samples per frame of the finest level),
  ``bandwidth_kbps`` (empty when the model has none), ``num_samples`` (length of the encoded
  audio, so decoding can trim the padding of the last frame).

safetensors holds no code, so reading a codes file is as safe as reading a WAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .errors import CodesFileError

__all__ = ["CodesFile", "write_codes", "read_codes", "FORMAT", "VERSION"]

FORMAT = "codecstream-codes"
VERSION = 1


@dataclass
class CodesFile:
    model: str
    sample_rate: int
    channels: int
    hop_length: int
    num_samples: int
    levels: list[Tensor]  # the model's codes_to_arrays(codes): int64 or float32
    bandwidth_kbps: float | None = None


def write_codes(path: str | Path, file: CodesFile) -> None:
    from safetensors.torch import save_file

    tensors = {
        f"codes.{i}": level.to(torch.float32 if level.is_floating_point() else torch.int32).contiguous().cpu()
        for i, level in enumerate(file.levels)
    }
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "model": file.model,
        "sample_rate": str(file.sample_rate),
        "channels": str(file.channels),
        "hop_length": str(file.hop_length),
        "num_samples": str(file.num_samples),
        "bandwidth_kbps": "" if file.bandwidth_kbps is None else repr(float(file.bandwidth_kbps)),
    }
    save_file(tensors, str(path), metadata=metadata)


def read_codes(path: str | Path) -> CodesFile:
    """Read a codes file.

    Raises:
        CodesFileError: not a safetensors file, or not one written by codecstream.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            keys = sorted(handle.keys(), key=lambda k: int(k.split(".")[-1]) if k.split(".")[-1].isdigit() else -1)
            if metadata.get("format") != FORMAT:
                raise CodesFileError(f"{path} is a safetensors file but not a codecstream codes file")
            try:
                version = int(metadata.get("version", "0"))
            except ValueError:
                raise CodesFileError(f"{path} has a malformed codes format version {metadata.get('version')!r}") from None
            if version > VERSION:
                raise CodesFileError(f"{path} uses codes format version {version}; this codecstream reads up to {VERSION}")
            # The names are checked before any tensor is read.
            if not keys or any(not k.startswith("codes.") for k in keys):
                raise CodesFileError(f"{path} has unexpected tensors {keys}")
            tensors = [handle.get_tensor(k) for k in keys]
    except (FileNotFoundError, CodesFileError):
        raise
    except Exception as exc:
        raise CodesFileError(f"{path} is not a codes file: {type(exc).__name__}: {exc}") from exc
    try:
        bandwidth = metadata.get("bandwidth_kbps", "")
        num_samples = int(metadata["num_samples"])
        if num_samples < 0:
            raise ValueError(f"num_samples {num_samples} is negative")
        return CodesFile(
            model=metadata["model"],
            sample_rate=int(metadata["sample_rate"]),
            channels=int(metadata["channels"]),
            hop_length=int(metadata["hop_length"]),
            num_samples=num_samples,
            levels=[t if t.is_floating_point() else t.to(torch.long) for t in tensors],
            bandwidth_kbps=float(bandwidth) if bandwidth else None,
        )
    except (KeyError, ValueError) as exc:
        raise CodesFileError(f"{path}: missing or malformed metadata ({exc})") from exc
