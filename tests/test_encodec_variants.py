"""EnCodec 32 kHz (MusicGen's codec, non-causal) and 48 kHz (stereo, segmented): parity with
transformers and the `encodec` package, exact streaming, latency, codes container."""

from __future__ import annotations

import pytest
import torch
from helpers import CHUNKINGS, chunk_sizes, decoder_release_counts, depends_on, encoder_release_points, max_rel_error, stream_all

import codecstream as cs
from codecstream.models.encodec import ENCODEC_32KHZ, ENCODEC_48KHZ, EncodecConfig, SegmentCodes
from codecstream.models.encodec.reference import package_model

transformers = pytest.importorskip("transformers", reason="a parity reference installed by .ci/setup (dev extra)")
encodec_pkg = pytest.importorskip("encodec", reason="a parity reference installed by .ci/setup (dev extra)")

SMALL_32K = EncodecConfig(
    sample_rate=32_000, n_filters=4, dimension=16, ratios=(8, 5, 4, 4), causal=False, true_skip=True,
    codebook_size=64, target_bandwidths=(1.2,),
)


def hf_config(config: EncodecConfig) -> "transformers.EncodecConfig":
    return transformers.EncodecConfig(
        sampling_rate=config.sample_rate, audio_channels=config.channels, num_filters=config.n_filters,
        hidden_size=config.dimension, upsampling_ratios=list(config.ratios), norm_type=config.norm,
        use_causal_conv=config.causal, use_conv_shortcut=not config.true_skip, pad_mode=config.pad_mode,
        chunk_length_s=config.segment_s, overlap=config.overlap if config.segment_s else None,
        normalize=config.normalize, codebook_size=config.codebook_size, target_bandwidths=list(config.target_bandwidths),
        num_lstm_layers=config.lstm_layers,
    )


def hf_reference(config: EncodecConfig, directory, seed: int):
    torch.manual_seed(seed)
    model = transformers.EncodecModel(hf_config(config)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("weight_g", "original0")):
                parameter.mul_(torch.empty_like(parameter).uniform_(0.5, 1.5))
            elif name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_()
    model.save_pretrained(directory)
    return model


# -- 32 kHz -----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [SMALL_32K, ENCODEC_32KHZ], ids=["small", "published"])
def test_32khz_parity_with_transformers(config, tmp_path):
    reference = hf_reference(config, tmp_path, seed=1)
    model = cs.load("encodec-32khz", weights=tmp_path)
    assert model.config.num_codebooks == 4 and model.config.codebook_size == config.codebook_size
    audio = torch.randn(1, 1, 640 * 25 - 123) * 0.3
    with torch.no_grad():
        codes_ref = reference.encode(audio).audio_codes[0]
        codes = model.encode(audio)
        assert torch.equal(codes, codes_ref)
        audio_ref = reference.decode(codes_ref[None], [None]).audio_values
        assert max_rel_error(model.decode(codes), audio_ref) <= 1e-5


@pytest.fixture(scope="module")
def small32_64(tmp_path_factory):
    directory = tmp_path_factory.mktemp("encodec32")
    hf_reference(SMALL_32K, directory, seed=2)
    return cs.load("encodec-32khz", weights=directory).double()


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_32khz_streaming_equals_offline_float64(small32_64, chunking):
    model = small32_64
    audio = torch.randn(1, 1, 640 * 14 + 201, dtype=torch.float64) * 0.3
    codes = model.encode(audio)
    decoded = model.decode(codes)
    sizes = chunk_sizes(audio.shape[-1], chunking, seed=3, max_size=1500)
    assert torch.equal(stream_all(model.encoder_stream(), audio, sizes), codes)
    frames = chunk_sizes(codes.shape[-1], chunking, seed=4, max_size=4)
    assert (stream_all(model.decoder_stream(), codes, frames) - decoded).abs().max() <= 1e-9


