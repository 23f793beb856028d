"""DAC (Descript Audio Codec): SEANet-like convs with Snake, factorised RVQ of 1024-entry
code-books; streamed exactly (every conv is zero-padded and 'same')."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

import torch
from torch import Tensor, nn

from codecstream.errors import OptionError
from codecstream.latents import Length, LatentAutoencoder, clamp_length
from codecstream.options import Option
from codecstream.plugin import Codec, CodeLevel, TokenSpec
from codecstream.streaming import StreamContext, StreamingSequential
from codecstream.streaming.pointwise import Snake1d
from codecstream.validation import check_code_tensor

from ..snac.quantizer import VectorQuantize
from .config import DacConfig
from .layers import build_snake_decoder, build_snake_encoder

__all__ = ["DacCodec"]


def build_encoder(config: DacConfig) -> StreamingSequential:
    """Audio ``[B, 1, T]`` → latents ``[B, hidden, T / hop]`` (names: ``encoder.block.N``)."""
    widths = [config.encoder_hidden_size * 2**i for i in range(len(config.downsampling_ratios) + 1)]
    return build_snake_encoder(
        audio_channels=1, widths=widths, strides=config.downsampling_ratios, out_channels=config.hidden_size,
        activation=Snake1d, outer="block", inner="block",
    )


def build_decoder(config: DacConfig) -> StreamingSequential:
    """Latents ``[B, hidden, F]`` → audio ``[B, 1, F · hop]`` (``F · hop − 8`` for stride-5 models,
    as the reference: its k=10, p=3 transposed convs give 5L − 1). Names: ``decoder.model.N``."""
    widths = [config.decoder_hidden_size // 2**i for i in range(len(config.upsampling_ratios) + 1)]
    return build_snake_decoder(
        latent_channels=config.hidden_size, widths=widths, strides=config.upsampling_ratios, audio_channels=1,
        activation=Snake1d, outer="model", inner="block",
    )


class ResidualVQ(nn.Module):
    """``quantizers.{i}``: DAC's factorised VQ (cosine nearest code in ``codebook_dim``)."""

    def __init__(self, config: DacConfig) -> None:
        super().__init__()
        self.quantizers = nn.ModuleList(
            VectorQuantize(config.hidden_size, config.codebook_size, config.codebook_dim, 1) for _ in range(config.n_codebooks)
        )

    def encode(self, latents: Tensor, n_codebooks: int) -> Tensor:
        if latents.shape[-1] == 0:  # torch convs refuse empty input
            return latents.new_zeros(latents.shape[0], n_codebooks, 0, dtype=torch.long)
        residual, codes = latents, []
        for quantizer in self.quantizers[:n_codebooks]:
            indices = quantizer.nearest(quantizer.in_proj(residual))
            residual = residual - quantizer.embed(indices)
            codes.append(indices)
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        if codes.shape[-1] == 0:
            return self.quantizers[0].out_proj.weight.new_zeros(codes.shape[0], self.quantizers[0].out_proj.out_channels, 0)
        total: Tensor | float = 0.0
        for k in range(codes.shape[1]):
            total = total + self.quantizers[k].embed(codes[:, k])
        assert isinstance(total, Tensor)
        return total


@dataclass
class EncoderState:
    samples: int


