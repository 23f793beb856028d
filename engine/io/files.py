"""File and in-memory sources, file and null sinks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime._compat import Renamed, renamed_keywords
from .base import AudioSink, AudioSource

__all__ = ["ArraySource", "WavFileSource", "WavFileSink", "NullSink", "ArraySink"]


class ArraySource(AudioSource):
    """Audio from memory, ``[n, channels]`` float32, fed by a thread in real time (one block
    every block duration) or as fast as the reader takes it (``realtime=False``: nothing is
    dropped, the feeder waits for room)."""

    block_frames = Renamed[int]("block_samples")  # the old name (deprecated, kept for one release)

    @renamed_keywords(block_frames="block_samples")
    def __init__(self, audio: np.ndarray, sample_rate: int, *, realtime: bool = True, block_samples: int | None = None, ring_seconds: float = 2.0) -> None:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        super().__init__(sample_rate, audio.shape[1], ring_seconds=ring_seconds, policy="drop_oldest" if realtime else "reject")
        self.audio = audio
        self.realtime = realtime
        self.block_samples = block_samples or max(1, sample_rate // 100)  # 10 ms
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _feed(self) -> None:
        started = time.monotonic()
        for start in range(0, len(self.audio), self.block_samples):
            if self._stop.is_set():
                break
            block = self.audio[start : start + self.block_samples]
            if self.realtime:
                due = started + (start + len(block)) / self.sample_rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.ring.write(block)
            else:
                done = 0
                while done < len(block) and not self._stop.is_set():
                    done += self.ring.write_blocking(block[done:], timeout=0.1)
        self.finished = True

    def start(self) -> None:
        self._stop.clear()
        self.finished = False
        self._thread = threading.Thread(target=self._feed, name="codecstream-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class WavFileSource(ArraySource):
    """An audio file (anything soundfile reads), paced in real time or as fast as possible."""

    @renamed_keywords(block_frames="block_samples")
    def __init__(self, path: str | Path, *, realtime: bool = True, block_samples: int | None = None) -> None:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        super().__init__(data, rate, realtime=realtime, block_samples=block_samples)
        self.path = Path(path)


class ArraySink(AudioSink):
    """Collects everything written (tests, or further processing)."""

    def __init__(self, sample_rate: int, channels: int = 1) -> None:
        super().__init__(sample_rate, channels)
        self._blocks: list[np.ndarray] = []

    def start(self) -> None:
        self._blocks = []

    def write(self, samples: np.ndarray) -> None:
        self._blocks.append(np.array(samples, dtype=np.float32, copy=True))

    def stop(self) -> None:
        pass

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self._blocks) if self._blocks else np.zeros((0, self.channels), np.float32)


class WavFileSink(AudioSink):
    """Writes 16-bit PCM WAV (or what the extension names) as blocks arrive."""

    frames_written = Renamed[int]("samples_written")  # the old name (deprecated, kept for one release)

    def __init__(self, path: str | Path, sample_rate: int, channels: int = 1) -> None:
        super().__init__(sample_rate, channels)
        self.path = Path(path)
        self._file: Any = None  # a soundfile.SoundFile while started
        self.samples_written = 0

    def start(self) -> None:
        import soundfile

        subtype = "PCM_16" if self.path.suffix.lower() == ".wav" else None
        self._file = soundfile.SoundFile(str(self.path), "w", self.sample_rate, self.channels, subtype=subtype)

    def write(self, samples: np.ndarray) -> None:
        if self._file is None:
            raise RuntimeError("WavFileSink.write before start")
        self._file.write(np.clip(samples, -1.0, 1.0))
        self.samples_written += len(samples)

    def stop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class NullSink(AudioSink):
    """Discards audio (benchmarks, or when nothing should be played)."""

    def start(self) -> None:
        pass

    def write(self, samples: np.ndarray) -> None:
        pass

    def stop(self) -> None:
        pass
