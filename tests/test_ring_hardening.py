"""The ring buffer under a writer that laps the reader mid-copy (seqlock reads), its wake-ups
for blocking writers, and the PyAudio output callback's buffer (full length, preallocated)."""

from __future__ import annotations

import ctypes
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from codecstream.io.devices import PyAudioSink
from codecstream.runtime import RingBuffer


def samples(first: int, count: int) -> np.ndarray:
    """Samples whose value is their index in the stream."""
    return np.arange(first, first + count, dtype=np.float64)[:, None]


class _Interleave(np.ndarray):
    """The ring's storage, running ``hook`` once, the first time ``trigger`` is used on it:
    ``"get"`` when the reader starts copying (after any snapshot it took), ``"set"`` right
    after the writer stored its first piece (data partly in place, counters not yet final)."""

    hook: Callable[[], None] | None = None
    trigger = "get"

    def _fire(self) -> None:
        hook, type(self).hook = type(self).hook, None
        if hook is not None:
            hook()

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if type(self).trigger == "get":
            self._fire()
        return super().__getitem__(key)

    def __setitem__(self, key, value) -> None:  # type: ignore[no-untyped-def]
        super().__setitem__(key, value)
        if type(self).trigger == "set":
            self._fire()


def interleaving_ring(capacity: int, trigger: str) -> tuple[RingBuffer, type[_Interleave]]:
    ring = RingBuffer(capacity, 1, dtype=np.float64)
    kind = type("Interleave", (_Interleave,), {"hook": None, "trigger": trigger})
    ring._data = ring._data.view(kind)
    return ring, kind


def read_block(ring: RingBuffer, n: int) -> list[float]:
    out = np.full((n, 1), -1.0)
    have = ring.read_into(out)
    return out[:have, 0].tolist()


@pytest.mark.parametrize("extra", [4, 8 + 3])
def test_writer_lapping_between_snapshot_and_copy_is_counted_not_returned(extra):
    """Capacity 8, samples 0..7 written. The reader asks for 4; just as it starts copying the
    writer adds ``extra`` samples (4: the review's case; 11: more than the capacity). The reader
    must return the oldest samples still intact, in order, and count every sample lost."""
    ring, kind = interleaving_ring(8, "get")
    ring.write(samples(0, 8))
    kind.hook = lambda: ring.write(samples(8, extra))
    first = read_block(ring, 4)
    lost = extra  # samples 0..extra-1 were overwritten before the reader could return them
    assert first == list(range(lost, lost + 4))
    assert ring.dropped_samples == lost and ring.overflows == 1
    second = read_block(ring, 4)
    assert second == list(range(lost + 4, lost + 8))
    assert ring.available() == 0 and ring.underruns == 0
    assert len(first + second) + ring.dropped_samples == 8 + extra  # every sample returned or counted


def test_write_larger_than_capacity_publishes_only_consistent_state():
    """A reader running in the middle of ``write(n > capacity)`` (after the first piece of data
    went in) must see the ring before or after the write, never a counter ahead of the data or
    slots from two laps; afterwards, read + dropped == written."""
    ring, kind = interleaving_ring(8, "set")
    ring.write(samples(0, 6))
    seen: list[list[float]] = []
    kind.hook = lambda: seen.append(read_block(ring, 4))
    ring.write(samples(6, 20))  # keeps 18..25
    for value in seen[0]:
        assert value in range(0, 6)  # only samples published before this write began
    returned = seen[0] + read_block(ring, 8)
    assert returned == sorted(set(returned))  # strictly increasing: no duplicate, no reorder
    assert returned[-8:] == list(range(18, 26))
    assert len(returned) + ring.dropped_samples == 26
    assert ring.available() == 0


def test_threaded_writer_lapping_reader_loses_nothing_uncounted():
    """A free-running writer laps a small ``drop_oldest`` ring while the reader reads blocks of
    varied sizes. Every block must be consecutive whole samples (16 channels, all equal to the
    sample's index, so large copies release the GIL and a torn sample shows) and start exactly
    where the samples returned so far plus the samples counted as dropped say it should."""
    channels = 16
    ring = RingBuffer(256, channels, dtype=np.float64)
    stop = threading.Event()
    total_written = [0]

    def produce() -> None:
        rng = np.random.default_rng(1)
        written = 0
        while not stop.is_set():
            n = int(rng.choice([7, 128, 255, 600]))  # 600: more than the capacity at once
            ring.write(np.broadcast_to(samples(written, n), (n, channels)))
            written += n
        total_written[0] = written

    def check(out: np.ndarray, have: int, returned: int) -> None:
        first = returned + ring.dropped_samples  # a read's drops come before the samples it returns
        assert out[:have, 0].tolist() == list(range(first, first + have))
        assert np.array_equal(out[:have], np.broadcast_to(out[:have, :1], (have, channels)))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    writer = threading.Thread(target=produce)
    returned = 0
    try:
        writer.start()
        rng = np.random.default_rng(2)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            out = np.full((int(rng.integers(1, 250)), channels), -1.0)
            have = ring.read_into(out)
            check(out, have, returned)
            returned += have
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)
    out = np.empty((100, channels))
    while ring.available():
        have = ring.read_into(out)
        check(out, have, returned)
        returned += have
    assert ring.dropped_samples > 0  # the writer did lap the reader
    assert returned + ring.dropped_samples == total_written[0]


