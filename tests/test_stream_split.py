"""Streams leave and join a batch mid-stream with every output unchanged, for every model that
streams exactly (float64, reduced configs of the published architectures, random weights).

- split: a stream of 3 rows is pushed past start-up, split into 3 one-row streams, and each
  goes on alone; every row's output equals what the batch gives, and the offline model's.
- merge: 3 one-row streams pushed the same chunk sizes are merged into one batch that goes on;
  its rows equal the streams that went on alone.
Both directions (encoder and decoder) are covered where the model has them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pytest
import test_dac
import test_encodec
import test_mimi
import test_dacvae
import test_oobleck
import test_snac
import test_vocos
import torch

import codecstream as cs
from codecstream.models.dac import DacCodec
from codecstream.models.dacvae import DacVaeCodec
from codecstream.models.encodec import EncodecCodec, EncodecConfig, EncodecSegmentCodec, SegmentCodes
from codecstream.models.hifigan import HifiganCodec
from codecstream.models.hifigan.config import HIFIGAN_V1
from codecstream.models.mimi import MimiCodec
from codecstream.models.oobleck import OobleckCodec
from codecstream.models.snac import SnacCodec

ROWS = 3
TOLERANCE = 1e-9


def _seeded(build: Callable[[], cs.Codec], seed: int = 0) -> Callable[[], cs.Codec]:
    def make() -> cs.Codec:
        torch.manual_seed(seed)
        return build().to(torch.float64).eval()

    return make


SEGMENTS_48K = EncodecConfig(
    sample_rate=48_000, channels=2, n_filters=4, dimension=16, causal=False, norm="time_group_norm",
    segment_s=0.02, normalize=True, codebook_size=64, target_bandwidths=(1.8, 3.6), lstm_layers=1,
)
HIFIGAN_SMALL = dataclasses.replace(HIFIGAN_V1, upsample_initial_channel=16, resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3), (1, 3)))

MODELS: dict[str, Callable[[], cs.Codec]] = {
    "encodec-causal": _seeded(lambda: EncodecCodec(test_encodec.SMALL_CAUSAL)),
    "encodec-centred": _seeded(lambda: EncodecCodec(test_encodec.SMALL_CENTRED)),
    "encodec-segments": _seeded(lambda: EncodecSegmentCodec(SEGMENTS_48K)),
    "vocos-mel": lambda: test_vocos.small_model(test_vocos.SMALL_MEL, 0),
    "vocos-encodec": lambda: test_vocos.small_model(test_vocos.SMALL_ENCODEC, 1),
    "snac": _seeded(lambda: SnacCodec(test_snac.SMALL["24k"])),
    "hifigan": _seeded(lambda: HifiganCodec(HIFIGAN_SMALL)),
    "dac": _seeded(lambda: DacCodec(test_dac.SMALL["24k"])),
    "oobleck": _seeded(lambda: OobleckCodec(test_oobleck.TINY)),
    "dacvae": _seeded(lambda: DacVaeCodec(test_dacvae.TINY)),
    "mimi": _seeded(lambda: MimiCodec(test_mimi.SMALL)),
}


def row(x: Any, index: int) -> Any:
    """Row ``index`` of audio, codes or features, as a batch of one."""
    if isinstance(x, SegmentCodes):
        return SegmentCodes(tuple(c[index : index + 1] for c in x.codes), tuple(None if s is None else s[index : index + 1] for s in x.scales), 1)
    if isinstance(x, (list, tuple)):
        return [level[index : index + 1] for level in x]
    return x[index : index + 1]


def rows(x: Any, count: int) -> list[Any]:
    return [row(x, i) for i in range(count)]


def same(model: cs.Codec, a: Any, b: Any) -> bool:
    """Audio within TOLERANCE; codes equal (continuous codes within TOLERANCE)."""
    if isinstance(a, SegmentCodes):
        return len(a) == len(b) and all(same(model, x, y) for x, y in zip(a.codes, b.codes)) and all(
            (x is None and y is None) or same(model, x, y) for x, y in zip(a.scales, b.scales)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(model, x, y) for x, y in zip(a, b))
    if a.shape != b.shape:
        return False
    if a.is_floating_point():
        return a.numel() == 0 or float((a - b).abs().max()) <= TOLERANCE
    return torch.equal(a, b)


def check_split_and_merge(model: cs.Codec, open_stream: Callable[[int], Any], pieces: list[Any], before: int, concat: Callable[[list[Any]], Any]) -> Any:
    """``pieces``: the batch's input chunks (``ROWS`` rows each); the split or merge happens
    after ``before`` of them. Returns the batch's whole output."""
    # Split: the batch goes on, and so does each row alone.
    batch = open_stream(ROWS)
    head = [batch.push(piece) for piece in pieces[:before]]
    alone = batch.split()
    assert [s.batch_size for s in alone] == [1] * ROWS
    batch_tail = concat([batch.push(piece) for piece in pieces[before:]] + [batch.flush()])
    for index, stream in enumerate(alone):
        tail = concat([stream.push(row(piece, index)) for piece in pieces[before:]] + [stream.flush()])
        assert same(model, tail, row(batch_tail, index)), f"row {index} after split"
    batch_all = concat(head + [batch_tail])

    # Merge: one-row streams pushed alike become one batch.
    singles = [open_stream(1) for _ in range(ROWS)]
    heads = [concat([s.push(row(piece, i)) for piece in pieces[:before]]) for i, s in enumerate(singles)]
    merged = type(singles[0]).merge(singles)
    assert merged.batch_size == ROWS
    merged_tail = concat([merged.push(piece) for piece in pieces[before:]] + [merged.flush()])
    for index in range(ROWS):
        whole = concat([heads[index], row(merged_tail, index)])
        assert same(model, whole, row(batch_all, index)), f"row {index} after merge"
    return batch_all


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request) -> cs.Codec:
    return MODELS[request.param]()


