"""The continuous-latent interface (``cs.get_voco``): time-major shapes and lengths, parity of the
latents and of decoding with the reference packages (vocos, transformers' DacModel, diffusers'
AutoencoderOobleck), exact streaming, bad input."""

from __future__ import annotations

import pytest
import torch
from helpers import CHUNKINGS, chunk_sizes, max_rel_error, stream_time_major

import codecstream as cs
from codecstream.models.dac import DacCodec
from codecstream.models.oobleck import OobleckCodec

test_vocos = pytest.importorskip("test_vocos")  # skips without the vocos package
test_dac = pytest.importorskip("test_dac")  # ... transformers
test_oobleck = pytest.importorskip("test_oobleck")  # ... diffusers
test_dacvae = pytest.importorskip("test_dacvae", reason="DACVAE's reference needs descript-audio-codec and einops (installed by .ci/setup)")

KINDS = ["mel", "encodec", "dac", "oobleck", "dacvae"]


def small_voco(kind: str, dtype=torch.float64) -> cs.LatentAutoencoder:
    """Reduced configs of the published architectures (random weights)."""
    if kind == "mel":
        model = test_vocos.small_model(test_vocos.SMALL_MEL, 0, dtype)
    elif kind == "encodec":
        model = test_vocos.small_model(test_vocos.SMALL_ENCODEC, 1, dtype)
    elif kind == "dacvae":
        model = test_dacvae.seeded(test_dacvae.TINY, 2, dtype)
    else:
        torch.manual_seed(2)
        model = DacCodec(test_dac.SMALL["24k"]) if kind == "dac" else OobleckCodec(test_oobleck.TINY)
        model = model.to(dtype).eval()
    return model.latents()


