"""The transcoder between outside audio (any rate, channels) and a model's streams: what the
pipeline and the server sessions both use. Pushed in random chunks, every direction equals the
offline model on the whole signal, converted the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import chunk_sizes

import codecstream as cs
from codecstream.runtime.resample import StreamResampler
from codecstream.runtime.transcoder import Transcoder, fit_channels

pytest.importorskip("soxr", reason="rate conversion uses soxr from the audio extra")


@pytest.fixture(scope="module")
def model():
    return cs.load("encodec-24khz", weights="random", dtype=torch.float64)


def pushed(push, x: np.ndarray, seed: int) -> list:
    out, start = [], 0
    for size in chunk_sizes(len(x), "random", seed=seed, max_size=2000):
        out.append(push(x[start : start + size]))
        start += size
    return out


def test_audio_to_audio_converts_rate_and_channels_exactly(model):
    rate, seconds = 48000, 0.6
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (int(rate * seconds), 2)).astype(np.float32)
    transcoder = Transcoder(model, "audio->audio", input_rate=rate, input_channels=2, trim_to_input=True)
    parts = pushed(transcoder.push_audio, stereo, seed=1) + [transcoder.finish()]
    streamed = np.concatenate(parts)

    # Offline: the whole signal through the same conversions, then the model offline.
    down = StreamResampler(rate, 24000, 1)
    mono = np.concatenate([down.process(fit_channels(stereo, 1)), down.flush()])
    with torch.inference_mode():
        decoded = model.decode(model.encode(torch.from_numpy(mono.T.astype(np.float64))[None]))[0].T.float().numpy()
    up = StreamResampler(24000, rate, 1)
    expected = fit_channels(np.concatenate([up.process(decoded), up.flush()]), 2)[: len(stereo)]
    assert streamed.shape == expected.shape == stereo.shape
    assert np.abs(streamed - expected).max() <= 1e-5
    assert transcoder.latency_samples == 320 and transcoder.latency_ms == pytest.approx(320 / 24)


def test_codes_directions_equal_the_model(model):
    audio = np.random.default_rng(2).uniform(-0.5, 0.5, (7200, 1)).astype(np.float32)
    encoder = Transcoder(model, "audio->codes", encoder_options={"bandwidth": 6})
    codes = model.concat_codes(pushed(encoder.push_audio, audio, seed=3) + [encoder.finish()])
    with torch.inference_mode():
        expected_codes = model.encode(torch.from_numpy(audio.T.astype(np.float64))[None], bandwidth=6)
    assert torch.equal(codes, expected_codes)

    decoder = Transcoder(model, "codes->audio", output_rate=16000)
    parts = [decoder.push_codes(codes[..., i : i + 3]) for i in range(0, codes.shape[-1], 3)] + [decoder.finish()]
    with torch.inference_mode():
        decoded = model.decode(codes)[0].T.float().numpy()
    resampler = StreamResampler(24000, 16000, 1)
    expected = np.concatenate([resampler.process(decoded), resampler.flush()])
    assert np.abs(np.concatenate(parts) - expected).max() <= 1e-5
    with pytest.raises(ValueError, match="takes no codes"):
        encoder.push_codes(codes)
    with pytest.raises(cs.OptionError):
        Transcoder(model, "audio->codes", encoder_options={"bandwidth": 7})
