"""Oobleck, Stable Audio's VAE: DAC-style Snake-β convs, stereo 44.1 kHz ↔ 64-dim latents at
21.5 Hz. Streamed exactly (every conv is zero-padded and centred); the encoder returns the
posterior mean, so encoding is deterministic."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from codecstream.errors import OptionError
from codecstream.latents import ContinuousCodes, LatentAutoencoder, clamp_length
from codecstream.options import Option
from codecstream.plugin import Codec
from codecstream.streaming import StreamContext, StreamingSequential
from codecstream.streaming.pointwise import SnakeBeta

from ..dac.layers import build_snake_decoder, build_snake_encoder
from .config import OobleckConfig

__all__ = ["OobleckCodec", "build_encoder", "build_decoder"]


def build_encoder(config: OobleckConfig) -> StreamingSequential:
    """Audio ``[B, C, T]`` → mean ‖ scale ``[B, 2 · latent, ⌊T / hop⌋]`` (``encoder.layers.N``)."""
    return build_snake_encoder(
        audio_channels=config.audio_channels, widths=config.encoder_widths, strides=config.downsampling_ratios,
        out_channels=2 * config.latent_dim, activation=SnakeBeta, outer="layers", inner="layers",
    )


def build_decoder(config: OobleckConfig) -> StreamingSequential:
    """Latents ``[B, latent, F]`` → audio ``[B, C, F · hop]`` (``decoder.layers.N``)."""
    return build_snake_decoder(
        latent_channels=config.latent_dim, widths=config.decoder_widths, strides=tuple(reversed(config.downsampling_ratios)),
        audio_channels=config.audio_channels, activation=SnakeBeta, outer="layers", inner="layers",
        output_bias=False, final_tanh=config.final_tanh,
    )


class OobleckCodec(ContinuousCodes, Codec):
    """Oobleck VAE: ``encode`` gives latents ``[B, 64, ⌊T / 2048⌋]`` (the posterior mean; trailing
    samples short of a whole hop are dropped, as the reference does, unless ``pad_end=True``
    pads them to a hop), ``decode`` gives
    ``[B, 2, F · 2048]``. Latency: decoder 18981 samples (9.3 latent frames of lookahead)."""

    def __init__(self, config: OobleckConfig, name: str = "oobleck") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.sample_rate = config.sampling_rate
        self.channels = config.audio_channels
        self.hop_length = config.hop_length
        self.encoder = build_encoder(config)
        self.decoder = build_decoder(config)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # -- encoder side -------------------------------------------------------------------
    def option_specs(self) -> tuple[Option, ...]:
        return (Option("pad_end", "encoder", bool, "pad a last partial hop with zeros and encode it (the reference drops it)", default=False),)

    def encoder_options(self, *, pad_end: bool = False) -> bool:
        """``pad_end``: pad the end with zeros to a whole hop, so a last partial hop is encoded
        too (the reference drops it)."""
        if not isinstance(pad_end, bool):
            raise OptionError(f"{self.name} pad_end must be True or False, got {pad_end!r}")
        return pad_end

    def _mean(self, moments: Tensor | None) -> Tensor | None:
        return None if moments is None else moments[:, : self.latent_dim]

    def encoder_step(self, audio: Tensor, ctx: StreamContext, pad_end: bool) -> Tensor:
        if pad_end:
            ctx.set(self, (ctx.get(self) or 0) + audio.shape[-1])  # samples so far
        return self._mean(self.encoder.step(audio, ctx))  # type: ignore[return-value]

    def encoder_flush(self, ctx: StreamContext, pad_end: bool) -> Tensor | None:
        padding = -(ctx.get(self) or 0) % self.hop_length if pad_end else 0
        if padding == 0:
            return self._mean(self.encoder.flush(ctx))
        zeros = torch.zeros(ctx.batch_size, self.channels, padding, dtype=self.dtype, device=self.device)
        parts = [self.encoder.step(zeros, ctx), self.encoder.flush(ctx)]
        return self._mean(torch.cat([p for p in parts if p is not None], dim=-1))

    def encoder_frames(self, n_samples: int) -> int:
        return self.encoder.output_count(n_samples)

    # -- decoder side -------------------------------------------------------------------
    def decoder_step(self, latents: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.decoder.step(latents, ctx)

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self.decoder.flush(ctx)

    def decoder_samples(self, n_frames: int) -> int:
        return self.decoder.output_count(n_frames)

    def latents(self) -> LatentAutoencoder:
        """The posterior mean as continuous latents ``[B, L, 64]``, the end padded to a whole hop."""
        hop = self.hop_length
        return LatentAutoencoder(
            self, latent_dim=self.latent_dim, encoder_options={"pad_end": True},
            encode_length=lambda n: (n + hop - 1) // hop, decode_length=lambda frames: clamp_length(frames * hop),
        )
