"""DAC (Descript Audio Codec): SEANet-like convs with Snake, factorised RVQ of 1024-entry
code-books; streamed exactly (every conv is zero-padded and 'same')."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from codecstream.contract import CodeLevel, IndexCodes, Length, TokenSpec, clamp_length
from codecstream.errors import OptionError
from codecstream.latents import LatentAutoencoder, LatentCodec
from codecstream.options import Option, check_options
from codecstream.plugin import Codec
from codecstream.streaming import StreamingSequential
from codecstream.streaming.pointwise import Snake1d

from ..blocks.snake import build_snake_decoder, build_snake_encoder
from ..blocks.vq import VectorQuantize
from .config import DacConfig

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

    @property
    def levels(self) -> list[VectorQuantize]:
        return cast("list[VectorQuantize]", list(self.quantizers))

    def encode(self, latents: Tensor, n_codebooks: int) -> Tensor:
        if latents.shape[-1] == 0:  # torch convs refuse empty input
            return latents.new_zeros(latents.shape[0], n_codebooks, 0, dtype=torch.long)
        residual, codes = latents, []
        for quantizer in self.levels[:n_codebooks]:
            indices = quantizer.nearest(quantizer.in_proj(residual))
            residual = residual - quantizer.embed(indices)
            codes.append(indices)
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        levels = self.levels
        if codes.shape[-1] == 0:
            return levels[0].out_proj.weight.new_zeros(codes.shape[0], levels[0].out_proj.out_channels, 0)
        total: Tensor | float = 0.0
        for k in range(codes.shape[1]):
            total = total + levels[k].embed(codes[:, k])
        assert isinstance(total, Tensor)
        return total


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
        self.code_format = IndexCodes(config.codebook_size, config.n_codebooks)
        self.encoder = build_encoder(config)
        self.quantizer = ResidualVQ(config)
        self.decoder = build_decoder(config)

    def option_specs(self) -> tuple[Option, ...]:
        return (Option("n_codebooks", "encoder", int, "code-books to emit (default: all)", 1, self.config.n_codebooks),)

    def parse_encoder_options(self, values: dict[str, Any]) -> int:
        """``n_codebooks``: how many code-books to emit (1 .. n_codebooks; default all)."""
        n_codebooks = values.get("n_codebooks")
        if n_codebooks is None:
            return self.config.n_codebooks
        if not isinstance(n_codebooks, int) or not 1 <= n_codebooks <= self.config.n_codebooks:
            raise OptionError(f"{self.name} n_codebooks must be 1 to {self.config.n_codebooks}, got {n_codebooks!r}")
        return n_codebooks

    def end_padding(self, samples: int, options: Any) -> int:
        return -samples % self.hop_length

    def decoded_length(self, frames: Length) -> Length:
        """Samples ``decode`` gives for ``frames`` frames: each stride-``s`` transposed conv
        (kernel ``2s``, padding ``⌈s/2⌉``) turns ``n`` into ``n·s − s mod 2``."""
        for stride in self.config.upsampling_ratios:
            frames = clamp_length(frames * stride - stride % 2)
        return frames

    def latents(self, **options: Any) -> LatentAutoencoder:
        """The encoder's output before quantisation as continuous latents ``[B, L, hidden]``,
        decoded by the DAC decoder (the sum of quantised vectors is what it was trained on)."""
        check_options((), options, what=f"{self.name} latents")
        hop = self.hop_length
        return LatentAutoencoder(
            LatentCodec(self, latent_dim=self.config.hidden_size), latent_dim=self.config.hidden_size,
            encode_length=lambda n: (n + hop - 1) // hop, decode_length=self.decoded_length,
        )
