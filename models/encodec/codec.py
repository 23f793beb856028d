"""The EnCodec plugin: SEANet encoder → residual VQ codes → SEANet decoder, streamed exactly."""

from __future__ import annotations

from typing import Any

from codecstream.contract import CodeLevel, IndexCodes, TokenSpec
from codecstream.errors import OptionError
from codecstream.options import Option
from codecstream.plugin import Codec

from .config import EncodecConfig
from .quantizer import ResidualVQ
from ..blocks.seanet import build_decoder, build_encoder

__all__ = ["EncodecCodec"]


class EncodecCodec(Codec):
    """EnCodec (causal, weight-norm variant: the 24 kHz model).

    Codes are ``[B, K, frames]`` int64 with ``K`` code-books of ``codebook_size`` entries;
    ``K`` follows from the bandwidth (24 kHz: 1.5/3/6/12/24 kbps → 2/4/8/16/32).

    Latency at 24 kHz (reflect padding of the causal convs, see :mod:`codecstream.latency`):
    encoder 320 samples (13.3 ms), a code frame needs its whole 320-sample hop; decoder 0
    samples: a frame releases its 320 samples at once, the transposed convs' tails belong to
    the next frame. The first frame of either side waits for 6 more frames (1920 samples)
    because the offline model mirrors frames 1..6 into the left edge of its last k=7 conv.
    """

    def __init__(self, config: EncodecConfig, name: str = "encodec") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.sample_rate = config.sample_rate
        self.channels = config.channels
        self.hop_length = config.hop_length
        self.token_spec = TokenSpec(
            levels=(CodeLevel(config.num_codebooks, config.codebook_size, config.hop_length, config.sample_rate),),
            bandwidths_kbps=tuple(config.target_bandwidths),
        )
        self.code_format = IndexCodes(config.codebook_size, config.num_codebooks)
        self.encoder = build_encoder(config)
        self.quantizer = ResidualVQ(config.num_codebooks, config.codebook_size, config.dimension)
        self.decoder = build_decoder(config)

    def option_specs(self) -> tuple[Option, ...]:
        bandwidths = tuple(float(b) for b in self.config.target_bandwidths)
        return (Option("bandwidth", "encoder", float, "target bit-rate in kbps (default: the highest)", choices=bandwidths, unit="kbps"),)

    def parse_encoder_options(self, values: dict[str, Any]) -> int:
        """``bandwidth`` in kbps, one of ``config.target_bandwidths`` (None: the highest) → the
        code-book count the quantizer emits."""
        bandwidth = values.get("bandwidth")
        if bandwidth is None:
            return self.config.num_codebooks
        if float(bandwidth) not in self.config.target_bandwidths:
            raise OptionError(
                f"{self.name} does not offer {bandwidth} kbps; choose one of "
                f"{', '.join(str(b) for b in self.config.target_bandwidths)}"
            )
        return self.config.codebooks_for_bandwidth(float(bandwidth))
