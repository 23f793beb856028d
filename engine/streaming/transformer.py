"""A causal transformer with a sliding attention window, streamed exactly (Mimi's).

Frame ``t`` attends to frames ``t - context + 1 .. t``. Each attention layer keeps keys and
values in a fixed ring of ``context - 1 + max_chunk`` slots per row: stream position ``t`` sits
in slot ``t mod slots``. A chunk of up to ``max_chunk`` frames is written in place and attends
over the whole ring through a mask, so no chunk copies the cache; a longer chunk (an offline
call) attends over the past read out of the ring followed by its own frames, then leaves its
last frames in the ring. Both are exact for any chunking (they differ from the offline model
by rounding only). Rotary positions count from the start of the stream.

Each row of a batch keeps its own position, which only the rotary angles, the mask and the
slots written depend on: streams of different ages share one batch and compute exactly as they
would apart.

Module names follow kyutai's ``moshi``: ``layers.N.{norm1, self_attn.{in_proj, out_proj},
layer_scale_1, norm2, linear1, linear2, layer_scale_2}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .module import RowInts, StreamContext, StreamingModule, StreamState, advance, common, row_ints

__all__ = ["StreamingTransformer", "CausalSelfAttention", "TransformerLayer", "LayerScale", "apply_rotary"]


def _rotary_angles(positions: Tensor, head_dim: int, max_period: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` of the rotary angles of integer ``positions`` ``[...]``: ``[..., D/2]``,
    computed in ``dtype``."""
    half = torch.arange(head_dim // 2, device=positions.device, dtype=dtype)
    frequencies = torch.exp(half * (-math.log(max_period) * 2 / head_dim))
    angles = positions.to(dtype)[..., None] * frequencies
    return angles.cos(), angles.sin()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the interleaved pairs ``(x[2i], x[2i+1])`` of ``x`` ``[B, H, T, D]`` by angles whose
    ``cos``/``sin`` broadcast to ``[B, H, T, D/2]``."""
    pairs = x.unflatten(-1, (x.shape[-1] // 2, 2))
    real, imag = pairs[..., 0], pairs[..., 1]
    return torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1).flatten(-2)


def apply_rotary(x: Tensor, positions: Tensor, max_period: float) -> Tensor:
    """Rotary embedding with interleaved pairs ``(x[2i], x[2i+1])``; ``x``: ``[B, H, T, D]``,
    ``positions``: ``[T]``, or ``[B, T]`` per row. Computed in ``x``'s dtype."""
    cos, sin = _rotary_angles(positions, x.shape[-1], max_period, x.dtype)
    if positions.dim() == 2:
        cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    return _rotate(x, cos, sin)


class LayerScale(nn.Module):
    """Per-channel output scale (``scale``: ``[C]``) on ``[B, T, C]``."""

    def __init__(self, channels: int, initial: float = 1e-4) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), initial))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


@dataclass
class AttentionState(StreamState):
    keys: Tensor  # [B, H, slots, D] ring: stream position t in slot t mod slots
    values: Tensor  # [B, H, slots, D]


@dataclass
class TransformerState(StreamState):
    position: RowInts  # stream position of each row's next frame
    layers: list[AttentionState]

    free_rows = ("position",)  # the KV ring is addressed per row


class _Slots:
    """``count`` consecutive stream positions per row, from ``starts``, as ring slots: one run
    shared by every row (sliced, wrapping at most once), or per-row indices (gathered and
    scattered) when rows are at different positions."""

    def __init__(self, starts: RowInts, count: int, size: int, device: torch.device) -> None:
        self.count, self.size = count, size
        shared = common(starts)
        self.start = 0 if shared is None else shared % size
        self.index: Tensor | None = None
        if shared is None:
            slots = (starts[:, None] + np.arange(count)) % size
            self.index = torch.from_numpy(slots).to(device)[:, None, :, None]  # [B, 1, count, 1]

    def _expanded(self, ring: Tensor) -> Tensor:
        assert self.index is not None
        return self.index.expand(-1, ring.shape[1], -1, ring.shape[3])

    def read(self, ring: Tensor) -> Tensor:
        """These slots of ``ring`` ``[B, H, size, D]``, in position order: ``[B, H, count, D]``."""
        if self.index is not None:
            return ring.gather(2, self._expanded(ring))
        start, end = self.start, self.start + self.count
        if end <= self.size:
            return ring[:, :, start:end]
        return torch.cat([ring[:, :, start:], ring[:, :, : end - self.size]], dim=2)

    def write(self, ring: Tensor, new: Tensor) -> None:
        """Store ``new`` ``[B, H, count, D]`` in these slots of ``ring``, in place."""
        if self.index is not None:
            ring.scatter_(2, self._expanded(ring), new)
            return
        start, end = self.start, self.start + self.count
        if end <= self.size:
            ring[:, :, start:end] = new
        else:
            split = self.size - start
            ring[:, :, start:] = new[:, :, :split]
            ring[:, :, : end - self.size] = new[:, :, split:]


