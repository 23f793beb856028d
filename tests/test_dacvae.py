"""DACVAE (the seed's ``dacvae``): parity with an offline reference written from the fork's
description (tests/dacvae_reference.py) in the published checkpoint layout, exact streaming,
minimal latency, the published size, strict and corrupt checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import chunk_sizes, depends_on, encoder_release_points, max_rel_error, stream_all, stream_time_major
from safetensors.torch import load_file, save_file

import codecstream as cs
from codecstream.models.dacvae import DACVAE_SMALL, DacVaeCodec, DacVaeConfig

dacvae_reference = pytest.importorskip("dacvae_reference", reason="the reference needs descript-audio-codec and einops (installed by .ci/setup)")

SMALL_KWARGS = dict(encoder_dim=4, encoder_rates=[2, 4, 2], latent_dim=16, decoder_dim=32, decoder_rates=[2, 4, 2], sample_rate=48000)
#: The published strides at a few channels: the published latencies, fast.
NARROW = DacVaeConfig(encoder_dim=2, encoder_rates=(2, 4, 4, 8, 8), latent_dim=8, decoder_dim=64, decoder_rates=(8, 8, 4, 4, 2))
TINY = DacVaeConfig(encoder_dim=2, encoder_rates=(2, 4), latent_dim=4, decoder_dim=8, decoder_rates=(4, 2))


def seeded(config: DacVaeConfig, seed: int = 0, dtype=torch.float64) -> DacVaeCodec:
    torch.manual_seed(seed)
    model = DacVaeCodec(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("alpha"):
                parameter.uniform_(0.5, 1.5)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dacvae")
    reference = dacvae_reference.build(SMALL_KWARGS, seed=1)
    dacvae_reference.save(reference, SMALL_KWARGS, directory)
    return reference, directory


def test_parity_with_reference_through_get_voco(small_checkpoint):
    reference, directory = small_checkpoint
    voco = cs.get_voco("dacvae", weights=directory)
    assert (voco.sampling_rate, voco.channel, voco.latent_dim, voco.hop_length) == (48000, 2, 32, 16)
    seed = dacvae_reference.SeedWrapper(reference)
    audio = torch.randn(2, 16 * 9 + 5, 2) * 0.3
    latents = voco.encode(audio)
    expected = seed.encode(audio)
    assert latents.shape == expected.shape == (2, 10, 32)  # (n - 1) // hop + 1 frames
    assert max_rel_error(latents, expected) <= 1e-5
    decoded = voco.decode(expected)
    assert decoded.shape == (2, 10 * 16, 2) == (2, voco.decode_length(10), 2)
    assert max_rel_error(decoded, seed.decode(expected)) <= 1e-5
    # Each channel is its own mono pass: swapping the channels swaps the latent halves.
    swapped = voco.encode(audio.flip(-1))
    assert torch.allclose(swapped, torch.cat([latents[..., 16:], latents[..., :16]], dim=-1), atol=1e-6)


def test_strict_and_corrupt_checkpoints(small_checkpoint, tmp_path):
    _, directory = small_checkpoint
    state = load_file(str(directory / "dac-vae-small.safetensors"))
    config = (directory / "dac-vae-small.json").read_text()

    def write(name: str, tensors: dict, text: str = config):
        folder = tmp_path / name
        folder.mkdir()
        save_file(tensors, folder / "dac-vae-small.safetensors")
        (folder / "dac-vae-small.json").write_text(text)
        return folder

    missing = write("missing", {k: v for k, v in state.items() if "fc_log_var" not in k})
    with pytest.raises(cs.CheckpointMismatchError, match="missing 2: encoder.fc_log_var"):
        cs.load("dacvae", weights=missing)
    with pytest.raises(cs.CheckpointMismatchError, match="unexpected 1: encoder.extra"):
        cs.load("dacvae", weights=write("unexpected", {**state, "encoder.extra": torch.zeros(1)}))
    with pytest.raises(cs.CheckpointMismatchError, match="wrong shape"):
        cs.load("dacvae", weights=write("wider", state, json.dumps({**SMALL_KWARGS, "latent_dim": 8})))
    with pytest.raises(cs.CheckpointMismatchError, match="unknown keys"):
        cs.load("dacvae", weights=write("unknown", state, json.dumps({**SMALL_KWARGS, "n_codebooks": 9})))
    with pytest.raises(cs.CheckpointMismatchError, match="every rate must be even"):
        cs.load("dacvae", weights=write("odd", state, json.dumps({**SMALL_KWARGS, "encoder_rates": [2, 5, 2]})))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "dac-vae-small.safetensors").write_bytes((directory / "dac-vae-small.safetensors").read_bytes()[:500])
    with pytest.raises(cs.CorruptCheckpointError):
        cs.load("dacvae", weights=corrupt)
    # Our own export (plain .weight, no config file: the small preset is not this one, so the
    # config travels as JSON beside it) loads back to the same model.
    model = cs.load("dacvae", weights=directory)
    export = tmp_path / "export"
    export.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, export / "mine.safetensors")
    (export / "mine.json").write_text(config)
    again = cs.load("dacvae", weights=export / "mine.safetensors")
    audio = torch.randn(1, 2, 100)
    assert torch.equal(again.encode(audio), model.encode(audio))


def test_streaming_equals_offline_float64():
    model = seeded(TINY)
    hop = model.hop_length
    audio = torch.randn(2, 2, hop * 40 + 3, dtype=torch.float64) * 0.3
    latents = model.encode(audio)
    decoded = model.decode(latents)
    assert latents.shape == (2, 8, 41) and decoded.shape == (2, 2, 41 * hop)
    for chunking in ["ones", "primes", "random", "whole"]:
        sizes = chunk_sizes(audio.shape[-1], chunking, seed=3, max_size=50)
        assert (stream_all(model.encoder_stream(2), audio, sizes) - latents).abs().max() <= 1e-9, chunking
        frames = chunk_sizes(latents.shape[-1], chunking, seed=4, max_size=5)
        assert (stream_all(model.decoder_stream(2), latents, frames) - decoded).abs().max() <= 1e-9, chunking


def test_latency_delivered_and_minimal():
    """At the published strides: the decoder waits 18981 samples (9.3 frames) of lookahead and
    the encoder 16933 samples (the frame's own 2048 plus 14885 past its end), and no less."""
    model = seeded(NARROW, seed=5)
    hop = model.hop_length
    decoder = model.decoder_stream()
    assert decoder.latency_samples == 18981
    frames = 20
    latents = torch.randn(1, model.latent_dim, frames, dtype=torch.float64)
    counts, total = [], 0
    for f in range(frames):
        total += decoder.push(latents[..., f : f + 1]).shape[-1]
        counts.append(total)
    assert max(g * hop - counts[g - 1] for g in range(1, frames) if counts[g] > counts[g - 1]) == 18981

    def decode(x):
        ctx = cs.StreamContext(1)
        return torch.cat([model.decoder_path.step(x, ctx), model.decoder_path.flush(ctx)], -1)

    g = 14
    first = counts[g - 1]  # the first sample frame g releases
    assert depends_on(decode, latents, first, slice(g, g + 1))
    assert not depends_on(decode, latents, first - 1, slice(g, None))

    encoder = model.encoder_stream()
    assert encoder.latency_samples == 16933
    released = encoder_release_points(model, encoder.latency_samples + 3 * hop)
    assert [r - j * hop for j, r in enumerate(released)] == [encoder.latency_samples] * len(released)
    audio = torch.randn(1, 2, released[-1] + 2 * hop, dtype=torch.float64)
    last = len(released) - 1

    def encode(x):
        ctx = cs.StreamContext(1)
        return torch.cat([model.encoder_path.step(x, ctx), model.encoder_path.flush(ctx)], -1)

    assert depends_on(encode, audio, last, slice(released[-1] - 1, released[-1]))
    assert not depends_on(encode, audio, last, slice(released[-1], None))


def test_published_size():
    """``get_voco("dacvae", weights="random")``: the small preset, ~176.8 M parameters,
    ``[1, T, 2]`` → ``[1, L, 2048]``; streamed encode and decode equal offline in float64."""
    voco = cs.get_voco("dacvae", weights="random", dtype=torch.float64)
    model = voco.codec
    assert model.config == DACVAE_SMALL
    assert sum(p.numel() for p in model.parameters()) == 176_752_769
    hop = voco.hop_length
    assert (hop, voco.sampling_rate, voco.channel, voco.latent_dim) == (2048, 48000, 2, 2048)
    torch.manual_seed(7)
    audio = torch.randn(1, hop * 11 + 100, 2, dtype=torch.float64) * 0.1
    latents = voco.encode(audio)
    assert latents.shape == (1, 12, 2048) == (1, voco.encode_length(audio.shape[1]), 2048)
    decoded = voco.decode(latents)
    assert decoded.shape == (1, 12 * hop, 2)
    for chunking in ["ones", "primes", "whole"]:  # "ones": one frame (2048 samples) at a time
        sizes = [audio.shape[1]] if chunking == "whole" else [frames * hop for frames in chunk_sizes(12, chunking)]
        with voco.encoder_stream() as stream:
            assert (stream_time_major(stream, audio, sizes) - latents).abs().max() <= 1e-9, chunking
        with voco.decoder_stream() as stream:
            streamed = stream_time_major(stream, latents, chunk_sizes(12, chunking))
            assert (streamed - decoded).abs().max() <= 1e-9 * decoded.abs().max(), chunking


def test_published_size_parity_float32(tmp_path):
    """The small preset in the published layout against the reference, float32."""
    kwargs = dict(encoder_dim=64, encoder_rates=[2, 4, 4, 8, 8], latent_dim=1024, decoder_dim=2048, decoder_rates=[8, 8, 4, 4, 2], sample_rate=48000)
    reference = dacvae_reference.build(kwargs, seed=8)
    dacvae_reference.save(reference, kwargs, tmp_path)
    voco = cs.get_voco("dacvae", weights=tmp_path)
    seed = dacvae_reference.SeedWrapper(reference)
    audio = torch.randn(1, 2048 * 3 - 7, 2) * 0.3
    expected = seed.encode(audio)
    assert max_rel_error(voco.encode(audio), expected) <= 1e-5
    assert max_rel_error(voco.decode(expected), seed.decode(expected)) <= 1e-5


def test_bad_input():
    model = seeded(TINY, dtype=torch.float32)
    with pytest.raises(cs.ChannelError):
        model.encode(torch.zeros(1, 1, 64))
    with pytest.raises(cs.ShapeError):
        model.decode(torch.zeros(1, 5, 3))
    with pytest.raises(cs.NonFiniteError):
        model.decode(torch.full((1, 8, 3), float("nan")))
    voco = model.latents()
    with pytest.raises(cs.ChannelError):
        voco.encode(torch.zeros(1, 64, 1))
    assert model.decoder_stream().push(torch.zeros(1, 8, 0)).shape == (1, 2, 0)
    assert math.prod(TINY.encoder_rates) == model.hop_length
