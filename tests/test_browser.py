"""The browser client end to end: Debian's headless Chromium with a fake microphone (a speech
file) loads the page the server serves, streams to the server and plays what comes back."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

import codecstream as cs
from codecstream.signals import bundled_clip

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def segment_correlations(output, reference, segment=12000):
    values = []
    for start in range(0, min(len(output), len(reference)) - segment, segment):
        ref, out = reference[start : start + segment], output[start : start + segment]
        if np.abs(ref).max() < 1e-3:
            continue
        values.append(float(out @ ref / (np.linalg.norm(out) * np.linalg.norm(ref) + 1e-12)))
    return values


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; done by .ci/setup)")
def test_browser_streams_through_the_server_and_back(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package drives Chromium (dev extra, installed by .ci/setup)")
    import soxr

    clip, rate = bundled_clip()
    microphone = tmp_path / "microphone.wav"
    soundfile.write(microphone, soxr.resample(clip[:, 0], rate, 48000), 48000, subtype="PCM_16")
    record = tmp_path / "sessions"
    server = subprocess.Popen(
        [sys.executable, "-m", "codecstream", "serve", "--port", "0", "--model", "vocos-mel-24khz",
         "--weights", "vocos-mel-24khz=random", "--record-dir", str(record)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()
        assert "serving on" in line, server.stderr.read()
        port = int(line.split(":")[2].split("/")[0])
        with playwright.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM,
                headless=True,
                ignore_default_args=["--mute-audio"],
                args=[
                    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}",
                ],
            )
            try:
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}/?autostart=1")
                page.wait_for_function("window.codecstream.ready !== null", timeout=60_000)
                assert page.text_content("#model-latency").endswith(" ms")
                page.wait_for_function("window.codecstream.receivedSamples > 24000 * 6", timeout=90_000)
                page.click("#stop")
                page.wait_for_function("window.codecstream.ended", timeout=60_000)
                stats = page.evaluate("window.codecstream")
                shown = {key: page.text_content(f"#{key}") for key in ("buffer", "rtt", "underruns", "state")}
            finally:
                context.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    assert stats["errors"] == [] and stats["sent"] > 300 and stats["ready"]["model_sample_rate"] == 24000
    assert shown["buffer"].endswith("ms") and shown["rtt"].endswith("ms")
    received, _ = soundfile.read(next(record.glob("*-input.wav")), dtype="float32")
    returned, _ = soundfile.read(next(record.glob("*-output.wav")), dtype="float32")
    model = cs.load("vocos-mel-24khz", weights="random")
    with torch.inference_mode():
        expected = model.decode(model.encode(torch.from_numpy(received)[None, None]))[0, 0].numpy()
    correlations = segment_correlations(returned, expected)
    print(f"\nbrowser: sent {stats['sent']} chunks, got {stats['received']}; median segment correlation "
          f"{np.median(correlations):.4f} over {len(correlations)} segments; page showed {shown}")
    assert len(correlations) >= 10
    assert float(np.median(correlations)) >= 0.95
    # And the microphone really carried the speech file (the fake device loops it).
    heard = np.abs(np.fft.rfft(received[: 24000 * 5]))
    assert float(np.abs(received).max()) > 0.1 and heard.sum() > 0
    time.sleep(0)


def _chromium(p, tmp_path, microphone):
    return p.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, accept_downloads=True,
        ignore_default_args=["--mute-audio"], viewport={"width": 1100, "height": 1250},
        args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}",
        ],
    )


def offline_spectrogram(samples: np.ndarray, frames: int) -> np.ndarray:
    """What the page computes (views.js): 512-sample periodic Hann windows every 256 samples,
    10·log10(|X|² + 1e-10)."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    out = [np.abs(np.fft.rfft(samples[i * 256 : i * 256 + 512] * window)) ** 2 for i in range(frames)]
    return 10 * np.log10(np.array(out) + 1e-10)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; done by .ci/setup)")
