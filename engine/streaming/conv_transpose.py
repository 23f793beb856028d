"""Transposed 1-D convolution that streams exactly.

Offline the layer computes ``conv_transpose1d(x)`` (``(T-1)·s + k`` samples) and crops
``trim[0]`` samples at the start and ``trim[1]`` at the end. That covers EnCodec's causal
``SConvTranspose1d`` (``trim = (0, k - s)``), its centred variant, and ``nn.ConvTranspose1d``
with ``padding=p, output_padding=q`` (``trim = (p, p - q)``, DAC, SNAC, HiFi-GAN).

Streaming: each input frame ``i`` writes ``k`` samples starting at ``i·s``; after ``n`` frames
the first ``n·s`` samples can no longer change. The remaining ``k - s`` samples (the tail) are
kept without bias and added to the next frames' output; the bias is added once, on emission.
At flush the tail is emitted minus the end crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import GEMM_MAX_FRAMES, conv_transpose1d_gemm
from .module import RowInts, StreamContext, StreamingModule, StreamState, advance, row_ints, uniform

__all__ = ["StreamingConvTranspose1d"]


@dataclass
class ConvTransposeState(StreamState):
    tail: Tensor  # [B, C_out, k - s] partial sums, bias excluded
    to_trim: RowInts  # start samples still to drop
    seen: RowInts  # input frames received

    free_rows = ("seen",)  # only flush reads it, one row at a time


class StreamingConvTranspose1d(StreamingModule[ConvTransposeState]):
    """ConvTranspose1d with start and end crops that streams exactly.

    Args:
        in_channels, out_channels, kernel_size, stride, groups, bias: as ``nn.ConvTranspose1d``.
        trim: ``(start, end)`` samples the offline model crops from its output. The end crop
            may not exceed ``kernel_size - stride`` (it would remove already final samples).

    Shapes: ``[B, in_channels, T]`` in, ``[B, out_channels, T·stride - trim[0] ...]`` out.
    Weight layout as ``nn.ConvTranspose1d``: ``[in_channels, out_channels // groups, k]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
        trim: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} < stride {stride}: output would have gaps")
        overlap = kernel_size - stride
        if trim[1] > overlap:
            raise ValueError(
                f"end trim {trim[1]} exceeds kernel_size - stride = {overlap}: not streamable"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.trim = (int(trim[0]), int(trim[1]))
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels // groups, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._overlap = overlap
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, groups={self.groups}, trim={self.trim}"
        )

    def init_state(self, batch_size: int, like: Tensor) -> ConvTransposeState:
        return ConvTransposeState(
            tail=like.new_zeros(batch_size, self.out_channels, self._overlap),
            to_trim=row_ints(batch_size, self.trim[0]),
            seen=row_ints(batch_size),
        )

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = self.state(ctx, x)
        n = x.shape[-1]
        if n == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        advance(state.seen, n)
        if n <= GEMM_MAX_FRAMES and self.groups == 1:
            y = conv_transpose1d_gemm(x, self.weight, self.stride)
        else:
            y = F.conv_transpose1d(x, self.weight, None, self.stride, groups=self.groups)
        final = n * self.stride
        if self._overlap:
            y[..., : self._overlap] += state.tail
            state.tail = y[..., final:]
        out = y[..., :final]
        if self.bias is not None:
            out.add_(self.bias[:, None])  # y is ours and the tail is a disjoint view
        return self._trim_start(out, state) if self.trim[0] else out

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = self._state(ctx)
        if state is None or not uniform(state.seen > 0, "ends (some rows got no input)"):
            return None
        out = state.tail[..., : self._overlap - self.trim[1]]
        if self.bias is not None:
            out = out + self.bias[:, None]
        out = self._trim_start(out, state)
        return out if out.shape[-1] else None

    def output_count(self, n_in: int) -> int:
        return max(0, n_in * self.stride - self.trim[0])

    @staticmethod
    def _trim_start(out: Tensor, state: ConvTransposeState) -> Tensor:
        # Rows past their start crop (every row after the first frames) share the fast path.
        to_trim = uniform(state.to_trim, "start crops")
        if to_trim:
            cut = min(to_trim, out.shape[-1])
            advance(state.to_trim, -cut)
            out = out[..., cut:]
        return out