def test_32khz_latency_delivered_and_minimal(small32_64):
    model = small32_64
    hop = 640
    encoder, decoder = model.encoder_stream(), model.decoder_stream()
    assert (encoder.latency_samples, decoder.latency_samples) == (3026, 2402)  # 74.6 ms of encoder lookahead past the hop
    released = encoder_release_points(model, encoder.startup_latency_samples + 6 * hop)
    steady = [r - j * hop for j, r in enumerate(released)][3:]
    assert max(steady) == encoder.latency_samples and released[0] == encoder.startup_latency_samples
    audio = torch.randn(1, 1, released[-1] + 4000, dtype=torch.float64)
    last = len(released) - 1

    def latents(x):
        return model.encoder(x)

    assert depends_on(latents, audio, last, slice(released[-1] - 1, released[-1]))
    assert not depends_on(latents, audio, last, slice(released[-1], None))

    codes = torch.randint(0, 64, (1, 4, 16))
    counts = decoder_release_counts(model, codes)
    assert max(g * hop - counts[g - 1] for g in range(1, 16) if counts[g] > counts[g - 1]) == decoder.latency_samples


# -- 48 kHz -----------------------------------------------------------------------------


def package_48khz(seed: int):
    """The `encodec` package's 48 kHz model, every weight random (gains, norms, code-books)."""
    torch.manual_seed(seed)
    model = package_model(ENCODEC_48KHZ)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight_g"):
                parameter.mul_(torch.empty_like(parameter).uniform_(0.5, 1.5))
            elif ".norm." in name:
                parameter.uniform_(0.5, 1.5) if name.endswith("weight") else parameter.normal_(0, 0.1)
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_()
    return model.eval()


@pytest.fixture(scope="module")
def published48(tmp_path_factory):
    reference = package_48khz(seed=5)
    path = tmp_path_factory.mktemp("encodec48") / "encodec_48khz-random.th"
    torch.save(reference.state_dict(), path)
    return reference, cs.load("encodec-48khz", weights=path)


