"""DAC's continuous latent space: the encoder's output before quantisation, and the decoder."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from codecstream.latents import ContinuousCodes
from codecstream.plugin import Codec
from codecstream.streaming import StreamContext

from .codec import DacCodec

__all__ = ["DacLatents"]


class DacLatents(ContinuousCodes, Codec):
    """Audio ``[B, 1, T]`` → latents ``[B, hidden, ⌈T / hop⌉]`` (zero-padded to a whole hop, as
    DAC's ``preprocess``) → audio ``[B, 1, dac.decoded_length(F)]``; shares ``dac``'s weights."""

    def __init__(self, dac: DacCodec) -> None:
        super().__init__()
        self.dac = dac
        self.name = f"{dac.name}-latents"
        self.sample_rate = dac.sample_rate
        self.channels = 1
        self.hop_length = dac.hop_length
        self.latent_dim = dac.config.hidden_size

    def encoder_step(self, audio: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.dac.latents_step(audio, ctx)

    def encoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self.dac.latents_flush(ctx)

    def encoder_frames(self, n_samples: int) -> int:
        return self.dac.encoder_frames(n_samples)

    def decoder_step(self, latents: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.dac.decoder.step(latents, ctx)

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self.dac.decoder.flush(ctx)

    def decoder_samples(self, n_frames: int) -> int:
        return self.dac.decoder_samples(n_frames)
