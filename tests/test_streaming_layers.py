"""Property tests of every streaming primitive: random configs, random chunkings, float64.

For each layer: (1) the offline forward equals an independent plain-torch definition of the
layer, (2) any chunking of the stream concatenates to the offline output, (3) ``output_count``
matches what ``step`` really releases, (4) streams on one module are independent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from codecstream.streaming import (
    Residual,
    StreamContext,
    StreamingConv1d,
    StreamingConvTranspose1d,
    StreamingLSTM,
    StreamingSequential,
)
from codecstream.streaming.kernels import conv1d_gemm, conv_transpose1d_gemm, lstm_gemm

SETTINGS = settings(max_examples=150, deadline=None)
TOL = 1e-12


def stream(module, x, sizes):
    ctx = StreamContext(x.shape[0])
    parts, start = [], 0
    for size in sizes:
        parts.append(module(x[..., start : start + size], ctx))
        start += size
    tail = module.flush(ctx)
    if tail is not None:
        parts.append(tail)
    return torch.cat(parts, dim=-1)


def random_sizes(draw, total):
    sizes, covered = [], 0
    while covered < total:
        size = draw(st.integers(1, max(1, total // 2 + 1)))
        size = min(size, total - covered)
        sizes.append(size)
        covered += size
    return sizes


def reference_pad(x, left, right, mode):
    """EnCodec's pad1d, including its short-input reflect rule, written out independently."""
    if mode == "zeros":
        return F.pad(x, (left, right))
    if mode == "replicate":
        return F.pad(x, (left, right), mode="replicate")
    length = x.shape[-1]
    max_pad = max(left, right)
    extra = max_pad - length + 1 if length <= max_pad else 0
    padded = F.pad(F.pad(x, (0, extra)), (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


@st.composite
def conv_cases(draw):
    groups_kind = draw(st.sampled_from(["one", "depthwise"]))
    c_in = draw(st.integers(1, 4))
    c_out = c_in if groups_kind == "depthwise" else draw(st.integers(1, 4))
    groups = c_in if groups_kind == "depthwise" else 1
    kernel = draw(st.integers(1, 9))
    stride = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3))
    k_eff = (kernel - 1) * dilation + 1
    left = draw(st.integers(0, k_eff))
    right = draw(st.integers(0, k_eff))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate"]))
    to_stride = draw(st.booleans())
    length = draw(st.integers(1, 70))
    sizes = random_sizes(draw, length)
    return c_in, c_out, groups, kernel, stride, dilation, (left, right), mode, to_stride, length, sizes


@SETTINGS
@given(conv_cases())
def test_conv1d_streams_exactly(case):
    c_in, c_out, groups, kernel, stride, dilation, padding, mode, to_stride, length, sizes = case
    conv = StreamingConv1d(
        c_in, c_out, kernel, stride=stride, dilation=dilation, groups=groups,
        padding=padding, pad_mode=mode, pad_to_stride=to_stride,
    ).double()
    x = torch.randn(2, c_in, length, dtype=torch.float64)
    left, right = padding
    k_eff = (kernel - 1) * dilation + 1
    if to_stride:
        right += (-(left + length + right - k_eff)) % stride
    padded = reference_pad(x, left, right, mode)
    if padded.shape[-1] < k_eff:
        expected = x.new_zeros(2, c_out, 0)
    else:
        expected = F.conv1d(padded, conv.weight, conv.bias, stride, 0, dilation, groups)
    offline = conv(x)
    assert offline.shape == expected.shape
    assert torch.allclose(offline, expected, atol=TOL, rtol=0)
    streamed = stream(conv, x, sizes)
    assert streamed.shape == expected.shape
    assert torch.allclose(streamed, expected, atol=TOL, rtol=0)


@SETTINGS
@given(conv_cases())
def test_conv1d_output_count_matches_release(case):
    c_in, c_out, groups, kernel, stride, dilation, padding, mode, to_stride, length, _ = case
    conv = StreamingConv1d(
        c_in, c_out, kernel, stride=stride, dilation=dilation, groups=groups,
        padding=padding, pad_mode=mode, pad_to_stride=to_stride,
    ).double()
    ctx = StreamContext(1)
    released = 0
    for n in range(1, length + 1):
        released += conv(torch.randn(1, c_in, 1, dtype=torch.float64), ctx).shape[-1]
        assert released == conv.output_count(n)


@st.composite
def transpose_cases(draw):
    c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.integers(1, 5))
    kernel = draw(st.integers(stride, 3 * stride + 2))
    overlap = kernel - stride
    trim_end = draw(st.integers(0, overlap))
    trim_start = draw(st.integers(0, kernel + stride))
    length = draw(st.integers(1, 30))
    return c_in, c_out, kernel, stride, (trim_start, trim_end), length, random_sizes(draw, length)


@SETTINGS
@given(transpose_cases())
def test_conv_transpose_streams_exactly(case):
    c_in, c_out, kernel, stride, trim, length, sizes = case
    layer = StreamingConvTranspose1d(c_in, c_out, kernel, stride=stride, trim=trim).double()
    x = torch.randn(2, c_in, length, dtype=torch.float64)
    full = F.conv_transpose1d(x, layer.weight, layer.bias, stride)
    expected = full[..., trim[0] : full.shape[-1] - trim[1]]
    offline = layer(x)
    assert offline.shape == expected.shape
    assert torch.allclose(offline, expected, atol=TOL, rtol=0)
    streamed = stream(layer, x, sizes)
    assert torch.allclose(streamed, expected, atol=TOL, rtol=0)
    ctx, released = StreamContext(1), 0
    for n in range(1, length + 1):
        released += layer(torch.randn(1, c_in, 1, dtype=torch.float64), ctx).shape[-1]
        assert released == layer.output_count(n)


