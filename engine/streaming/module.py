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

import copy
import dataclasses
from typing import Any, Callable, ClassVar, Generic, Hashable, Iterable, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import StreamStateError

__all__ = [
    "RowInts",
    "StreamContext",
    "StreamState",
    "StreamingModule",
    "advance",
    "cat_time",
    "common",
    "row_ints",
    "uniform",
]

StateT = TypeVar("StateT")
S = TypeVar("S", bound="StreamState")

#: Per-row counters (positions, samples seen, frames released): int64 ``[B]`` on the host, so
#: control flow never waits on a device.
RowInts = np.ndarray


def row_ints(batch_size: int, value: int = 0) -> RowInts:
    """A fresh per-row counter: ``[batch_size]`` int64 filled with ``value``."""
    return np.full(batch_size, value, dtype=np.int64)


def uniform(values: RowInts, what: str) -> int:
    """The one value every row holds; rows that disagree cannot be computed in one call."""
    if len(values) == 1:  # the usual stream; item() is the cheapest read of a numpy scalar
        return values.item()  # type: ignore[no-any-return]
    first = int(values[0])
    if not bool((values == first).all()):
        raise StreamStateError(f"rows of this batch are at different {what} ({values.tolist()}); compute them apart")
    return first


def common(values: RowInts) -> int | None:
    """The one value every row holds, or ``None`` when rows differ (for paths that can also
    compute rows apart, and take a shared fast path when they agree)."""
    if len(values) == 1:
        return values.item()  # type: ignore[no-any-return]
    first = int(values[0])
    return first if bool((values == first).all()) else None


def advance(values: RowInts, n: int) -> None:
    """``values += n`` in place. Layers call this on every chunk: one row (the usual stream)
    adds in Python, since numpy's ufuncs and scalar maths cost microseconds between torch ops."""
    if len(values) == 1:
        values[0] = values.item() + n
    else:
        values += n