class DacCodec(Codec):
    """DAC: codes ``[B, K, frames]`` int64, ``K <= n_codebooks`` (``encode(audio, n_codebooks=K)``;
    default all). The encoder pads audio with zeros to a whole hop, as DAC's ``preprocess``."""

    def __init__(self, config: DacConfig, name: str = "dac") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.sample_rate = config.sampling_rate
        self.channels = 1
        self.hop_length = config.hop_length
        self.token_spec = TokenSpec(levels=(CodeLevel(config.n_codebooks, config.codebook_size, config.hop_length, config.sampling_rate),))
        self.encoder = build_encoder(config)
        self.quantizer = ResidualVQ(config)
        self.decoder = build_decoder(config)

    # -- encoder side -------------------------------------------------------------------
    def option_specs(self) -> tuple[Option, ...]:
        return (Option("n_codebooks", "encoder", int, "code-books to emit (default: all)", 1, self.config.n_codebooks),)

    def encoder_options(self, *, n_codebooks: int | None = None) -> int:
        """``n_codebooks``: how many code-books to emit (1 .. n_codebooks; default all)."""
        if n_codebooks is None:
            return self.config.n_codebooks
        if not isinstance(n_codebooks, int) or not 1 <= n_codebooks <= self.config.n_codebooks:
            raise OptionError(f"{self.name} n_codebooks must be 1 to {self.config.n_codebooks}, got {n_codebooks!r}")
        return n_codebooks

    def encoder_step(self, audio: Tensor, ctx: StreamContext, n_codebooks: int) -> Tensor:
        return self.quantizer.encode(self.latents_step(audio, ctx), n_codebooks)

    def encoder_flush(self, ctx: StreamContext, n_codebooks: int) -> Tensor | None:
        latents = self.latents_flush(ctx)
        return None if latents is None else self.quantizer.encode(latents, n_codebooks)

    def latents_step(self, audio: Tensor, ctx: StreamContext) -> Tensor:
        """The encoder's continuous output ``[B, hidden, n]`` now final (before quantisation)."""
        state = ctx.get(self)
        if state is None:
            state = EncoderState(0)
            ctx.set(self, state)
        state.samples += audio.shape[-1]
        return self.encoder.step(audio, ctx)

    def latents_flush(self, ctx: StreamContext) -> Tensor | None:
        """The rest of the continuous output, the audio padded with zeros to a whole hop."""
        state = ctx.get(self)
        if state is None or state.samples == 0:
            return None
        padding = -state.samples % self.hop_length
        zeros = torch.zeros(ctx.batch_size, 1, padding, dtype=self.dtype, device=self.device)
        latents = self.encoder.step(zeros, ctx)
        tail = self.encoder.flush(ctx)
        return latents if tail is None else torch.cat([latents, tail], dim=-1)

    def encoder_frames(self, n_samples: int) -> int:
        return self.encoder.output_count(n_samples)

    def empty_codes(self, batch_size: int, n_codebooks: Any) -> Tensor:
        books = n_codebooks if isinstance(n_codebooks, int) else self.config.n_codebooks
        return torch.zeros(batch_size, books, 0, dtype=torch.long, device=self.device)

    # -- decoder side -------------------------------------------------------------------
    def check_codes(self, codes: Any, batch_size: int | None = None) -> Tensor:
        return check_code_tensor(
            codes, codebook_size=self.config.codebook_size, max_codebooks=self.config.n_codebooks,
            device=self.device, batch_size=batch_size,
        )

    def code_layout(self, codes: Tensor) -> Hashable:
        return int(codes.shape[1])

    def decoder_step(self, codes: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.decoder.step(self.quantizer.decode(codes).to(self.dtype), ctx)

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self.decoder.flush(ctx)

    def decoder_samples(self, n_frames: int) -> int:
        return self.decoder.output_count(n_frames)

    def decoded_length(self, frames: Length) -> Length:
        """Samples ``decode`` gives for ``frames`` frames: each stride-``s`` transposed conv
        (kernel ``2s``, padding ``⌈s/2⌉``) turns ``n`` into ``n·s − s mod 2``."""
        for stride in self.config.upsampling_ratios:
            frames = clamp_length(frames * stride - stride % 2)
        return frames

    def latents(self) -> LatentAutoencoder:
        """The encoder's output before quantisation as continuous latents ``[B, L, hidden]``,
        decoded by the DAC decoder (the sum of quantised vectors is what it was trained on)."""
        from .latents import DacLatents

        hop = self.hop_length
        return LatentAutoencoder(
            DacLatents(self), latent_dim=self.config.hidden_size,
            encode_length=lambda n: (n + hop - 1) // hop, decode_length=self.decoded_length,
        )
