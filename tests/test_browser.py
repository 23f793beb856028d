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
    playwright = pytest.importorskip("playwright.sync_api")
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
