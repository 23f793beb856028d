"""Sliding windows over a stream: the buffering shared by convolutions and the STFT.

A :class:`FramedModule` computes one output frame per window of ``window`` input frames,
moved by ``stride``, over the input padded offline-style: ``padding[0]`` frames on the left and
``padding[1]`` (plus, with ``pad_to_stride``, enough to complete the last stride as EnCodec's
``SConv1d`` does) on the right, in one of three modes:

- ``"zeros"``: zero padding (Vocos, HiFi-GAN, DAC, SNAC);
- ``"reflect"``: mirror the signal at its edges (EnCodec, the STFT with ``center=True``). The
  left mirror reads frames ``1..left`` of the *future* input, so the first output waits for
  ``left + 1`` frames;
- ``"replicate"``: repeat the edge frame (Mimi's down-sampler).

Streaming keeps the frames that future windows still need (``window - stride`` of them, plus
the last few raw frames when the right edge is mirrored) and computes every complete window.
A window with all padding on the left has no lookahead; a centred one lags by its right pad.
Subclasses implement :meth:`FramedModule._compute`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .module import RowInts, StreamContext, StreamingModule, StreamState, advance, row_ints, uniform

__all__ = ["FramedModule", "PadMode"]

PadMode = Literal["zeros", "reflect", "replicate"]


@dataclass
class FrameState(StreamState):
    buffer: Tensor  # [B, C_in, n] padded-stream frames still needed (one length for all rows)
    skip: RowInts  # leading frames of `buffer` kept only as right-edge history
    seen: RowInts  # raw input frames received
    started: RowInts  # 1 once the left padding has been applied

    # Unstarted rows hold every frame they saw, so `buffer`'s length carries `seen` then.
    free_rows = ("seen",)


class FramedModule(StreamingModule[FrameState]):
    """Base of layers that compute one output frame per padded input window.

    Args:
        window: input frames per output frame (a conv's effective kernel ``(k - 1)·d + 1``).
        stride: input frames between consecutive windows.
        padding: ``(left, right)`` frames of padding the offline model adds.
        pad_mode: how padding frames are filled (see the module docstring).
        pad_to_stride: also pad the right edge up to a whole stride (EnCodec), so the output has
            ``ceil`` rather than ``floor`` frames.
        out_channels: channels of the output (for empty outputs).
    """

    def __init__(
        self,
        *,
        window: int,
        stride: int,
        padding: tuple[int, int],
        pad_mode: PadMode,
        pad_to_stride: bool,
        out_channels: int,
    ) -> None:
        super().__init__()
        if pad_mode not in ("zeros", "reflect", "replicate"):
            raise ValueError(f"pad_mode must be zeros, reflect or replicate, got {pad_mode!r}")
        self.window_frames = window
        self.stride = stride
        self.padding = (int(padding[0]), int(padding[1]))
        self.pad_mode: PadMode = pad_mode
        self.pad_to_stride = pad_to_stride
        self.out_channels = out_channels
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
        # Without history, windows that overlap or touch never leave a skip: `step` then reads
        # no counter but `seen` (each numpy access costs, per layer and chunk).
        self._skips = self._history > 0 or stride > window

    def _compute(self, windows: Tensor, n_out: int) -> Tensor:
        """``n_out`` output frames from ``windows`` ``[B, C, (n_out - 1)·stride + window]``."""
        raise NotImplementedError

    # -- streaming ----------------------------------------------------------------------
    def init_state(self, batch_size: int, like: Tensor) -> FrameState:
        """Zero padding is known up front; the other modes wait for the frames they mirror."""
        started = self._frames_to_start == 0
        left = self.padding[0] if started else 0
        return FrameState(
            buffer=like.new_zeros(batch_size, like.shape[1], left),
            skip=row_ints(batch_size),
            seen=row_ints(batch_size),
            started=row_ints(batch_size, int(started)),
        )

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = self.state(ctx, x)
        if x.shape[-1]:
            state.buffer = torch.cat([state.buffer, x], dim=-1) if state.buffer.shape[-1] else x
            advance(state.seen, x.shape[-1])
        if self._frames_to_start and not uniform(state.started, "start-up phases"):
            # Unstarted rows hold all their frames, so equal buffers mean equal counts.
            if uniform(state.seen, "frames seen") < self._frames_to_start:
                return self._empty(x)
            state.buffer = self._pad_left(state.buffer)
            state.started[:] = 1
        return self._emit(state)

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = self._state(ctx)
        if state is None or not uniform(state.seen > 0, "ends (some rows got no input)"):
            return None
        left, right = self.padding
        if self.pad_to_stride:
            # Per row, then one value: rows of one buffer layout end at the same stride phase.
            extra = (-(left + state.seen + right - self.window_frames)) % self.stride
            right += uniform(extra, "stride phases")
        if not uniform(state.started, "start-up phases"):
            # The whole (short) stream is still buffered: pad it exactly as offline does.
            state.buffer = _pad_offline(state.buffer, left, right, self.pad_mode)
            state.skip[:] = 0
            state.started[:] = 1
        elif right:
            state.buffer = torch.cat([state.buffer, self._right_edge(state.buffer, right)], dim=-1)
        out = self._emit(state)
        return out if out.shape[-1] else None

    def output_count(self, n_in: int) -> int:
        if n_in < self._frames_to_start:
            return 0
        available = self.padding[0] + n_in
        if available < self.window_frames:
            return 0
        return (available - self.window_frames) // self.stride + 1

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

    def _emit(self, state: FrameState) -> Tensor:
        buffer = state.buffer
        window, stride = self.window_frames, self.stride
        skip = uniform(state.skip, "buffer offsets") if self._skips else 0
        available = buffer.shape[-1] - skip
        n_out = (available - window) // stride + 1 if available >= window else 0
        if n_out:
            out = self._compute(buffer[..., skip : skip + (n_out - 1) * stride + window], n_out)
        else:
            out = self._empty(buffer)
        next_start = skip + n_out * stride
        keep_from = min(next_start, max(0, buffer.shape[-1] - self._history))
        state.buffer = buffer[..., keep_from:]
        if next_start != keep_from or skip:
            state.skip.fill(next_start - keep_from)
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
