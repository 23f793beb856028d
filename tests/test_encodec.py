"""EnCodec 24 kHz: parity with the `encodec` package and transformers, exact streaming, latency."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import (
    CHUNKINGS,
    chunk_sizes,
    decoder_release_counts,
    encoder_release_points,
    max_rel_error,
    stream_all,
)

import codecstream as cs
from codecstream.models.encodec import EncodecCodec, EncodecConfig
from codecstream.models.encodec.checkpoint import TRAINING_ONLY_KEYS, read_encodec_checkpoint
from codecstream.signals import speech_like as speechlike
from codecstream.weights import fold_weight_norm, load_state

encodec_pkg = pytest.importorskip("encodec", reason="the encodec reference package is a dev dependency")

SMALL_CAUSAL = EncodecConfig(n_filters=4, dimension=16, ratios=(4, 2), lstm_layers=1, codebook_size=64, target_bandwidths=(18.0, 36.0, 72.0))
SMALL_CENTRED = EncodecConfig(
    n_filters=4, dimension=16, ratios=(5, 2), lstm_layers=2, codebook_size=64, causal=False,
    n_residual_layers=2, true_skip=True, target_bandwidths=(14.4, 28.8),
)


def reference_model(config: EncodecConfig, seed: int = 0):
    """The `encodec` package's model for ``config``, with every weight random (non-trivial
    weight-norm gains and code-books too)."""
    from encodec.model import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    torch.manual_seed(seed)
    common = dict(
        channels=config.channels, dimension=config.dimension, n_filters=config.n_filters,
        n_residual_layers=config.n_residual_layers, ratios=list(config.ratios), norm="weight_norm",
        kernel_size=config.kernel_size, last_kernel_size=config.last_kernel_size,
        residual_kernel_size=config.residual_kernel_size, dilation_base=config.dilation_base,
        causal=config.causal, pad_mode=config.pad_mode, true_skip=config.true_skip,
        compress=config.compress, lstm=config.lstm_layers,
    )
    quantizer = ResidualVectorQuantizer(dimension=config.dimension, n_q=config.num_codebooks, bins=config.codebook_size)
    model = EncodecModel(
        SEANetEncoder(**common), SEANetDecoder(**common), quantizer,
        list(config.target_bandwidths), config.sample_rate, config.channels,
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight_g"):
                parameter.mul_(torch.empty_like(parameter).uniform_(0.5, 1.5))
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_()
    return model.eval()


def ours_from_reference(reference, config: EncodecConfig, tmp_path, dtype=torch.float32) -> EncodecCodec:
    path = tmp_path / "model.th"
    torch.save(reference.state_dict(), path)
    _, state = read_encodec_checkpoint(path, config)
    model = EncodecCodec(config)
    load_state(model, fold_weight_norm(state, dtype), ignore=TRAINING_ONLY_KEYS)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Full-size reference model, saved in the official `encodec_24khz-*.th` layout."""
    reference = reference_model(EncodecConfig())
    path = tmp_path_factory.mktemp("encodec") / "encodec_24khz.th"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_parity_at_published_size_official_layout(published):
    reference, path = published
    model = cs.load("encodec-24khz", weights=path)
    audio = speechlike(1.5, 24_000, 1, seed=1) + 0.01 * torch.randn(1, 1, 36_000)
    with torch.no_grad():
        latents_ref = reference.encoder(audio)
        assert max_rel_error(model.encoder(audio), latents_ref) <= 1e-5
        for bandwidth, books in zip((1.5, 3.0, 6.0, 12.0, 24.0), (2, 4, 8, 16, 32)):
            reference.set_target_bandwidth(bandwidth)
            codes_ref = reference.encode(audio)[0][0]
            codes = model.encode(audio, bandwidth=bandwidth)
            assert codes.shape == (1, books, 113)
            # Latents agree bit for bit here, so no near-tie can flip a code: demand equality.
            assert torch.equal(codes, codes_ref), f"{int((codes != codes_ref).sum())} codes differ at {bandwidth} kbps"
            audio_ref = reference.decode([(codes_ref, None)])
            decoded = model.decode(codes_ref)
            assert decoded.shape == audio_ref.shape == (1, 1, 113 * 320)
            assert max_rel_error(decoded, audio_ref) <= 1e-5


@pytest.mark.parametrize("config", [SMALL_CAUSAL, SMALL_CENTRED], ids=["causal", "centred"])
def test_parity_small_configs(config, tmp_path):
    reference = reference_model(config, seed=3)
    model = ours_from_reference(reference, config, tmp_path)
    audio = torch.randn(2, 1, 997) * 0.3
    with torch.no_grad():
        latents_ref = reference.encoder(audio)
        latents = model.encoder(audio)
        assert latents.shape == latents_ref.shape
        assert max_rel_error(latents, latents_ref) <= 1e-5
        codes_ref = reference.encode(audio)[0][0]
        codes = model.encode(audio)
        assert torch.equal(codes, codes_ref)
        assert max_rel_error(model.decode(codes), reference.decode([(codes_ref, None)])) <= 1e-5


