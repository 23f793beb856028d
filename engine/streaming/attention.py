"""Local self-attention over non-overlapping windows aligned to the start of the stream.

SNAC 32/44 kHz attend within windows of 32 frames: frames ``[32k, 32k + 32)`` only see each
other, with rotary positions ``0..31`` inside the window. A window is computed once its last
frame has arrived; streaming is exact and releases 32 frames at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .module import StreamContext, StreamingModule, StreamState

__all__ = ["BlockLocalAttention"]


@dataclass
class BlockAttentionState(StreamState):
    # Its length is the stream's phase within the window: rows merge when they are in phase.
    pending: Tensor  # [B, C, k] frames of the window being filled, k < window


class RotaryPositions(nn.Module):
    """Rotary embedding frequencies (``inv_freq``: ``[head_dim / 2]``) for positions ``0..n-1``."""

    inv_freq: Tensor

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)))

    def forward(self, n: int) -> Tensor:
        positions = torch.arange(n, device=self.inv_freq.device).type_as(self.inv_freq)
        freqs = positions[:, None] * self.inv_freq[None, :]
        return torch.cat([freqs, freqs], dim=-1)  # [n, head_dim]


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


class BlockLocalAttention(StreamingModule[BlockAttentionState]):
    """Pre-LayerNorm multi-head attention within windows of ``window`` frames, plus the input.

    Children follow SNAC's ``LocalMHA``: ``norm`` (LayerNorm), ``to_qkv`` and ``to_out``
    (Linear, no bias), ``rel_pos`` (rotary frequencies). A final window shorter than
    ``window`` (only possible at the end of a stream) attends within itself.

    Shapes: ``[B, dim, T]`` in and out.
    """

    def __init__(self, dim: int, window: int = 32, head_dim: int = 64) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim {dim} is not a multiple of head_dim {head_dim}")
        self.dim = dim
        self.window = window
        self.heads = dim // head_dim
        self.head_dim = head_dim
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.rel_pos = RotaryPositions(head_dim)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def attend(self, x: Tensor) -> Tensor:
        """Attention within consecutive windows of ``x`` ``[B, C, n·w]`` (or one window)."""
        batch, channels, length = x.shape
        size = min(self.window, length)
        windows = length // size
        hidden = self.norm(x.transpose(1, 2))
        q, k, v = self.to_qkv(hidden).chunk(3, dim=-1)

        def split(t: Tensor) -> Tensor:  # [B, T, H·D] -> [B, H, W, N, D]
            return t.reshape(batch, windows, size, self.heads, self.head_dim).permute(0, 3, 1, 2, 4)

        q, k, v = split(q), split(k), split(v)
        freqs = self.rel_pos(size)
        cos, sin = freqs.cos(), freqs.sin()
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.permute(0, 2, 3, 1, 4).reshape(batch, length, channels)
        return self.to_out(out).transpose(1, 2) + x

    def init_state(self, batch_size: int, like: Tensor) -> BlockAttentionState:
        return BlockAttentionState(pending=like.new_zeros(batch_size, like.shape[1], 0))

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = self.state(ctx, x)
        frames = torch.cat([state.pending, x], dim=-1) if state.pending.shape[-1] else x
        usable = frames.shape[-1] // self.window * self.window
        state.pending = frames[..., usable:]
        if usable == 0:
            return frames[..., :0]
        return self.attend(frames[..., :usable])

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = self._state(ctx)
        if state is None or state.pending.shape[-1] == 0:
            return None
        out = self.attend(state.pending)
        state.pending = state.pending[..., :0]
        return out

    def output_count(self, n_in: int) -> int:
        return n_in // self.window * self.window
