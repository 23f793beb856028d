"""Preallocated single-producer / single-consumer ring buffers.

One thread writes, one thread reads; neither takes a lock. The ring holds *samples*: one row of
``channels`` values (one value per channel). Sample ``i`` of the stream lives in slot
``i % capacity``. Three monotonic sample counters, each advanced by one side only (Python
assigns an int atomically):

- ``_claimed`` (writer): set *before* the writer touches any slot, to the end of the write; a
  slot holding sample ``i`` may be overwritten as soon as ``_claimed > i + capacity``.
- ``_written`` (writer): set *after* the data are in place; samples below it are readable.
- ``_read`` (reader): samples below it are consumed (returned, dropped or skipped).

Readers work like a seqlock: take one snapshot of ``_written``, copy, then look at
``_claimed``. NumPy releases the GIL during large copies and a thread switch may come between
any two bytecodes, so the writer can lap the reader while it copies; if it did, the copied
samples it overwrote are counted as lost and the read starts over from the oldest sample still
intact. A reader therefore never returns samples out of order or mixed from two laps, and every
sample written is, in the end, returned, counted in ``dropped_samples`` or counted in
``skipped_samples``.

The audio callbacks of sounddevice and PyAudio only ever copy into or out of these: no
allocation of audio buffers, no model, no logging, and no lock: the reader signals the
``threading.Event`` that wakes a blocking writer only while such a writer is waiting.

Two policies when the writer outruns the reader:

- ``"drop_oldest"`` (live audio): the writer keeps writing over the oldest samples; the reader
  notices it was lapped, skips to the oldest sample still present and counts the overflow and
  the samples lost (the reader alone updates those counters in this mode). Latency cannot build
  up.
- ``"reject"`` (files, tokens): a write takes only what fits and returns how much; the caller
  waits (:meth:`RingBuffer.write_blocking`) or drops the rest (the writer counts those). Nothing
  already written is lost.
"""

from __future__ import annotations

import threading
import time
from typing import Literal

import numpy as np

from ._compat import Renamed

__all__ = ["RingBuffer", "Policy"]

Policy = Literal["drop_oldest", "reject"]

# A reader lapped again and again while copying gives up after this many tries and reports an
# underrun, rather than spin inside an audio callback (the lost samples are counted either way).
_MAX_READ_ATTEMPTS = 8


