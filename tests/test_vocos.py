"""Vocos mel-24khz and encodec-24khz: parity with the `vocos` package, exact streaming, latency."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml
from helpers import (
    CHUNKINGS,
    chunk_sizes,
    decoder_release_counts,
    depends_on,
    encoder_release_points,
    max_rel_error,
    stream_all,
)

import codecstream as cs
from codecstream.models.encodec.checkpoint import plugin_keys
from codecstream.models.vocos import VOCOS_ENCODEC_24KHZ, VOCOS_MEL_24KHZ, VocosEncodec, VocosMel
from codecstream.models.vocos.checkpoint import _RULES
from codecstream.models.vocos.reference import build_reference
from codecstream.signals import speech_like as speechlike
from codecstream.streaming.pointwise import set_condition
from codecstream.weights import fold_weight_norm, load_state, rename_keys

pytest.importorskip("vocos", reason="the vocos reference package is a dev dependency")

SMALL_MEL = dataclasses.replace(VOCOS_MEL_24KHZ, dim=32, intermediate_dim=48, num_layers=2)
SMALL_ENCODEC = dataclasses.replace(VOCOS_ENCODEC_24KHZ, dim=32, intermediate_dim=48, num_layers=3)


def config_yaml(config) -> dict:
    """The published config.yaml layout (jsonargparse class_path / init_args)."""
    if config.features == "mel":
        features = {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {"sample_rate": 24000, "n_fft": config.mel_n_fft, "hop_length": config.mel_hop_length,
                          "n_mels": config.n_mels, "padding": config.mel_padding},
        }
    else:
        features = {
            "class_path": "vocos.feature_extractors.EncodecFeatures",
            "init_args": {"encodec_model": "encodec_24khz", "bandwidths": list(config.bandwidths), "train_codebooks": False},
        }
    backbone = {"input_channels": config.input_channels, "dim": config.dim, "intermediate_dim": config.intermediate_dim,
                "num_layers": config.num_layers}
    if config.adanorm_num_embeddings:
        backbone["adanorm_num_embeddings"] = config.adanorm_num_embeddings
    return {
        "feature_extractor": features,
        "backbone": {"class_path": "vocos.models.VocosBackbone", "init_args": backbone},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": config.dim, "n_fft": config.n_fft, "hop_length": config.hop_length, "padding": config.padding}},
    }


def random_reference(config, seed=0):
    """A `vocos.Vocos` with every parameter random (norm gains, layer scales, AdaLN tables)."""
    torch.manual_seed(seed)
    vocos = build_reference(config)
    with torch.no_grad():
        for name, parameter in vocos.named_parameters():
            if name.startswith("feature_extractor.encodec.") or name == "feature_extractor.codebook_weights":
                continue
            parameter.add_(torch.randn_like(parameter) * 0.05)
        if config.features == "encodec":
            for layer in vocos.feature_extractor.encodec.quantizer.vq.layers:
                layer._codebook.embed.normal_()
            table = torch.cat([layer.codebook for layer in vocos.feature_extractor.encodec.quantizer.vq.layers[:16]])
            vocos.feature_extractor.codebook_weights.copy_(table)
    return vocos.eval()


def save_published_layout(vocos, config, directory, *, with_encodec=True):
    """config.yaml + pytorch_model.bin as on the hub: the EnCodec weights are not in the .bin;
    they travel as encodec_24khz.th beside it."""
    (directory / "config.yaml").write_text(yaml.safe_dump(config_yaml(config)))
    state = vocos.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("feature_extractor.encodec.")}, directory / "pytorch_model.bin")
    if config.features == "encodec" and with_encodec:
        torch.save(vocos.feature_extractor.encodec.state_dict(), directory / "encodec_24khz.th")
    return directory


def load_ours(name, directory, dtype=torch.float32):
    return cs.load(name, weights=directory, dtype=dtype)


@pytest.fixture(scope="module")
def published_mel(tmp_path_factory):
    reference = random_reference(VOCOS_MEL_24KHZ)
    return reference, save_published_layout(reference, VOCOS_MEL_24KHZ, tmp_path_factory.mktemp("vocos_mel"))


@pytest.fixture(scope="module")
def published_encodec(tmp_path_factory):
    reference = random_reference(VOCOS_ENCODEC_24KHZ, seed=1)
    return reference, save_published_layout(reference, VOCOS_ENCODEC_24KHZ, tmp_path_factory.mktemp("vocos_encodec"))


def test_mel_parity_at_published_size(published_mel):
    reference, directory = published_mel
    model = load_ours("vocos-mel-24khz", directory)
    audio = speechlike(1.2, 24_000, 1, seed=3) + 0.01 * torch.randn(1, 1, 28_800)
    with torch.inference_mode():
        mel_ref = reference.feature_extractor(audio[:, 0])
        mel = model.encode(audio)
        assert mel.shape == mel_ref.shape == (1, 100, 1 + 28_800 // 256)
        assert max_rel_error(mel, mel_ref) <= 1e-5
        audio_ref = reference.decode(mel_ref)
        decoded = model.decode(mel_ref)
        assert decoded.shape == (1, 1, audio_ref.shape[-1]) == (1, 1, 256 * 112)
        assert max_rel_error(decoded[:, 0], audio_ref) <= 1e-5
        assert max_rel_error(model.decode(model.encode(audio))[:, 0], reference(audio[:, 0])) <= 1e-5


@pytest.mark.parametrize("bandwidth", [1.5, 3.0, 6.0, 12.0])
def test_encodec_parity_at_published_size(published_encodec, bandwidth):
    reference, directory = published_encodec
    model = load_ours("vocos-encodec-24khz", directory)
    audio = speechlike(1.0, 24_000, 1, seed=4)
    bandwidth_id = torch.tensor([[1.5, 3.0, 6.0, 12.0].index(bandwidth)])
    with torch.inference_mode():
        reference.feature_extractor.encodec.set_target_bandwidth(bandwidth)
        codes_ref = reference.feature_extractor.get_encodec_codes(audio[:, 0])  # [K, B, T]
        codes = model.encode(audio, bandwidth=bandwidth)
        assert torch.equal(codes, codes_ref.transpose(0, 1))
        audio_ref = reference.decode(reference.codes_to_features(codes_ref), bandwidth_id=bandwidth_id)
        decoded = model.decode(codes)
        assert decoded.shape == (1, 1, 24_000) == (1, 1, audio_ref.shape[-1])
        assert max_rel_error(decoded[:, 0], audio_ref) <= 1e-5
        assert max_rel_error(decoded[:, 0], reference(audio[:, 0], bandwidth_id=bandwidth_id)) <= 1e-5


def test_encodec_variant_without_encodec_weights_decodes_only(published_encodec, tmp_path):
    reference, _ = published_encodec
    directory = save_published_layout(reference, VOCOS_ENCODEC_24KHZ, tmp_path, with_encodec=False)
    model = load_ours("vocos-encodec-24khz", directory)
    codes = torch.randint(0, 1024, (1, 8, 40))
    with torch.inference_mode():
        expected = reference.decode(reference.codes_to_features(codes.transpose(0, 1)), bandwidth_id=torch.tensor([2]))
    assert max_rel_error(model.decode(codes)[:, 0], expected) <= 1e-5
    with pytest.raises(cs.WeightsUnavailableError, match="encodec_24khz"):
        model.encode(torch.zeros(1, 1, 2400))


def small_model(config, seed, dtype=torch.float64):
    reference = random_reference(config, seed)
    state = reference.state_dict()
    ours = rename_keys({k: v for k, v in state.items() if not k.startswith("feature_extractor.encodec.")}, _RULES)
    model = VocosMel(config) if config.features == "mel" else VocosEncodec(config)
    if config.features == "encodec":
        encodec = plugin_keys({k[len("feature_extractor.encodec."):]: v for k, v in state.items() if k.startswith("feature_extractor.encodec.")})
        ours.update({"encodec_" + k: v for k, v in encodec.items() if k.startswith(("encoder.", "quantizer."))})
    load_state(model, fold_weight_norm(ours, dtype), ignore=(r"\.(inited|cluster_size|embed_avg)$",))
    return model.to(dtype).eval()


@pytest.mark.parametrize("seed", range(3))
def test_mel_streaming_equals_offline_float64(seed):
    model = small_model(SMALL_MEL, seed)
    length = 3000 + 997 * seed
    audio = torch.randn(2, 1, length, dtype=torch.float64) * 0.3
    mel = model.encode(audio)
    for chunking in CHUNKINGS:
        streamed = stream_all(model.encoder_stream(2), audio, chunk_sizes(length, chunking, seed=seed))
        assert streamed.shape == mel.shape
        assert (streamed - mel).abs().max() <= 1e-9
        decoded = model.decode(mel)
        frames = chunk_sizes(mel.shape[-1], chunking, seed=seed, max_size=9)
        assert (stream_all(model.decoder_stream(2), mel, frames) - decoded).abs().max() <= 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_encodec_streaming_equals_offline_float64(seed):
    model = small_model(SMALL_ENCODEC, seed)
    codes = torch.randint(0, 1024, (2, [2, 4, 8, 16][seed], 37 + 11 * seed))
    decoded = model.decode(codes)
    assert decoded.shape == (2, 1, 320 * codes.shape[-1])
    for chunking in CHUNKINGS:
        frames = chunk_sizes(codes.shape[-1], chunking, seed=seed, max_size=9)
        assert (stream_all(model.decoder_stream(2), codes, frames) - decoded).abs().max() <= 1e-9


def test_streaming_at_published_size_float64(published_mel, published_encodec):
    mel_model = load_ours("vocos-mel-24khz", published_mel[1], torch.float64)
    audio = speechlike(0.5, 24_000, 1, seed=6).double()
    mel = mel_model.encode(audio)
    assert (stream_all(mel_model.encoder_stream(), audio, chunk_sizes(12_000, "primes")) - mel).abs().max() <= 1e-9
    assert (stream_all(mel_model.decoder_stream(), mel, chunk_sizes(mel.shape[-1], "ones")) - mel_model.decode(mel)).abs().max() <= 1e-9
    codec_model = load_ours("vocos-encodec-24khz", published_encodec[1], torch.float64)
    codes = codec_model.encode(audio, bandwidth=6.0)
    assert torch.equal(stream_all(codec_model.encoder_stream(bandwidth=6.0), audio, chunk_sizes(12_000, "random")), codes)
    decoded = codec_model.decode(codes)
    assert (stream_all(codec_model.decoder_stream(), codes, chunk_sizes(codes.shape[-1], "primes")) - decoded).abs().max() <= 1e-9


@pytest.mark.parametrize(
    "config, hop, latency, startup",
    [(SMALL_MEL, 256, 7423, 7168), (SMALL_ENCODEC, 320, 9119, 8960)],
    ids=["mel", "encodec"],
)
def test_decoder_latency_is_delivered_and_minimal(config, hop, latency, startup):
    """27 frames of ConvNeXt lookahead (9 convs of k=7) plus the ISTFT overlap; the Hann
    window's zero first sample lets each frame release one sample beyond its hop."""
    model = small_model(dataclasses.replace(config, num_layers=8), seed=0)
    stream = model.decoder_stream()
    assert (stream.latency_samples, stream.startup_latency_samples) == (latency, startup)
    frames = 40
    codes = torch.randn(1, 100, frames, dtype=torch.float64) if config.features == "mel" else torch.randint(0, 1024, (1, 8, frames))
    counts = decoder_release_counts(model, codes)
    first = next(i for i, c in enumerate(counts) if c > 0)
    assert first * hop == startup  # frame `first` releases sample 0
    for g in range(first + 1, frames):
        assert counts[g - 1] == g * hop - latency  # frame g releases from g·hop - latency on

    features = codes if config.features == "mel" else model.codes_to_features(codes)

    def network(x):
        ctx = cs.StreamContext(1)
        if config.features == "encodec":
            set_condition(model.decoder, ctx, 2)
        return torch.cat([model.decoder(x, ctx), model.decoder.flush(ctx)], dim=-1)

    for g in (first + 2, first + 5):
        t = g * hop - latency  # the first sample frame g releases
        assert depends_on(network, features, t, slice(g, g + 1))  # so it could not come earlier
        assert not depends_on(network, features, t - 1, slice(g, None))  # what came before is final


