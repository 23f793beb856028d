"""Per-frame layers for ``[B, C, T]`` streams: they need no history, only (at most) a condition.

Plain ``nn.Module`` subclasses here are stateless and sit in a ``StreamingSequential`` as they
are. :class:`AdaLayerNorm` reads a per-stream condition (which row of its tables to use) from
the :class:`StreamContext`, set once per stream with :func:`set_condition`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import StreamStateError
from .module import RowInts, StreamContext, StreamingModule, StreamState, common, row_ints

__all__ = ["ChannelLayerNorm", "FrameLinear", "AdaLayerNorm", "set_condition", "LogMagnitudePhaseToSpectrum", "Snake1d", "SnakeBeta"]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each frame of ``[B, C, T]``."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class FrameLinear(nn.Linear):
    """``nn.Linear`` applied to each frame of ``[B, C_in, T]`` → ``[B, C_out, T]``."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


@dataclass
class ConditionState(StreamState):
    index: RowInts  # per row: the row of the scale/shift tables it uses

    free_rows = ("index",)


class AdaLayerNorm(StreamingModule[ConditionState]):
    """LayerNorm without affine parameters, then ``x·scale[c] + shift[c]`` for each row's
    condition ``c`` (Vocos-EnCodec: one row per bandwidth). Rows of one batch may have
    different conditions.

    ``step`` takes ``[B, C, T]``; :meth:`normalize_last` takes ``[B, ..., C]``.
    """

    def __init__(self, num_conditions: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.scale = nn.Embedding(num_conditions, dim)
        self.shift = nn.Embedding(num_conditions, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def normalize_last(self, x: Tensor, ctx: StreamContext) -> Tensor:
        state = self._state(ctx)
        if state is None:
            raise StreamStateError("AdaLayerNorm used before its stream's condition was set")
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        index = common(state.index)
        if index is not None:  # one condition for the batch: a table row broadcast, no gather
            return x * self.scale.weight[index] + self.shift.weight[index]
        rows = torch.from_numpy(state.index).to(x.device)
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (self.dim,)  # [B, 1.., C]
        return x * self.scale.weight[rows].view(shape) + self.shift.weight[rows].view(shape)

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        return self.normalize_last(x.transpose(1, 2), ctx).transpose(1, 2)


def set_condition(module: nn.Module, ctx: StreamContext, index: int) -> None:
    """Give every :class:`AdaLayerNorm` under ``module`` the condition ``index`` for every row
    of this stream (rows merged from other streams may later hold others)."""
    for child in module.modules():
        if isinstance(child, AdaLayerNorm):
            ctx.set(child, ConditionState(row_ints(ctx.batch_size, index)))


class LogMagnitudePhaseToSpectrum(nn.Module):
    """``[B, 2·bins, T]`` (log-magnitudes, then phases) → complex ``[B, bins, T]``, the magnitude
    clipped at ``max_magnitude`` (Vocos's ISTFT head)."""

    def __init__(self, max_magnitude: float = 1e2) -> None:
        super().__init__()
        self.max_magnitude = max_magnitude

    def forward(self, x: Tensor) -> Tensor:
        log_magnitude, phase = x.chunk(2, dim=1)
        if x.dtype in (torch.bfloat16, torch.float16):  # no complex type at half precision
            log_magnitude, phase = log_magnitude.float(), phase.float()
        magnitude = torch.clip(torch.exp(log_magnitude), max=self.max_magnitude)
        return torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))


class Snake1d(nn.Module):
    """Snake activation ``x + sin²(αx) / (α + 1e-9)`` with a learned ``α`` per channel
    (``alpha``: ``[1, C, 1]``), as in DAC and SNAC."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))
        self._inverse: tuple[tuple[int, int, torch.dtype], Tensor] | None = None

    def _inverse_alpha(self) -> Tensor:
        alpha = self.alpha
        key = (alpha.data_ptr(), alpha._version, alpha.dtype)
        if self._inverse is None or self._inverse[0] != key:
            self._inverse = (key, (alpha.detach() + 1e-9).reciprocal())
        return self._inverse[1]

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and self.alpha.requires_grad:
            return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)
        # Inference: the same terms (sin² then times 1/(α + 1e-9), plus x) in fewer passes.
        return torch.addcmul(x, self._inverse_alpha(), torch.sin(self.alpha * x).square_())


class SnakeBeta(nn.Module):
    """Snake with separate frequency and magnitude, both stored as logs (Stable Audio's
    Oobleck): ``x + sin²(e^α · x) / (e^β + 1e-9)``; ``alpha``, ``beta``: ``[1, C, 1]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))
        self._cached: tuple[tuple[int, int, int, int, torch.dtype], Tensor, Tensor] | None = None

    def _scales(self) -> tuple[Tensor, Tensor]:
        """``(e^α, 1 / (e^β + 1e-9))``, recomputed only when the parameters change."""
        alpha, beta = self.alpha, self.beta
        key = (alpha.data_ptr(), alpha._version, beta.data_ptr(), beta._version, alpha.dtype)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, alpha.detach().exp(), (beta.detach().exp() + 1e-9).reciprocal())
        return self._cached[1], self._cached[2]

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and (self.alpha.requires_grad or self.beta.requires_grad):
            return x + (self.beta.exp() + 1e-9).reciprocal() * torch.sin(self.alpha.exp() * x).pow(2)
        frequency, inverse_magnitude = self._scales()
        return torch.addcmul(x, inverse_magnitude, torch.sin(frequency * x).square_())
