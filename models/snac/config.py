"""SNAC hyper-parameters, named as in the published ``config.json``."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

__all__ = ["SnacConfig", "SNAC_24KHZ", "SNAC_32KHZ", "SNAC_44KHZ"]


@dataclass(frozen=True)
class SnacConfig:
    sampling_rate: int = 24_000
    encoder_dim: int = 48
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int | None = None  # None: encoder_dim · 2^len(encoder_rates)
    decoder_dim: int = 1024
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    attn_window_size: int | None = None
    codebook_size: int = 4096
    codebook_dim: int = 8
    vq_strides: tuple[int, ...] = (4, 2, 1)
    noise: bool = True
    depthwise: bool = True

    @property
    def latent(self) -> int:
        return self.latent_dim or self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame (the finest code level)."""
        return math.prod(self.encoder_rates)

    @property
    def pad_multiple(self) -> int:
        """The encoder pads audio to a multiple of this many samples (SNAC's ``preprocess``)."""
        return self.hop_length * math.lcm(self.vq_strides[0], self.attn_window_size or 1)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SnacConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointMismatchError(f"config.json has keys SNAC does not have: {unknown}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        config = cls(**values)  # type: ignore[arg-type]  # field types are checked by the use below and at build
        if math.prod(config.encoder_rates) != math.prod(config.decoder_rates):
            raise CheckpointMismatchError("encoder and decoder rates give different hop lengths")
        return config


SNAC_24KHZ = SnacConfig()
SNAC_32KHZ = SnacConfig(
    sampling_rate=32_000, encoder_dim=64, encoder_rates=(2, 3, 8, 8), decoder_dim=1536,
    decoder_rates=(8, 8, 3, 2), attn_window_size=32, vq_strides=(8, 4, 2, 1),
)
SNAC_44KHZ = SnacConfig(
    sampling_rate=44_100, encoder_dim=64, encoder_rates=(2, 3, 8, 8), decoder_dim=1536,
    decoder_rates=(8, 8, 3, 2), attn_window_size=32, vq_strides=(8, 4, 2, 1),
)