def stereo(seconds: float, seed: int, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    n = int(seconds * 48_000)
    t = torch.arange(n, dtype=torch.float64) / 48_000
    tone = torch.stack([torch.sin(2 * torch.pi * 220 * t), 0.5 * torch.sin(2 * torch.pi * 330 * t)])
    return (0.3 * tone + 0.05 * torch.randn(2, n, generator=generator, dtype=torch.float64))[None].to(dtype)


def test_48khz_parity_with_the_encodec_package(published48):
    reference, model = published48
    audio = stereo(2.3, seed=6)  # three segments: 1 s, 1 s and the 0.32 s left
    with torch.no_grad():
        frames_ref = reference.encode(audio)
        codes = model.encode(audio, bandwidth=12.0)
    assert isinstance(codes, SegmentCodes) and len(codes) == len(frames_ref) == 3
    reference.set_target_bandwidth(12.0)
    with torch.no_grad():
        frames_ref = reference.encode(audio)
        for (segment, scale), (segment_ref, scale_ref) in zip(codes, frames_ref):
            assert segment.shape[1] == 8 and torch.equal(segment, segment_ref)
            assert torch.allclose(scale, scale_ref, rtol=1e-6)
        decoded = model.decode(codes)
        decoded_ref = reference.decode(frames_ref)
    assert decoded.shape == decoded_ref.shape == (1, 2, 2 * 47_520 + 15_360)
    assert max_rel_error(decoded, decoded_ref) <= 1e-4  # float32 through two 1 s group norms


def test_48khz_streams_segment_by_segment_exactly(published48):
    _, model = published48
    model = model.double()
    try:
        audio = stereo(2.05, seed=7, dtype=torch.float64)
        codes = model.encode(audio, bandwidth=6.0)
        decoded = model.decode(codes)
        for chunking in ("primes", "random", "whole"):
            sizes = chunk_sizes(audio.shape[-1], chunking, seed=8, max_size=20_000)
            streamed = stream_all(model.encoder_stream(bandwidth=6.0), audio, sizes, concat=model.concat_codes)
            assert len(streamed) == len(codes) == 3
            assert all(torch.equal(a, b) for a, b in zip(streamed.codes, codes.codes))
        decoder = model.decoder_stream()
        parts = [decoder.push(model.slice_codes(codes, i, i + 1)) for i in range(len(codes))]
        assert [p.shape[-1] for p in parts] == [47_520, 47_520, 3_520]  # up to the next start; the last: 11 frames
        parts.append(decoder.flush())
        assert (torch.cat(parts, -1) - decoded).abs().max() <= 1e-12
    finally:
        model.float()


def test_48khz_latency_is_one_segment(published48):
    _, model = published48
    encoder, decoder = model.encoder_stream(), model.decoder_stream()
    assert (encoder.latency_samples, decoder.latency_samples) == (48_000, 0)
    silence = torch.zeros(1, 2, 47_999)
    assert len(encoder.push(silence)) == 0
    assert len(encoder.push(torch.zeros(1, 2, 1))) == 1  # the segment's last sample releases it
    assert len(encoder.push(torch.zeros(1, 2, 47_519))) == 0
    assert len(encoder.push(torch.zeros(1, 2, 1))) == 1


def test_48khz_transformers_layout(tmp_path):
    """transformers pads the last chunk to a whole second (the original does not), so the
    layouts are compared on one whole segment."""
    config = EncodecConfig(
        sample_rate=48_000, channels=2, n_filters=4, dimension=16, causal=False, norm="time_group_norm",
        segment_s=1.0, normalize=True, codebook_size=64, target_bandwidths=(1.8, 3.6), lstm_layers=1,
    )
    reference = hf_reference(config, tmp_path, seed=9)
    model = cs.load("encodec-48khz", weights=tmp_path)
    audio = stereo(1.0, seed=10)
    with torch.no_grad():
        encoded = reference.encode(audio, bandwidth=3.6)
        segment, scale = model.encode_segment(audio, 4)
        assert torch.equal(segment, encoded.audio_codes[0])
        assert torch.allclose(scale, encoded.audio_scales[0], rtol=1e-6)
        decoded_ref = reference._decode_frame(encoded.audio_codes[0], encoded.audio_scales[0])
        assert max_rel_error(model.decode_segment(segment, scale), decoded_ref) <= 1e-5


def test_48khz_bad_codes_and_codes_file(published48, tmp_path):
    _, model = published48
    codes = model.encode(stereo(1.2, seed=11), bandwidth=3.0)
    frames_list = list(codes)  # the encodec package's [(codes, scale), ...] decodes too
    assert torch.equal(model.decode(frames_list), model.decode(codes))
    with pytest.raises(cs.ShapeError, match="needs its scale"):
        model.decode([(codes.codes[0], None)])
    with pytest.raises(cs.NonFiniteError):
        model.decode([(codes.codes[0], torch.tensor([[float("nan")]]))])
    with pytest.raises(cs.ShapeError, match="every segment but the last"):
        model.decode([(codes.codes[1], codes.scales[1]), (codes.codes[0], codes.scales[0])])
    with pytest.raises(cs.CodeRangeError):
        model.decode([(codes.codes[0] + 1024, codes.scales[0])])
    with pytest.raises(cs.OptionError):
        model.decoder_stream(mode="windowed", lookahead_frames=1)
    back = model.codes_from_arrays(model.codes_to_arrays(codes))
    assert all(torch.equal(a, b) for a, b in zip(back.codes, codes.codes))
    assert all(torch.equal(a, b) for a, b in zip(back.scales, codes.scales))


def test_48khz_refuses_a_24khz_checkpoint(tmp_path):
    path = tmp_path / "encodec_24khz-x.th"
    torch.save(package_model(cs.models.encodec.ENCODEC_24KHZ).state_dict(), path)
    with pytest.raises(cs.CheckpointMismatchError):
        cs.load("encodec-48khz", weights=path)