@dataclass
class _Plan:
    """What every layer of one step shares. ``R`` is 1 when all rows are at one position (the
    mask and angles then broadcast), else the batch size."""

    cos: Tensor  # [R, 1, T, D/2] rotary angles of the chunk's positions
    sin: Tensor
    mask: Tensor  # [R, 1, T, S] bool: which of the S keys each query sees
    in_ring: bool  # the chunk is written first and attends over the whole ring
    past: _Slots | None  # otherwise: the past keys to read before the chunk's own (None: none)
    write: _Slots  # where the chunk's keys go
    keep: int  # the first of the chunk's frames written (a long chunk keeps its last `slots`)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention over the last ``context`` frames with rotary positions.
    ``in_proj`` (fused q, k, v) and ``out_proj`` have no bias. Not a streaming module itself:
    :class:`StreamingTransformer` hands it its state and the step's shared plan."""

    def __init__(self, dim: int, num_heads: int, context: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.context = context
        self.max_period = max_period
        self.in_proj = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, state: AttentionState, plan: _Plan) -> Tensor:
        """``x``: ``[B, T, C]``, the frames the plan places; updates ``state``'s ring."""
        batch, frames, channels = x.shape
        q, k, v = self.in_proj(x).view(batch, frames, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = _rotate(q, plan.cos, plan.sin), _rotate(k, plan.cos, plan.sin)
        if plan.in_ring:
            plan.write.write(state.keys, k)
            plan.write.write(state.values, v)
            keys, values = state.keys, state.values
        else:
            keys, values = k, v
            if plan.past is not None:  # read before writing: a long chunk overwrites its past
                keys = torch.cat([plan.past.read(state.keys), k], dim=2)
                values = torch.cat([plan.past.read(state.values), v], dim=2)
            plan.write.write(state.keys, k[:, :, plan.keep :])
            plan.write.write(state.values, v[:, :, plan.keep :])
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=plan.mask)
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

    def forward(self, x: Tensor, state: AttentionState, plan: _Plan) -> Tensor:
        x = x + self.layer_scale_1(self.self_attn(self.norm1(x), state, plan))
        return x + self.layer_scale_2(self.linear2(F.gelu(self.linear1(self.norm2(x)))))


class StreamingTransformer(StreamingModule[TransformerState]):
    """A stack of :class:`TransformerLayer` on ``[B, dim, T]`` (channels first, like the convs
    around it). Causal: every frame comes out as soon as it goes in.

    ``max_chunk``: the longest chunk computed in the ring in place (the ring holds
    ``context - 1 + max_chunk`` frames); longer ones attend over a copy of the past.
    """

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
        max_chunk: int = 16,
    ) -> None:
        super().__init__()
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be at least 1, got {max_chunk}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.context = context
        self.max_period = max_period
        self.max_chunk = max_chunk
        self.slots = context - 1 + max_chunk
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads, ff_dim, context, layer_scale, max_period) for _ in range(num_layers)
        )

    def init_state(self, batch_size: int, like: Tensor) -> TransformerState:
        shape = (batch_size, self.num_heads, self.slots, self.head_dim)
        rings = [AttentionState(keys=like.new_zeros(shape), values=like.new_zeros(shape)) for _ in self.layers]
        return TransformerState(position=row_ints(batch_size), layers=rings)

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = self.state(ctx, x)
        if x.shape[-1] == 0:
            return x
        plan = self._plan(state.position, x.shape[-1], x)
        hidden = x.transpose(1, 2)
        for layer, layer_state in zip(self.layers, state.layers):
            hidden = layer(hidden, layer_state, plan)
        advance(state.position, x.shape[-1])
        return hidden.transpose(1, 2)

    def _plan(self, positions: RowInts, frames: int, like: Tensor) -> _Plan:
        """Angles, mask and slots of ``frames`` new frames at per-row ``positions`` (host maths
        on ``[R, T, S]`` integers, once per step for every layer)."""
        context, slots, device = self.context, self.slots, like.device
        rows = positions[:1] if common(positions) is not None else positions
        queries = rows[:, None] + np.arange(frames)  # [R, T]
        in_ring = frames <= self.max_chunk
        if in_ring:
            # Once the chunk is written, slot s holds the latest position <= the last one that is
            # s modulo slots; the ring is long enough that this covers every key still visible.
            last = queries[:, -1:]
            keys = last - (last - np.arange(slots)) % slots  # [R, slots]; < 0: never written
            write, past, keep = _Slots(positions, frames, slots, device), None, 0
        else:
            length = min(int(positions.max()), context - 1)  # past keys read, in order
            keys = np.concatenate([queries[:, :1] - length + np.arange(length), queries], axis=1)
            past = _Slots(positions - length, length, slots, device) if length else None
            keep = max(0, frames - slots)
            write = _Slots(positions + keep, frames - keep, slots, device)
        delta = queries[:, :, None] - keys[:, None, :]
        mask = (keys[:, None, :] >= 0) & (delta >= 0) & (delta < context)
        cos, sin = _rotary_angles(torch.from_numpy(queries).to(device), self.head_dim, self.max_period, like.dtype)
        return _Plan(
            cos=cos[:, None],
            sin=sin[:, None],
            mask=torch.from_numpy(mask[:, None]).to(device),
            in_ring=in_ring,
            past=past,
            write=write,
            keep=keep,
        )
