"""TTS playback: Orpheus tokens (SNAC 24 kHz) and Bark tokens (EnCodec 24 kHz) decoded as they
arrive equal the offline decode; time to first audio is the algorithmic minimum plus compute."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import chunk_sizes

import codecstream as cs
from codecstream.io.files import ArraySink
from codecstream.tokens import (
    BarkDecoder,
    NeuTTSDecoder,
    OrpheusDecoder,
    ReplayedTokens,
    TokenPlayer,
    bark_token_ids,
    orpheus_token_ids,
    parse_neutts,
)
from codecstream.tokens.orpheus import tokens_for_latent_frames


@pytest.fixture(scope="module")
def snac():
    return cs.load("snac-24khz", weights="random")


@pytest.fixture(scope="module")
def encodec():
    return cs.load("encodec-24khz", weights="random")


@pytest.fixture(scope="module")
def vocos_encodec():
    return cs.load("vocos-encodec-24khz", weights="random")


def feed(decoder, tokens, sizes):
    player = TokenPlayer(decoder, ArraySink(24000))
    start = 0
    for size in sizes:
        player.push(tokens[start : start + size])
        start += size
    player.flush()
    return player


PATTERNS = {
    "one at a time": lambda n: [1] * n,
    "bursts": lambda n: chunk_sizes(n, "primes"),
    "jitter": lambda n: chunk_sizes(n, "random", seed=4, max_size=11),
    "all at once": lambda n: [n],
}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_orpheus_playback_equals_offline(snac, pattern):
    codes = [torch.randint(0, 4096, (1, n)) for n in (12, 24, 48)]
    tokens = orpheus_token_ids(codes)
    player = feed(OrpheusDecoder(snac, noise_seed=3), tokens, PATTERNS[pattern](len(tokens)))
    stream = snac.decoder_stream(noise_seed=3)
    expected = torch.cat([stream.push(codes), stream.flush()], -1)[0].T.numpy()
    assert player.audio.shape == expected.shape == (12 * 2048, 1)
    assert np.abs(player.audio - expected).max() <= 1e-5


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("decoder_name", ["encodec", "vocos_encodec"])
def test_bark_playback_equals_offline(request, decoder_name, pattern):
    model = request.getfixturevalue(decoder_name)
    codes = torch.randint(0, 1024, (1, 8, 40))
    tokens = bark_token_ids(codes)
    assert len(tokens) == 320 and tokens[:3] == codes[0, :3, 0].tolist()
    player = feed(BarkDecoder(model), tokens, PATTERNS[pattern](len(tokens)))
    expected = model.decode(codes)[0].T.numpy()
    assert player.audio.shape == expected.shape
    assert np.abs(player.audio - expected).max() <= 1e-5 * max(1.0, float(np.abs(expected).max()))


def test_bark_coarse_layout(encodec):
    codes = torch.randint(0, 1024, (1, 2, 30))
    tokens = bark_token_ids(codes, "coarse")
    assert tokens[:2] == [10000 + int(codes[0, 0, 0]), 11024 + int(codes[0, 1, 0])]
    player = feed(BarkDecoder(encodec, layout="coarse"), tokens, [1] * len(tokens))
    assert np.abs(player.audio - encodec.decode(codes)[0].T.numpy()).max() <= 1e-5
    with pytest.raises(cs.CodeRangeError, match="code-book 1"):
        BarkDecoder(encodec, layout="coarse").push([10000, 10000])
    with pytest.raises(cs.StreamStateError, match="mid-frame: 3 of 8"):
        decoder = BarkDecoder(encodec)
        decoder.push([1, 2, 3])
        decoder.flush()
    with pytest.raises(cs.OptionError):
        BarkDecoder(cs.load("snac-24khz", weights="random"))


def test_neutts_layout():
    assert parse_neutts("<|speech_0|>hello<|speech_65535|><|speech_42|>") == [0, 65535, 42]
    assert parse_neutts(["<|speech_7|>", "<|speech_8|>"]) == [7, 8]
    assert parse_neutts([1000, 1001], id_offset=1000) == [0, 1]
    with pytest.raises(cs.CodeRangeError, match="0..65535"):
        parse_neutts("<|speech_70000|>")
    with pytest.raises(cs.OptionError, match="id_offset"):
        parse_neutts([5, 6])
    with pytest.raises(cs.OptionError, match="65536"):
        NeuTTSDecoder(cs.load("encodec-24khz", weights="random"))


@pytest.mark.parametrize("layout", ["orpheus", "bark"])
def test_time_to_first_audio_is_the_algorithmic_minimum_plus_compute(snac, encodec, layout):
    if layout == "orpheus":
        decoder = OrpheusDecoder(snac, noise=False)
        tokens = orpheus_token_ids([torch.randint(0, 4096, (1, n)) for n in (6, 12, 24)])
        # The decoder needs latent frames 0..F-1 for its first sample (startup latency + one frame).
        minimum = tokens_for_latent_frames(decoder.stream.startup_latency_samples // 512 + 1)
        rate = 82.0  # real time
    else:
        decoder = BarkDecoder(encodec)
        tokens = bark_token_ids(torch.randint(0, 1024, (1, 8, 30)))
        minimum = 8 * (decoder.stream.startup_latency_samples // 320 + 1)
        rate = 600.0
    player = TokenPlayer(decoder, ArraySink(24000))
    ReplayedTokens(tokens, rate=rate).play(player)
    metrics = player.metrics()
    assert metrics.tokens_before_audio == minimum  # no buffering beyond what the model needs
    arrival_ms = 1000 * (minimum - 1) / rate  # when the releasing token arrived
    print(f"\n{layout}: TTFA {metrics.ttfa_ms:.1f} ms, token {minimum} arrives at {arrival_ms:.1f} ms, compute p99 {metrics.compute_p99_ms:.1f} ms")
    assert arrival_ms <= metrics.ttfa_ms <= arrival_ms + metrics.compute_p99_ms + 30


def test_tts_play_command_writes_the_offline_audio(tmp_path, snac):
    out, metrics = tmp_path / "tts.wav", tmp_path / "m.json"
    result = subprocess.run(
        [sys.executable, "-m", "codecstream", "tts-play", "--weights", "random", "--text", "Hello there.", "--speed", "5",
         "--jitter-ms", "5", "--output", str(out), "--json", str(metrics)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(metrics.read_text())
    assert figures["tokens_before_audio"] == 18 and figures["ttfa_ms"] > 0
    assert "time to first audio" in result.stdout


LONG_TEXT = " ".join(
    [
        "The train to the coast leaves at half past nine from platform four.",
        "Passengers with bicycles should board the last carriage, where there is room for six.",
        "Tea, coffee and sandwiches are served from the trolley until we reach the river.",
        "After the bridge the line runs along the cliffs, and on a clear day you can see the islands.",
        "We expect to arrive on time. Thank you for travelling with us, and enjoy the view.",
        "The train to the coast leaves at half past nine from platform four.",
        "Passengers with bicycles should board the last carriage, where there is room for six.",
    ]
)  # about 32 s of speech


def tts_play(pulse, speed, tmp_path, text=LONG_TEXT):
    metrics = tmp_path / f"tts_{speed}.json"
    result = subprocess.run(
        [sys.executable, "-m", "codecstream", "tts-play", "--weights", "random", "--text", text, "--speed", str(speed),
         "--decode-every", "frame", "--output-device", "pa_spk", "--prefill-ms", "300", "--json", str(metrics)],
        env=pulse.env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr  # nothing crashes, whatever the rate
    return json.loads(metrics.read_text())


def test_playback_on_a_real_server_just_above_and_below_real_time(pulse, tmp_path):
    fast = tts_play(pulse, 1.15, tmp_path)
    print(f"\n1.15x: {fast['audio_seconds']:.1f} s, TTFA {fast['ttfa_ms']:.0f} ms, lag {fast['steady_lag_ms']:.0f} ms, underruns {fast['underruns']}")
    assert fast["audio_seconds"] >= 30
    assert fast["underruns"] == 0  # generation ahead of playback never starves it after the prefill
    slow = tts_play(pulse, 0.7, tmp_path, text=LONG_TEXT[:200])
    print(f"0.7x: underruns {slow['underruns']}, TTFA {slow['ttfa_ms']:.0f} ms")
    assert slow["underruns"] > 0  # counted and reported


def test_remote_decoding_through_the_server_and_the_demo(tmp_path, snac):
    import signal as signals
    from pathlib import Path

    import soundfile

    server = subprocess.Popen(
        [sys.executable, "-m", "codecstream", "serve", "--port", "0", "--model", "snac-24khz", "--weights", "snac-24khz=random"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()
        port = int(line.split(":")[2].split("/")[0])
        remote, local = tmp_path / "remote.wav", tmp_path / "local.wav"
        for target, extra in ((remote, ["--server", f"ws://127.0.0.1:{port}/ws"]), (local, [])):
            result = subprocess.run(
                [sys.executable, "-m", "codecstream", "tts-play", "--weights", "random", "--text", "One two three.",
                 "--speed", "4", "--output", str(target), *extra],
                capture_output=True, text=True, timeout=300,
            )
            assert result.returncode == 0, result.stderr
        a, _ = soundfile.read(remote, dtype="float32")
        b, _ = soundfile.read(local, dtype="float32")
        assert len(a) == len(b) and np.abs(a - b).max() <= 2 / 32768  # the server decodes the same tokens
    finally:
        server.send_signal(signals.SIGTERM)
        server.wait(timeout=30)
    demo = Path(__file__).resolve().parents[1] / "demos" / "tts_playback.py"
    result = subprocess.run([sys.executable, str(demo), "--weights", "random", "--speed", "4", "--output", str(tmp_path / "demo.wav")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "time to first audio" in result.stdout and (tmp_path / "demo.wav").stat().st_size > 10_000
