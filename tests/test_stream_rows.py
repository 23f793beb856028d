"""Rows of a stream batch: every stateful layer's state splits into rows and merges back.

For each layer (float64, small random configs): a batch of streams pushed some chunks, split
into one context per row and continued apart, equals the batch continued; single-row streams
pushed the same chunks, merged into one batch and continued, equal the streams continued apart.
Rows whose per-row values only feed tensor maths (transformer positions, conditions, noise
seeds) may differ; streams at different points of their structure refuse to merge.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pytest
import torch
from torch import Tensor, nn

from codecstream.errors import StreamStateError
from codecstream.models.snac.layers import NoiseBlock, PositionalNoise, set_noise
from codecstream.streaming import (
    Residual,
    StreamContext,
    StreamingConv1d,
    StreamingConvTranspose1d,
    StreamingLSTM,
    StreamingModule,
    StreamingSequential,
)
from codecstream.streaming.attention import BlockLocalAttention
from codecstream.streaming.containers import AlignedSum
from codecstream.streaming.pointwise import AdaLayerNorm, set_condition
from codecstream.streaming.spectral import StreamingISTFT, StreamingLogMel, mel_filterbank
from codecstream.streaming.transformer import StreamingTransformer

TOL = 1e-10
ROWS = 3

Prepare = Callable[[StreamContext, int], None]  # (context, stream number): per-stream set-up


def push(module: StreamingModule, ctx: StreamContext, x: Tensor, sizes: Sequence[int], *, flush: bool = False) -> Tensor:
    """``x`` pushed in chunks of ``sizes`` (then flushed): the outputs joined along time."""
    parts, start = [], 0
    for size in sizes:
        parts.append(module(x[..., start : start + size], ctx))
        start += size
    assert start == x.shape[-1]
    if flush:
        tail = module.flush(ctx)
        if tail is not None:
            parts.append(tail)
    return torch.cat(parts, dim=-1) if parts else x[..., :0]


def new_context(batch_size: int, stream: int, prepare: Prepare | None) -> StreamContext:
    ctx = StreamContext(batch_size)
    if prepare is not None:
        prepare(ctx, stream)
    return ctx


def assert_rows_equal(joint: Tensor, apart: Sequence[Tensor]) -> None:
    assert joint.shape[0] == len(apart)
    for row, alone in enumerate(apart):
        assert joint[row : row + 1].shape == alone.shape
        assert torch.allclose(joint[row : row + 1], alone, atol=TOL, rtol=0), f"row {row}"


def check_split(module: StreamingModule, x: Tensor, before: Sequence[int], after: Sequence[int], prepare: Prepare | None = None) -> None:
    """A batch pushed ``before``, split into rows: each row continued alone equals the batch."""
    cut, end = sum(before), sum(before) + sum(after)
    ctx = new_context(x.shape[0], 0, prepare)
    push(module, ctx, x[..., :cut], before)
    rows = ctx.split()
    joint = push(module, ctx, x[..., cut:end], after, flush=True)
    apart = [push(module, rows[r], x[r : r + 1, ..., cut:end], after, flush=True) for r in range(x.shape[0])]
    assert_rows_equal(joint, apart)


def check_merge(
    module: StreamingModule,
    x: Tensor,
    before: Sequence[Sequence[int]],
    after: Sequence[int],
    prepare: Prepare | None = None,
) -> None:
    """Single-row streams, row ``r`` pushed ``before[r]``, merged: the batch continued equals
    each stream continued alone. ``x[r]`` holds row ``r``'s past then its continuation."""
    contexts = []
    for r, sizes in enumerate(before):
        ctx = new_context(1, r, prepare)
        push(module, ctx, x[r : r + 1, ..., : sum(sizes)], sizes)
        contexts.append(ctx)
    merged = StreamContext.merge(contexts)
    assert merged.batch_size == len(contexts)
    rest = torch.cat([x[r : r + 1, ..., sum(sizes) : sum(sizes) + sum(after)] for r, sizes in enumerate(before)])
    joint = push(module, merged, rest, after, flush=True)
    apart = [push(module, contexts[r], rest[r : r + 1], after, flush=True) for r in range(len(contexts))]
    assert_rows_equal(joint, apart)