class RingBuffer:
    """A ring of ``capacity`` samples of ``channels`` values each (``dtype``, float32 for audio).

    Counters (read them from any thread): ``overflows`` (writes that did not fit, or lapped
    the reader), ``dropped_samples`` (samples lost to them), ``underruns`` (reads that wanted
    more than was there), ``missing_samples`` (samples those reads lacked) and
    ``skipped_samples`` (samples the reader chose to skip, :meth:`skip`).
    """

    # write_blocking's longest sleep between looks at the ring: a safety net only, the reader
    # wakes a waiting writer at once.
    _poll_s = 0.05

    # The counters' old names, kept for one release (deprecated: read the *_samples ones).
    dropped_frames = Renamed[int]("dropped_samples")
    missing_frames = Renamed[int]("missing_samples")
    skipped_frames = Renamed[int]("skipped_samples")

    def __init__(self, capacity: int, channels: int = 1, *, dtype: np.dtype | type = np.float32, policy: Policy = "drop_oldest") -> None:
        if capacity < 1 or channels < 1:
            raise ValueError("capacity and channels must be positive")
        if policy not in ("drop_oldest", "reject"):
            raise ValueError(f"policy must be 'drop_oldest' or 'reject', got {policy!r}")
        self.capacity = capacity
        self.channels = channels
        self.policy: Policy = policy
        self._data = np.zeros((capacity, channels), dtype=dtype)
        self._claimed = 0  # end of the write in progress or last done (writer only, set first)
        self._written = 0  # samples ever written and in place (writer only, set last)
        self._read = 0  # samples ever consumed (reader only)
        self.overflows = 0
        self.dropped_samples = 0
        self.underruns = 0
        self.missing_samples = 0
        self.skipped_samples = 0
        self._space = threading.Event()  # set by the reader, only while _writer_waiting
        self._writer_waiting = False  # set by write_blocking before it waits (a plain flag: no lock)

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def available(self) -> int:
        """Samples the reader can take now."""
        return min(self._written - self._read, self.capacity)

    def free(self) -> int:
        """Samples the writer can add without overwriting anything unread."""
        return self.capacity - (self._written - self._read)

    # -- writer side --------------------------------------------------------------------
    def write(self, samples: np.ndarray) -> int:
        """Copy ``samples`` (``[n, channels]``) in; return how many were taken (for
        ``drop_oldest`` at most ``capacity``: the older ones are lost at once, and the reader
        counts them as dropped)."""
        n = len(samples)
        if n == 0:
            return 0
        if self.policy == "reject":
            room = self.free()
            if n > room:
                self.overflows += 1
                self.dropped_samples += n - room
                n = room
                samples = samples[:n]
            if n == 0:
                return 0
            self._put(samples, self._written)
            return n
        if n > self.capacity:
            # Only the newest `capacity` samples can be kept. The stream still advances by all
            # n samples, in one step once the kept ones are in place, so a reader never sees
            # the counter ahead of the data; it counts the skipped samples with the rest it lost.
            skip = n - self.capacity
            self._put(samples[skip:], self._written + skip)
            return self.capacity
        self._put(samples, self._written)
        return n

    def _put(self, samples: np.ndarray, first_sample: int) -> None:
        """Store ``samples`` as samples ``first_sample...`` and publish the stream's new end."""
        n = len(samples)
        end = first_sample + n
        self._claimed = end  # before any slot changes: readers check it after they copy
        start = first_sample % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = samples[:first]
        if first < n:
            self._data[: n - first] = samples[first:]
        self._written = end  # after the data: samples below it are complete

    def write_blocking(self, samples: np.ndarray, *, timeout: float | None = None) -> int:
        """Write all of ``samples``, waiting for the reader to make room (``reject`` rings)."""
        done, deadline = 0, None if timeout is None else time.monotonic() + timeout
        try:
            while done < len(samples):
                done += self._write_quietly(samples[done:])
                if done >= len(samples):
                    break
                # Clear, then raise the flag, then look: a reader that frees room after the
                # look sees the flag and sets the event after the clear, so no wake-up is lost.
                self._space.clear()
                self._writer_waiting = True
                if self.free() == 0:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._space.wait(self._poll_s if remaining is None else min(self._poll_s, remaining))
                self._writer_waiting = False
        finally:
            self._writer_waiting = False
        return done

    def _write_quietly(self, samples: np.ndarray) -> int:
        """Write what fits without counting the rest as dropped (the caller retries it)."""
        room = self.free()
        if room <= 0:
            return 0
        part = samples[:room]
        self._put(part, self._written)
        return len(part)

    # -- reader side --------------------------------------------------------------------
    def _drop_to(self, sample: int) -> None:
        """Move the read position forward to ``sample``, counting the samples passed as lost."""
        self.overflows += 1
        self.dropped_samples += sample - self._read
        self._read = sample

    def _wake_writer(self) -> None:
        # Event.set takes a lock: only pay for it when a blocking writer is actually waiting.
        if self._writer_waiting:
            self._space.set()

    def _take(self, out: np.ndarray, *, exact: bool) -> int:
        """Copy the oldest unread samples into ``out`` (all of it if ``exact``, else as many as
        there are), advance the read position past them and return how many; 0 if ``exact``
        and too few are there."""
        n = len(out)
        capacity = self.capacity
        for _ in range(_MAX_READ_ATTEMPTS):
            written = self._written  # one snapshot: the samples below it were complete
            if written - self._read > capacity:  # lapped before we started
                self._drop_to(written - capacity)
            start_sample = self._read
            have = min(n, written - start_sample)
            if have <= 0 or (exact and have < n):
                return 0
            start = start_sample % capacity
            first = min(have, capacity - start)
            out[:first] = self._data[start : start + first]
            if first < have:
                out[first:have] = self._data[: have - first]
            # After the copy: any sample below claimed - capacity may have been overwritten while
            # we copied it. None was: done.
            oldest_intact = self._claimed - capacity
            if oldest_intact <= start_sample:
                self._read = start_sample + have
                return have
            # Lapped during the copy: lose the overwritten samples and copy again. Never move past
            # what is published (a write of more than `capacity` samples may still be underway).
            self._drop_to(min(oldest_intact, self._written))
        return 0

    def read_into(self, out: np.ndarray, *, fill: float = 0.0) -> int:
        """Fill ``out`` (``[n, channels]``) with the oldest samples; pad a shortfall with
        ``fill`` and count an underrun. Returns the samples that were real."""
        n = len(out)
        have = self._take(out, exact=False)
        if have < n:
            out[have:] = fill
            self.underruns += 1
            self.missing_samples += n - have
        if have:
            self._wake_writer()
        return have

    def read(self, n: int) -> np.ndarray | None:
        """Take exactly ``n`` samples (a new array), or ``None`` if fewer are available."""
        if self.available() < n:  # cheap early out: no array for nothing
            return None
        out = np.empty((n, self.channels), dtype=self._data.dtype)
        if n and self._take(out, exact=True) == 0:
            return None
        self._wake_writer()
        return out

    def skip(self, n: int) -> int:
        """Discard up to ``n`` of the oldest samples (reader side); return how many went."""
        written = self._written
        if written - self._read > self.capacity:
            self._drop_to(written - self.capacity)
        n = max(0, min(n, written - self._read))
        self._read += n
        self.skipped_samples += n
        if n:
            self._wake_writer()
        return n

    def clear(self) -> None:
        """Drop everything unread (reader side)."""
        self._read = self._written
        self._wake_writer()