def transformers_checkpoint(tmp_path, *, legacy_keys: bool):
    transformers = pytest.importorskip("transformers", reason="a parity reference installed by .ci/setup (dev extra)")
    torch.manual_seed(5)
    hf = transformers.EncodecModel(transformers.EncodecConfig()).eval()
    with torch.no_grad():
        for layer in hf.quantizer.layers:
            layer.codebook.embed.normal_()
        for name, parameter in hf.named_parameters():
            if name.endswith("original0"):
                parameter.mul_(torch.empty_like(parameter).uniform_(0.5, 1.5))
    hf.save_pretrained(tmp_path)
    if legacy_keys:  # the published facebook/encodec_24khz file uses weight_g / weight_v
        from safetensors.torch import load_file, save_file

        state = load_file(tmp_path / "model.safetensors")
        renamed = {
            k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v
            for k, v in state.items()
        }
        assert any(k.endswith("weight_g") for k in renamed)
        save_file(renamed, tmp_path / "model.safetensors")
    return hf


@pytest.mark.parametrize("legacy_keys", [False, True], ids=["parametrizations", "weight_g_v"])
def test_parity_with_transformers_layout(tmp_path, legacy_keys):
    hf = transformers_checkpoint(tmp_path, legacy_keys=legacy_keys)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "encodec"
    model = cs.load("encodec-24khz", weights=tmp_path)
    audio = speechlike(1.0, 24_000, 1, seed=2)
    with torch.no_grad():
        for bandwidth in (1.5, 6.0, 24.0):
            codes_ref = hf.encode(audio, bandwidth=bandwidth).audio_codes[0]
            codes = model.encode(audio, bandwidth=bandwidth)
            assert torch.equal(codes, codes_ref)
            audio_ref = hf.decode(codes_ref[None], [None]).audio_values
            assert max_rel_error(model.decode(codes), audio_ref) <= 1e-5


@pytest.fixture(scope="module")
def published64(published):
    return cs.load("encodec-24khz", weights=published[1], dtype=torch.float64)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_streaming_equals_offline_float64_published_size(published64, chunking):
    model = published64
    audio = speechlike(0.4, 24_000, 1, seed=4).double() + 0.01 * torch.randn(1, 1, 9600, dtype=torch.float64)
    audio = audio[..., :9599]  # not a whole number of frames: the flush pads the end
    offline = model.encode(audio, bandwidth=6.0)
    streamed = stream_all(model.encoder_stream(bandwidth=6.0), audio, chunk_sizes(audio.shape[-1], chunking, seed=7))
    assert torch.equal(streamed, offline)
    latents = model.encoder(audio)
    assert torch.allclose(stream_all_latents(model, audio, chunk_sizes(audio.shape[-1], chunking, seed=8)), latents, atol=1e-9, rtol=0)
    decoded = model.decode(offline)
    frames = chunk_sizes(offline.shape[-1], chunking, seed=9, max_size=7)
    assert (stream_all(model.decoder_stream(), offline, frames) - decoded).abs().max() <= 1e-9


