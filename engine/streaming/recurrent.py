"""An LSTM over ``[B, C, T]`` feature frames that carries ``(h, c)`` between chunks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .kernels import GEMM_MAX_FRAMES, lstm_gemm
from .module import StreamContext, StreamingModule

__all__ = ["StreamingLSTM"]


@dataclass
class LSTMState:
    hidden: Tensor  # [num_layers, B, hidden_size]
    cell: Tensor  # [num_layers, B, hidden_size]


class StreamingLSTM(StreamingModule[LSTMState]):
    """A unidirectional ``nn.LSTM`` (child ``lstm``) with an optional skip: ``y = lstm(x) + x``.

    Offline the state starts at zero, as in EnCodec's ``SLSTM``; streaming carries it on, so
    chunking never changes the result. No lookahead, no flush output.

    Shapes: ``[B, dim, T]`` in and out.
    """

    def __init__(self, dim: int, num_layers: int = 2, *, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        if x.shape[-1] == 0:
            return x
        state = ctx.get(self)
        sequence = x.permute(2, 0, 1)  # [T, B, C], the layout nn.LSTM is fastest with
        previous = None if state is None else (state.hidden, state.cell)
        if sequence.shape[0] <= GEMM_MAX_FRAMES:
            y, hidden, cell = lstm_gemm(self.lstm, sequence, *(previous or (None, None)))
        else:
            y, (hidden, cell) = self.lstm(sequence, previous)
        if state is None:
            ctx.set(self, LSTMState(hidden, cell))
        else:
            state.hidden, state.cell = hidden, cell
        if self.skip:
            y = y + sequence
        return y.permute(1, 2, 0)
