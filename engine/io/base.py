"""What the runtime expects of an audio source and an audio sink: the typed seam between them.

:class:`AudioSource` and :class:`AudioSink` are abstract base classes; the pipeline
(:class:`~codecstream.runtime.pipeline.Pipeline`) and the token player
(:class:`~codecstream.tokens.player.TokenPlayer`) take any subclass. Audio is ``[n, channels]``
float32 NumPy arrays: ``n`` samples (one value per channel each) at ``sample_rate``.

Device sources and sinks run a callback on the audio thread that only copies between the
device buffer and a preallocated :class:`~codecstream.runtime.ring.RingBuffer`; the pipeline's
worker thread reads and writes those rings. File sources and sinks do the same from an
ordinary thread, so the worker does not care where audio comes from.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

from ..runtime._compat import Renamed
from ..runtime.ring import Policy, RingBuffer

__all__ = ["AudioSource", "AudioSink"]


class AudioSource(ABC):
    """Samples ``[n, channels]`` float32 at ``sample_rate`` arrive in ``ring``.

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

    @abstractmethod
    def start(self) -> None:
        """Start filling the ring (a device stream, or a feeder thread)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop filling the ring; what it holds stays readable."""

    def read(self, n: int, *, timeout: float = 0.1) -> np.ndarray | None:
        """Exactly ``n`` samples, or everything left once finished, or ``None`` (timed out,
        or finished and drained)."""
        deadline = time.monotonic() + timeout
        while True:
            block = self.ring.read(n)
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


class AudioSink(ABC):
    """Samples ``[n, channels]`` float32 at ``sample_rate`` are handed to :meth:`write`.

    Device sinks hold ``prefill_samples`` in their ring before playing (a jitter cushion), then
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
        """Callbacks that found too little audio and played silence (device sinks)."""
        return 0

    @property
    def playing(self) -> bool:
        """Whether playback has begun (device sinks: the prefill is in); False for files."""
        return False

    @property
    def late_dropped_samples(self) -> int:
        """Late samples skipped to win back the delay of underruns (device sinks)."""
        return 0

    def buffered_samples(self) -> int:
        """Samples written but not yet played."""
        return 0

    # The old names, kept for one release (deprecated: use the *_samples ones).
    buffered_frames = Renamed[Callable[[], int]]("buffered_samples")
    late_dropped_frames = Renamed[int]("late_dropped_samples")

    @abstractmethod
    def start(self) -> None:
        """Open the output (a device stream, a file)."""

    @abstractmethod
    def write(self, samples: np.ndarray) -> None:
        """Hand over ``[n, channels]`` float32 samples."""

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until what was written has been played."""

    @abstractmethod
    def stop(self) -> None:
        """Close the output."""

    def __enter__(self) -> "AudioSink":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
