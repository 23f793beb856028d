"""SNAC 24/32/44 kHz: parity with the `snac` package, exact streaming, latency, Orpheus tokens."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers import CHUNKINGS, chunk_sizes, depends_on, encoder_release_points, max_rel_error

import codecstream as cs
from codecstream.commands.orpheus_baseline import OrpheusWindowDecoder
from codecstream.models.snac import SNAC_24KHZ, SNAC_32KHZ, SNAC_44KHZ, SnacCodec
from codecstream.models.snac.reference import positional_noise_in
from codecstream.signals import speech_like as speechlike
from codecstream.tokens import OrpheusDecoder, orpheus_token_ids
from codecstream.weights import fold_weight_norm, load_state

snac_pkg = pytest.importorskip("snac", reason="the snac reference package is a dev dependency")

SMALL = {
    "24k": dataclasses.replace(SNAC_24KHZ, encoder_dim=8, decoder_dim=64),
    "32k": dataclasses.replace(SNAC_32KHZ, encoder_dim=8, decoder_dim=128),
    "44k": dataclasses.replace(SNAC_44KHZ, encoder_dim=8, decoder_dim=128, depthwise=False),
}


def random_reference(config, seed=0):
    """`snac.SNAC` with all parameters random, including Snake alphas and weight-norm gains."""
    torch.manual_seed(seed)
    model = snac_pkg.SNAC(**{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("alpha"):
                parameter.uniform_(0.5, 1.5)
            elif name.endswith("original0"):
                parameter.mul_(torch.empty_like(parameter).uniform_(0.5, 1.5))
    return model


def save_published(reference, config, directory):
    (directory / "config.json").write_text(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}))
    torch.save(reference.state_dict(), directory / "pytorch_model.bin")
    return directory


def ours_like(reference, config, dtype=torch.float64):
    model = SnacCodec(config)
    load_state(model, fold_weight_norm(reference.state_dict(), dtype))
    return model.to(dtype).eval()


def reference_decode(reference, codes, *, noise_seed):
    """The reference decoder with its noise made ours (positional), or zeroed."""
    with torch.no_grad():
        if noise_seed is None:
            blocks = [m for m in reference.modules() if isinstance(m, snac_pkg.layers.NoiseBlock)]
            saved = [b.forward for b in blocks]
            for b in blocks:
                b.forward = lambda x: x
            try:
                return reference.decode(codes)
            finally:
                for b, f in zip(blocks, saved):
                    b.forward = f
        with positional_noise_in(reference, noise_seed):
            return reference.decode(codes)


@pytest.fixture(scope="module")
def published_24k(tmp_path_factory):
    reference = random_reference(SNAC_24KHZ)
    return reference, save_published(reference, SNAC_24KHZ, tmp_path_factory.mktemp("snac24"))


def test_parity_24khz_published_size(published_24k):
    reference, directory = published_24k
    model = cs.load("snac-24khz", weights=directory)
    audio = speechlike(1.3, 24_000, 1, seed=2) + 0.01 * torch.randn(1, 1, 31_200)
    with torch.no_grad():
        codes_ref = reference.encode(audio)
        codes = model.encode(audio)
    assert [c.shape[-1] for c in codes] == [16, 32, 64]  # padded to a multiple of 2048 samples
    for ours, theirs in zip(codes, codes_ref):
        assert torch.equal(ours, theirs)
    for seed in (0, None):  # positional noise on both sides, then noise off on both
        expected = reference_decode(reference, codes_ref, noise_seed=seed)
        decoded = model.decoder_stream(noise=seed is not None, noise_seed=seed or 0)
        out = torch.cat([decoded.push(codes_ref), decoded.flush()], dim=-1)
        assert out.shape == expected.shape == (1, 1, 64 * 512)
        assert max_rel_error(out, expected) <= 1e-5


@pytest.mark.parametrize("variant", ["24k", "32k", "44k"])
def test_parity_small_configs(variant, tmp_path):
    config = SMALL[variant]
    reference = random_reference(config, seed=1)
    model = ours_like(reference, config, torch.float32)
    audio = torch.randn(2, 1, config.pad_multiple + 777) * 0.2
    with torch.no_grad():
        codes_ref = reference.encode(audio)
        codes = model.encode(audio)
    for ours, theirs in zip(codes, codes_ref):
        assert torch.equal(ours, theirs)
    expected = reference_decode(reference, codes_ref, noise_seed=3)
    stream = model.decoder_stream(2, noise_seed=3)
    assert max_rel_error(torch.cat([stream.push(codes_ref), stream.flush()], -1), expected) <= 1e-5


def test_parity_44khz_published_size(tmp_path):
    """The 54.5 M-parameter architecture, one attention window (12288 samples)."""
    reference = random_reference(SNAC_44KHZ, seed=2)
    model = cs.load("snac-44khz", weights=save_published(reference, SNAC_44KHZ, tmp_path))
    audio = speechlike(12288 / 44100, 44_100, 1, seed=3)
    with torch.no_grad():
        codes_ref = reference.encode(audio)
        codes = model.encode(audio)
    assert [c.shape[-1] for c in codes] == [4, 8, 16, 32]
    for ours, theirs in zip(codes, codes_ref):
        assert torch.equal(ours, theirs)
    expected = reference_decode(reference, codes_ref, noise_seed=None)
    stream = model.decoder_stream(noise=False)
    assert max_rel_error(torch.cat([stream.push(codes_ref), stream.flush()], -1), expected) <= 1e-5


@pytest.mark.parametrize("variant", ["24k", "32k", "44k"])
def test_streaming_equals_offline_float64(variant):
    config = SMALL[variant]
    model = ours_like(random_reference(config, seed=4), config)
    audio = torch.randn(1, 1, config.pad_multiple * 2 - 1000, dtype=torch.float64) * 0.2
    offline = model.encode(audio)
    decoded = model.decode(offline)
    frames = model.num_frames(offline)
    for chunking in CHUNKINGS:
        sizes = chunk_sizes(audio.shape[-1], chunking, seed=5, max_size=3000)
        if chunking == "ones":
            sizes = chunk_sizes(audio.shape[-1], "random", seed=6, max_size=7)  # tiny pushes, bounded count
        stream = model.encoder_stream()
        parts = [stream.push(audio[..., sum(sizes[:i]) : sum(sizes[: i + 1])]) for i in range(len(sizes))]
        streamed = model.concat_codes(parts + [stream.flush()])
        for ours, theirs in zip(streamed, offline):
            assert torch.equal(ours, theirs)
        stream = model.decoder_stream()
        starts = [0]
        for size in chunk_sizes(frames, chunking, seed=7, max_size=11):
            starts.append(starts[-1] + size)
        pieces = [stream.push(model.slice_codes(offline, a, b)) for a, b in zip(starts, starts[1:])]
        out = torch.cat(pieces + [stream.flush()], dim=-1)
        assert (out - decoded).abs().max() <= 1e-9  # noise on (positional) in both


def test_streaming_24khz_published_size_float64(published_24k):
    model = cs.load("snac-24khz", weights=published_24k[1], dtype=torch.float64)
    audio = speechlike(0.6, 24_000, 1, seed=8).double()
    codes = model.encode(audio)
    stream = model.encoder_stream()
    sizes = chunk_sizes(audio.shape[-1], "primes")
    streamed = model.concat_codes([stream.push(c) for c in torch.split(audio, sizes, dim=-1)] + [stream.flush()])
    assert all(torch.equal(a, b) for a, b in zip(streamed, codes))
    decoded = model.decode(codes)
    decoder = model.decoder_stream()
    out = torch.cat([decoder.push(model.slice_codes(codes, f, f + 1)) for f in range(model.num_frames(codes))] + [decoder.flush()], -1)
    assert (out - decoded).abs().max() <= 1e-9


def test_noise_is_keyed_on_position():
    config = SMALL["24k"]
    model = ours_like(random_reference(config, seed=9), config)
    codes = [torch.randint(0, 4096, (1, n)) for n in (5, 10, 20)]
    seeded = model.decode(codes)
    other = model.decoder_stream(noise_seed=1)
    assert (torch.cat([other.push(codes), other.flush()], -1) - seeded).abs().max() > 1e-6
    quiet = model.decoder_stream(noise=False)
    assert (torch.cat([quiet.push(codes), quiet.flush()], -1) - seeded).abs().max() > 1e-6


@pytest.mark.parametrize("variant, decoder_latency", [("24k", 4757), ("32k", 15503)])
def test_latency_is_delivered_and_minimal(variant, decoder_latency):
    config = SMALL[variant]
    model = ours_like(random_reference(config, seed=10), config)
    hop = config.hop_length
    decoder = model.decoder_stream(noise=False)
    assert decoder.latency_samples == decoder_latency
    frames = 3 * (config.attn_window_size or 8) + 8
    codes = [torch.randint(0, 4096, (1, frames // s)) for s in config.vq_strides]
    stream = model.decoder_stream(noise=False)
    counts, total = [], 0
    for f in range(frames):
        total += stream.push(model.slice_codes(codes, f, f + 1)).shape[-1]
        counts.append(total)
    first = next(i for i, c in enumerate(counts) if c > 0)
    assert first * hop == decoder.startup_latency_samples
    latencies = [g * hop - counts[g - 1] for g in range(first + 1, frames) if counts[g] > counts[g - 1]]
    assert max(latencies) == decoder.latency_samples  # the worst case is what is reported

    latents = model.quantizer.latents(codes).detach()

    def network(x):
        ctx = cs.StreamContext(1)
        return torch.cat([model.decoder(x, ctx), model.decoder.flush(ctx)], -1)

    for g in range(first + 1, frames):
        if counts[g] > counts[g - 1]:
            t = counts[g - 1]  # first sample frame g releases
            assert depends_on(network, latents, t, slice(g, g + 1))
            assert not depends_on(network, latents, t - 1, slice(g, None))

    # Encoder: code block b (latent frames b·S .. b·S + S - 1) comes out once all its frames
    # are final (with attention: once their whole window is); they depend on the sample just
    # before the release, and on nothing after it.
    encoder = model.encoder_stream()
    block = config.vq_strides[0]
    audio = torch.randn(1, 1, encoder.latency_samples + 8 * block * hop, dtype=torch.float64) * 0.2
    assert first_release(model, block) == encoder.startup_latency_samples
    for b in (0, 1, 5):
        release = first_release(model, b * block + 1)
        frames = slice(b * block, (b + 1) * block)
        assert depends_on(model.encoder, audio, frames, slice(release - 1, release))
        assert not depends_on(model.encoder, audio, frames, slice(release, None))


def first_release(model, frames):
    """Samples after which the encoder has released ``frames`` latent frames."""
    n = 0
    while model.encoder_frames(n) < frames:
        n += 1
    return n


def test_encoder_release_points():
    config = SMALL["24k"]
    model = ours_like(random_reference(config, seed=11), config)
    stream = model.encoder_stream()
    released = encoder_release_points(model, 11_000)[::4]  # code blocks of 4 latent frames
    assert released[0] == stream.startup_latency_samples == 6805
    assert [r - released[0] for r in released] == [0, 2048, 4096]  # one coarse block per 2048 samples
    assert released[1] - 4 * 512 == stream.latency_samples


@pytest.fixture(scope="module")
def small_24k():
    config = SMALL["24k"]
    return ours_like(random_reference(config, seed=12), config, torch.float32)


@pytest.mark.parametrize("decode_every", ["token", "frame"])
@pytest.mark.parametrize("pattern", ["one", "bursts", "jitter", "all"])
def test_orpheus_tokens_decode_like_offline(small_24k, pattern, decode_every):
    model = small_24k
    codes = [torch.randint(0, 4096, (1, n)) for n in (6, 12, 24)]
    codes[0][0, 0] = 0  # code 0 is a valid token
    codes[2][0, 5] = 0
    ids = orpheus_token_ids(codes)
    assert len(ids) == 42 and ids[0] == 128266 and min(ids) >= 128266
    decoder = OrpheusDecoder(model, noise_seed=7, decode_every=decode_every)
    sizes = {"one": [1] * 42, "bursts": [7, 14, 21], "jitter": chunk_sizes(42, "random", seed=1, max_size=9), "all": [42]}[pattern]
    pieces, start = [], 0
    for size in sizes:
        pieces.append(decoder.push(ids[start : start + size]))
        start += size
    pieces.append(decoder.flush())
    out = torch.cat(pieces, -1)
    expected = torch.cat([(s := model.decoder_stream(noise_seed=7)).push(codes), s.flush()], -1)
    assert out.shape == (1, 1, 6 * 2048)  # every frame, the first and the last included
    assert max_rel_error(out, expected) <= 1e-5


def test_orpheus_audio_starts_within_the_third_frame(small_24k):
    ids = orpheus_token_ids([torch.randint(0, 4096, (1, n)) for n in (6, 12, 24)])
    decoder = OrpheusDecoder(small_24k)
    first_audio = next(i for i, t in enumerate(ids) if decoder.push(t).shape[-1])
    # Latent frame 9 (4757 samples of lookahead ≈ 9.3 frames) needs L2[9]: token 4 of frame 2.
    assert first_audio == 2 * 7 + 3
    decoder = OrpheusDecoder(small_24k, decode_every="frame")
    first_audio = next(i for i, t in enumerate(ids) if decoder.push(t).shape[-1])
    assert first_audio == 2 * 7 + 6  # the whole third frame


def test_orpheus_malformed_tokens(small_24k):
    decoder = OrpheusDecoder(small_24k)
    with pytest.raises(cs.CodeRangeError, match="not an Orpheus audio token"):
        decoder.push(128000)
    with pytest.raises(cs.CodeRangeError, match="slot 1 but slot 0 is due"):
        decoder.push(128266 + 4096 + 5)
    decoder.push([128266, 128266 + 4096])
    with pytest.raises(cs.StreamStateError, match="mid-frame: 2 of 7"):
        decoder.flush()
    with pytest.raises(cs.OptionError):
        OrpheusDecoder(ours_like(random_reference(SMALL["32k"]), SMALL["32k"]))


def test_orpheus_window_baseline_is_not_exact(small_24k):
    model = small_24k
    codes = [torch.randint(0, 4096, (1, n)) for n in (8, 16, 32)]
    quiet = model.decoder_stream(noise=False)
    offline = torch.cat([quiet.push(codes), quiet.flush()], -1)
    baseline = OrpheusWindowDecoder(model)
    errors, emitted = [], 0
    for count, token in enumerate(orpheus_token_ids(codes), start=1):
        chunk = baseline.push(token)
        if chunk is not None:
            start = baseline.emitted_start(count)
            errors.append(float((chunk - offline[..., start : start + 2048]).abs().max()))
            emitted += chunk.shape[-1]
    assert emitted == (8 - 3) * 2048  # frames 1..5 of 8: the first and the last two never come
    assert max(errors) > 1e-4  # windows shorter than the receptive field


def test_bad_codes(small_24k):
    model = small_24k
    with pytest.raises(cs.ShapeError, match="list of 3 tensors"):
        model.decode(torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(cs.CodeRangeError, match=r"codes\[1\] must lie in \[0, 4096\)"):
        model.decode([torch.zeros(1, 1, dtype=torch.long), torch.full((1, 2), 4096), torch.zeros(1, 4, dtype=torch.long)])
    with pytest.raises(cs.ShapeError, match=r"codes\[0\] must be \[batch, frames\]"):
        model.decode([torch.zeros(1, 1, 1, dtype=torch.long)] * 3)
    stream = model.decoder_stream()
    stream.push([torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long)])
    with pytest.raises(cs.StreamStateError, match="ended inside a frame"):
        stream.flush()
