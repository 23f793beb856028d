"""The end of Oobleck's encoder: the posterior mean, or a sample of the posterior whose noise is
keyed on (seed, row, frame), so a streamed encode draws what the offline encode draws."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from codecstream.streaming import StreamContext, StreamingModule
from codecstream.streaming.module import RowInts, StreamState, advance, row_ints

__all__ = ["Posterior", "posterior_noise"]

#: Frames of noise drawn per seeded generator.
NOISE_BLOCK_FRAMES = 64


def posterior_noise(seed: int, row: int, start: int, count: int, dim: int) -> Tensor:
    """Standard normal noise ``[dim, count]`` (float64) for frames ``start .. start + count`` of
    row ``row``: each block of :data:`NOISE_BLOCK_FRAMES` frames comes from its own generator."""
    first, last = start // NOISE_BLOCK_FRAMES, (start + count - 1) // NOISE_BLOCK_FRAMES
    blocks = []
    for index in range(first, last + 1):
        key = (seed * 0x9E3779B97F4A7C15 + row * 0xBF58476D1CE4E5B9 + index) % (1 << 63)
        generator = torch.Generator().manual_seed(key)
        blocks.append(torch.randn(NOISE_BLOCK_FRAMES, dim, generator=generator, dtype=torch.float64))
    offset = start - first * NOISE_BLOCK_FRAMES
    return torch.cat(blocks)[offset : offset + count].T


@dataclass
class PosteriorState(StreamState):
    seed: RowInts  # per row: the stream's seed
    row: RowInts  # per row: its index in the stream it was opened in (rows draw apart)
    position: RowInts  # per row: latent frames drawn so far

    free_rows = ("seed", "row", "position")


class Posterior(StreamingModule[PosteriorState]):
    """``mean ‖ scale`` ``[B, 2·D, n]`` → the mean ``[B, D, n]``, or with ``ctx.options["sample"]``
    ``mean + (softplus(scale) + 1e-4) · noise`` as Stable Audio's VAE bottleneck samples it,
    with ``ctx.options["seed"]`` keying the noise (read at the stream's first frame)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def init_state(self, batch_size: int, like: Tensor) -> PosteriorState:
        return PosteriorState(seed=row_ints(batch_size), row=np.arange(batch_size, dtype=np.int64), position=row_ints(batch_size))

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        mean = x[:, : self.latent_dim]
        options = ctx.options
        if not (isinstance(options, dict) and options.get("sample")):
            return mean
        fresh = ctx.get(self) is None
        state = self.state(ctx, x)
        if fresh:
            state.seed[:] = int(options.get("seed") or 0)
        count = x.shape[-1]
        if count == 0:
            return mean
        noise = torch.stack([
            posterior_noise(int(seed), int(row), int(position), count, self.latent_dim)
            for seed, row, position in zip(state.seed, state.row, state.position)
        ]).to(device=x.device, dtype=x.dtype)
        advance(state.position, count)
        stdev = F.softplus(x[:, self.latent_dim :]) + 1e-4
        return noise * stdev + mean
