"""Oobleck, Stable Audio's VAE: DAC-style Snake-β convs, stereo 44.1 kHz ↔ 64-dim latents at
21.5 Hz. Streamed exactly (every conv is zero-padded and centred); the encoder returns the
posterior mean (deterministic), or with ``sample=True`` a posterior sample whose noise is keyed
on (seed, row, frame), so streamed and offline samples agree."""

from __future__ import annotations

from typing import Any


from codecstream.contract import FeatureCodes, clamp_length
from codecstream.latents import LatentAutoencoder
from codecstream.options import Option, check_options
from codecstream.plugin import Codec
from codecstream.streaming import StreamingSequential
from codecstream.streaming.pointwise import SnakeBeta

from ..blocks.snake import build_snake_decoder, build_snake_encoder
from .config import OobleckConfig
from .posterior import Posterior

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


class OobleckCodec(Codec):
    """Oobleck VAE: ``encode`` gives latents ``[B, 64, ⌊T / 2048⌋]`` (the posterior mean, or a
    sample with ``sample=True``; trailing
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
        self.code_format = FeatureCodes(config.latent_dim, "latents")
        self.encoder = build_encoder(config)
        self.decoder = build_decoder(config)
        # The posterior (mean or sample) ends the encoder's stream; it has no weights.
        self.stream_through(StreamingSequential(self.encoder, Posterior(config.latent_dim)), self.decoder)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    #: The seed is read into each row's state at its first frame (streams differing only in it
    #: share a stream group).
    row_options = ("seed",)

    def option_specs(self) -> tuple[Option, ...]:
        return (
            Option("pad_end", "encoder", bool, "pad a last partial hop with zeros and encode it (the reference drops it)", default=False),
            Option("sample", "encoder", bool, "sample the posterior (as the seed's get_voco) instead of returning its mean", default=False),
            Option("seed", "encoder", int, "seed of the posterior noise, keyed on latent frame", 0, 2**31 - 1, default=0),
        )

    def end_padding(self, samples: int, options: Any) -> int:
        return -samples % self.hop_length if options["pad_end"] else 0

    def latents(self, **options: Any) -> LatentAutoencoder:
        """The posterior mean as continuous latents ``[B, L, 64]``, the end padded to a whole hop;
        ``sample=True`` (and ``seed``) samples the posterior instead, as the seed's ``get_voco``
        does, with noise keyed on the latent frame so streamed and offline encodes agree."""
        specs = tuple(spec for spec in self.option_specs() if spec.name in ("sample", "seed"))
        chosen = check_options(specs, options, what=f"{self.name} latents")
        hop = self.hop_length
        return LatentAutoencoder(
            self, latent_dim=self.latent_dim, encoder_options={"pad_end": True, **chosen},
            encode_length=lambda n: (n + hop - 1) // hop, decode_length=lambda frames: clamp_length(frames * hop),
        )
