"""1-D convolution that streams exactly, for any padding the offline model uses.

Offline, the layer computes ``conv1d(pad(x))`` where ``pad`` adds ``padding[0]`` frames on the
left and ``padding[1]`` (plus, with ``pad_to_stride``, enough to complete the last stride as
EnCodec's ``SConv1d`` does) on the right, in one of three modes:

- ``"zeros"``: zero padding (Vocos, HiFi-GAN, DAC, SNAC);
- ``"reflect"``: mirror the signal at its edges (EnCodec). The left mirror reads frames
  ``1..left`` of the *future* input, so the first output waits for ``left + 1`` frames;
- ``"replicate"``: repeat the edge frame (Mimi's down-sampler).

Streaming keeps the frames that future windows still need (``(k-1)·d + 1 - stride`` of them,
plus the last few raw frames when the right edge is mirrored) and emits every complete window.
A causal conv (all padding on the left) has no lookahead; a centred conv lags by its right pad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import GEMM_MAX_FRAMES, conv1d_gemm
from .module import StreamContext, StreamingModule

__all__ = ["StreamingConv1d", "PadMode"]

PadMode = Literal["zeros", "reflect", "replicate"]


@dataclass
class ConvState:
    buffer: Tensor  # [B, C_in, n] padded-stream frames still needed
    skip: int  # leading frames of `buffer` kept only as right-edge history
    seen: int  # raw input frames received so far
    started: bool  # whether the left padding has been applied


class StreamingConv1d(StreamingModule[ConvState]):
    """Conv1d with explicit (left, right) padding that streams exactly.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as ``nn.Conv1d``.
        padding: ``(left, right)`` frames of padding the offline model adds.
        pad_mode: how padding frames are filled (see the module docstring).
        pad_to_stride: also pad the right edge up to a whole stride (EnCodec), so the output has
            ``ceil((T + left + right - k_eff) / stride) + 1`` frames instead of the floor.

    Shapes: ``[B, in_channels, T]`` in, ``[B, out_channels, T']`` out.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        padding: tuple[int, int] = (0, 0),
        pad_mode: PadMode = "zeros",
        pad_to_stride: bool = False,
    ) -> None:
        super().__init__()
        if pad_mode not in ("zeros", "reflect", "replicate"):
            raise ValueError(f"pad_mode must be zeros, reflect or replicate, got {pad_mode!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.groups = groups
        self.padding = (int(padding[0]), int(padding[1]))
        self.pad_mode: PadMode = pad_mode
        self.pad_to_stride = pad_to_stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

        self.effective_kernel = (kernel_size - 1) * dilation + 1
        left, right = self.padding
        max_right = right + (stride - 1 if pad_to_stride else 0)
        # Raw frames needed before the left edge can be padded exactly as offline does.
        if pad_mode == "zeros":
            self._frames_to_start = 0
        elif pad_mode == "replicate":
            self._frames_to_start = 1 if left or max_right else 0
        else:  # reflect; a shorter stream is padded at flush with EnCodec's short-input rule
            max_pad = max(left, max_right)
            self._frames_to_start = max_pad + 1 if max_pad else 0
        # Raw frames kept at the end of the buffer so the right edge can be mirrored at flush.
        self._history = 0 if pad_mode == "zeros" else max_right + 1

    def reset_parameters(self) -> None:
        # The initialisation nn.Conv1d uses, so random models look like freshly built ones.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, dilation={self.dilation}, groups={self.groups}, "
            f"padding={self.padding}, pad_mode={self.pad_mode!r}, pad_to_stride={self.pad_to_stride}"
        )

    # -- streaming ----------------------------------------------------------------------
    def _new_state(self, x: Tensor) -> ConvState:
        left = self.padding[0]
        if self._frames_to_start == 0:
            buffer = x.new_zeros(x.shape[0], x.shape[1], left)
            return ConvState(buffer=buffer, skip=0, seen=0, started=True)
        return ConvState(buffer=x[..., :0], skip=0, seen=0, started=False)

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = ctx.get(self)
        if state is None:
            state = self._new_state(x)
            ctx.set(self, state)
        if x.shape[-1]:
            state.buffer = torch.cat([state.buffer, x], dim=-1) if state.buffer.shape[-1] else x
            state.seen += x.shape[-1]
        if not state.started:
            if state.seen < self._frames_to_start:
                return self._empty(x)
            state.buffer = self._pad_left(state.buffer)
            state.started = True
        return self._emit(state)

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = ctx.get(self)
        if state is None or state.seen == 0:
            return None
        left, right = self.padding
        if self.pad_to_stride:
            right += (-(left + state.seen + right - self.effective_kernel)) % self.stride
        if not state.started:
            # The whole (short) stream is still buffered: pad it exactly as offline does.
            state.buffer = _pad_offline(state.buffer, left, right, self.pad_mode)
            state.skip = 0
            state.started = True
        elif right:
            state.buffer = torch.cat([state.buffer, self._right_edge(state.buffer, right)], dim=-1)
        out = self._emit(state)
        return out if out.shape[-1] else None

    def output_count(self, n_in: int) -> int:
        if n_in < self._frames_to_start:
            return 0
        available = self.padding[0] + n_in
        if available < self.effective_kernel:
            return 0
        return (available - self.effective_kernel) // self.stride + 1

    # -- internals ----------------------------------------------------------------------
    def _empty(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.out_channels, 0)

    def _pad_left(self, buffer: Tensor) -> Tensor:
        left = self.padding[0]
        if left == 0:
            return buffer
        if self.pad_mode == "reflect":
            edge = buffer[..., 1 : left + 1].flip(-1)
        elif self.pad_mode == "replicate":
            edge = buffer[..., :1].expand(-1, -1, left)
        else:
            edge = buffer.new_zeros(buffer.shape[0], buffer.shape[1], left)
        return torch.cat([edge, buffer], dim=-1)

    def _right_edge(self, buffer: Tensor, right: int) -> Tensor:
        if self.pad_mode == "reflect":
            return buffer[..., -right - 1 : -1].flip(-1)
        if self.pad_mode == "replicate":
            return buffer[..., -1:].expand(-1, -1, right)
        return buffer.new_zeros(buffer.shape[0], buffer.shape[1], right)

    def _emit(self, state: ConvState) -> Tensor:
        buffer = state.buffer
        k_eff, stride = self.effective_kernel, self.stride
        available = buffer.shape[-1] - state.skip
        n_out = (available - k_eff) // stride + 1 if available >= k_eff else 0
        if n_out:
            window = buffer[..., state.skip : state.skip + (n_out - 1) * stride + k_eff]
            if n_out <= GEMM_MAX_FRAMES and self.groups == 1:
                out = conv1d_gemm(window, self.weight, self.bias, stride, self.dilation, n_out)
            else:
                out = F.conv1d(window, self.weight, self.bias, stride, 0, self.dilation, self.groups)
        else:
            out = self._empty(buffer)
        next_start = state.skip + n_out * stride
        keep_from = min(next_start, max(0, buffer.shape[-1] - self._history))
        state.buffer = buffer[..., keep_from:]
        state.skip = next_start - keep_from
        return out


def _pad_offline(x: Tensor, left: int, right: int, mode: PadMode) -> Tensor:
    """Pad ``x`` [B, C, T] as the offline models do, including EnCodec's short-input reflect rule
    (zero-extend the right first when the input is no longer than the padding)."""
    if mode == "zeros":
        return F.pad(x, (left, right))
    if mode == "replicate":
        return F.pad(x, (left, right), mode="replicate")
    length = x.shape[-1]
    max_pad = max(left, right)
    extra = max_pad - length + 1 if length <= max_pad else 0
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]