@SETTINGS
@given(
    st.integers(1, 4), st.integers(0, 4), st.integers(1, 3), st.integers(1, 60), st.data()
)
def test_residual_aligns_a_lagging_branch(channels, half_kernel, dilation, length, data):
    """x + conv_same(x): the skip path must be delayed by the branch's lookahead."""
    kernel = 2 * half_kernel + 1
    pad = half_kernel * dilation
    conv = StreamingConv1d(channels, channels, kernel, dilation=dilation, padding=(pad, pad)).double()
    block = Residual(StreamingSequential(torch.nn.ELU(), conv))
    x = torch.randn(2, channels, length, dtype=torch.float64)
    expected = x + F.conv1d(F.pad(F.elu(x), (pad, pad)), conv.weight, conv.bias, dilation=dilation)
    assert torch.allclose(block(x), expected, atol=TOL, rtol=0)
    sizes = random_sizes(data.draw, length)
    assert torch.allclose(stream(block, x, sizes), expected, atol=TOL, rtol=0)
    assert block.output_count(length) == max(0, length - pad)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 3), st.booleans(), st.integers(1, 80), st.data())
def test_lstm_streams_exactly(dim, layers, skip, length, data):
    layer = StreamingLSTM(dim, layers, skip=skip).double()
    x = torch.randn(2, dim, length, dtype=torch.float64)
    y, _ = layer.lstm(x.permute(2, 0, 1))
    expected = (y + x.permute(2, 0, 1) if skip else y).permute(1, 2, 0)
    assert torch.allclose(layer(x), expected, atol=TOL, rtol=0)
    assert torch.allclose(stream(layer, x, random_sizes(data.draw, length)), expected, atol=TOL, rtol=0)


@SETTINGS
@given(
    st.integers(1, 5), st.integers(1, 5), st.integers(1, 7), st.integers(1, 4),
    st.integers(1, 3), st.integers(1, 12),
)
def test_gemm_kernels_equal_torch(c_in, c_out, kernel, stride, dilation, n_out):
    x = torch.randn(2, c_in, (n_out - 1) * stride + (kernel - 1) * dilation + 1, dtype=torch.float64)
    weight = torch.randn(c_out, c_in, kernel, dtype=torch.float64)
    bias = torch.randn(c_out, dtype=torch.float64)
    expected = F.conv1d(x, weight, bias, stride, 0, dilation)
    assert torch.allclose(conv1d_gemm(x, weight, bias, stride, dilation, n_out), expected, atol=TOL)
    y = torch.randn(2, c_in, n_out, dtype=torch.float64)
    weight_t = torch.randn(c_in, c_out, kernel, dtype=torch.float64)
    assert torch.allclose(
        conv_transpose1d_gemm(y, weight_t, stride), F.conv_transpose1d(y, weight_t, None, stride), atol=TOL
    )


def test_lstm_gemm_equals_nn_lstm_with_state():
    lstm = torch.nn.LSTM(5, 5, 2).double()
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    h0, c0 = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    expected, (h, c) = lstm(x, (h0, c0))
    out, h2, c2 = lstm_gemm(lstm, x, h0, c0)
    for a, b in ((out, expected), (h2, h), (c2, c)):
        assert torch.allclose(a, b, atol=TOL)


def test_streams_on_one_module_are_independent_and_reset_is_clean():
    conv = StreamingConv1d(2, 3, 5, padding=(4, 0), pad_mode="reflect").double()
    a, b = torch.randn(1, 2, 50, dtype=torch.float64), torch.randn(1, 2, 50, dtype=torch.float64)
    ctx_a, ctx_b = StreamContext(1), StreamContext(1)
    parts_a, parts_b = [], []
    for start in range(0, 50, 7):  # interleave two streams on one module
        parts_a.append(conv(a[..., start : start + 7], ctx_a))
        parts_b.append(conv(b[..., start : start + 7], ctx_b))
    parts_a.append(conv.flush(ctx_a))
    parts_b.append(conv.flush(ctx_b))
    joined_a = torch.cat([p for p in parts_a if p is not None], -1)
    joined_b = torch.cat([p for p in parts_b if p is not None], -1)
    assert torch.allclose(joined_a, conv(a), atol=TOL, rtol=0)
    assert torch.allclose(joined_b, conv(b), atol=TOL, rtol=0)
    ctx_a.reset()
    assert len(ctx_a) == 0
    again = [conv(a, ctx_a), conv.flush(ctx_a)]
    assert torch.equal(torch.cat([p for p in again if p is not None], -1), conv(a))


def test_conv_transpose_rejects_an_end_crop_it_cannot_stream():
    import pytest

    with pytest.raises(ValueError, match="not streamable"):
        StreamingConvTranspose1d(1, 1, 4, stride=2, trim=(0, 3))
    with pytest.raises(ValueError, match="gaps"):
        StreamingConvTranspose1d(1, 1, 2, stride=3)
