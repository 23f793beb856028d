"""SNAC's encoder and decoder on streaming layers. Module names follow the published
``pytorch_model.bin`` (``encoder.block.N...``, ``decoder.model.N...``), so keys map as they are."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from codecstream.streaming import (
    Residual,
    StreamContext,
    StreamingConv1d,
    StreamingConvTranspose1d,
    StreamingModule,
    StreamingSequential,
)
from codecstream.streaming.attention import BlockLocalAttention
from codecstream.streaming.module import RowInts, StreamState, advance, common, row_ints
from codecstream.streaming.pointwise import Snake1d

from .config import SnacConfig

__all__ = ["build_encoder", "build_decoder", "PositionalNoise", "NoiseBlock", "noise_block", "set_noise"]


def _same_conv(c_in: int, c_out: int, kernel: int, *, dilation: int = 1, groups: int = 1, bias: bool = True) -> StreamingConv1d:
    pad = (kernel - 1) * dilation // 2
    return StreamingConv1d(c_in, c_out, kernel, dilation=dilation, groups=groups, bias=bias, padding=(pad, pad))


def _residual_unit(dim: int, dilation: int, groups: int) -> Residual:
    """Snake → k7 dilated conv → Snake → 1x1 conv, plus the input (delayed by 3·dilation)."""
    return Residual(
        StreamingSequential(Snake1d(dim), _same_conv(dim, dim, 7, dilation=dilation, groups=groups), Snake1d(dim), _same_conv(dim, dim, 1))
    )


def build_encoder(config: SnacConfig) -> StreamingSequential:
    """Audio ``[B, 1, T]`` → latents ``[B, latent, T / hop]`` (T a multiple of the hop)."""
    dim = config.encoder_dim
    layers: list[nn.Module] = [_same_conv(1, dim, 7)]
    for stride in config.encoder_rates:
        dim *= 2
        half = dim // 2
        groups = half if config.depthwise else 1
        pad = math.ceil(stride / 2)
        block = StreamingSequential(
            _residual_unit(half, 1, groups),
            _residual_unit(half, 3, groups),
            _residual_unit(half, 9, groups),
            Snake1d(half),
            StreamingConv1d(half, dim, 2 * stride, stride=stride, padding=(pad, pad)),
        )
        layers.append(StreamingSequential({"block": block}))
    if config.attn_window_size is not None:
        layers.append(BlockLocalAttention(dim, config.attn_window_size))
    layers.append(_same_conv(dim, dim, 7, groups=dim if config.depthwise else 1))
    return StreamingSequential({"block": StreamingSequential(*layers)})


def noise_block(seed: int, layer: int, index: int) -> Tensor:
    """Block ``index`` (samples ``[index·block, (index + 1)·block)``) of layer ``layer``'s noise
    for ``seed``: ``[PositionalNoise.block]`` float64 standard normal values."""
    key = (seed * 0x9E3779B97F4A7C15 + layer * 0xBF58476D1CE4E5B9 + index) % (1 << 63)
    return torch.randn(PositionalNoise.block, generator=torch.Generator().manual_seed(key), dtype=torch.float64)


class PositionalNoise:
    """Standard normal noise that depends only on (seed, layer, absolute sample index), so any
    chunking, and the offline decode, draw the same values. Generated in blocks of
    ``block`` samples, each from its own seeded generator; the last block is kept."""

    block = 4096

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._cached: dict[int, tuple[int, Tensor]] = {}  # layer -> (block index, values)

    def _block(self, layer: int, index: int) -> Tensor:
        cached = self._cached.get(layer)
        if cached is not None and cached[0] == index:
            return cached[1]
        values = noise_block(self.seed, layer, index)
        self._cached[layer] = (index, values)
        return values

    def values(self, layer: int, start: int, count: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
        first, last = start // self.block, (start + count - 1) // self.block
        pieces = [self._block(layer, index) for index in range(first, last + 1)]
        offset = start - first * self.block
        joined = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        return joined[offset : offset + count].to(device=device, dtype=dtype)


@dataclass
class NoiseState(StreamState):
    seed: RowInts  # per row: the noise seed (taken modulo 2**63, which keeps every block key)
    position: RowInts  # absolute index of the row's next sample at this layer's rate
    block_index: RowInts  # which noise block `block` holds (-1: none yet)
    block: Tensor  # [B, PositionalNoise.block] float64: the row's last noise block, kept

    free_rows = ("seed", "position", "block_index")  # noise is drawn per row


class NoiseBlock(StreamingModule[NoiseState]):
    """``x + n[t] · linear(x)[t]``: SNAC's learned noise injection, with ``n`` drawn per row
    from :func:`noise_block` keyed on (seed, layer, absolute sample index) (set per stream with
    :func:`set_noise`) instead of a fresh ``randn`` per call, so streamed and offline decodes
    agree. With noise off (no state set) the block adds nothing."""

    def __init__(self, dim: int, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.linear = StreamingConv1d(dim, dim, 1, bias=False)

    def noise_state(self, batch_size: int, seed: int) -> NoiseState:
        """The state of a stream of ``batch_size`` rows that all draw noise ``seed`` from sample 0."""
        return NoiseState(
            seed=row_ints(batch_size, seed % (1 << 63)),
            position=row_ints(batch_size),
            block_index=row_ints(batch_size, -1),
            block=torch.zeros(batch_size, PositionalNoise.block, dtype=torch.float64),
        )

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = self._state(ctx)
        if state is None or x.shape[-1] == 0:
            return x
        count = x.shape[-1]
        if common(state.seed) is not None and common(state.position) is not None:
            noise = self._noise(state, 0, count)[None]  # one draw shared by every row
        else:
            noise = torch.stack([self._noise(state, row, count) for row in range(len(state.seed))])
        advance(state.position, count)
        noise = noise.to(device=x.device, dtype=x.dtype)
        # As the reference: [B, 1, T] noise broadcast over channels, times a 1x1 projection of x.
        return x + noise[:, None, :] * self.linear.step(x, ctx)

    def _noise(self, state: NoiseState, row: int, count: int) -> Tensor:
        """``[count]`` float64 noise of ``row`` from its position on, through its block cache."""
        size = PositionalNoise.block
        start, seed, cached = int(state.position[row]), int(state.seed[row]), int(state.block_index[row])
        first, last = start // size, (start + count - 1) // size
        pieces = [state.block[row] if index == cached else noise_block(seed, self.layer, index) for index in range(first, last + 1)]
        offset = start - first * size
        joined = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        if cached != last:  # keep the newest block (copied into the row's cache, after the join)
            state.block[row] = pieces[-1]
            state.block_index[row] = last
        return joined[offset : offset + count]


def set_noise(decoder: nn.Module, ctx: StreamContext, seed: int | None) -> None:
    """Turn positional noise on with ``seed`` for every row of this stream (``None``: noise off)."""
    if seed is None:
        return
    for module in decoder.modules():
        if isinstance(module, NoiseBlock):
            ctx.set(module, module.noise_state(ctx.batch_size, seed))


def build_decoder(config: SnacConfig) -> StreamingSequential:
    """Latents ``[B, latent, F]`` → audio ``[B, 1, F · hop]``."""
    latent, channels = config.latent, config.decoder_dim
    if config.depthwise:
        layers: list[nn.Module] = [_same_conv(latent, latent, 7, groups=latent), _same_conv(latent, channels, 1)]
    else:
        layers = [_same_conv(latent, channels, 7)]
    if config.attn_window_size is not None:
        layers.append(BlockLocalAttention(channels, config.attn_window_size))
    out_dim = channels
    for i, stride in enumerate(config.decoder_rates):
        in_dim, out_dim = channels // 2**i, channels // 2 ** (i + 1)
        groups = out_dim if config.depthwise else 1
        pad = math.ceil(stride / 2)
        parts: list[nn.Module] = [
            Snake1d(in_dim),
            StreamingConvTranspose1d(in_dim, out_dim, 2 * stride, stride=stride, trim=(pad, pad - stride % 2)),
        ]
        if config.noise:
            parts.append(NoiseBlock(out_dim, layer=i))
        parts += [_residual_unit(out_dim, 1, groups), _residual_unit(out_dim, 3, groups), _residual_unit(out_dim, 9, groups)]
        layers.append(StreamingSequential({"block": StreamingSequential(*parts)}))
    layers += [Snake1d(out_dim), _same_conv(out_dim, 1, 7), nn.Tanh()]
    return StreamingSequential({"model": StreamingSequential(*layers)})
