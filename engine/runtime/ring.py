"""Preallocated single-producer / single-consumer ring buffers.

One thread writes, one thread reads; neither takes a lock. The writer alone advances
``written`` and the reader alone advances ``read``, both monotonic counters, so each side sees
a consistent view of the other's progress (Python assigns an int atomically). The audio
callbacks of sounddevice and PyAudio only ever copy into or out of these: no allocation of
audio buffers, no model, no logging.

Two policies when the writer outruns the reader:

- ``"drop_oldest"`` (live audio): the writer keeps writing over the oldest frames; the reader
  notices it was lapped, skips to the oldest frame still present and counts the overflow and
  the frames lost. Latency cannot build up.
- ``"reject"`` (files, tokens): a write takes only what fits and returns how much; the caller
  waits (:meth:`RingBuffer.write_blocking`) or drops the rest. Nothing already written is lost.
"""

from __future__ import annotations

import threading
import time
from typing import Literal

import numpy as np

__all__ = ["RingBuffer", "Policy"]

Policy = Literal["drop_oldest", "reject"]


class RingBuffer:
    """A ring of ``capacity`` frames of ``channels`` values each (``dtype``, float32 for audio).

    Counters (read them from any thread): ``overflows`` (writes that did not fit, or lapped
    the reader), ``dropped_frames`` (frames lost to them), ``underruns`` (reads that wanted
    more than was there), ``missing_frames`` (frames those reads lacked) and
    ``skipped_frames`` (frames the reader chose to skip, :meth:`skip`).
    """

    def __init__(self, capacity: int, channels: int = 1, *, dtype: np.dtype | type = np.float32, policy: Policy = "drop_oldest") -> None:
        if capacity < 1 or channels < 1:
            raise ValueError("capacity and channels must be positive")
        if policy not in ("drop_oldest", "reject"):
            raise ValueError(f"policy must be 'drop_oldest' or 'reject', got {policy!r}")
        self.capacity = capacity
        self.channels = channels
        self.policy: Policy = policy
        self._data = np.zeros((capacity, channels), dtype=dtype)
        self._written = 0  # frames ever written (advanced by the writer only)
        self._read = 0  # frames ever consumed (advanced by the reader only)
        self.overflows = 0
        self.dropped_frames = 0
        self.underruns = 0
        self.missing_frames = 0
        self.skipped_frames = 0
        self._space = threading.Event()  # set by the reader, for blocking writers

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def available(self) -> int:
        """Frames the reader can take now."""
        return min(self._written - self._read, self.capacity)

    def free(self) -> int:
        """Frames the writer can add without overwriting anything unread."""
        return self.capacity - (self._written - self._read)

    # -- writer side --------------------------------------------------------------------
    def write(self, frames: np.ndarray) -> int:
        """Copy ``frames`` (``[n, channels]``) in; return how many were taken."""
        n = len(frames)
        if n == 0:
            return 0
        if self.policy == "reject":
            room = self.free()
            if n > room:
                self.overflows += 1
                self.dropped_frames += n - room
                n = room
                frames = frames[:n]
        elif n > self.capacity:  # only the newest `capacity` frames can be kept (the reader counts the loss)
            frames = frames[n - self.capacity :]
            self._written += n - self.capacity
            n = self.capacity
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = frames[:first]
        if first < n:
            self._data[: n - first] = frames[first:n]
        self._written += n
        return n

    def write_blocking(self, frames: np.ndarray, *, timeout: float | None = None) -> int:
        """Write all of ``frames``, waiting for the reader to make room (``reject`` rings)."""
        done, deadline = 0, None if timeout is None else time.monotonic() + timeout
        while done < len(frames):
            taken = self._write_quietly(frames[done:])
            done += taken
            if done < len(frames):
                self._space.clear()
                if self.free() == 0:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._space.wait(0.05 if remaining is None else min(0.05, remaining))
        return done

    def _write_quietly(self, frames: np.ndarray) -> int:
        room = self.free()
        if room <= 0:
            return 0
        part = frames[:room]
        start = self._written % self.capacity
        first = min(len(part), self.capacity - start)
        self._data[start : start + first] = part[:first]
        if first < len(part):
            self._data[: len(part) - first] = part[first:]
        self._written += len(part)
        return len(part)

    # -- reader side --------------------------------------------------------------------
    def _catch_up(self) -> None:
        lag = self._written - self._read
        if lag > self.capacity:  # lapped: the oldest frames were overwritten
            self.overflows += 1
            self.dropped_frames += lag - self.capacity
            self._read = self._written - self.capacity

    def read_into(self, out: np.ndarray, *, fill: float = 0.0) -> int:
        """Fill ``out`` (``[n, channels]``) with the oldest frames; pad a shortfall with
        ``fill`` and count an underrun. Returns the frames that were real."""
        self._catch_up()
        n = len(out)
        have = min(n, self._written - self._read)
        start = self._read % self.capacity
        first = min(have, self.capacity - start)
        out[:first] = self._data[start : start + first]
        if first < have:
            out[first:have] = self._data[: have - first]
        if have < n:
            out[have:] = fill
            self.underruns += 1
            self.missing_frames += n - have
        self._read += have
        self._space.set()
        return have

    def read(self, n: int) -> np.ndarray | None:
        """Take exactly ``n`` frames (a new array), or ``None`` if fewer are available."""
        self._catch_up()
        if self._written - self._read < n:
            return None
        out = np.empty((n, self.channels), dtype=self._data.dtype)
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._data[start : start + first]
        if first < n:
            out[first:] = self._data[: n - first]
        self._read += n
        self._space.set()
        return out

    def skip(self, n: int) -> int:
        """Discard up to ``n`` of the oldest frames (reader side); return how many went."""
        self._catch_up()
        n = max(0, min(n, self._written - self._read))
        self._read += n
        self.skipped_frames += n
        self._space.set()
        return n

    def clear(self) -> None:
        """Drop everything unread (reader side)."""
        self._read = self._written
        self._space.set()
