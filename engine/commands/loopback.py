"""``codecstream loopback``: audio in → model (encode, decode) → audio out, in real time.

Input is a microphone (system default or ``--input-device``), a file (``--input``), or, when
the machine has no input device, a bundled speech clip streamed in real time. Output is a
speaker (default or ``--output-device``) or a file (``--output``); with the bundled clip and no
``--output`` the result goes to ``codecstream-loopback.wav``. A status line shows latency,
real-time factor and xruns, and says plainly when the machine cannot keep up.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..io.base import AudioSink, AudioSource
from ..io.devices import has_input_device, has_output_device, open_sink, open_source
from ..io.files import ArraySource, WavFileSink, WavFileSource
from ..runtime.pipeline import Pipeline, block_samples_for
from ..runtime.metrics import PipelineMetrics
from ..signals import bundled_clip

if TYPE_CHECKING:
    from ..plugin import Codec

__all__ = ["LoopbackConfig", "run_loopback"]

DEFAULT_MODEL = "hifigan-universal"
# Samples per device callback. Left to PortAudio, PulseAudio's ALSA plugin calls back with a few
# samples at a time, hundreds of times a second, and the callbacks' GIL hand-offs slow the model.
DEVICE_BLOCK = 512


@dataclass
class LoopbackConfig:
    model: str = DEFAULT_MODEL
    weights: str | None = None
    backend: str = "sounddevice"
    input_device: str | int | None = None
    output_device: str | int | None = None
    input_file: Path | None = None
    output_file: Path | None = None
    block_ms: float = 80.0
    duration_s: float | None = None
    realtime_file: bool = False
    save_input: Path | None = None
    metrics_json: Path | None = None
    status: bool = True


def _device_or_none(value: str | int | None) -> str | int | None:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _open_source(config: LoopbackConfig, model: "Codec", block: int, say: Callable[[str], None]) -> tuple[AudioSource, bool]:
    """The source, and whether it ends by itself."""
    if config.input_file is not None:
        return WavFileSource(config.input_file, realtime=config.realtime_file, block_samples=block), True
    if config.input_device is not None or has_input_device():
        device = _device_or_none(config.input_device)
        # Live input waits at most four blocks; beyond that the oldest is dropped (counted).
        ring = 4 * block / model.sample_rate
        return open_source(config.backend, device, model.sample_rate, model.channels, DEVICE_BLOCK, ring_seconds=ring), False
    say("no input device here: streaming the bundled speech clip in real time")
    clip, rate = bundled_clip()
    # A ring as long as the clip: a machine too slow for real time finishes late but loses nothing.
    return ArraySource(clip, rate, realtime=True, ring_seconds=len(clip) / rate + 1.0), True


def _open_sink(config: LoopbackConfig, model: "Codec", block: int, clip_without_device: bool, say: Callable[[str], None]) -> AudioSink:
    if config.output_file is not None:
        return WavFileSink(config.output_file, model.sample_rate, model.channels)
    if not clip_without_device and (config.output_device is not None or has_output_device()):
        device = _device_or_none(config.output_device)
        # One block of cushion before playing. Live audio that comes late (after an underrun)
        # is skipped for as long as the gap lasted, so the latency stays what it was.
        ring = 4 * block / model.sample_rate
        return open_sink(
            config.backend, device, model.sample_rate, model.channels, DEVICE_BLOCK, prefill_samples=block,
            ring_seconds=ring, late_audio="drop",
        )
    path = Path("codecstream-loopback.wav")
    say(f"no output device here: writing {path}")
    return WavFileSink(path, model.sample_rate, model.channels)


def run_loopback(config: LoopbackConfig, *, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run until the input ends, ``duration_s`` passes, or Ctrl-C; return the final metrics."""
    from ..registry import load

    say = say or (lambda text: print(text, file=sys.stderr))
    model = load(config.model, config.weights)
    block = block_samples_for(model, config.block_ms)
    no_devices = config.input_file is None and config.input_device is None and not has_input_device()
    source, _ = _open_source(config, model, block, say)
    sink = _open_sink(config, model, block, no_devices, say)
    recorder = WavFileSink(config.save_input, source.sample_rate, source.channels) if config.save_input else None
    if recorder is not None:
        recorder.start()
    pipeline = Pipeline(model, source, sink, block_ms=config.block_ms, input_tap=recorder.write if recorder else None)
    say(
        f"{config.model}: {model.sample_rate} Hz, blocks of {1000 * block / model.sample_rate:.1f} ms; "
        f"input {type(source).__name__}, output {type(sink).__name__}"
    )
    started = time.monotonic()

    def show(metrics: PipelineMetrics) -> None:
        print("\r" + metrics.status_line(), end="", file=sys.stderr, flush=True)

    try:
        ended = pipeline.run(duration_s=config.duration_s, on_status=show if config.status else None)
    finally:
        if recorder is not None:
            recorder.stop()
    if config.status:
        print(file=sys.stderr)
    metrics = pipeline.metrics().to_dict()
    metrics.update(model=config.model, ended=ended, wall_seconds=time.monotonic() - started)
    if isinstance(sink, WavFileSink):
        metrics["output_file"] = str(sink.path)
    if config.metrics_json is not None:
        config.metrics_json.parent.mkdir(parents=True, exist_ok=True)
        config.metrics_json.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
