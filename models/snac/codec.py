"""The SNAC plugins (24/32/44 kHz): multi-rate codes, exact streaming both ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from codecstream.errors import ShapeError, StreamStateError
from codecstream.options import Option
from codecstream.plugin import Codec, CodeLevel, TokenSpec
from codecstream.streaming import StreamContext
from codecstream.validation import as_tensor, check_code_tensor

from .config import SnacConfig
from .layers import NoiseBlock, build_decoder, build_encoder, set_noise
from .quantizer import SnacQuantizer

__all__ = ["SnacCodec"]


@dataclass
class EncoderState:
    samples: int  # audio samples received, for the end-of-stream padding


class SnacCodec(Codec):
    """SNAC: codes are a list of ``[B, n_l]`` int64 tensors, coarsest level first, level ``l``
    at ``sample_rate / (hop · vq_strides[l])`` Hz (24 kHz: 11.7, 23.4, 46.9 Hz).

    Frames, for streams and latency, are latent frames (``hop`` samples, the finest level).
    The encoder pads audio with zeros to a multiple of ``hop · lcm(vq_strides[0], window)``
    samples, as SNAC's ``preprocess`` does, and emits codes a coarsest block at a time. The
    decoder turns codes into latent frames as soon as every level's code for a frame is in,
    so it accepts codes level by level, even one token at a time.

    The decoder's noise blocks draw noise keyed on the absolute sample position
    (``decoder_stream(noise=True, noise_seed=0)``), so streamed and offline decodes agree;
    ``noise=False`` turns the noise off.
    """

    def __init__(self, config: SnacConfig, name: str = "snac") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.sample_rate = config.sampling_rate
        self.channels = 1
        self.hop_length = config.hop_length
        self.token_spec = TokenSpec(
            levels=tuple(
                CodeLevel(1, config.codebook_size, config.hop_length * stride, config.sampling_rate)
                for stride in config.vq_strides
            )
        )
        self.encoder = build_encoder(config)
        self.quantizer = SnacQuantizer(config.latent, config.codebook_size, config.codebook_dim, config.vq_strides)
        self.decoder = build_decoder(config)

    # -- code containers ----------------------------------------------------------------
    def empty_codes(self, batch_size: int, options: Any = None) -> list[Tensor]:
        return [torch.zeros(batch_size, 0, dtype=torch.long, device=self.device) for _ in self.config.vq_strides]

    def concat_codes(self, parts: list[Any]) -> list[Tensor]:
        parts = [p for p in parts if p is not None]
        return [torch.cat([p[level] for p in parts], dim=-1) for level in range(len(self.config.vq_strides))]

    def num_frames(self, codes: Sequence[Tensor]) -> int:
        return min(level.shape[-1] * stride for level, stride in zip(codes, self.config.vq_strides))

    def slice_codes(self, codes: Sequence[Tensor], start: int, end: int) -> list[Tensor]:
        """The codes a decoder needs for latent frames ``start:end`` that earlier slices lacked."""
        return [level[:, -(-start // s) : -(-end // s)] for level, s in zip(codes, self.config.vq_strides)]

    @property
    def decoder_alignment(self) -> int:
        import math

        return math.lcm(self.config.vq_strides[0], self.config.attn_window_size or 1)

    def codes_batch_size(self, codes: Any) -> int:
        return int(codes[0].shape[0]) if isinstance(codes, (list, tuple)) and codes else 1

    # -- encoder side -------------------------------------------------------------------
    def encoder_step(self, audio: Tensor, ctx: StreamContext, options: Any) -> list[Tensor]:
        state = ctx.get(self)
        if state is None:
            state = EncoderState(samples=0)
            ctx.set(self, state)
        state.samples += audio.shape[-1]
        return self.quantizer.encode_step(self.encoder.step(audio, ctx), ctx)

    def encoder_flush(self, ctx: StreamContext, options: Any) -> list[Tensor] | None:
        state = ctx.get(self)
        if state is None or state.samples == 0:
            return None
        multiple = self.config.pad_multiple
        padding = -state.samples % multiple
        batch = ctx.batch_size
        zeros = torch.zeros(batch, 1, padding, dtype=self.dtype, device=self.device)
        latents = self.encoder.step(zeros, ctx)
        tail = self.encoder.flush(ctx)
        if tail is not None:
            latents = torch.cat([latents, tail], dim=-1)
        return self.quantizer.encode_step(latents, ctx)

    def encoder_frames(self, n_samples: int) -> int:
        block = self.config.vq_strides[0]
        return self.encoder.output_count(n_samples) // block * block

    # -- decoder side -------------------------------------------------------------------
    def option_specs(self) -> tuple[Option, ...]:
        return (
            Option("noise", "decoder", bool, "SNAC's noise injection, keyed on sample position", default=True),
            Option("noise_seed", "decoder", int, "seed of the positional noise", 0, 2**31 - 1, default=0),
        )

    def decoder_options(self, *, noise: bool = True, noise_seed: int = 0) -> int | None:
        """``noise``: SNAC's noise injection, keyed on sample position by ``noise_seed``."""
        has_noise = any(isinstance(m, NoiseBlock) for m in self.decoder.modules())
        return int(noise_seed) if noise and has_noise else None

    def check_codes(self, codes: Any, batch_size: int | None = None) -> list[Tensor]:
        levels = len(self.config.vq_strides)
        if not isinstance(codes, (list, tuple)) or len(codes) != levels:
            raise ShapeError(
                f"{self.name} codes are a list of {levels} tensors [batch, frames], coarsest first; "
                f"got {type(codes).__name__}" + (f" of {len(codes)}" if isinstance(codes, (list, tuple)) else "")
            )
        checked = []
        for index, level in enumerate(codes):
            level = as_tensor(level, f"codes[{index}]")
            if level.dim() != 2:
                raise ShapeError(f"codes[{index}] must be [batch, frames], got shape {tuple(level.shape)}")
            checked.append(
                check_code_tensor(
                    level[:, None], codebook_size=self.config.codebook_size, max_codebooks=1,
                    device=self.device, batch_size=batch_size, what=f"codes[{index}]",
                )[:, 0]
            )
        if len({level.shape[0] for level in checked}) != 1:
            raise ShapeError("all code levels must have the same batch size")
        return checked

    def decoder_step(self, codes: list[Tensor], ctx: StreamContext, noise_seed: int | None) -> Tensor:
        if ctx.get(self.quantizer) is None:  # first push of this stream
            set_noise(self.decoder, ctx, noise_seed)
        return self.decoder.step(self.quantizer.decode_step(codes, ctx).to(self.dtype), ctx)

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        leftover = self.quantizer.decode_leftover(ctx)
        if any(leftover):
            raise StreamStateError(
                f"the stream ended inside a frame: codes left per level {leftover} do not complete a "
                f"latent frame (levels have strides {list(self.config.vq_strides)})"
            )
        return self.decoder.flush(ctx)

    def decoder_samples(self, n_frames: int) -> int:
        return self.decoder.output_count(n_frames)
