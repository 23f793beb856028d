"""A causal transformer with a sliding attention window, streamed exactly (Mimi's).

Frame ``t`` attends to frames ``t - context + 1 .. t``. Each attention layer keeps the keys
and values of the last ``context - 1`` frames in its stream state (a KV cache that holds
exactly what the next frames can still see, whatever the chunk length: streams of any length
stay equal to the offline model, unlike a ring buffer of ``context`` slots refilled several
frames at a time). Positions for the rotary embedding count from the start of the stream.

Module names follow kyutai's ``moshi``: ``layers.N.{norm1, self_attn.{in_proj, out_proj},
layer_scale_1, norm2, linear1, linear2, layer_scale_2}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .module import StreamContext, StreamingModule

__all__ = ["StreamingTransformer", "CausalSelfAttention", "TransformerLayer", "LayerScale", "apply_rotary"]


def apply_rotary(x: Tensor, positions: Tensor, max_period: float) -> Tensor:
    """Rotary embedding with interleaved pairs ``(x[2i], x[2i+1])``; ``x``: ``[B, H, T, D]``,
    ``positions``: ``[T]``. Computed in ``x``'s dtype."""
    head_dim = x.shape[-1]
    half = torch.arange(head_dim // 2, device=x.device, dtype=x.dtype)
    frequencies = torch.exp(half * (-math.log(max_period) * 2 / head_dim))
    angles = positions.to(x.dtype)[:, None] * frequencies  # [T, D/2]
    cos, sin = angles.cos(), angles.sin()
    pairs = x.unflatten(-1, (head_dim // 2, 2))
    real, imag = pairs[..., 0], pairs[..., 1]
    return torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1).flatten(-2)


class LayerScale(nn.Module):
    """Per-channel output scale (``scale``: ``[C]``) on ``[B, T, C]``."""

    def __init__(self, channels: int, initial: float = 1e-4) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), initial))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


@dataclass
class AttentionState:
    keys: Tensor  # [B, H, n, D], n <= context - 1: the frames later queries can still see
    values: Tensor
    position: int  # stream position of the next frame


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention over the last ``context`` frames with rotary positions.
    ``in_proj`` (fused q, k, v) and ``out_proj`` have no bias. Not a streaming module itself:
    :class:`TransformerLayer` hands it the state."""

    def __init__(self, dim: int, num_heads: int, context: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.context = context
        self.max_period = max_period
        self.in_proj = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, state: AttentionState) -> Tensor:
        """``x``: ``[B, T, C]`` frames at positions ``state.position ...``; updates ``state``."""
        batch, frames, channels = x.shape
        q, k, v = self.in_proj(x).view(batch, frames, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        start = state.position
        positions = torch.arange(start, start + frames, device=x.device)
        q = apply_rotary(q, positions, self.max_period)
        k = apply_rotary(k, positions, self.max_period)
        keys = torch.cat([state.keys, k], dim=2)
        values = torch.cat([state.values, v], dim=2)
        key_positions = torch.arange(start - state.keys.shape[2], start + frames, device=x.device)
        delta = positions[:, None] - key_positions[None, :]
        mask = (delta >= 0) & (delta < self.context)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        drop = max(0, keys.shape[2] - (self.context - 1))
        state.keys, state.values = keys[:, :, drop:], values[:, :, drop:]
        state.position = start + frames
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, channels))


class TransformerLayer(nn.Module):
    """Pre-norm layer: ``x + s1 · attn(norm1(x))``, then ``x + s2 · linear2(gelu(linear1(norm2(x))))``."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, context: int, layer_scale: float, max_period: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.self_attn = CausalSelfAttention(dim, num_heads, context, max_period)
        self.layer_scale_1 = LayerScale(dim, layer_scale)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.linear1 = nn.Linear(dim, ff_dim, bias=False)
        self.linear2 = nn.Linear(ff_dim, dim, bias=False)
        self.layer_scale_2 = LayerScale(dim, layer_scale)

    def forward(self, x: Tensor, state: AttentionState) -> Tensor:
        x = x + self.layer_scale_1(self.self_attn(self.norm1(x), state))
        return x + self.layer_scale_2(self.linear2(F.gelu(self.linear1(self.norm2(x)))))


@dataclass
class TransformerState:
    layers: list[AttentionState]


class StreamingTransformer(StreamingModule[TransformerState]):
    """A stack of :class:`TransformerLayer` on ``[B, dim, T]`` (channels first, like the convs
    around it). Causal: every frame comes out as soon as it goes in."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        num_layers: int,
        ff_dim: int,
        context: int,
        layer_scale: float = 0.01,
        max_period: float = 10_000.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads, ff_dim, context, layer_scale, max_period) for _ in range(num_layers)
        )

    def _new_state(self, x: Tensor) -> TransformerState:
        states = []
        for layer in self.layers:
            attention = layer.self_attn
            empty = x.new_zeros(x.shape[0], attention.num_heads, 0, self.dim // attention.num_heads)
            states.append(AttentionState(keys=empty, values=empty, position=0))
        return TransformerState(states)

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = ctx.get(self)
        if state is None:
            state = self._new_state(x)
            ctx.set(self, state)
        if x.shape[-1] == 0:
            return x
        hidden = x.transpose(1, 2)
        for layer, layer_state in zip(self.layers, state.layers):
            hidden = layer(hidden, layer_state)
        return hidden.transpose(1, 2)
