"""Mimi (kyutai): causal SEANet → causal windowed transformer → strided conv to 12.5 Hz →
split RVQ, and the mirror image to decode. Every part is causal, so both directions stream
exactly with one frame of latency: 1920 samples (80 ms) to encode, none to decode."""

from __future__ import annotations

from typing import Any

from codecstream.contract import CodeLevel, IndexCodes, TokenSpec
from codecstream.errors import OptionError
from codecstream.options import Option
from codecstream.plugin import Codec
from codecstream.streaming import StreamingConv1d, StreamingConvTranspose1d, StreamingSequential
from codecstream.streaming.transformer import StreamingTransformer

from ..blocks.seanet import build_decoder, build_encoder
from .config import MimiConfig
from .quantizer import SplitResidualVQ

__all__ = ["MimiCodec"]


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
        self.code_format = IndexCodes(config.codebook_size, config.num_codebooks, default_codebooks=config.default_codebooks)
        transformer: dict[str, Any] = dict(
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
        self.stream_through(
            StreamingSequential(self.encoder, self.encoder_transformer, self.downsample),
            StreamingSequential(self.upsample, self.decoder_transformer, self.decoder),
        )

    def option_specs(self) -> tuple[Option, ...]:
        return (Option("n_codebooks", "encoder", int, f"code-books to emit (default {self.config.default_codebooks})", 1, self.config.num_codebooks),)

    def parse_encoder_options(self, values: dict[str, Any]) -> int:
        """``n_codebooks``: code-books to emit, 1 to 32 (default 8)."""
        n_codebooks = values.get("n_codebooks")
        if n_codebooks is None:
            return self.config.default_codebooks
        if not isinstance(n_codebooks, int) or not 1 <= n_codebooks <= self.config.num_codebooks:
            raise OptionError(f"{self.name} n_codebooks must be 1 to {self.config.num_codebooks}, got {n_codebooks!r}")
        return n_codebooks

    def end_padding(self, samples: int, options: Any) -> int:
        return -samples % self.hop_length