def audio_for(model: cs.Codec, hops: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(ROWS, model.channels, hops * model.hop_length, generator=generator, dtype=torch.float64) * 0.3


def test_encoder_split_and_merge(model):
    if not model.streaming_encoder:
        pytest.skip(f"{model.name} has no streaming encoder")
    hops = 3 if isinstance(model, EncodecSegmentCodec) else 1
    audio = audio_for(model, 48 * hops, seed=1)
    chunk = 2 * hops * model.hop_length  # whole hops: every row's buffers keep one shape
    pieces = list(torch.split(audio, chunk, dim=-1))
    streamed = check_split_and_merge(model, lambda n: model.encoder_stream(n), pieces, before=len(pieces) // 2, concat=model.concat_codes)
    assert same(model, streamed, model.encode(audio))


def test_decoder_split_and_merge(model):
    audio = audio_for(model, 60, seed=2)
    codes = model.encode(audio)
    frames = model.num_frames(codes)
    step = max(model.decoder_alignment, 1) * (2 if frames > 20 else 1)
    pieces = [model.slice_codes(codes, start, min(frames, start + step)) for start in range(0, frames, step)]
    streamed = check_split_and_merge(model, lambda n: model.decoder_stream(n), pieces, before=len(pieces) // 2, concat=lambda parts: torch.cat(parts, dim=-1))
    assert same(model, streamed, model.decode(codes))


def test_streams_at_different_points_do_not_merge():
    model = MODELS["encodec-causal"]()
    early, late = model.encoder_stream(), model.encoder_stream()
    late.push(torch.zeros(1, 1, 4 * model.hop_length, dtype=torch.float64))
    with pytest.raises(cs.StreamStateError):
        type(early).merge([early, late])
    other = model.encoder_stream(bandwidth=model.config.target_bandwidths[0])
    with pytest.raises(cs.StreamStateError):
        type(early).merge([model.encoder_stream(), other])
