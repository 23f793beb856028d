"""An LSTM over ``[B, C, T]`` feature frames that carries ``(h, c)`` between chunks."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .kernels import GEMM_MAX_FRAMES, lstm_gemm
from .module import StreamContext, StreamingModule, StreamState

__all__ = ["StreamingLSTM"]


@dataclass
class LSTMState(StreamState):
    # Rows first, as every state field; nn.LSTM's [num_layers, B, H] is a transposed view.
    hidden: Tensor  # [B, num_layers, hidden_size]
    cell: Tensor  # [B, num_layers, hidden_size]


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

    def init_state(self, batch_size: int, like: Tensor) -> LSTMState:
        shape = (batch_size, self.lstm.num_layers, self.lstm.hidden_size)
        return LSTMState(hidden=like.new_zeros(shape), cell=like.new_zeros(shape))

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        if x.shape[-1] == 0:
            return x
        state = self.state(ctx, x)
        sequence = x.permute(2, 0, 1)  # [T, B, C], the layout nn.LSTM is fastest with
        hidden, cell = state.hidden.transpose(0, 1), state.cell.transpose(0, 1)  # [layers, B, H] views
        if sequence.shape[0] <= GEMM_MAX_FRAMES:
            y, hidden, cell = lstm_gemm(self.lstm, sequence, hidden, cell)
        else:
            y, (hidden, cell) = self.lstm(sequence, (hidden.contiguous(), cell.contiguous()))
        state.hidden, state.cell = hidden.transpose(0, 1), cell.transpose(0, 1)
        if self.skip:
            y = y + sequence
        return y.permute(1, 2, 0)