@pytest.fixture(scope="module")
def vocos_small():
    return {kind: small_voco(kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_lengths(vocos_small, kind):
    voco = vocos_small[kind]
    hop = voco.hop_length
    for length in [hop + 1, 2 * hop, 5 * hop + 3, 2003] + ([] if kind == "mel" else [1, hop - 1]):
        audio = torch.randn(2, length, voco.channel, dtype=torch.float64) * 0.3
        latents = voco.encode(audio)
        assert latents.shape == (2, voco.encode_length(length), voco.latent_dim), length
        decoded = voco.decode(latents)
        assert decoded.shape == (2, voco.decode_length(latents.shape[1]), voco.channel)
        assert latents.shape[1] * hop >= length  # the end is padded to a whole hop, never cut
    lengths = torch.tensor([hop + 1, 2003])
    assert voco.encode_length(lengths).tolist() == [voco.encode_length(int(n)) for n in lengths]
    frames = torch.tensor([1, 7])
    assert voco.decode_length(frames).tolist() == [voco.decode_length(int(n)) for n in frames]
    # any latents decode, not only encoder output (a generative model's samples)
    assert voco.decode(torch.randn(1, 7, voco.latent_dim, dtype=torch.float64)).shape[1] == voco.decode_length(7)


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_equals_offline_float64(vocos_small, kind):
    voco = vocos_small[kind]
    length = 3 * voco.hop_length + 1031
    audio = torch.randn(2, length, voco.channel, dtype=torch.float64) * 0.3
    latents = voco.encode(audio)
    decoded = voco.decode(latents)
    for seed, chunking in enumerate(CHUNKINGS):
        with voco.encoder_stream(2) as stream:
            streamed = stream_time_major(stream, audio, chunk_sizes(length, chunking, seed=seed))
        assert streamed.shape == latents.shape and (streamed - latents).abs().max() <= 1e-9, chunking
        with voco.decoder_stream(2) as stream:
            out = stream_time_major(stream, latents, chunk_sizes(latents.shape[1], chunking, seed=seed, max_size=5))
        assert out.shape == decoded.shape and (out - decoded).abs().max() <= 1e-9, chunking


@pytest.mark.parametrize("kind", KINDS)
def test_streams_report_the_codecs_latency(vocos_small, kind):
    voco = vocos_small[kind]
    encoder, decoder = voco.encoder_stream(), voco.decoder_stream()
    assert encoder.latency_samples == voco.codec.encoder_stream().latency_samples
    assert decoder.latency_samples == voco.codec.decoder_stream().latency_samples
    assert decoder.latency_ms == pytest.approx(1000 * decoder.latency_samples / voco.sampling_rate)


def test_mel_parity_with_vocos():
    reference = test_vocos.random_reference(test_vocos.SMALL_MEL, 0)
    voco = small_voco("mel", torch.float32)
    audio = torch.randn(1, 4000) * 0.3
    latents = voco.encode(audio[:, :, None])
    with torch.no_grad():
        expected = reference.feature_extractor(audio)
        assert max_rel_error(latents.transpose(1, 2), expected) <= 1e-5
        assert max_rel_error(voco.decode(latents)[..., 0], reference.decode(expected)) <= 1e-5


def test_encodec_parity_with_vocos_features():
    """Vocos-EnCodec's own feature extractor (the encodec package's encoder, RVQ at 6 kbps, summed
    code embeddings) gives the latents; its backbone conditioned on 6 kbps decodes them."""
    reference = test_vocos.random_reference(test_vocos.SMALL_ENCODEC, 1)
    voco = small_voco("encodec", torch.float32)
    audio = torch.randn(1, 320 * 9 + 17) * 0.3
    latents = voco.encode(audio[:, :, None])
    bandwidth_id = torch.tensor([2])  # 6 kbps
    with torch.no_grad():
        expected = reference.feature_extractor(audio, bandwidth_id=2)
        assert max_rel_error(latents.transpose(1, 2), expected) <= 1e-5
        assert max_rel_error(voco.decode(latents)[..., 0], reference.decode(expected, bandwidth_id=bandwidth_id)) <= 1e-5
    twelve = voco.codec.source.latents(bandwidth=12.0)
    with torch.no_grad():
        expected = reference.feature_extractor(audio, bandwidth_id=3)
        assert max_rel_error(twelve.encode(audio[:, :, None]).transpose(1, 2), expected) <= 1e-5


def test_dac_parity_with_transformers(tmp_path):
    """The latents are DacModel's encoder output (before its RVQ), decoded by its decoder."""
    config = test_dac.SMALL["24k"]
    hf = test_dac.reference(config, tmp_path, seed=3)
    voco = test_dac.ours(tmp_path, config).latents()
    audio = torch.randn(1, 1, config.hop_length * 6) * 0.3
    with torch.no_grad():
        expected = hf.encoder(audio)
        latents = voco.encode(audio.transpose(1, 2))
        assert max_rel_error(latents.transpose(1, 2), expected) <= 1e-5
        assert max_rel_error(voco.decode(latents).transpose(1, 2), hf.decoder(expected)) <= 1e-5
        # a partial last hop is padded with zeros, as DAC's preprocess does
        short = voco.encode(audio[:, :, :-100].transpose(1, 2))
        padded = torch.nn.functional.pad(audio[:, :, :-100], (0, 100))
        assert max_rel_error(short.transpose(1, 2), hf.encoder(padded)) <= 1e-5


def test_oobleck_parity_with_diffusers(tmp_path):
    """The latents are the posterior mean of diffusers' AutoencoderOobleck; its decoder decodes them."""
    reference = test_oobleck.reference(test_oobleck.TINY, tmp_path, seed=4)
    voco = test_oobleck.ours(tmp_path).latents()
    hop = voco.hop_length
    audio = torch.randn(1, 2, hop * 5) * 0.3
    with torch.no_grad():
        expected = reference.encode(audio).latent_dist.mean
        latents = voco.encode(audio.transpose(1, 2))
        assert max_rel_error(latents.transpose(1, 2), expected) <= 1e-5
        assert max_rel_error(voco.decode(latents).transpose(1, 2), reference.decode(expected).sample) <= 1e-5
        # the reference drops a partial last hop; the latent interface pads it with zeros instead
        padded = torch.nn.functional.pad(audio[..., :-10], (0, 10))
        assert max_rel_error(voco.encode(audio[..., :-10].transpose(1, 2)).transpose(1, 2), reference.encode(padded).latent_dist.mean) <= 1e-5
        assert voco.codec.encode(audio[..., :-10]).shape[-1] == 4  # the plugin itself follows the reference


@pytest.mark.parametrize("name, latency", [("mel", 7423), ("encodec", 9119)])
def test_get_voco_at_published_size(name, latency):
    voco = cs.get_voco(name, "random")
    assert voco.name == name and voco.sampling_rate == 24_000 and voco.channel == 1
    audio = torch.randn(1, 7200, 1) * 0.3
    with torch.inference_mode():
        latents = voco.encode(audio)
        assert latents.shape == (1, voco.encode_length(7200), voco.latent_dim)
        assert voco.decode(latents).shape == (1, voco.decode_length(latents.shape[1]), 1)
    assert voco.decoder_stream().latency_samples == latency


def test_bad_input(vocos_small):
    voco = vocos_small["dac"]
    with pytest.raises(cs.ChannelError, match="1 values per step"):
        voco.encode(torch.zeros(1, 4000, 2, dtype=torch.float64))
    with pytest.raises(cs.ChannelError, match="shape \\(1, 1, 4000\\)"):  # channels-first by mistake
        voco.encode(torch.zeros(1, 1, 4000, dtype=torch.float64))
    with pytest.raises(cs.ShapeError, match="time-major"):
        voco.encode(torch.zeros(4000, dtype=torch.float64))
    with pytest.raises(cs.ShapeError):
        voco.decode(torch.zeros(1, 5, voco.latent_dim + 1, dtype=torch.float64))
    with pytest.raises(cs.NonFiniteError):
        voco.decode(torch.full((1, 5, voco.latent_dim), float("nan"), dtype=torch.float64))
    with pytest.raises(cs.ShapeError):
        voco.encode([[0.0]])
    with pytest.raises(cs.UnknownModelError, match="mel, encodec"):
        cs.get_voco("wavtokenizer")
    with pytest.raises(cs.OptionError, match="no continuous latent space"):
        cs.load("snac-24khz", "random").latents()
    with pytest.raises(cs.OptionError, match="kbps"):
        vocos_small["encodec"].codec.source.latents(bandwidth=5.0)