class _CountingEvent:
    """Stands in for the ring's ``threading.Event`` and counts ``set`` calls."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        self.event.set()

    def clear(self) -> None:
        self.event.clear()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout)


@pytest.mark.parametrize("policy", ["drop_oldest", "reject"])
def test_reader_does_not_signal_when_no_writer_waits(policy):
    ring = RingBuffer(16, 1, policy=policy)
    ring._space = counter = _CountingEvent()  # type: ignore[assignment]
    ring.write(np.ones((12, 1), np.float32))
    out = np.empty((4, 1), np.float32)
    assert ring.read_into(out) == 4
    assert ring.read(2) is not None
    assert ring.skip(2) == 2
    ring.read_into(out)  # an underrun too
    assert counter.sets == 0


def test_blocking_writer_is_woken_by_the_reader_not_by_polling():
    """With the safety-net poll made very long, a writer blocked on a full ring must still
    return right after the reader makes room."""
    ring = RingBuffer(4, 1, policy="reject")
    ring._poll_s = 10.0  # type: ignore[misc]
    ring._space = counter = _CountingEvent()  # type: ignore[assignment]
    ring.write(np.ones((4, 1), np.float32))
    freed_at: list[float] = []

    def reader() -> None:
        time.sleep(0.2)
        freed_at.append(time.monotonic())
        ring.read(4)

    thread = threading.Thread(target=reader)
    thread.start()
    assert ring.write_blocking(np.full((3, 1), 2, np.float32), timeout=5) == 3
    woke_after = time.monotonic() - freed_at[0]
    thread.join()
    assert woke_after < 1.0 and counter.sets >= 1
    assert not ring._writer_waiting
    assert ring.read(3)[:, 0].tolist() == [2, 2, 2]


def test_blocking_writer_loses_no_wake_up_under_contention():
    """Many small hand-overs through a 4-sample ring, the reader emptying it each time, with the
    poll made long: a lost wake-up stalls the writer for a whole poll (2 s), so the transfer
    would not finish in time."""
    ring = RingBuffer(4, 1, dtype=np.float64, policy="reject")
    ring._poll_s = 2.0  # type: ignore[misc]
    total = 20_000
    received: list[np.ndarray] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            n = ring.available()
            if n:
                received.append(ring.read(n))  # empty it: only a wake-up lets the writer on

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=reader)
    deadline = time.monotonic() + 4.0
    sent = 0
    try:
        thread.start()
        while sent < total and time.monotonic() < deadline:
            sent += ring.write_blocking(samples(sent, 5), timeout=1.0)
        while ring.available() and time.monotonic() < deadline + 1.0:
            time.sleep(0.001)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert sent == total
    assert np.array_equal(np.concatenate(received)[:, 0], np.arange(total, dtype=np.float64))


# -- PyAudio output callback ---------------------------------------------------------------
def pyaudio_sink(channels: int) -> PyAudioSink:
    sink = PyAudioSink(None, 1000, channels, block_samples=256, prefill_samples=0, ring_seconds=20.0)
    sink._continue = 0  # paContinue, normally set by start() (which opens a device)
    return sink


def pyaudio_accepts(result: tuple) -> int:
    """Parse a callback result the way PyAudio does (``PyArg_ParseTuple(result, "z#i", ...)``,
    built with PY_SSIZE_T_CLEAN); return the byte length PyAudio would copy out."""
    parse = getattr(ctypes.pythonapi, "_PyArg_ParseTuple_SizeT", None)
    if parse is None:
        pytest.skip("this Python does not export _PyArg_ParseTuple_SizeT")
    parse.restype = ctypes.c_int
    parse.argtypes = [ctypes.py_object, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_ssize_t), ctypes.POINTER(ctypes.c_int)]
    data, length, flag = ctypes.c_char_p(), ctypes.c_ssize_t(), ctypes.c_int()
    assert parse(result, b"z#i", ctypes.byref(data), ctypes.byref(length), ctypes.byref(flag)) == 1
    return length.value


def test_pyaudio_callback_never_returns_a_short_buffer():
    """PyAudio ends the stream on a short buffer: asked for more samples than ever before, the
    callback must still return exactly ``frame_count`` samples (audio, then silence)."""
    channels = 2
    sink = pyaudio_sink(channels)
    sink.write(np.ones((20000, channels), np.float32))
    for frame_count in (256, 10000, 300, 9000):
        result = sink._callback(None, frame_count, None, 0)
        assert pyaudio_accepts(result) == frame_count * channels * 4
        assert np.all(np.frombuffer(result[0], np.float32) == 1)
    result = sink._callback(None, 12000, None, 0)  # only 444 samples left: the rest is silence
    audio = np.frombuffer(result[0], np.float32).reshape(-1, channels)
    assert len(audio) == 12000 and np.all(audio[:444] == 1) and np.all(audio[444:] == 0)


def test_pyaudio_callback_allocates_nothing_audio_sized():
    channels, frame_count = 2, 4096
    sink = pyaudio_sink(channels)
    block = np.full((frame_count, channels), 0.5, np.float32)
    sink.write(block)
    sink._callback(None, frame_count, None, 0)  # the first call may size the buffer
    audio_bytes = frame_count * channels * 4
    tracemalloc.start()
    try:
        for _ in range(10):
            sink.write(block)  # (fills the preallocated ring: no allocation either)
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            result = sink._callback(None, frame_count, None, 0)
            _, peak = tracemalloc.get_traced_memory()
            assert peak - before < audio_bytes // 8
            assert pyaudio_accepts(result) == audio_bytes
            assert np.all(np.frombuffer(result[0], np.float32) == 0.5)
    finally:
        tracemalloc.stop()
