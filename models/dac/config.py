"""DAC hyper-parameters (names of the transformers ``DacConfig``; the original ``.pth`` files
carry the same facts as ``metadata.kwargs``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

__all__ = ["DacConfig", "DAC_44KHZ", "DAC_24KHZ", "DAC_16KHZ"]


@dataclass(frozen=True)
class DacConfig:
    sampling_rate: int = 44_100
    encoder_hidden_size: int = 64
    downsampling_ratios: tuple[int, ...] = (2, 4, 8, 8)
    decoder_hidden_size: int = 1536
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    latent_dim: int | None = None  # None: encoder_hidden_size · 2^len(ratios)

    @property
    def hidden_size(self) -> int:
        return self.latent_dim or self.encoder_hidden_size * 2 ** len(self.downsampling_ratios)

    @property
    def upsampling_ratios(self) -> tuple[int, ...]:
        return tuple(reversed(self.downsampling_ratios))

    @property
    def hop_length(self) -> int:
        return math.prod(self.downsampling_ratios)

    @classmethod
    def from_transformers(cls, data: Mapping[str, Any]) -> "DacConfig":
        if data.get("model_type", "dac") != "dac":
            raise CheckpointMismatchError(f"config.json describes a {data.get('model_type')!r} model, not DAC")
        try:
            return cls(
                sampling_rate=int(data["sampling_rate"]),
                encoder_hidden_size=int(data.get("encoder_hidden_size", 64)),
                downsampling_ratios=tuple(int(r) for r in data.get("downsampling_ratios", (2, 4, 8, 8))),
                decoder_hidden_size=int(data.get("decoder_hidden_size", 1536)),
                n_codebooks=int(data.get("n_codebooks", 9)),
                codebook_size=int(data.get("codebook_size", 1024)),
                codebook_dim=int(data.get("codebook_dim", 8)),
                latent_dim=int(data["hidden_size"]) if data.get("hidden_size") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointMismatchError(f"config.json is not a DAC config: {exc}") from exc

    @classmethod
    def from_original(cls, kwargs: Mapping[str, Any]) -> "DacConfig":
        """``metadata.kwargs`` of an original descript ``weights*.pth`` (or the seed's ``dac.json``)."""
        try:
            latent_dim = kwargs.get("latent_dim")
            return cls(
                sampling_rate=int(kwargs.get("sample_rate", 44100)),
                encoder_hidden_size=int(kwargs.get("encoder_dim", 64)),
                downsampling_ratios=tuple(int(r) for r in kwargs.get("encoder_rates", (2, 4, 8, 8))),
                decoder_hidden_size=int(kwargs.get("decoder_dim", 1536)),
                n_codebooks=int(kwargs.get("n_codebooks", 9)),
                codebook_size=int(kwargs.get("codebook_size", 1024)),
                codebook_dim=int(kwargs.get("codebook_dim", 8)),
                latent_dim=int(latent_dim) if latent_dim is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointMismatchError(f"not DAC's constructor arguments: {exc}") from exc


DAC_44KHZ = DacConfig()
DAC_24KHZ = DacConfig(sampling_rate=24_000, downsampling_ratios=(2, 4, 5, 8), n_codebooks=32)
DAC_16KHZ = DacConfig(sampling_rate=16_000, downsampling_ratios=(2, 4, 5, 8), n_codebooks=12)