def stream_all_latents(model, audio, sizes):
    """The encoder network alone, streamed through a raw context (no quantizer, no re-blocking)."""
    ctx = cs.StreamContext(audio.shape[0])
    parts, start = [], 0
    for size in sizes:
        parts.append(model.encoder(audio[..., start : start + size], ctx))
        start += size
    parts.append(model.encoder.flush(ctx))
    return torch.cat([p for p in parts if p is not None], dim=-1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("config", [SMALL_CAUSAL, SMALL_CENTRED], ids=["causal", "centred"])
def test_streaming_equals_offline_float64_small(config, seed, tmp_path):
    model = ours_from_reference(reference_model(config, seed=seed), config, tmp_path, torch.float64)
    length = 200 + 137 * seed
    audio = torch.randn(2, 1, length, dtype=torch.float64) * 0.3
    offline = model.encode(audio)
    for chunking in CHUNKINGS:
        streamed = stream_all(model.encoder_stream(2), audio, chunk_sizes(length, chunking, seed=seed, max_size=50))
        assert torch.equal(streamed, offline)
        decoded = model.decode(offline)
        frames = chunk_sizes(offline.shape[-1], chunking, seed=seed, max_size=9)
        assert (stream_all(model.decoder_stream(2), offline, frames) - decoded).abs().max() <= 1e-9


def test_streaming_float32_tolerance(published):
    """float32: streamed chunks use GEMM kernels and offline uses torch's conv kernels, which
    sum in another order. Each layer then differs by a few ulps (~1e-7 relative); through ~30
    layers and two LSTMs that stays below 1e-5 of the signal peak. The codes come out equal
    (no latent lands near enough to a tie to flip)."""
    model = cs.load("encodec-24khz", weights=published[1])
    audio = speechlike(2.0, 24_000, 1, seed=5)
    offline_codes = model.encode(audio, bandwidth=6.0)
    sizes = chunk_sizes(audio.shape[-1], "random", seed=3, max_size=960)
    streamed_codes = stream_all(model.encoder_stream(bandwidth=6.0), audio, sizes)
    assert torch.equal(streamed_codes, offline_codes)
    offline_audio = model.decode(offline_codes)
    streamed_audio = stream_all(model.decoder_stream(), offline_codes, chunk_sizes(offline_codes.shape[-1], "ones"))
    assert max_rel_error(streamed_audio, offline_audio) <= 1e-5


def test_reported_latency_is_what_the_streams_deliver(published64):
    model = published64
    encoder, decoder = model.encoder_stream(), model.decoder_stream()
    assert (encoder.latency_samples, encoder.startup_latency_samples) == (320, 2240)
    assert (decoder.latency_samples, decoder.startup_latency_samples) == (0, 1920)
    assert encoder.latency_ms == pytest.approx(13.333, abs=1e-3)

    released = encoder_release_points(model, 320 * 14)
    assert released[0] == encoder.startup_latency_samples  # frames 0..6 all come out at 2240
    assert released[:7] == [2240] * 7
    for j in range(7, 14):
        assert released[j] == j * 320 + encoder.latency_samples

    codes = torch.randint(0, 1024, (1, 8, 14))
    counts = decoder_release_counts(model, codes)
    first = counts.index(next(c for c in counts if c > 0))
    assert first * 320 == decoder.startup_latency_samples  # frame 6 releases sample 0
    for g in range(first + 1, 14):
        assert counts[g - 1] == g * 320 - decoder.latency_samples  # frame g releases from g*hop - latency


def test_latency_is_the_minimum_the_model_allows(published64):
    """Every released output depends on the last input that arrived before its release, so
    no stream could release it earlier and stay exact."""
    model = published64
    audio = torch.randn(1, 1, 320 * 12, dtype=torch.float64) * 0.3
    base = model.encoder(audio)
    for frame, release in ((0, 2240), (9, 9 * 320 + 320)):
        bumped = audio.clone()
        bumped[..., release - 1] += 0.5
        assert (model.encoder(bumped)[..., frame] - base[..., frame]).abs().max() > 1e-6
        early = audio.clone()
        early[..., release:] += 0.5  # later samples must not matter
        assert torch.allclose(model.encoder(early)[..., frame], base[..., frame], atol=1e-12)

    codes = torch.randint(0, 1024, (1, 8, 12))
    decoded = model.decode(codes)
    for frame, first_sample in ((6, 0), (9, 9 * 320)):
        bumped = codes.clone()
        bumped[..., frame] = (bumped[..., frame] + 1) % 1024
        assert abs(float(model.decode(bumped)[0, 0, first_sample] - decoded[0, 0, first_sample])) > 1e-9


def test_bandwidths_and_code_layout(published):
    model = cs.load("encodec-24khz", weights=published[1])
    audio = speechlike(0.3, 24_000, 1)
    assert model.token_spec.bandwidths_kbps == (1.5, 3.0, 6.0, 12.0, 24.0)
    assert model.token_spec.levels[0].frame_rate == 75
    for bandwidth, books in zip((1.5, 3.0, 6.0, 12.0, 24.0), (2, 4, 8, 16, 32)):
        assert model.encode(audio, bandwidth=bandwidth).shape[1] == books
    assert model.encode(audio).shape[1] == 32  # no bandwidth: every code-book, like the original
    full = model.encode(audio)
    assert torch.equal(model.encode(audio, bandwidth=3.0), full[:, :4])  # residual VQ is a prefix
    with pytest.raises(cs.OptionError, match="does not offer 5"):
        model.encode(audio, bandwidth=5.0)


def test_batched_stream_equals_separate_streams(published64):
    model = published64
    audio = torch.randn(3, 1, 3000, dtype=torch.float64) * 0.3
    batched = stream_all(model.encoder_stream(3, bandwidth=3.0), audio, chunk_sizes(3000, "primes"))
    for b in range(3):
        assert torch.equal(batched[b : b + 1], model.encode(audio[b : b + 1], bandwidth=3.0))


def test_reset_starts_a_new_stream(published64):
    model = published64
    audio = torch.randn(1, 1, 4000, dtype=torch.float64) * 0.3
    stream = model.encoder_stream()
    first = stream_all(stream, audio, [1000] * 4)
    stream.reset()
    again = stream_all(stream, audio, [1000] * 4)
    assert torch.equal(first, again)