class StreamState:
    """Base of the layers' typed states: a dataclass whose every field is per row of the batch.

    Allowed fields: tensors whose dim 0 is the batch row, :data:`RowInts`, lists or tuples of
    those, nested :class:`StreamState`, and ``None``. That is what lets a context select rows and
    merge with others (:meth:`StreamContext.select`, :meth:`StreamContext.merge`).
    """

    #: Per-row counters whose rows may hold different values in one call (positions, seeds,
    #: counts the layer reads per row). Every other :data:`RowInts` field is a *phase*: rows
    #: computed together must agree on it (see :meth:`phase`).
    free_rows: ClassVar[tuple[str, ...]] = ()

    def phase(self) -> Hashable:
        """What rows must share to be computed in one call: tensor shapes beyond the batch,
        which optional fields are set, and the values of every counter not in
        :attr:`free_rows`. Two batches of equal phase can merge and step together; steady
        streams reach one phase whatever their age."""
        return tuple(_phase(getattr(self, f.name)) if f.name not in self.free_rows else _free(getattr(self, f.name))
                     for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def assign(self: S, rows: np.ndarray, other: S) -> S:
        """A copy of this state with ``rows`` replaced by ``other``'s rows (in order); the two
        must be of one phase. Tensors are copied, never written in place (a state may share
        memory with an input or another layer's state)."""
        out = copy.copy(self)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            setattr(out, f.name, _assign(getattr(self, f.name), rows, getattr(other, f.name), f.name))
        return out

    def select(self: S, rows: np.ndarray) -> S:
        """The state of ``rows`` (an int64 index array) only."""
        out = copy.copy(self)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            setattr(out, f.name, _select(getattr(self, f.name), rows))
        return out

    @classmethod
    def merge(cls: type[S], states: Sequence[S]) -> S:
        """The states of several batches stacked along rows, in order."""
        out = copy.copy(states[0])
        for f in dataclasses.fields(out):  # type: ignore[arg-type]
            setattr(out, f.name, _merge([getattr(s, f.name) for s in states], f.name))
        return out


def _phase(value: Any) -> Hashable:
    if value is None:
        return None
    if isinstance(value, Tensor):
        return tuple(value.shape[1:])
    if isinstance(value, np.ndarray):
        return tuple(np.unique(value).tolist())
    if isinstance(value, StreamState):
        return value.phase()
    if isinstance(value, (list, tuple)):
        return tuple(_phase(v) for v in value)
    raise StreamStateError(f"a {type(value).__name__} state field has no phase")


def _free(value: Any) -> Hashable:
    """A free counter only marks that the field is present."""
    return None if value is None else "rows"


def _assign(value: Any, rows: np.ndarray, other: Any, name: str) -> Any:
    if value is None or other is None:
        if value is not None or other is not None:
            raise StreamStateError(f"cannot assign rows: {name!r} is set in one state only")
        return None
    if isinstance(value, Tensor):
        if value.shape[1:] != other.shape[1:]:
            raise StreamStateError(f"cannot assign rows: {name!r} has shape {tuple(other.shape[1:])}, not {tuple(value.shape[1:])}")
        return value.index_copy(0, torch.as_tensor(rows, device=value.device), other.to(value.dtype))
    if isinstance(value, np.ndarray):
        out = value.copy()
        out[rows] = other
        return out
    if isinstance(value, StreamState):
        return value.assign(rows, other)
    if isinstance(value, (list, tuple)):
        if len(value) != len(other):
            raise StreamStateError(f"cannot assign rows: {name!r} has different lengths")
        return type(value)(_assign(v, rows, o, f"{name}[{i}]") for i, (v, o) in enumerate(zip(value, other)))
    raise StreamStateError(f"cannot assign rows of a {type(value).__name__} state field ({name!r})")


def _select(value: Any, rows: np.ndarray) -> Any:
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value[torch.as_tensor(rows, device=value.device)]
    if isinstance(value, np.ndarray):
        return value[rows]
    if isinstance(value, StreamState):
        return value.select(rows)
    if isinstance(value, (list, tuple)):
        return type(value)(_select(v, rows) for v in value)
    raise StreamStateError(f"cannot select rows of a {type(value).__name__} state field")


def _merge(values: list[Any], name: str) -> Any:
    first = values[0]
    if first is None:
        if any(v is not None for v in values):
            raise StreamStateError(f"cannot merge streams: {name!r} is set in some and not in others")
        return None
    if isinstance(first, Tensor):
        shapes = {tuple(v.shape[1:]) for v in values}
        if len(shapes) > 1:
            raise StreamStateError(f"cannot merge streams: {name!r} has shapes {sorted(shapes)} beyond the batch")
        return torch.cat(values, dim=0)
    if isinstance(first, np.ndarray):
        return np.concatenate(values)
    if isinstance(first, StreamState):
        return type(first).merge(values)
    if isinstance(first, (list, tuple)):
        if len({len(v) for v in values}) > 1:
            raise StreamStateError(f"cannot merge streams: {name!r} has different lengths")
        return type(first)(_merge([v[i] for v in values], f"{name}[{i}]") for i in range(len(first)))
    raise StreamStateError(f"cannot merge a {type(first).__name__} state field ({name!r})")


class StreamContext:
    """The state of one stream (of ``batch_size`` parallel signals, its rows) through a model.

    It maps each stateful layer to that layer's typed :class:`StreamState` and holds the
    stream's parsed ``options`` (what the model's parts read per stream). Layers create their
    state on the first input they see (:meth:`StreamingModule.state`); :meth:`reset` forgets
    everything. Rows can be selected, dropped and merged with other contexts' rows at any time,
    so streams can share a batch and leave it again.
    """

    __slots__ = ("batch_size", "options", "_states")

    def __init__(self, batch_size: int = 1, options: Any = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.options = options
        self._states: dict[nn.Module, Any] = {}

    def get(self, module: nn.Module) -> Any | None:
        """The state ``module`` keeps in this stream, or ``None`` before its first input."""
        return self._states.get(module)

    def set(self, module: nn.Module, state: Any) -> None:
        self._states[module] = state

    def state(self, module: nn.Module, create: Callable[[], StateT]) -> StateT:
        """``module``'s state, made by ``create()`` on the first call."""
        state = self._states.get(module)
        if state is None:
            state = self._states[module] = create()
        return state  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Forget every layer's state: the next input starts a new stream."""
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)

    # -- rows ---------------------------------------------------------------------------
    def select(self, rows: Iterable[int]) -> "StreamContext":
        """A new context holding only ``rows`` (in that order), with copies of their state."""
        index = np.asarray(list(rows), dtype=np.int64)
        if index.size == 0 or index.min() < 0 or index.max() >= self.batch_size:
            raise StreamStateError(f"rows must be 0 .. {self.batch_size - 1}, got {index.tolist()}")
        out = StreamContext(int(index.size), self.options)
        out._states = {module: _select(state, index) for module, state in self._states.items()}
        return out

    def drop(self, rows: Iterable[int]) -> "StreamContext":
        """A new context without ``rows``."""
        gone = set(rows)
        return self.select(i for i in range(self.batch_size) if i not in gone)

    def split(self) -> list["StreamContext"]:
        """One context per row."""
        return [self.select([row]) for row in range(self.batch_size)]

    def phase(self) -> Hashable:
        """What contexts must share to merge and step as one batch: each started layer's
        phase (:meth:`StreamingModule.state_phase`), in a fixed order of layers."""
        items = sorted(self._states.items(), key=lambda item: id(item[0]))
        return tuple((id(module), _module_phase(module, state)) for module, state in items)

    def assign(self, rows: Iterable[int], other: "StreamContext") -> "StreamContext":
        """A new context: this one with ``rows`` replaced by ``other``'s rows (in order). Both
        must hold the same layers in one phase (a batch that stepped a subset of its rows and
        stayed in phase), or :class:`~codecstream.errors.StreamStateError`."""
        index = np.asarray(list(rows), dtype=np.int64)
        if index.size != other.batch_size:
            raise StreamStateError(f"{index.size} rows to assign from a context of {other.batch_size}")
        if other._states.keys() != self._states.keys():
            raise StreamStateError("cannot assign rows: the contexts hold different layers")
        out = StreamContext(self.batch_size, self.options)
        out._states = {module: _assign(state, index, other._states[module], type(module).__name__) for module, state in self._states.items()}
        return out

    @staticmethod
    def merge(contexts: Sequence["StreamContext"], *, options: Any = None, rows_hold_options: bool = False) -> "StreamContext":
        """One context whose rows are every given context's rows, in order.

        The streams must be at the same point of their structure (the same layers started,
        buffers of the same shape beyond the batch) and have equal options; otherwise
        :class:`~codecstream.errors.StreamStateError`. With ``rows_hold_options`` the
        caller states that the options differ only in what each row's state already holds
        (a seed or a condition applied at the start), and the result takes ``options``."""
        if not contexts:
            raise StreamStateError("nothing to merge")
        first = contexts[0]
        for other in contexts[1:]:
            if other.options != first.options and not rows_hold_options:
                raise StreamStateError("cannot merge streams with different options")
            if other._states.keys() != first._states.keys():
                raise StreamStateError("cannot merge streams at different points (some layers have not started in all)")
        out = StreamContext(sum(c.batch_size for c in contexts), options if rows_hold_options else first.options)
        out._states = {module: _merge([c._states[module] for c in contexts], type(module).__name__) for module in first._states}
        return out


def _module_phase(module: nn.Module, state: Any) -> Hashable:
    if isinstance(module, StreamingModule):
        return module.state_phase(state)
    return state.phase() if isinstance(state, StreamState) else _phase(state)


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

    # -- state --------------------------------------------------------------------------
    def init_state(self, batch_size: int, like: Tensor) -> StateT:
        """This layer's state for a new stream of ``batch_size`` rows (``like``: the first
        input, for dtype and device). Stateful layers override it."""
        raise NotImplementedError(f"{type(self).__name__} keeps no state")

    def state_phase(self, state: StateT) -> Hashable:
        """The phase of this layer's ``state`` (:meth:`StreamState.phase`); layers whose
        free counters still matter at some point of a stream add what they read."""
        return state.phase() if isinstance(state, StreamState) else _phase(state)

    def state(self, ctx: StreamContext, like: Tensor) -> StateT:
        """This layer's state in ``ctx``, created by :meth:`init_state` on the first input."""
        state = ctx.get(self)
        if state is None:  # no closure per call: this runs for every layer on every chunk
            state = self.init_state(ctx.batch_size, like)
            ctx.set(self, state)
        return state  # type: ignore[no-any-return]

    def _state(self, ctx: StreamContext) -> StateT | None:
        """This layer's state in ``ctx``, or ``None`` before its first input."""
        return ctx.get(self)