def check_rows(module: StreamingModule, x: Tensor, before: Sequence[int], after: Sequence[int], prepare: Prepare | None = None) -> None:
    """Split and merge, every row pushed the same chunks."""
    check_split(module, x, before, after, prepare)
    check_merge(module, x, [before] * x.shape[0], after, prepare)


def signal(channels: int, length: int, seed: int = 0) -> Tensor:
    return torch.randn(ROWS, channels, length, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


# -- convolutions and framing ------------------------------------------------------------
CONVS = {
    "zeros-causal": dict(kernel_size=5, stride=2, padding=(4, 0)),
    "zeros-centred-dilated": dict(kernel_size=3, dilation=2, padding=(2, 2)),
    "zeros-depthwise": dict(kernel_size=4, stride=2, padding=(1, 2), groups=3),
    "reflect-to-stride": dict(kernel_size=4, stride=2, padding=(2, 1), pad_mode="reflect", pad_to_stride=True),
    "reflect-centred": dict(kernel_size=7, padding=(3, 3), pad_mode="reflect"),
    "replicate": dict(kernel_size=4, stride=2, padding=(3, 2), pad_mode="replicate", pad_to_stride=True),
}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv_rows_split_and_merge(name):
    options = CONVS[name]
    out_channels = 3 if options.get("groups") else 4
    conv = StreamingConv1d(3, out_channels, **options).double()
    check_rows(conv, signal(3, 40), [2, 6, 4], [4, 2, 8, 2, 6])


def test_conv_transpose_rows_split_and_merge():
    layer = StreamingConvTranspose1d(3, 2, 6, stride=3, trim=(4, 1)).double()
    check_rows(layer, signal(3, 20), [1, 3], [2, 1, 4, 1])
    check_rows(layer, signal(3, 20), [], [1, 3])  # split before the first input


def test_log_mel_rows_split_and_merge():
    filterbank = mel_filterbank(sample_rate=1600, n_fft=16, n_mels=5)
    mel = StreamingLogMel(n_fft=16, hop_length=4, filterbank=filterbank, padding=(8, 8)).double()
    check_rows(mel, signal(1, 120).abs() + 0.1, [12, 8], [4, 16, 8, 12])


def test_lstm_rows_split_and_merge():
    lstm = StreamingLSTM(4, 2).double()
    check_rows(lstm, signal(4, 60), [3, 5], [1, 7, 40])  # 40 frames: nn.LSTM's kernel, not the GEMM


@pytest.mark.parametrize("padding", ["same", "center"])
def test_istft_rows_split_and_merge(padding):
    istft = StreamingISTFT(16, 4, padding=padding).double()
    spectra = torch.randn(ROWS, 9, 30, dtype=torch.complex128)
    check_rows(istft, spectra, [1, 3], [2, 1, 5, 1])


# -- attention ---------------------------------------------------------------------------
def small_transformer() -> StreamingTransformer:
    model = StreamingTransformer(16, num_heads=2, num_layers=2, ff_dim=24, context=6, layer_scale=0.5, max_chunk=3)
    return model.double()


def test_transformer_rows_split_and_merge():
    # 3 frames and less stay in the ring; 9 read the past out of it; 12 > its 8 slots.
    check_rows(small_transformer(), signal(16, 60), [2, 3, 9], [1, 3, 2, 12, 1, 9])


def test_transformer_merges_streams_of_different_ages():
    model = small_transformer()
    x = signal(16, 80)
    # Three ages (and ring phases); the continuation mixes ring steps and long chunks.
    check_merge(model, x, [[7], [1, 2], [3, 9, 2, 11]], [1, 2, 3, 10, 1, 2, 3])
    check_merge(model, x, [[0], [2], [13]], [3, 1, 20])  # an empty push starts a stream at position 0


def test_transformer_ages_in_one_batch_equal_the_offline_model():
    model = small_transformer()
    x = signal(16, 50)
    old, young = StreamContext(1), StreamContext(1)
    head = push(model, old, x[:1, :, :20], [3, 3, 14])
    model(x[1:2, :, :0], young)  # started, at position 0
    merged = StreamContext.merge([old, young])
    both = torch.cat([x[:1, :, 20:50], x[1:2, :, :30]])
    out = push(model, merged, both, [2, 1, 3, 24])
    assert torch.allclose(torch.cat([head, out[:1]], -1), model(x[:1]), atol=TOL, rtol=0)
    assert torch.allclose(out[1:], model(x[1:2, :, :30]), atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["conv", "conv-transpose", "lstm", "istft"])
def test_streams_of_different_ages_past_start_up_share_a_batch(name):
    """Where the buffers reach one shape past the start-up, counters may differ."""
    if name == "istft":
        layer: StreamingModule = StreamingISTFT(16, 4).double()
        x = torch.randn(ROWS, 9, 40, dtype=torch.complex128)
    elif name == "lstm":
        layer, x = StreamingLSTM(4, 2).double(), signal(4, 40)
    elif name == "conv":
        layer, x = StreamingConv1d(3, 4, 5, padding=(2, 2)).double(), signal(3, 40)
    else:
        layer, x = StreamingConvTranspose1d(3, 2, 6, stride=3, trim=(4, 1)).double(), signal(3, 40)
    check_merge(layer, x, [[5], [2, 7, 1], [3]], [1, 4, 2])


def test_block_attention_rows_split_and_merge():
    attention = BlockLocalAttention(8, window=4, head_dim=4).double()
    check_rows(attention, signal(8, 30), [3, 2], [4, 1, 7, 3])


# -- containers and conditions -----------------------------------------------------------
def centred_conv(channels: int, kernel: int) -> StreamingConv1d:
    return StreamingConv1d(channels, channels, kernel, padding=(kernel // 2, kernel // 2)).double()


def test_residual_rows_split_and_merge():
    block = Residual(StreamingSequential(nn.ELU(), centred_conv(3, 5)))
    check_rows(block, signal(3, 30), [1, 4], [2, 3, 9])
    shortcut = Residual(StreamingSequential(centred_conv(3, 7)), shortcut=centred_conv(3, 3))
    check_rows(shortcut, signal(3, 30), [1, 4], [2, 3, 9])


def test_aligned_sum_rows_split_and_merge():
    fused = AlignedSum(centred_conv(3, 3), centred_conv(3, 7), divisor=2.0)
    check_rows(fused, signal(3, 30), [2, 1], [5, 3, 4])


def test_encoder_like_chain_rows_split_and_merge():
    chain = StreamingSequential(
        StreamingConv1d(1, 4, 7, padding=(6, 0), pad_mode="reflect").double(),
        Residual(StreamingSequential(nn.ELU(), StreamingConv1d(4, 4, 3, padding=(2, 0), pad_mode="reflect").double())),
        StreamingConv1d(4, 6, 4, stride=2, padding=(2, 0), pad_mode="reflect", pad_to_stride=True).double(),
        StreamingLSTM(6, 1).double(),
        StreamingConvTranspose1d(6, 2, 4, stride=2, trim=(0, 2)).double(),
    )
    check_rows(chain, signal(1, 48), [8, 4], [2, 6, 4, 8, 2])


def conditioned_chain() -> StreamingSequential:
    norm = AdaLayerNorm(3, 4)
    nn.init.normal_(norm.scale.weight)
    nn.init.normal_(norm.shift.weight)
    return StreamingSequential(centred_conv(4, 5), norm).double()


def test_conditions_rows_split_and_merge():
    chain = conditioned_chain()
    x = signal(4, 30)
    check_rows(chain, x, [2, 3], [1, 6, 4], prepare=lambda ctx, stream: set_condition(chain, ctx, 2))
    # Streams of different conditions share one batch.
    check_merge(chain, x, [[2, 3]] * ROWS, [1, 6, 4], prepare=lambda ctx, stream: set_condition(chain, ctx, stream))


@pytest.fixture
def short_noise_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PositionalNoise, "block", 8)  # chunks then cross blocks often


def test_noise_rows_split_and_merge(short_noise_blocks):
    noise = NoiseBlock(4, layer=1).double()
    nn.init.normal_(noise.linear.weight)
    x = signal(4, 60)
    check_rows(noise, x, [5, 6], [1, 9, 20, 3], prepare=lambda ctx, stream: set_noise(noise, ctx, 7))
    # Different seeds and different ages in one batch.
    check_merge(noise, x, [[3], [10, 2], []], [5, 11, 2], prepare=lambda ctx, stream: set_noise(noise, ctx, 100 + stream))


def test_noise_matches_positional_noise(short_noise_blocks):
    noise = NoiseBlock(2, layer=3).double()
    x = signal(2, 40)[:1]
    ctx = StreamContext(1)
    set_noise(noise, ctx, 5)
    out = push(noise, ctx, x, [3, 9, 1, 27])
    values = PositionalNoise(5).values(3, 0, 40, dtype=torch.float64, device=x.device)
    expected = x + values[None, None, :] * noise.linear(x)
    assert torch.allclose(out, expected, atol=TOL, rtol=0)


# -- what cannot merge -------------------------------------------------------------------
def test_merge_refuses_streams_at_different_points():
    conv = StreamingConv1d(2, 2, 4, stride=2, padding=(3, 0)).double()
    x = signal(2, 10)
    started, fresh = StreamContext(1), StreamContext(1)
    conv(x[:1, :, :4], started)
    with pytest.raises(StreamStateError, match="different points"):
        StreamContext.merge([started, fresh])
    odd = StreamContext(1)
    conv(x[:1, :, :5], odd)  # a buffer one frame longer
    with pytest.raises(StreamStateError, match="shapes"):
        StreamContext.merge([started, odd])
    residual = Residual(StreamingSequential(centred_conv(2, 5)))
    lagging, even = StreamContext(1), StreamContext(1)
    residual(x[:1, :, :1], lagging)  # the skip path waits for the block, which has no output yet
    residual(x[:1, :, :4], even)
    with pytest.raises(StreamStateError):
        StreamContext.merge([lagging, even])
    with pytest.raises(StreamStateError, match="options"):
        StreamContext.merge([StreamContext(1, options={"a": 1}), StreamContext(1)])


def test_rows_at_different_phases_refuse_one_call():
    layer = StreamingConvTranspose1d(2, 2, 4, stride=2, trim=(5, 0)).double()
    x = signal(2, 10)
    old, young = StreamContext(1), StreamContext(1)
    layer(x[:1, :, :4], old)  # its start crop done
    layer(x[:1, :, :1], young)  # 3 of 5 samples still to crop
    merged = StreamContext.merge([old, young])  # same shapes: the merge itself is allowed
    with pytest.raises(StreamStateError, match="start crops"):
        layer(x[:2, :, :2], merged)


def test_select_and_drop_rows():
    conv = StreamingConv1d(3, 4, 5, stride=2, padding=(4, 0)).double()
    x = signal(3, 20)
    ctx = StreamContext(ROWS)
    conv(x[..., :6], ctx)
    kept = ctx.drop([1])
    assert kept.batch_size == 2
    joint = push(conv, ctx, x[..., 6:], [4, 10], flush=True)
    rest = push(conv, kept, x[[0, 2], :, 6:], [4, 10], flush=True)
    assert torch.allclose(rest, joint[[0, 2]], atol=TOL, rtol=0)
    with pytest.raises(StreamStateError):
        ctx.select([3])
