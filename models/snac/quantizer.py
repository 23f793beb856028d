"""SNAC's multi-rate residual VQ: level ``l`` quantizes ``avg_pool(residual, S_l)`` by cosine
similarity in a factorised 8-dim space, so one code covers ``S_l`` latent frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecstream.streaming import StreamContext
from codecstream.streaming.module import RowInts, StreamState, common, row_ints, uniform

from ..blocks.vq import VectorQuantize

__all__ = ["SnacQuantizer"]


@dataclass
class EncodeState(StreamState):
    pending: Tensor  # [B, latent, k] latent frames waiting for a whole coarsest block


@dataclass
class DecodeState(StreamState):
    pending: list[Tensor]  # per level, [B, n_l] codes not yet turned into latent frames
    frames: RowInts  # per row, latent frames produced so far

    # Only `frames` modulo each level's stride is read, and the pending lengths carry it.
    free_rows = ("frames",)


class SnacQuantizer(nn.Module):
    """``quantizers.{l}``: one :class:`VectorQuantize` per stride in ``vq_strides``.

    Encoding works on whole blocks of ``vq_strides[0]`` latent frames (the coarsest code);
    decoding turns codes into latent frame ``t`` as soon as every level's code covering ``t``
    has arrived, so codes can be pushed level by level, one at a time.
    """

    def __init__(self, latent: int, codebook_size: int, codebook_dim: int, strides: tuple[int, ...]) -> None:
        super().__init__()
        self.strides = strides
        self.quantizers = nn.ModuleList(VectorQuantize(latent, codebook_size, codebook_dim, s) for s in strides)

    @property
    def levels(self) -> list[VectorQuantize]:
        return cast("list[VectorQuantize]", list(self.quantizers))

    @property
    def block(self) -> int:
        return self.strides[0]

    def quantize(self, latents: Tensor) -> list[Tensor]:
        """``[B, latent, n]`` (``n`` a multiple of ``block``) → codes ``[B, n / S_l]`` per level."""
        if latents.shape[-1] == 0:
            return [torch.zeros(latents.shape[0], 0, dtype=torch.long, device=latents.device) for _ in self.strides]
        residual = latents
        codes = []
        for quantizer in self.levels:
            pooled = F.avg_pool1d(residual, quantizer.stride, quantizer.stride) if quantizer.stride > 1 else residual
            indices = quantizer.nearest(quantizer.in_proj(pooled))
            residual = residual - quantizer.embed(indices)
            codes.append(indices)
        return codes

    def encode_step(self, latents: Tensor, ctx: StreamContext) -> list[Tensor]:
        state = ctx.state(self, lambda: EncodeState(pending=latents[..., :0]))
        frames = torch.cat([state.pending, latents], dim=-1) if state.pending.shape[-1] else latents
        usable = frames.shape[-1] // self.block * self.block
        state.pending = frames[..., usable:]
        return self.quantize(frames[..., :usable])

    def latents(self, codes: list[Tensor]) -> Tensor:
        """Whole codes (level lengths in the stride ratios) → ``[B, latent, frames]``."""
        total: Tensor | float = 0.0
        for quantizer, level in zip(self.levels, codes):
            total = total + quantizer.embed(level)
        assert isinstance(total, Tensor)
        return total

    def decode_step(self, codes: list[Tensor], ctx: StreamContext) -> Tensor:
        """Add ``codes`` (any number per level) and return the latent frames now complete.

        Level ``l``'s pending codes start with the one covering the next latent frame to
        produce, of which ``frames % S_l`` frames were produced already.
        """
        state = ctx.state(self, lambda: DecodeState(pending=[level[:, :0] for level in codes], frames=row_ints(ctx.batch_size)))
        pending = [torch.cat([old, new], dim=-1) for old, new in zip(state.pending, codes)]
        done = common(state.frames)  # one Python int for the usual stream: no array maths per step
        starts = [done % s if done is not None else uniform(state.frames % s, "code phases") for s in self.strides]
        ready = min(level.shape[-1] * s - start for level, s, start in zip(pending, self.strides, starts))
        weight = self.levels[0].out_proj.weight
        if ready <= 0:
            state.pending = pending
            return weight.new_zeros(pending[0].shape[0], weight.shape[0], 0)
        total: Tensor | float = 0.0
        for index, (quantizer, level, start) in enumerate(zip(self.levels, pending, starts)):
            touched = -(-(start + ready) // quantizer.stride)
            total = total + quantizer.embed(level[:, :touched])[..., start : start + ready]
            pending[index] = level[:, (start + ready) // quantizer.stride :]
        state.pending = pending
        state.frames += ready
        assert isinstance(total, Tensor)
        return total

    def decode_leftover(self, ctx: StreamContext) -> list[int]:
        """Codes per level still waiting at end of stream (an incomplete last frame)."""
        state = ctx.get(self)
        return [0] * len(self.strides) if state is None else [level.shape[-1] for level in state.pending]
