"""Composites of streaming layers: chains, residual joins with aligned branches, and channel
groups run as rows of their own.

Any plain ``nn.Module`` that acts frame by frame (ELU, Snake, tanh, a 1x1 conv without state)
can sit in a :class:`StreamingSequential`; it is applied to whatever the previous layer emits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from torch import Tensor, nn

from ..errors import ShapeError
from .module import StreamContext, StreamingModule, StreamState, cat_time

__all__ = ["StreamingSequential", "Residual", "AlignedSum", "FoldChannels"]


class StreamingSequential(StreamingModule[None]):
    """A chain of layers; children are named ``0, 1, ...`` like ``nn.Sequential``, or by the
    keys of a single mapping argument (``StreamingSequential({"embed": ..., "norm": ...})``).

    Flushing flushes each layer in order and feeds what it releases through the layers after
    it, so every layer sees the right edge exactly as offline.
    """

    def __init__(self, *layers: nn.Module | Mapping[str, nn.Module]) -> None:
        super().__init__()
        first = layers[0] if len(layers) == 1 else None
        if isinstance(first, Mapping):  # named children, in order
            for name, child in first.items():
                self.add_module(name, child)
        else:
            for index, layer in enumerate(layers):
                assert isinstance(layer, nn.Module)  # a Mapping is only accepted alone
                self.add_module(str(index), layer)
        self._stateful = tuple(isinstance(layer, StreamingModule) for layer in self._children())

    def _children(self) -> list[Any]:
        """The layers in order (typed loosely: stateful ones are called through ``step``)."""
        return [layer for layer in self._modules.values() if layer is not None]

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> nn.Module:
        return self._children()[index]  # type: ignore[no-any-return]

    def __iter__(self):  # type: ignore[override]
        return iter(self._modules.values())

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        for layer, stateful in zip(self._children(), self._stateful):
            x = layer.step(x, ctx) if stateful else layer(x)
        return x

    def flush(self, ctx: StreamContext) -> Tensor | None:
        out: Tensor | None = None
        for layer, stateful in zip(self._children(), self._stateful):
            if stateful:
                released = layer.step(out, ctx) if out is not None else None
                out = cat_time(released, layer.flush(ctx))
            elif out is not None:
                out = layer(out)
        return out

    def output_count(self, n_in: int) -> int:
        for layer, stateful in zip(self._children(), self._stateful):
            if stateful:
                n_in = layer.output_count(n_in)
        return n_in


@dataclass
class ResidualState(StreamState):
    block: Tensor | None  # [B, C, n] branch output waiting for its skip partner
    skip: Tensor | None  # [B, C, n] skip input waiting for the branch (the delay line)


class Residual(StreamingModule[ResidualState]):
    """``shortcut(x) + block(x)`` with the two paths aligned in time.

    When the block lags (a centred conv inside), the skip path is held back by exactly the
    block's delay: each side's frames wait until the other side has produced the same frame.
    ``shortcut=None`` is the identity.
    """

    def __init__(self, block: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.block = block
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def _run(self, module: nn.Module, x: Tensor, ctx: StreamContext) -> Tensor:
        return module.step(x, ctx) if isinstance(module, StreamingModule) else module(x)

    def init_state(self, batch_size: int, like: Tensor) -> ResidualState:
        return ResidualState(block=None, skip=None)

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = self.state(ctx, x)
        return self._join(
            state, self._run(self.shortcut, x, ctx), self._run(self.block, x, ctx)
        )

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = self._state(ctx)
        if state is None:
            return None
        skip = self.shortcut.flush(ctx) if isinstance(self.shortcut, StreamingModule) else None
        block = self.block.flush(ctx) if isinstance(self.block, StreamingModule) else None
        skip = cat_time(state.skip, skip)
        block = cat_time(state.block, block)
        state.skip = state.block = None
        if skip is None or block is None:
            return None
        if skip.shape[-1] != block.shape[-1]:
            raise RuntimeError(  # an architecture error, not a user error
                f"residual paths end with different lengths ({skip.shape[-1]} vs {block.shape[-1]})"
            )
        return skip + block if skip.shape[-1] else None

    def _join(self, state: ResidualState, skip: Tensor, block: Tensor) -> Tensor:
        if state.skip is None and state.block is None and skip.shape[-1] == block.shape[-1]:
            return skip + block  # the common case: both paths in step
        skip = cat_time(state.skip, skip)  # type: ignore[assignment]
        block = cat_time(state.block, block)  # type: ignore[assignment]
        n = min(skip.shape[-1], block.shape[-1])
        state.skip = skip[..., n:] if skip.shape[-1] > n else None
        state.block = block[..., n:] if block.shape[-1] > n else None
        return skip[..., :n] + block[..., :n]

    def output_count(self, n_in: int) -> int:
        counts = [
            m.output_count(n_in) if isinstance(m, StreamingModule) else n_in
            for m in (self.block, self.shortcut)
        ]
        return min(counts)


@dataclass
class AlignedSumState(StreamState):
    pending: list[Tensor | None]  # per branch, [B, C, n] output waiting for the other branches


class AlignedSum(StreamingModule[AlignedSumState]):
    """``(branch_0(x) + branch_1(x) + ...) / divisor``, the branches aligned in time (HiFi-GAN's
    multi-receptive-field fusion: branches with different lookaheads wait for each other).
    Children are named ``0, 1, ...``; the sum runs left to right, as the reference does."""

    def __init__(self, *branches: nn.Module, divisor: float = 1.0) -> None:
        super().__init__()
        for index, branch in enumerate(branches):
            self.add_module(str(index), branch)
        self.divisor = divisor

    def _branches(self) -> list[nn.Module]:
        return list(self._modules.values())  # type: ignore[arg-type]

    def _sum(self, state: AlignedSumState, outputs: list[Tensor | None]) -> Tensor | None:
        joined = [cat_time(old, new) for old, new in zip(state.pending, outputs)]
        present = [j for j in joined if j is not None]
        if len(present) < len(joined):
            state.pending = joined
            return None
        n = min(j.shape[-1] for j in present)
        state.pending = [j[..., n:] if j.shape[-1] > n else None for j in present]
        total = present[0][..., :n]
        for j in present[1:]:
            total = total + j[..., :n]
        return total / self.divisor if self.divisor != 1.0 else total

    def init_state(self, batch_size: int, like: Tensor) -> AlignedSumState:
        return AlignedSumState(pending=[None] * len(self._modules))

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = self.state(ctx, x)
        out = self._sum(state, [b.step(x, ctx) for b in self._branches()])  # type: ignore[operator]
        return out if out is not None else x[:, :0]

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = self._state(ctx)
        if state is None:
            return None
        out = self._sum(state, [b.flush(ctx) for b in self._branches()])  # type: ignore[operator]
        if any(p is not None and p.shape[-1] for p in state.pending):
            raise RuntimeError("aligned-sum branches end with different lengths")  # architecture error
        return out if out is not None and out.shape[-1] else None

    def output_count(self, n_in: int) -> int:
        return min(b.output_count(n_in) for b in self._branches())  # type: ignore[operator]


class FoldedState(StreamState):
    """The state of a :class:`FoldChannels` layer: a private context whose rows are the
    (row, channel group) pairs of the stream, row-major. Selecting, assigning and merging rows
    of the stream maps each row to its ``folds`` inner rows, so folded streams split, merge
    and share stream groups like any other."""

    def __init__(self, inner: StreamContext, folds: int) -> None:
        self.inner = inner
        self.folds = folds

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        return (rows[:, None] * self.folds + np.arange(self.folds)).reshape(-1)

    def phase(self) -> Hashable:
        return (self.folds, self.inner.phase())

    def select(self, rows: np.ndarray) -> "FoldedState":
        return FoldedState(self.inner.select(self._rows(rows)), self.folds)

    def assign(self, rows: np.ndarray, other: "FoldedState") -> "FoldedState":  # type: ignore[override]
        return FoldedState(self.inner.assign(self._rows(rows), other.inner), self.folds)

    @classmethod
    def merge(cls, states: Sequence["FoldedState"]) -> "FoldedState":  # type: ignore[override]
        # Options live on the outer context; the inner one takes them at every call.
        inner = StreamContext.merge([s.inner for s in states], options=states[0].inner.options, rows_hold_options=True)
        return FoldedState(inner, states[0].folds)


class FoldChannels(StreamingModule[FoldedState]):
    """``module`` run on each group of ``C / folds`` channels as a row of its own: ``[B, C, T]``
    → ``[B·folds, C / folds, T]`` → ``module`` → ``[B·folds, C', T']`` → ``[B, folds·C', T']``
    (group ``k`` of the output holds group ``k`` of the input's result). DACVAE encodes each
    channel of stereo audio as a mono signal and concatenates the latents, left first."""

    def __init__(self, module: StreamingModule[Any], folds: int) -> None:
        super().__init__()
        if folds < 1:
            raise ValueError(f"folds must be at least 1, got {folds}")
        self.module = module
        self.folds = folds

    def init_state(self, batch_size: int, like: Tensor) -> FoldedState:
        return FoldedState(StreamContext(batch_size * self.folds), self.folds)

    def _fold(self, x: Tensor) -> Tensor:
        batch, channels, frames = x.shape
        if channels % self.folds:
            raise ShapeError(f"{channels} channels do not split into {self.folds} equal groups")
        return x.reshape(batch * self.folds, channels // self.folds, frames)

    def _unfold(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0] // self.folds, self.folds * y.shape[1], y.shape[2])

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        inner = self.state(ctx, x).inner
        inner.options = ctx.options
        return self._unfold(self.module.step(self._fold(x), inner))

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = self._state(ctx)
        if state is None:
            return None
        state.inner.options = ctx.options
        out = self.module.flush(state.inner)
        return None if out is None else self._unfold(out)

    def output_count(self, n_in: int) -> int:
        return self.module.output_count(n_in)
