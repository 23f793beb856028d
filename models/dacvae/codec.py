"""DACVAE, the seed's ``dacvae`` latent model: a DAC-style VAE whose encoder keeps the posterior
mean. Each audio channel is encoded as a mono signal and the latents are concatenated, left
channel first, as the seed's ``get_voco`` wrapper does. Non-causal but a pure convolution
network, so it streams exactly with lookahead."""

from __future__ import annotations

from typing import Any

from codecstream.contract import FeatureCodes, clamp_length
from codecstream.latents import LatentAutoencoder
from codecstream.options import check_options
from codecstream.plugin import Codec
from codecstream.streaming import FoldChannels

from .config import DacVaeConfig
from .layers import DacVaeDecoder, DacVaeEncoder

__all__ = ["DacVaeCodec"]


class DacVaeCodec(Codec):
    """``encode``: audio ``[B, channels, T]`` → latents ``[B, channels · latent, ⌈T / hop⌉]``
    (the end padded with zeros to a whole hop, as the fork's ``preprocess``); ``decode``:
    latents ``[B, channels · latent, L]`` → audio ``[B, channels, L · hop]``."""

    def __init__(self, config: DacVaeConfig, name: str = "dacvae") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.sample_rate = config.sample_rate
        self.channels = config.channels
        self.hop_length = config.hop_length
        self.latent_dim = config.channels * config.latent_size
        self.code_format = FeatureCodes(self.latent_dim, "latents")
        self.encoder = DacVaeEncoder(config)
        self.decoder = DacVaeDecoder(config)
        self.stream_through(
            FoldChannels(self.encoder.stream_path, config.channels), FoldChannels(self.decoder.stream_path, config.channels)
        )

    def end_padding(self, samples: int, options: Any) -> int:
        return -samples % self.hop_length

    def latents(self, **options: Any) -> LatentAutoencoder:
        """The latents behind the time-major ``get_voco`` interface: ``[B, L, channels · latent]``
        with ``L = (n − 1) // hop + 1`` and ``decode_length(L) = L · hop``."""
        check_options((), options, what=f"{self.name} latents")
        hop = self.hop_length
        return LatentAutoencoder(
            self, latent_dim=self.latent_dim,
            encode_length=lambda n: (n - 1) // hop + 1,
            decode_length=lambda frames: clamp_length(frames * hop),
        )
