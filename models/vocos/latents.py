"""Vocos-EnCodec's continuous features as a latent space: EnCodec 24 kHz codes at one bandwidth,
embedded and summed the way Vocos reads them, and the Vocos decoder from those sums."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from codecstream.latents import ContinuousCodes
from codecstream.plugin import Codec
from codecstream.streaming import StreamContext

from .codec import VocosEncodec

__all__ = ["VocosEncodecLatents"]


class VocosEncodecLatents(ContinuousCodes, Codec):
    """Audio ``[B, 1, T]`` → features ``[B, 128, ⌈T / 320⌉]`` (EnCodec codes for
    ``num_codebooks`` code-books, each code-book's embedding summed) → audio ``[B, 1, F · 320]``.

    Any ``[B, 128, F]`` sums decode (a generative model's output need not be a code sum); the
    Vocos backbone is conditioned on the bandwidth the features were made at.
    """

    def __init__(self, vocos: VocosEncodec, num_codebooks: int) -> None:
        super().__init__()
        self.vocos = vocos
        self.num_codebooks = num_codebooks
        self.name = f"{vocos.name}-latents"
        self.sample_rate = vocos.sample_rate
        self.channels = 1
        self.hop_length = vocos.hop_length
        self.has_encoder = vocos.has_encoder
        self.latent_dim = int(vocos.codebook_weights.shape[1])

    def encoder_stream(self, batch_size: int = 1, *, sample_rate: int | None = None, **options: Any):  # type: ignore[no-untyped-def]
        self.vocos.encoder_stream(1)  # refuses plainly when the EnCodec weights are missing
        return super().encoder_stream(batch_size, sample_rate=sample_rate, **options)

    def _features(self, codes: Tensor | None) -> Tensor | None:
        return None if codes is None else self.vocos.codes_to_features(codes)

    def encoder_step(self, audio: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self._features(self.vocos.encoder_step(audio, ctx, self.num_codebooks))  # type: ignore[return-value]

    def encoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self._features(self.vocos.encoder_flush(ctx, self.num_codebooks))

    def encoder_frames(self, n_samples: int) -> int:
        return self.vocos.encoder_frames(n_samples)

    def decoder_step(self, latents: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.vocos.features_step(latents, ctx, self.num_codebooks)

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self.vocos.decoder_flush(ctx, options)

    def decoder_samples(self, n_frames: int) -> int:
        return self.vocos.decoder_samples(n_frames)
