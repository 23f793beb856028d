"""Stream groups: many streams of one model in one forward pass, each exactly as it is alone.

For every exactly streaming model (reduced configs of the published architectures, random
weights), 8 streams join a group at random ticks, are pushed random chunk sizes (1 sample up
to several hops), one abandons mid-way, and the others flush at different ticks. Every flushed
stream's output must equal the offline model on that stream's input: float64 within 1e-9
(codes identical), float32 within 1e-5 relative. And the group must really batch: most ticks
compute several streams in one call, and joining streams merge into the steady batch.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import test_encodec_variants
import test_snac
import torch
from test_stream_split import MODELS, _seeded, same

import codecstream as cs
from codecstream.groups import group_unit_frames
from codecstream.models.dac import DacCodec, DacConfig
from codecstream.models.encodec import EncodecCodec
from codecstream.models.snac import SnacCodec

STREAMS = 8

GROUP_MODELS = {
    **{name: build for name, build in MODELS.items() if name != "encodec-segments"},
    "encodec-32k": _seeded(lambda: EncodecCodec(test_encodec_variants.SMALL_32K)),
    "snac-32k": _seeded(lambda: SnacCodec(test_snac.SMALL["32k"])),
    "snac-44k": _seeded(lambda: SnacCodec(test_snac.SMALL["44k"])),
    "dac-44k": _seeded(lambda: DacCodec(DacConfig(sampling_rate=44100, encoder_hidden_size=4, decoder_hidden_size=32, n_codebooks=4))),
    "dac-16k": _seeded(lambda: DacCodec(DacConfig(sampling_rate=16000, encoder_hidden_size=4, downsampling_ratios=(2, 4, 5, 8), decoder_hidden_size=32, n_codebooks=6))),
}


@pytest.fixture(scope="module", params=sorted(GROUP_MODELS))
def model(request) -> cs.Codec:
    return GROUP_MODELS[request.param]()


def _row_audio(model: cs.Codec, rng: random.Random, dtype: torch.dtype) -> torch.Tensor:
    samples = rng.randint(6, 16) * group_unit_frames(model) * model.hop_length + rng.randint(0, model.hop_length - 1)
    generator = torch.Generator().manual_seed(rng.randint(0, 2**31))
    return (torch.randn(1, model.channels, samples, generator=generator, dtype=torch.float64) * 0.3).to(dtype)


def _audio_chunks(model: cs.Codec, audio: torch.Tensor, rng: random.Random) -> list[torch.Tensor]:
    chunks, start = [], 0
    while start < audio.shape[-1]:
        block = group_unit_frames(model) * model.hop_length  # a group's block: about one per tick
        size = rng.choice([1, 7, rng.randint(1, 2 * block)])
        chunks.append(audio[..., start : start + size])
        start += size
    return chunks


def _code_chunks(model: cs.Codec, codes: Any, rng: random.Random) -> list[Any]:
    frames, chunks, start = model.num_frames(codes), [], 0
    while start < frames:
        size = rng.randint(1, 2 * group_unit_frames(model) + 1)
        chunks.append(model.slice_codes(codes, start, min(frames, start + size)))
        start += size
    return chunks


def run_group(model: cs.Codec, side: str, inputs: list[list[Any]], starts: list[int], abandon: int | None, **options: Any) -> tuple[list[Any], cs.StreamGroup, int]:
    """Each stream opens at tick ``starts[i]``, pushes one of its chunks per tick and flushes
    the tick after its last; returns each stream's whole output, the group and the largest
    batch a tick computed."""
    group = cs.StreamGroup(model, side, options=options)
    streams: dict[int, Any] = {}
    outputs: dict[int, list[Any]] = {i: [] for i in range(len(inputs))}
    results: list[Any] = [None] * len(inputs)
    largest, tick = 0, 0
    while any(r is None for i, r in enumerate(results) if i != abandon):
        for i, start in enumerate(starts):
            if start == tick:
                streams[i] = group.open()
        for i, stream in list(streams.items()):
            step = tick - starts[i]
            if step < len(inputs[i]):
                stream.push(inputs[i][step])
            elif i == abandon:
                stream.close()
                del streams[i]
            elif step == len(inputs[i]):
                results[i] = _cat(model, side, outputs[i] + [stream.flush()])
                del streams[i]
        if abandon in streams and tick - starts[abandon] == len(inputs[abandon]) // 2:
            streams.pop(abandon).close()
        largest = max(largest, group.tick().rows)
        for i, stream in streams.items():
            outputs[i].append(stream.pull())
        tick += 1
    return results, group, largest


def _cat(model: cs.Codec, side: str, parts: list[Any]) -> Any:
    return model.concat_codes(parts) if side == "encoder" else torch.cat(parts, dim=-1)


def _scenario(seed: int) -> tuple[random.Random, list[int], int]:
    rng = random.Random(seed)
    return rng, [rng.randint(0, 8) for _ in range(STREAMS)], rng.randrange(STREAMS)


def test_encoder_group_equals_offline(model):
    if not model.streaming_encoder:
        pytest.skip(f"{model.name} has no streaming encoder")
    rng, starts, abandon = _scenario(1)
    audios = [_row_audio(model, rng, torch.float64) for _ in range(STREAMS)]
    inputs = [_audio_chunks(model, a, rng) for a in audios]
    results, group, largest = run_group(model, "encoder", inputs, starts, abandon)
    for i, (audio, result) in enumerate(zip(audios, results)):
        if i != abandon:
            assert same(model, result, model.encode(audio)), f"stream {i}"
    assert largest >= 4, f"the group never batched more than {largest} streams"
    assert len(group) == 0 and group.cohorts == 0


def test_decoder_group_equals_offline(model):
    rng, starts, abandon = _scenario(2)
    codes = [model.encode(_row_audio(model, rng, torch.float64)) for _ in range(STREAMS)]
    inputs = [_code_chunks(model, c, rng) for c in codes]
    results, group, largest = run_group(model, "decoder", inputs, starts, abandon)
    for i, (c, result) in enumerate(zip(codes, results)):
        if i != abandon:
            assert same(model, result, model.decode(c)), f"stream {i}"
    assert largest >= 4, f"the group never batched more than {largest} streams"


@pytest.mark.parametrize("name", ["encodec-causal", "snac", "vocos-mel", "mimi"])
def test_float32_within_1e5(name):
    model = GROUP_MODELS[name]().float()
    rng, starts, abandon = _scenario(3)
    codes = [model.encode(_row_audio(model, rng, torch.float32)) for _ in range(STREAMS)]
    inputs = [_code_chunks(model, c, rng) for c in codes]
    results, _, largest = run_group(model, "decoder", inputs, starts, None)
    for c, result in zip(codes, results):
        expected = model.decode(c)
        assert result.shape == expected.shape
        assert float((result - expected).abs().max()) <= 1e-5 * float(expected.abs().max())
    assert largest >= 4


def test_snac_noise_seed_per_row():
    model = GROUP_MODELS["snac"]()
    rng = random.Random(4)
    codes = [model.encode(_row_audio(model, rng, torch.float64)) for _ in range(4)]
    group = cs.StreamGroup(model, "decoder")
    streams = [group.open(noise_seed=seed) for seed in (0, 1, 2, 3)]
    halves = [model.num_frames(c) // 8 * 4 for c in codes]
    for stream, c, half in zip(streams, codes, halves):
        stream.push(model.slice_codes(c, 0, half))
    group.run()
    assert max(group.batch_sizes) == 4  # seeds differ, yet the rows share the batch
    for stream, c, half in zip(streams, codes, halves):
        stream.push(model.slice_codes(c, half, model.num_frames(c)))
    group.run()
    for seed, (stream, c) in enumerate(zip(streams, codes)):
        out = torch.cat([stream.pull(), stream.flush()], dim=-1)
        expected = model.decoder_stream(noise_seed=seed)
        assert same(model, out, torch.cat([expected.push(c), expected.flush()], dim=-1))
    with pytest.raises(cs.OptionError, match="per group"):
        group.open(noise=False)


def test_bad_use():
    model = GROUP_MODELS["encodec-causal"]()
    with pytest.raises(cs.OptionError, match="side"):
        cs.StreamGroup(model, "both")
    with pytest.raises(cs.OptionError, match="multiple"):
        cs.StreamGroup(model, "encoder", block_frames=0)
    group = cs.StreamGroup(model, "encoder", options={"bandwidth": model.config.target_bandwidths[0]})
    stream = group.open()
    with pytest.raises(cs.ChannelError):
        stream.push(torch.zeros(1, 2, 100, dtype=torch.float64))
    stream.push(torch.zeros(1, 1, 10 * model.hop_length, dtype=torch.float64))
    assert group.run() == 2  # a backlog goes in steps of up to max_blocks (8) blocks
    assert (stream.queued, stream.produced) == (0, 10)
    stream.flush()
    with pytest.raises(cs.StreamStateError):
        stream.push(torch.zeros(1, 1, 10, dtype=torch.float64))
    decoder = cs.StreamGroup(model, "decoder").open()
    decoder.push(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(cs.StreamStateError, match="layout"):
        decoder.push(torch.zeros(1, 4, 3, dtype=torch.long))


def test_windowed_decoders_are_refused():
    from codecstream.models.neucodec import NeuCodecCodec
    from test_neucodec import SMALL as NEUCODEC_SMALL

    with pytest.raises(cs.OptionError, match="windows"):
        cs.StreamGroup(NeuCodecCodec(NEUCODEC_SMALL), "decoder")


@pytest.mark.parametrize("name", ["encodec-causal", "vocos-mel", "snac"])
def test_bfloat16_runs_and_stays_close(name):
    """Reduced precision: bfloat16 streams (grouped) against the bfloat16 offline model and the
    float32 one. Not bit-exact (bfloat16 keeps 8 bits of mantissa and the chunked kernels
    accumulate in another order), so the bound is a signal-to-error ratio."""
    model32 = GROUP_MODELS[name]().float()
    model16 = GROUP_MODELS[name]().to(torch.bfloat16)
    rng = random.Random(5)
    codes = model32.encode(_row_audio(model32, rng, torch.float32))
    if isinstance(codes, torch.Tensor) and codes.is_floating_point():
        codes16 = codes.to(torch.bfloat16)
    else:
        codes16 = codes
    group = cs.StreamGroup(model16, "decoder")
    stream = group.open()
    for chunk in _code_chunks(model16, codes16, rng):
        stream.push(chunk)
        group.tick()
    streamed = torch.cat([stream.pull(), stream.flush()], dim=-1).double()

    def snr_db(reference: torch.Tensor, x: torch.Tensor) -> float:
        reference = reference.double()
        return float(10 * torch.log10(reference.square().sum() / (reference - x).square().sum().clamp(min=1e-30)))

    assert snr_db(model16.decode(codes16), streamed) > 25
    assert snr_db(model32.decode(codes), streamed) > 20


def test_tts_voices_decode_in_one_group():
    """Orpheus token streams of 4 voices (own seeds, tokens arriving in different bursts)
    decode in one group, each exactly as its adapter decodes it alone."""
    from codecstream.tokens import OrpheusDecoder, TokenGroup, orpheus_token_ids

    model = GROUP_MODELS["snac"]()
    generator = torch.Generator().manual_seed(6)
    voices = TokenGroup(model)
    ids, streams = [], []
    for seed in range(4):
        frames = 6 + seed
        codes = [torch.randint(0, model.code_format.codebook_size, (1, frames * s), generator=generator) for s in (1, 2, 4)]
        ids.append(orpheus_token_ids(codes))
        streams.append(voices.open(OrpheusDecoder(model), noise_seed=seed))
    outputs: list[list[torch.Tensor]] = [[] for _ in streams]
    position = [0] * len(streams)
    rng = random.Random(7)
    largest = 0
    while any(p < len(i) for p, i in zip(position, ids)):
        for index, (stream, tokens) in enumerate(zip(streams, ids)):
            size = rng.choice([1, 7, 11])
            stream.push(tokens[position[index] : position[index] + size])
            position[index] += size
        largest = max(largest, voices.tick().rows)
        for index, stream in enumerate(streams):
            outputs[index].append(stream.pull())
    for seed, (stream, tokens) in enumerate(zip(streams, ids)):
        alone = OrpheusDecoder(model, noise_seed=seed)
        expected = torch.cat([alone.push(tokens), alone.flush()], dim=-1)
        assert same(model, torch.cat([*outputs[seed], stream.flush()], dim=-1), expected)
    assert largest >= 3


def test_a_decoder_stream_ending_inside_a_frame_is_told():
    model = GROUP_MODELS["snac"]()
    codes = model.encode(torch.randn(1, 1, 8 * model.hop_length * 4, dtype=torch.float64) * 0.3)
    group = cs.StreamGroup(model, "decoder")
    stream = group.open()
    stream.push(codes)
    stream.push([codes[0][:, :1], codes[1][:, :1], codes[2][:, :1]])  # a coarse frame begun, not completed
    group.run()
    with pytest.raises(cs.StreamStateError, match="inside a frame"):
        stream.flush()
