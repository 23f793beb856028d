"""GEMM formulations of conv, transposed conv and LSTM for the short inputs of streaming.

PyTorch's CPU kernels are tuned for long inputs. On a streaming chunk (one or two frames at
the codec frame rate) ``F.conv1d`` and ``F.conv_transpose1d`` fall back to paths that repack
the weights on every call, and oneDNN's LSTM costs milliseconds per call; a plain matrix
product reads each weight once and is 3-10x faster there. The layers call these below
``GEMM_MAX_FRAMES`` output frames and the library kernels above it, so offline runs keep the
library speed. Both compute the same sums in another order: results agree to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "GEMM_MAX_FRAMES",
    "conv1d_gemm",
    "depthwise_conv1d_gemm",
    "conv_transpose1d_gemm",
    "lstm_gemm",
    "overlap_add",
]

GEMM_MAX_FRAMES = 32


def conv1d_gemm(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, dilation: int, n_out: int) -> Tensor:
    """``F.conv1d(x, weight, bias, stride, dilation=dilation)`` for ``groups=1``, ``n_out`` frames.

    ``x``: ``[B, C, L]`` with ``L >= (n_out - 1)·stride + (k - 1)·dilation + 1``.
    """
    batch, channels, _ = x.shape
    out_channels, _, kernel = weight.shape
    s_b, s_c, s_t = x.stride()
    # [B, n_out, C, k] windows without copying, then one copy into GEMM layout.
    windows = x.as_strided((batch, n_out, channels, kernel), (s_b, stride * s_t, s_c, dilation * s_t))
    columns = windows.reshape(batch * n_out, channels * kernel)
    flat_weight = weight.reshape(out_channels, channels * kernel).t()
    if bias is not None:
        out = torch.addmm(bias, columns, flat_weight)
    else:
        out = columns @ flat_weight
    return out.view(batch, n_out, out_channels).transpose(1, 2)


def depthwise_conv1d_gemm(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, dilation: int, n_out: int) -> Tensor:
    """Depthwise ``F.conv1d`` (``groups = channels``, weight ``[C, 1, k]``) for ``n_out`` frames,
    as one batched matrix-vector product over strided windows."""
    batch, channels, _ = x.shape
    kernel = weight.shape[-1]
    s_b, s_c, s_t = x.stride()
    windows = x.as_strided((batch, channels, n_out, kernel), (s_b, s_c, stride * s_t, dilation * s_t))
    out = torch.matmul(windows, weight[:, 0, :, None])[..., 0]
    return out + bias[:, None] if bias is not None else out


def overlap_add(frames: Tensor, hop: int) -> Tensor:
    """Overlap-add ``frames`` ``[B, n, k]`` at ``hop``: ``[B, (n - 1)·hop + k]``.

    Each frame is cut into ``ceil(k / hop)`` blocks of ``hop`` samples and the blocks are added
    at their offsets: a few tensor additions instead of a scatter.
    """
    batch, n, kernel = frames.shape
    blocks = -(-kernel // hop)
    if blocks * hop != kernel:
        frames = torch.nn.functional.pad(frames, (0, blocks * hop - kernel))
    frames = frames.reshape(batch, n, blocks, hop)
    out = frames.new_zeros(batch, n + blocks - 1, hop)
    for q in range(blocks):
        out[:, q : q + n, :] += frames[:, :, q, :]
    return out.view(batch, (n + blocks - 1) * hop)[:, : (n - 1) * hop + kernel]


def conv_transpose1d_gemm(x: Tensor, weight: Tensor, stride: int) -> Tensor:
    """``F.conv_transpose1d(x, weight, None, stride)`` for ``groups=1``: ``[B, C_out, (n-1)·s + k]``.

    ``weight``: ``[C_in, C_out, k]``. One GEMM gives every frame's ``k`` outputs per channel;
    :func:`overlap_add` places them.
    """
    batch, in_channels, n = x.shape
    _, out_channels, kernel = weight.shape
    columns = x.transpose(1, 2).reshape(batch * n, in_channels) @ weight.reshape(in_channels, out_channels * kernel)
    # [B, n, C_out, k] -> [B·C_out, n, k]: one overlap-add per output channel.
    columns = columns.view(batch, n, out_channels, kernel).permute(0, 2, 1, 3).reshape(batch * out_channels, n, kernel)
    return overlap_add(columns, stride).view(batch, out_channels, -1)


def lstm_gemm(
    lstm: torch.nn.LSTM, sequence: Tensor, hidden: Tensor | None, cell: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Run ``lstm`` (unidirectional, ``batch_first=False``) step by step with plain GEMMs.

    ``sequence``: ``[T, B, C]``; ``hidden``/``cell``: ``[layers, B, H]`` or None for zeros.
    Returns ``(output [T, B, H], hidden, cell)`` like ``nn.LSTM``.
    """
    steps, batch, _ = sequence.shape
    layers, size = lstm.num_layers, lstm.hidden_size
    if hidden is None or cell is None:
        hidden = sequence.new_zeros(layers, batch, size)
        cell = sequence.new_zeros(layers, batch, size)
    new_hidden, new_cell = [], []
    layer_input = sequence
    for layer in range(layers):
        w_ih = getattr(lstm, f"weight_ih_l{layer}")
        w_hh = getattr(lstm, f"weight_hh_l{layer}")
        bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        # Input projections of all steps at once; only the recurrence is sequential.
        projected = torch.addmm(bias, layer_input.reshape(steps * batch, -1), w_ih.t()).view(steps, batch, -1)
        h, c = hidden[layer], cell[layer]
        outputs = []
        for t in range(steps):
            gates = torch.addmm(projected[t], h, w_hh.t())
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        layer_input = torch.stack(outputs)
        new_hidden.append(h)
        new_cell.append(c)
    return layer_input, torch.stack(new_hidden), torch.stack(new_cell)
