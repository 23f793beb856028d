"""The streaming layer contract: state kept outside the module, one code path offline and online.

A :class:`StreamingModule` is an ``nn.Module`` whose per-stream state lives in a
:class:`StreamContext`, never on the module, so one loaded model serves any number of
concurrent streams. The contract, for input and output laid out ``[batch, channels, time]``:

- ``forward(x)`` (``ctx=None``) is the offline model: a fresh context, one step, one flush.
- ``forward(x, ctx)`` / ``step(x, ctx)`` consumes ``x`` (any length, even 0) and returns only
  the output frames that no later input can change.
- ``flush(ctx)`` pads the right edge the way the offline model does and returns the rest, so
  the concatenation of every step and the flush equals the offline output exactly.
- ``output_count(n)`` is the number of frames ``step`` has returned in total after ``n`` input
  frames (before any flush). Streams derive their latency from it; tests check it against the
  frames that really come out.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["StreamContext", "StreamingModule", "cat_time"]

StateT = TypeVar("StateT")


class StreamContext:
    """The state of one stream (of ``batch_size`` parallel signals) through a model.

    It maps each stateful layer to that layer's typed state object. Layers create their
    state on the first input they see; :meth:`reset` forgets everything, so the context can
    start a new stream.
    """

    __slots__ = ("batch_size", "_states")

    def __init__(self, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self._states: dict[nn.Module, Any] = {}

    def get(self, module: nn.Module) -> Any | None:
        """The state ``module`` keeps in this stream, or ``None`` before its first input."""
        return self._states.get(module)

    def set(self, module: nn.Module, state: Any) -> None:
        self._states[module] = state

    def reset(self) -> None:
        """Forget every layer's state: the next input starts a new stream."""
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)


def cat_time(first: Tensor | None, second: Tensor | None) -> Tensor | None:
    """Concatenate along time, treating ``None`` as "nothing"."""
    if first is None:
        return second
    if second is None or second.shape[-1] == 0:
        return first
    if first.shape[-1] == 0:
        return second
    return torch.cat([first, second], dim=-1)


class StreamingModule(nn.Module, Generic[StateT]):
    """Base class of the engine's stateful layers (see the module docstring for the contract)."""

    def forward(self, x: Tensor, ctx: StreamContext | None = None) -> Tensor:
        """``x``: ``[B, C_in, T]``. Offline output when ``ctx`` is None, else the newly final output."""
        if ctx is not None:
            return self.step(x, ctx)
        ctx = StreamContext(x.shape[0])
        out = cat_time(self.step(x, ctx), self.flush(ctx))
        assert out is not None
        return out

    # -- to implement -------------------------------------------------------------------
    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        raise NotImplementedError

    def flush(self, ctx: StreamContext) -> Tensor | None:
        """The remaining output at end of stream, or ``None`` when there is none."""
        return None

    def output_count(self, n_in: int) -> int:
        """Output frames returned by ``step`` in total after ``n_in`` input frames."""
        return n_in

    # -- helpers ------------------------------------------------------------------------
    def _state(self, ctx: StreamContext) -> StateT | None:
        return ctx.get(self)