def test_mel_encoder_latency():
    model = small_model(SMALL_MEL, seed=1)
    stream = model.encoder_stream()
    assert (stream.latency_samples, stream.startup_latency_samples) == (512, 513)
    released = encoder_release_points(model, 256 * 8)
    assert released[0] == 513
    assert released[1:6] == [256 * j + 512 for j in range(1, 6)]
    audio = torch.randn(1, 1, 4000, dtype=torch.float64)
    assert depends_on(model.encoder, audio, 4, slice(256 * 4 + 511, 256 * 4 + 512))  # the last sample frame 4 waits for
    assert not depends_on(model.encoder, audio, 4, slice(256 * 4 + 512, None))


def test_bark_tokens_stream_through_vocos(published_encodec):
    """Bark emits [8, T] EnCodec codes (6 kbps); they stream frame by frame into the decoder."""
    model = load_ours("vocos-encodec-24khz", published_encodec[1])
    bark_codes = torch.randint(0, 1024, (8, 60))
    offline = model.decode(bark_codes[None])
    stream = model.decoder_stream()
    pieces = [stream.push(bark_codes[None, :, t : t + 1]) for t in range(60)] + [stream.flush()]
    assert max_rel_error(torch.cat(pieces, -1), offline) <= 1e-5
    assert offline.shape == (1, 1, 60 * 320)


