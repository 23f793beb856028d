"""What the runtime expects of an audio source and an audio sink.

Device sources and sinks run a callback on the audio thread that only copies between the
device buffer and a preallocated :class:`~codecstream.runtime.ring.RingBuffer`; the pipeline's
worker thread reads and writes those rings. File sources and sinks do the same from an
ordinary thread, so the worker does not care where audio comes from.
"""

from __future__ import annotations

import time

import numpy as np

from ..runtime.ring import Policy, RingBuffer

__all__ = ["AudioSource", "AudioSink"]


class AudioSource:
    """Frames ``[n, channels]`` float32 at ``sample_rate`` arrive in ``ring``.

    Attributes:
        device_latency_s: input latency the device reports (0 for files).
        status_flags: how many times the device reported an overflow or other trouble.
        finished: no more audio will come (end of a file); the ring may still hold some.
    """

    def __init__(self, sample_rate: int, channels: int, *, ring_seconds: float = 2.0, policy: Policy = "drop_oldest") -> None:
        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.ring = RingBuffer(max(1, int(ring_seconds * sample_rate)), channels, policy=policy)
        self.device_latency_s = 0.0
        self.status_flags = 0
        self.finished = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def read(self, frames: int, *, timeout: float = 0.1) -> np.ndarray | None:
        """Exactly ``frames`` frames, or everything left once finished, or ``None`` (timed out,
        or finished and drained)."""
        deadline = time.monotonic() + timeout
        while True:
            block = self.ring.read(frames)
            if block is not None:
                return block
            if self.finished:
                rest = self.ring.available()
                return self.ring.read(rest) if rest else None
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.002, max(0.0, deadline - time.monotonic())))

    def __enter__(self) -> "AudioSource":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AudioSink:
    """Frames ``[n, channels]`` float32 at ``sample_rate`` are handed to :meth:`write`.

    Device sinks hold ``prefill_frames`` in their ring before playing (a jitter cushion), then
    play continuously; a shortfall plays silence and counts an underrun.

    Attributes:
        device_latency_s: output latency the device reports (0 for files).
        status_flags: device-reported underflows and other trouble.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.device_latency_s = 0.0
        self.status_flags = 0

    @property
    def underruns(self) -> int:
        return 0

    def buffered_frames(self) -> int:
        """Frames written but not yet played."""
        return 0

    def start(self) -> None:
        raise NotImplementedError

    def write(self, frames: np.ndarray) -> None:
        raise NotImplementedError

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until what was written has been played."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "AudioSink":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
