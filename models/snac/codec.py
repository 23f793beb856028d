"""The SNAC plugins (24/32/44 kHz): multi-rate codes, exact streaming both ways."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from codecstream.contract import CodeFormat, CodeLevel, TokenSpec
from codecstream.errors import ShapeError, StreamStateError
from codecstream.options import Option
from codecstream.plugin import Codec
from codecstream.streaming import StreamContext, StreamingModule
from codecstream.streaming.module import StreamState
from codecstream.validation import as_tensor, check_code_tensor

from .config import SnacConfig
from .layers import NoiseBlock, build_decoder, build_encoder, set_noise
from .quantizer import SnacQuantizer

__all__ = ["SnacCodec", "SnacCodes"]


class SnacCodes(CodeFormat):
    """A list of ``[B, n_l]`` int64 tensors, coarsest level first, level ``l`` one code per
    ``strides[l]`` latent frames; frames are counted in latent frames (the finest level)."""

    def __init__(self, codebook_size: int, strides: Sequence[int]) -> None:
        self.codebook_size = codebook_size
        self.strides = tuple(strides)

    def empty(self, batch_size: int, options: Any, *, device: torch.device, dtype: torch.dtype) -> list[Tensor]:
        return [torch.zeros(batch_size, 0, dtype=torch.long, device=device) for _ in self.strides]

    def check(self, codes: Any, batch_size: int | None, *, model: str, device: torch.device, dtype: torch.dtype) -> list[Tensor]:
        levels = len(self.strides)
        if not isinstance(codes, (list, tuple)) or len(codes) != levels:
            raise ShapeError(
                f"{model} codes are a list of {levels} tensors [batch, frames], coarsest first; "
                f"got {type(codes).__name__}" + (f" of {len(codes)}" if isinstance(codes, (list, tuple)) else "")
            )
        checked = []
        for index, level in enumerate(codes):
            level = as_tensor(level, f"codes[{index}]")
            if level.dim() != 2:
                raise ShapeError(f"codes[{index}] must be [batch, frames], got shape {tuple(level.shape)}")
            checked.append(
                check_code_tensor(
                    level[:, None], codebook_size=self.codebook_size, max_codebooks=1,
                    device=device, batch_size=batch_size, what=f"codes[{index}]",
                )[:, 0]
            )
        if len({level.shape[0] for level in checked}) != 1:
            raise ShapeError("all code levels must have the same batch size")
        return checked

    def batch_size(self, codes: Any) -> int:
        return int(codes[0].shape[0]) if isinstance(codes, (list, tuple)) and codes else 1

    def num_frames(self, codes: Sequence[Tensor]) -> int:
        return min(level.shape[-1] * stride for level, stride in zip(codes, self.strides))

    def slice(self, codes: Sequence[Tensor], start: int, end: int) -> list[Tensor]:
        """The codes a decoder needs for latent frames ``start:end`` that earlier slices lacked."""
        return [level[:, -(-start // s) : -(-end // s)] for level, s in zip(codes, self.strides)]

    def concat(self, parts: Sequence[Any]) -> list[Tensor]:
        present = [p for p in parts if p is not None]
        return [torch.cat([p[level] for p in present], dim=-1) for level in range(len(self.strides))]

    def to_arrays(self, codes: Any) -> list[Tensor]:
        return list(codes)

    def from_arrays(self, arrays: list[Tensor]) -> list[Tensor]:
        return list(arrays)


class SnacEncoderPath(StreamingModule):
    """Audio → codes: the encoder, then the quantizer a whole coarsest block at a time."""

    encoder: StreamingModule
    quantizer: SnacQuantizer

    def __init__(self, encoder: StreamingModule, quantizer: SnacQuantizer) -> None:
        super().__init__()
        object.__setattr__(self, "encoder", encoder)  # the codec's modules, not this one's
        object.__setattr__(self, "quantizer", quantizer)

    def step(self, audio: Tensor, ctx: StreamContext) -> list[Tensor]:  # type: ignore[override]
        return self.quantizer.encode_step(self.encoder.step(audio, ctx), ctx)

    def flush(self, ctx: StreamContext) -> list[Tensor] | None:  # type: ignore[override]
        tail = self.encoder.flush(ctx)
        return None if tail is None else self.quantizer.encode_step(tail, ctx)

    def output_count(self, n_in: int) -> int:
        block = self.quantizer.block
        return self.encoder.output_count(n_in) // block * block


@dataclass
class DecoderPathState(StreamState):
    pass  # its presence marks a started stream (the noise is keyed at the first push)


class SnacDecoderPath(StreamingModule[DecoderPathState]):
    """Codes → audio: latent frames as soon as every level's codes for them are in, then the
    decoder, its noise keyed on the stream's ``noise_seed`` (``ctx.options``)."""

    quantizer: SnacQuantizer
    decoder: StreamingModule

    def __init__(self, quantizer: SnacQuantizer, decoder: StreamingModule, strides: Sequence[int]) -> None:
        super().__init__()
        object.__setattr__(self, "quantizer", quantizer)
        object.__setattr__(self, "decoder", decoder)
        self.strides = tuple(strides)

    def step(self, codes: list[Tensor], ctx: StreamContext) -> Tensor:  # type: ignore[override]
        ctx.state(self, lambda: self._start(ctx))
        latents = self.quantizer.decode_step(codes, ctx)
        return self.decoder.step(latents.to(self.decoder_dtype), ctx)

    def _start(self, ctx: StreamContext) -> DecoderPathState:
        set_noise(self.decoder, ctx, ctx.options)
        return DecoderPathState()

    @property
    def decoder_dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype

    def flush(self, ctx: StreamContext) -> Tensor | None:
        leftover = self.quantizer.decode_leftover(ctx)
        if any(leftover):
            raise StreamStateError(
                f"the stream ended inside a frame: codes left per level {leftover} do not complete a "
                f"latent frame (levels have strides {list(self.strides)})"
            )
        return self.decoder.flush(ctx)

    def output_count(self, n_in: int) -> int:
        return self.decoder.output_count(n_in)


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
        self.code_format = SnacCodes(config.codebook_size, config.vq_strides)
        self.encoder = build_encoder(config)
        self.quantizer = SnacQuantizer(config.latent, config.codebook_size, config.codebook_dim, config.vq_strides)
        self.decoder = build_decoder(config)
        # The quantizer keeps stream state (whole blocks in, level-by-level codes out), so it
        # is part of the two streaming paths rather than the engine's stateless quantizer.
        self.stream_through(SnacEncoderPath(self.encoder, self.quantizer), SnacDecoderPath(self.quantizer, self.decoder, config.vq_strides))

    @property
    def quantizer_part(self) -> None:
        return None

    @property
    def decoder_alignment(self) -> int:  # type: ignore[override]
        return math.lcm(self.config.vq_strides[0], self.config.attn_window_size or 1)

    def end_padding(self, samples: int, options: Any) -> int:
        return -samples % self.config.pad_multiple

    row_options = ("noise_seed",)  # keyed into each row's noise state at its first push

    def option_specs(self) -> tuple[Option, ...]:
        return (
            Option("noise", "decoder", bool, "SNAC's noise injection, keyed on sample position", default=True),
            Option("noise_seed", "decoder", int, "seed of the positional noise", 0, 2**31 - 1, default=0),
        )

    def parse_decoder_options(self, values: dict[str, Any]) -> int | None:
        """``noise``: SNAC's noise injection, keyed on sample position by ``noise_seed``."""
        noise = values.get("noise", True) is not False
        has_noise = any(isinstance(m, NoiseBlock) for m in self.decoder.modules())
        return int(values.get("noise_seed") or 0) if noise and has_noise else None
