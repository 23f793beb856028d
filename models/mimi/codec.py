"""Mimi (kyutai): causal SEANet → causal windowed transformer → strided conv to 12.5 Hz →
split RVQ, and the mirror image to decode. Every part is causal, so both directions stream
exactly with one frame of latency: 1920 samples (80 ms) to encode, none to decode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

import torch
from torch import Tensor

from codecstream.errors import OptionError
from codecstream.options import Option
from codecstream.plugin import Codec, CodeLevel, TokenSpec
from codecstream.streaming import StreamContext, StreamingConv1d, StreamingConvTranspose1d, StreamingSequential
from codecstream.streaming.transformer import StreamingTransformer
from codecstream.validation import check_code_tensor

from ..encodec.seanet import build_decoder, build_encoder
from .config import MimiConfig
from .quantizer import SplitResidualVQ

__all__ = ["MimiCodec"]


@dataclass
class EncoderState:
    samples: int


class MimiCodec(Codec):
    """Mimi: codes ``[B, K, frames]`` int64, ``K`` of 32 code-books of 2048 (code-book 0 is the
    semantic one). ``encode(audio, n_codebooks=K)``: default 8, as kyutai's loader (1.1 kbps).
    The encoder pads the audio with zeros to a whole frame at the end, as the reference.
    """

    def __init__(self, config: MimiConfig, name: str = "mimi") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.sample_rate = config.sample_rate
        self.channels = 1
        self.hop_length = config.hop_length
        self.token_spec = TokenSpec(levels=(CodeLevel(config.num_codebooks, config.codebook_size, config.hop_length, config.sample_rate),))
        transformer = dict(
            num_heads=config.num_heads, num_layers=config.num_layers, ff_dim=config.ff_dim, context=config.context,
            layer_scale=config.layer_scale, max_period=config.max_period,
        )
        stride, dim = config.resample_stride, config.dimension
        self.encoder = build_encoder(config.seanet())
        self.encoder_transformer = StreamingTransformer(dim, **transformer)
        # Causal, learnt, left edge replicated (moshi's ConvDownsample1d).
        self.downsample = StreamingConv1d(dim, dim, 2 * stride, stride=stride, bias=False, padding=(stride, 0), pad_mode="replicate")
        self.quantizer = SplitResidualVQ(dim, config.codebook_dim, config.codebook_size, config.num_codebooks, config.num_semantic)
        # Channel-wise, causal: the last k - s samples are a tail for the next frame (dropped at the end).
        self.upsample = StreamingConvTranspose1d(dim, dim, 2 * stride, stride=stride, groups=dim, bias=False, trim=(0, stride))
        self.decoder_transformer = StreamingTransformer(dim, **transformer)
        self.decoder = build_decoder(config.seanet())
        # The two chains, kept out of the module tree so parameter names stay moshi's.
        object.__setattr__(self, "_encoder_path", StreamingSequential(self.encoder, self.encoder_transformer, self.downsample))
        object.__setattr__(self, "_decoder_path", StreamingSequential(self.upsample, self.decoder_transformer, self.decoder))

    # -- encoder side -------------------------------------------------------------------
    def option_specs(self) -> tuple[Option, ...]:
        return (Option("n_codebooks", "encoder", int, f"code-books to emit (default {self.config.default_codebooks})", 1, self.config.num_codebooks),)

    def encoder_options(self, *, n_codebooks: int | None = None) -> int:
        """``n_codebooks``: code-books to emit, 1 to 32 (default 8)."""
        if n_codebooks is None:
            return self.config.default_codebooks
        if not isinstance(n_codebooks, int) or not 1 <= n_codebooks <= self.config.num_codebooks:
            raise OptionError(f"{self.name} n_codebooks must be 1 to {self.config.num_codebooks}, got {n_codebooks!r}")
        return n_codebooks

    def encoder_step(self, audio: Tensor, ctx: StreamContext, n_codebooks: int) -> Tensor:
        state = ctx.get(self)
        if state is None:
            state = EncoderState(0)
            ctx.set(self, state)
        state.samples += audio.shape[-1]
        return self.quantizer.encode(self._encoder_path.step(audio, ctx), n_codebooks)

    def encoder_flush(self, ctx: StreamContext, n_codebooks: int) -> Tensor | None:
        state = ctx.get(self)
        if state is None or state.samples == 0:
            return None
        padding = -state.samples % self.hop_length
        latents = self._encoder_path.step(torch.zeros(ctx.batch_size, 1, padding, dtype=self.dtype, device=self.device), ctx)
        tail = self._encoder_path.flush(ctx)
        if tail is not None:
            latents = torch.cat([latents, tail], dim=-1)
        return self.quantizer.encode(latents, n_codebooks)

    def encoder_frames(self, n_samples: int) -> int:
        return self._encoder_path.output_count(n_samples)

    def empty_codes(self, batch_size: int, n_codebooks: Any) -> Tensor:
        books = n_codebooks if isinstance(n_codebooks, int) else self.config.default_codebooks
        return torch.zeros(batch_size, books, 0, dtype=torch.long, device=self.device)

    # -- decoder side -------------------------------------------------------------------
    def check_codes(self, codes: Any, batch_size: int | None = None) -> Tensor:
        return check_code_tensor(
            codes, codebook_size=self.config.codebook_size, max_codebooks=self.config.num_codebooks,
            device=self.device, batch_size=batch_size,
        )

    def code_layout(self, codes: Tensor) -> Hashable:
        return int(codes.shape[1])

    def decoder_step(self, codes: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self._decoder_path.step(self.quantizer.decode(codes).to(self.dtype), ctx)

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self._decoder_path.flush(ctx)

    def decoder_samples(self, n_frames: int) -> int:
        return self._decoder_path.output_count(n_frames)
