"""The real-time pipeline: source → resample → encoder stream → decoder stream → resample → sink.

A worker thread takes fixed blocks (a whole number of model hops) from the source's ring,
runs both streams and hands the result to the sink. The audio callbacks never see the model.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from ._compat import Renamed
from .metrics import MetricsRecorder, PipelineMetrics, percentile
from .transcoder import Transcoder

if TYPE_CHECKING:
    from ..io.base import AudioSink, AudioSource
    from ..plugin import Codec

__all__ = ["Pipeline", "block_samples_for"]


def block_samples_for(model: "Codec", block_ms: float) -> int:
    """Model-rate samples per block: ``block_ms`` rounded to a whole number of hops (at least one)."""
    hops = max(1, round(block_ms * model.sample_rate / 1000 / model.hop_length))
    return hops * model.hop_length


def block_frames_for(model: "Codec", block_ms: float) -> int:
    """Deprecated name of :func:`block_samples_for` (kept for one release)."""
    warnings.warn("block_frames_for is now block_samples_for; the old name goes in the next release", DeprecationWarning, stacklevel=2)
    return block_samples_for(model, block_ms)


class Pipeline:
    """Run ``model``'s encoder and decoder streams between ``source`` and ``sink``.

    Args:
        block_ms: processing block, rounded to whole hops of the model.
        encoder_options / decoder_options: passed to ``encoder_stream`` / ``decoder_stream``.
        input_tap: called (on the worker) with each block read from the source: what the
            model heard, for recording or metering.

    Two ways to run it:

    - :meth:`run` processes in the calling thread until the source ends, ``duration_s`` passes
      or Ctrl-C. On CPU this is the fast way: torch's intra-op threads help the thread that
      created them, and slow down (measured: RTF 0.5 against 1.0 on 2 cores) when a second
      thread computes.
    - :meth:`start` / :meth:`stop` (or ``with``) run a background worker thread; :meth:`wait`
      blocks until a finite source is done and re-raises an error from the worker.
    """

    # The old names, kept for one release (deprecated: use the *_samples ones).
    block_frames = Renamed[int]("block_samples")
    source_block_frames = Renamed[int]("source_block_samples")

    def __init__(
        self,
        model: "Codec",
        source: "AudioSource",
        sink: "AudioSink",
        *,
        block_ms: float = 80.0,
        encoder_options: dict[str, Any] | None = None,
        decoder_options: dict[str, Any] | None = None,
        input_tap: Callable[[np.ndarray], object] | None = None,
    ) -> None:
        self.model = model
        self.input_tap = input_tap  # called with each block taken from the source (what the model hears)
        self.source = source
        self.sink = sink
        self.block_samples = block_samples_for(model, block_ms)
        self.source_block_samples = max(1, round(self.block_samples * source.sample_rate / model.sample_rate))
        self._encoder_options, self._decoder_options = dict(encoder_options or {}), dict(decoder_options or {})
        self.transcoder = Transcoder(
            model, "audio->audio", input_rate=source.sample_rate, input_channels=source.channels,
            output_rate=sink.sample_rate, output_channels=sink.channels,
            encoder_options=self._encoder_options, decoder_options=self._decoder_options,
        )
        self.recorder = MetricsRecorder()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Run a block of silence through throw-away streams, so the first real blocks do not
        pay for first-call allocations and underrun the output."""
        silence = torch.zeros(1, self.model.channels, self.block_samples, dtype=self.model.dtype)
        encoder = self.model.encoder_stream(1, **self._encoder_options)
        decoder = self.model.decoder_stream(1, **self._decoder_options)
        with torch.inference_mode():
            for _ in range(2):
                decoder.push(encoder.push(silence))

    def start(self) -> "Pipeline":
        self.warm_up()
        self.sink.start()
        self.source.start()
        self._thread = threading.Thread(target=self._run, name="codecstream-pipeline", daemon=True)
        self._thread.start()
        return self

    def run(
        self, *, duration_s: float | None = None, on_status: Callable[[PipelineMetrics], object] | None = None, status_interval_s: float = 0.5
    ) -> str:
        """Process in this thread until the source ends, ``duration_s`` passes or Ctrl-C
        (which stops cleanly and is not re-raised); ``on_status(metrics)`` every interval.
        Returns why it stopped: ``"finished"``, ``"duration"``, ``"interrupted"`` or ``"stopped"``."""
        self.warm_up()
        self.sink.start()
        self.source.start()
        started = last_status = time.monotonic()
        reason = "stopped"
        try:
            while not self._stop.is_set():
                if not self._step():
                    reason = "finished"
                    break
                now = time.monotonic()
                if on_status is not None and now - last_status >= status_interval_s and self.recorder.blocks:
                    on_status(self.metrics())
                    last_status = now
                if duration_s is not None and now - started >= duration_s:
                    reason = "duration"
                    break
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            self._done.set()
            self.source.stop()
            self.sink.stop()
        return reason

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a finite source to be processed; True when it was. Re-raises worker errors."""
        finished = self._done.wait(timeout)
        if self._error is not None:
            raise self._error
        return finished

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.source.stop()
        self.sink.stop()

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- worker ---------------------------------------------------------------------------
    def _process(self, block: np.ndarray, *, last: bool = False) -> None:
        started = time.perf_counter()
        y = self.transcoder.push_audio(block)
        if last:
            y = np.concatenate([y, self.transcoder.finish()])
        buffered = self.sink.buffered_samples() / self.sink.sample_rate if self.sink.playing else None
        self.sink.write(y)
        self.recorder.record(time.perf_counter() - started, len(block) / self.source.sample_rate, buffered)

    def _step(self) -> bool:
        """Process one block if there is one; False once a finite source is done."""
        block = self.source.read(self.source_block_samples, timeout=0.1)
        if block is not None and self.input_tap is not None:
            self.input_tap(block)
        if block is None:
            if self.source.finished and self.source.ring.available() == 0:
                self._process(np.zeros((0, self.source.channels), np.float32), last=True)
                self.sink.drain()
                return False
            return True
        self._process(block)
        return True

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self._step():
                pass
        except BaseException as exc:  # reported by wait(); the audio thread is never involved
            self._error = exc
        finally:
            self._done.set()

    # -- reporting ------------------------------------------------------------------------
    def metrics(self) -> PipelineMetrics:
        model_rate = self.model.sample_rate
        algorithmic = self.transcoder.latency_samples / model_rate + self.transcoder.resampler_delay_s
        block = self.block_samples / model_rate
        buffering = block + self.recorder.mean_buffered_s()
        samples = self.recorder.compute_samples()
        compute = percentile(samples, 50)
        device = self.source.device_latency_s + self.sink.device_latency_s
        audio_s = self.recorder.audio_seconds
        rtf = self.recorder.total_compute_s / audio_s if audio_s else 0.0
        underruns = self.sink.underruns
        return PipelineMetrics(
            algorithmic_ms=1000 * algorithmic,
            buffering_ms=1000 * buffering,
            compute_ms=1000 * compute,
            device_ms=1000 * device,
            total_ms=1000 * (algorithmic + buffering + compute + device),
            block_ms=1000 * block,
            compute_p50_ms=1000 * compute,
            compute_p99_ms=1000 * percentile(samples, 99),
            rtf=rtf,
            blocks=self.recorder.blocks,
            audio_seconds=audio_s,
            input_overflows=self.source.ring.overflows,
            output_underruns=underruns,
            late_dropped_ms=1000 * self.sink.late_dropped_samples / self.sink.sample_rate,
            device_status_flags=self.source.status_flags + self.sink.status_flags,
            keeping_up=rtf < 1.0 and compute < block,
        )