def test_browser_client_controls(tmp_path):
    """Every control of the page, driven as a user would: the model picked from the server's
    list with an option, A/B, start and stop, both downloads, the TTS tab; what the page shows
    checked against the server's figures and recordings; screenshots of each state in
    tests/artifacts/browser/."""
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package drives Chromium (dev extra, installed by .ci/setup)")
    import json
    import urllib.request
    from pathlib import Path

    import soxr

    shots = Path(__file__).parent / "artifacts" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    clip, rate = bundled_clip()
    microphone = tmp_path / "microphone.wav"
    soundfile.write(microphone, soxr.resample(clip[:, 0], rate, 48000), 48000, subtype="PCM_16")
    record = tmp_path / "sessions"
    server = subprocess.Popen(
        [sys.executable, "-m", "codecstream", "serve", "--port", "0", "--model", "vocos-mel-24khz", "--models", "encodec-24khz",
         "--weights", "vocos-mel-24khz=random", "--weights", "encodec-24khz=random", "--record-dir", str(record)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()
        assert "serving on" in line, server.stderr.read()
        port = int(line.split(":")[2].split("/")[0])
        served = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=30).read())
        with playwright.sync_playwright() as p:
            context = _chromium(p, tmp_path, microphone)
            try:
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function("window.codecstream.loaded", timeout=60_000)
                listed = page.eval_on_selector_all("#model option", "options => options.map(o => o.value)")
                assert listed == [m["model"] for m in served["models"] if "audio->audio" in m["directions"]]
                assert page.input_value("#model") == "vocos-mel-24khz"
                page.screenshot(path=str(shots / "1-idle.png"), full_page=True)
                # Choose: the model from the list, one of its options; windowed settings wait for mode.
                page.select_option("#model", "encodec-24khz")
                assert page.is_disabled("#option-lookahead_frames")
                page.select_option("#option-mode", "windowed")
                assert page.is_enabled("#option-lookahead_frames")
                page.select_option("#option-mode", "")
                page.select_option("#option-bandwidth", "6")
                microphones = page.eval_on_selector_all("#input-device option", "options => options.map(o => o.value)")
                if len(microphones) > 1:  # the fake capture device, by id (labels come after the grant)
                    page.select_option("#input-device", microphones[1])
                page.keyboard.press("Tab")  # keyboard operable: focus moves on from the form
                page.focus("#start")
                page.keyboard.press("Enter")
                page.wait_for_function("window.codecstream.ready !== null", timeout=60_000)
                ready = page.evaluate("window.codecstream.ready")
                assert ready["model"] == "encodec-24khz"
                assert page.text_content("#model-latency") == f"{ready['latency_ms']:.1f} ms"
                assert page.text_content("#bitrate") == "6.0 kbps"
                page.wait_for_function("window.codecstream.receivedSamples > 24000 * 3", timeout=90_000)
                page.screenshot(path=str(shots / "2-streaming-codec.png"), full_page=True)
                # Compare: A plays the original at the codec's delay.
                page.click("#ab")
                assert page.get_attribute("#ab", "aria-pressed") == "true"
                page.wait_for_function("window.codecstream.played.A > 24000 * 2", timeout=60_000)
                page.screenshot(path=str(shots / "3-streaming-original.png"), full_page=True)
                page.click("#ab")
                assert page.get_attribute("#ab", "aria-pressed") == "false"
                page.wait_for_function("window.codecstream.receivedSamples > 24000 * 7", timeout=90_000)
                page.click("#stop")
                page.wait_for_function("window.codecstream.ended", timeout=60_000)
                page.wait_for_function("!document.getElementById('download-output').disabled", timeout=10_000)
                page.screenshot(path=str(shots / "4-stopped.png"), full_page=True)
                files = {}
                for which in ("input", "output"):
                    with page.expect_download() as download:
                        page.click(f"#download-{which}")
                    files[which] = tmp_path / f"page-{which}.wav"
                    download.value.save_as(files[which])
                stats = page.evaluate("window.codecstream")
                frames = page.evaluate("window.codecstreamSpectrogram('output', 300)")
                # TTS: Bark's tokens (EnCodec, served) replayed at twice real time.
                assert page.is_disabled("#tts-layout option[value=orpheus]")  # SNAC is not served here
                page.select_option("#tts-layout", "bark")
                page.fill("#tts-text", "Hello, this is a short test.")
                page.fill("#tts-speed", "2")
                page.click("#tts-play")
                page.wait_for_function("window.codecstream.tts && window.codecstream.tts.ended", timeout=90_000)
                tts = page.evaluate("window.codecstream.tts")
                shown_tts = {key: page.text_content(f"#tts-{key}") for key in ("first-audio", "lag", "counts")}
                page.screenshot(path=str(shots / "5-tts.png"), full_page=True)
            finally:
                context.close()
        metrics = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    assert stats["errors"] == [] and stats["played"]["A"] > 0 and stats["played"]["B"] > 0
    assert metrics["sessions_total"] == 2  # the microphone session and the TTS one
    assert tts["sent"] == tts["messages"] > 20 and tts["receivedSamples"] == tts["messages"] * 320  # every frame decoded
    assert tts["ready"]["direction"] == "codes->audio" and tts["ready"]["model"] == "encodec-24khz"
    shown_ms = lambda text: float(text.split(" ms")[0])  # noqa: E731 (JS rounds halves up, Python to even)
    assert abs(shown_ms(shown_tts["first-audio"]) - tts["firstAudioMs"]) <= 0.5 and 0 < tts["firstAudioMs"] < 5000
    assert abs(shown_ms(shown_tts["lag"]) - tts["steadyLagMs"]) <= 0.5
    # The downloads hold what the server received and sent (its own recordings).
    session = stats["ready"]["session"]  # the microphone session's recordings (the TTS session has its own)
    server_in, _ = soundfile.read(record / f"{session}-input.wav", dtype="float32")
    server_out, _ = soundfile.read(record / f"{session}-output.wav", dtype="float32")
    page_in, page_rate = soundfile.read(files["input"], dtype="float32")
    page_out, _ = soundfile.read(files["output"], dtype="float32")
    assert page_rate == 24000 and len(page_in) == stats["sent"] * 480 == len(server_in)
    assert len(page_out) == stats["receivedSamples"] == len(server_out)
    assert metrics["audio_seconds"] == pytest.approx(len(page_in) / 24000)
    assert float(np.abs(page_in - server_in).max()) <= 2 / 32768
    assert float(np.abs(page_out - server_out).max()) <= 2 / 32768
    # The page's output spectrogram is the offline spectrogram of the same audio.
    drawn = np.array(frames)
    expected = offline_spectrogram(page_out, len(drawn))
    loud = expected > -40
    assert len(drawn) >= 200 and loud.mean() > 0.2
    assert float(np.abs(drawn - expected)[loud].mean()) < 0.5