def test_bad_input(published_mel, published_encodec):
    mel_model = load_ours("vocos-mel-24khz", published_mel[1])
    with pytest.raises(cs.ShapeError, match=r"\[batch, 100, frames\]"):
        mel_model.decode(torch.zeros(1, 80, 10))
    with pytest.raises(cs.DTypeError):
        mel_model.decode(torch.zeros(1, 100, 10, dtype=torch.long))
    with pytest.raises(cs.NonFiniteError):
        mel_model.decode(torch.full((1, 100, 10), float("nan")))
    codec_model = load_ours("vocos-encodec-24khz", published_encodec[1])
    with pytest.raises(cs.CodeRangeError, match="2 \\(1.5 kbps\\), 4 \\(3.0 kbps\\), 8 \\(6.0 kbps\\), 16 \\(12.0 kbps\\)"):
        codec_model.decode(torch.zeros(1, 3, 10, dtype=torch.long))
    with pytest.raises(cs.CodeRangeError, match=r"\[0, 1024\)"):
        codec_model.decode(torch.full((1, 8, 10), 1024))
    with pytest.raises(cs.ShapeError):
        codec_model.decode(torch.zeros(1, 32, 10, dtype=torch.long))
    with pytest.raises(cs.OptionError, match="24"):
        codec_model.encode(torch.zeros(1, 1, 2400), bandwidth=24.0)
    with pytest.raises(cs.CheckpointMismatchError, match="on mel features, not on encodec"):
        cs.load("vocos-encodec-24khz", weights=published_mel[1])
