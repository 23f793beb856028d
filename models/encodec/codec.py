"""The EnCodec plugin: SEANet encoder → residual VQ codes → SEANet decoder, streamed exactly."""

from __future__ import annotations

from typing import Any, Hashable

import torch
from torch import Tensor

from codecstream.errors import OptionError
from codecstream.options import Option
from codecstream.plugin import Codec, CodeLevel, TokenSpec
from codecstream.streaming import StreamContext
from codecstream.validation import check_code_tensor

from .config import EncodecConfig
from .quantizer import ResidualVQ
from .seanet import build_decoder, build_encoder

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
        self.encoder = build_encoder(config)
        self.quantizer = ResidualVQ(config.num_codebooks, config.codebook_size, config.dimension)
        self.decoder = build_decoder(config)

    # -- encoder side -------------------------------------------------------------------
    def option_specs(self) -> tuple[Option, ...]:
        bandwidths = tuple(float(b) for b in self.config.target_bandwidths)
        return (Option("bandwidth", "encoder", float, "target bit-rate in kbps (default: the highest)", choices=bandwidths),)

    def encoder_options(self, *, bandwidth: float | None = None) -> int:
        """``bandwidth`` in kbps, one of ``config.target_bandwidths`` (None: the highest)."""
        if bandwidth is None:
            return self.config.num_codebooks
        if float(bandwidth) not in self.config.target_bandwidths:
            raise OptionError(
                f"{self.name} does not offer {bandwidth} kbps; choose one of "
                f"{', '.join(str(b) for b in self.config.target_bandwidths)}"
            )
        return self.config.codebooks_for_bandwidth(float(bandwidth))

    def encoder_step(self, audio: Tensor, ctx: StreamContext, num_codebooks: int) -> Tensor:
        return self.quantizer.encode(self.encoder.step(audio, ctx), num_codebooks)

    def encoder_flush(self, ctx: StreamContext, num_codebooks: int) -> Tensor | None:
        latents = self.encoder.flush(ctx)
        return None if latents is None else self.quantizer.encode(latents, num_codebooks)

    def encoder_frames(self, n_samples: int) -> int:
        return self.encoder.output_count(n_samples)

    def empty_codes(self, batch_size: int, num_codebooks: int) -> Tensor:
        return torch.zeros(batch_size, num_codebooks, 0, dtype=torch.long, device=self.device)

    # -- decoder side -------------------------------------------------------------------
    def check_codes(self, codes: Any, batch_size: int | None = None) -> Tensor:
        return check_code_tensor(
            codes,
            codebook_size=self.config.codebook_size,
            max_codebooks=self.config.num_codebooks,
            device=self.device,
            batch_size=batch_size,
        )

    def code_layout(self, codes: Tensor) -> Hashable:
        return int(codes.shape[1])

    def decoder_step(self, codes: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.decoder.step(self.quantizer.decode(codes).to(self.dtype), ctx)

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self.decoder.flush(ctx)

    def decoder_samples(self, n_frames: int) -> int:
        return self.decoder.output_count(n_frames)
