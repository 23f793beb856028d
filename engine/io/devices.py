"""Sound-card input and output through sounddevice or PyAudio (both PortAudio).

The callbacks follow sounddevice's rules: they copy between the device buffer and a
preallocated ring and return. No model, no audio-sized allocation, no logging, no lock, nothing
that can raise: a device's trouble flags are only counted. The output side holds a prefill
cushion before it starts playing, then plays whatever the ring has, silence on a shortfall;
it always hands the device a full buffer.

PyAudio's output callback returns the audio rather than filling a device buffer. PyAudio
parses the result with ``"z#"``, which takes any C-contiguous buffer whose type has no release
hook (``bytes`` or a NumPy array, not ``bytearray``/``memoryview``), and treats a buffer shorter
than asked for as the end of the stream. So :class:`PyAudioSink` returns a view of one
preallocated float32 array, exactly ``frame_count`` samples long (PortAudio's "frames" are
samples per channel), sized at :meth:`~PyAudioSink.start` from ``frames_per_buffer`` (grown once,
in the callback, should PortAudio ever ask for more).
PyAudio itself allocates each input block as ``bytes`` (:class:`PyAudioSource`), before our
callback runs; that one is out of our hands.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np

from ..errors import CodecStreamError, OptionError
from ..runtime._compat import Renamed, renamed_keywords
from ..runtime.ring import RingBuffer
from .base import AudioSink, AudioSource

__all__ = [
    "DeviceError",
    "list_devices",
    "has_input_device",
    "has_output_device",
    "open_source",
    "open_sink",
    "LateAudio",
    "SoundDeviceSource",
    "SoundDeviceSink",
    "PyAudioSource",
    "PyAudioSink",
]

BACKENDS = ("sounddevice", "pyaudio")


class DeviceError(CodecStreamError):
    """No such device, no PortAudio, or the device refused the stream."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: PortAudio library missing
        raise DeviceError(f"sounddevice is unavailable ({exc}); pip install 'codecstream[audio]' and apt-get install libportaudio2") from exc
    return sounddevice


def list_devices() -> list[dict[str, Any]]:
    """PortAudio's devices: ``name``, ``index``, ``max_input_channels``, ``max_output_channels``."""
    sd = _sounddevice()
    return [dict(d, index=i) for i, d in enumerate(sd.query_devices())]


def _default_device(kind: str) -> bool:
    try:
        sd = _sounddevice()
        sd.query_devices(kind=kind)
        return True
    except Exception:  # no PortAudio, no devices, no default
        return False


def has_input_device() -> bool:
    return _default_device("input")


def has_output_device() -> bool:
    return _default_device("output")


LateAudio = Literal["play", "drop"]


class _Prefill:
    """Output-side state shared by both backends: hold silence until the cushion is full, then
    play. After an underrun, ``"play"`` plays everything late (nothing lost, latency grows by the
    gap: right for TTS); ``"drop"`` lets the first ``allowance_samples`` of gaps stay as extra
    cushion (so one jittery block does not glitch twice) and skips as much late audio as any
    further gap lasted (latency stays within the allowance: right for live audio)."""

    def __init__(self, ring: RingBuffer, prefill_samples: int, late_audio: LateAudio = "play", allowance_samples: int | None = None) -> None:
        if late_audio not in ("play", "drop"):
            raise OptionError(f"late_audio must be 'play' or 'drop', got {late_audio!r}")
        self.ring = ring
        self.prefill_samples = prefill_samples
        self.drop_late = late_audio == "drop"
        self.allowance_samples = prefill_samples // 4 if allowance_samples is None else max(0, allowance_samples)
        self.absorbed_samples = 0  # gap samples kept as cushion so far (<= allowance_samples)
        self.owed_samples = 0  # gap samples beyond the allowance, not yet made up by skipping
        self.playing = False
        self.ending = False  # set by drain(): running dry now is the end, not an underrun

    def fill(self, out: np.ndarray) -> None:
        if self.ending and self.ring.available() < len(out):
            have = self.ring.available()
            if have:
                self.ring.read_into(out[:have])
            out[have:] = 0.0
            return
        if not self.playing:
            if self.ring.available() < self.prefill_samples:
                out.fill(0.0)
                return
            self.playing = True
        if self.owed_samples:
            # Skip only what leaves this callback whole: skipping into a new underrun would
            # just owe the samples again.
            self.owed_samples -= self.ring.skip(min(self.owed_samples, self.ring.available() - len(out)))
        have = self.ring.read_into(out)
        if self.drop_late and have < len(out):
            gap = len(out) - have
            absorbed = min(gap, self.allowance_samples - self.absorbed_samples)
            self.absorbed_samples += absorbed
            self.owed_samples = min(self.owed_samples + gap - absorbed, self.ring.capacity)


class _RingSink(AudioSink):
    """What both backends' sinks share: the ring, the prefill, the counters, drain."""

    def __init__(
        self, sample_rate: int, channels: int, prefill_samples: int, ring_seconds: float, late_audio: LateAudio,
        allowance_samples: int | None,
    ) -> None:
        super().__init__(sample_rate, channels)
        self.ring = RingBuffer(max(1, int(ring_seconds * sample_rate)), channels, policy="drop_oldest")
        self._prefill = _Prefill(self.ring, prefill_samples, late_audio, allowance_samples)

    @property
    def underruns(self) -> int:
        return self.ring.underruns

    @property
    def playing(self) -> bool:
        return self._prefill.playing

    @property
    def late_dropped_samples(self) -> int:
        """Samples skipped to win back the delay of underruns (``late_audio="drop"``)."""
        return self.ring.skipped_samples

    def buffered_samples(self) -> int:
        return self.ring.available()

    def write(self, samples: np.ndarray) -> None:
        self.ring.write(samples)

    def drain(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        self._prefill.ending = True  # the end: play what is there (prefill or not), count no underrun
        while self.ring.available() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(self.device_latency_s)


# -- sounddevice ----------------------------------------------------------------------------
class SoundDeviceSource(AudioSource):
    """Capture through ``sounddevice.InputStream``; ``device`` is an index, a name (substring)
    or None for the system default."""

    block_frames = Renamed[int]("block_samples")  # the old name (deprecated, kept for one release)

    @renamed_keywords(block_frames="block_samples")
    def __init__(self, device: int | str | None, sample_rate: int, channels: int = 1, *, block_samples: int = 0, latency: str | float = "low", ring_seconds: float = 2.0) -> None:
        super().__init__(sample_rate, channels, ring_seconds=ring_seconds, policy="drop_oldest")
        self.device, self.block_samples, self.latency = device, block_samples, latency
        self._stream: Any = None

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.status_flags += 1
        self.ring.write(indata)

    def start(self) -> None:
        sd = _sounddevice()
        try:
            self._stream = sd.InputStream(
                device=self.device, samplerate=self.sample_rate, channels=self.channels, dtype="float32",
                blocksize=self.block_samples, latency=self.latency, callback=self._callback,
            )
            self._stream.start()
        except Exception as exc:
            raise DeviceError(f"cannot open input device {self.device!r}: {exc}") from exc
        self.device_latency_s = float(self._stream.latency)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


class SoundDeviceSink(_RingSink):
    """Playback through ``sounddevice.OutputStream`` from a ring, after ``prefill_samples``."""

    block_frames = Renamed[int]("block_samples")  # the old name (deprecated, kept for one release)

    @renamed_keywords(block_frames="block_samples", prefill_frames="prefill_samples", allowance_frames="allowance_samples")
    def __init__(self, device: int | str | None, sample_rate: int, channels: int = 1, *, block_samples: int = 0, latency: str | float = "low", prefill_samples: int = 0, ring_seconds: float = 2.0, late_audio: LateAudio = "play", allowance_samples: int | None = None) -> None:
        super().__init__(sample_rate, channels, prefill_samples, ring_seconds, late_audio, allowance_samples)
        self.device, self.block_samples, self.latency = device, block_samples, latency
        self._stream: Any = None

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.status_flags += 1
        self._prefill.fill(outdata)

    def start(self) -> None:
        sd = _sounddevice()
        try:
            self._stream = sd.OutputStream(
                device=self.device, samplerate=self.sample_rate, channels=self.channels, dtype="float32",
                blocksize=self.block_samples, latency=self.latency, callback=self._callback,
            )
            self._stream.start()
        except Exception as exc:
            raise DeviceError(f"cannot open output device {self.device!r}: {exc}") from exc
        self.device_latency_s = float(self._stream.latency)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


# -- PyAudio --------------------------------------------------------------------------------
_PYAUDIO_UNSPECIFIED_RESERVE = 8192  # output samples preallocated when frames_per_buffer is 0


def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:
        raise DeviceError("PyAudio is unavailable; pip install 'codecstream[audio]' (needs portaudio19-dev to build)") from exc
    return pyaudio


def _pyaudio_index(audio: Any, device: int | str | None, kind: str) -> int | None:
    if device is None or isinstance(device, int):
        return device
    channels = "maxInputChannels" if kind == "input" else "maxOutputChannels"
    for index in range(audio.get_device_count()):
        info = audio.get_device_info_by_index(index)
        if device.lower() in str(info["name"]).lower() and info[channels] > 0:
            return index
    raise DeviceError(f"no {kind} device named like {device!r}")


class PyAudioSource(AudioSource):
    """Capture through a PyAudio callback stream."""

    block_frames = Renamed[int]("block_samples")  # the old name (deprecated, kept for one release)

    @renamed_keywords(block_frames="block_samples")
    def __init__(self, device: int | str | None, sample_rate: int, channels: int = 1, *, block_samples: int = 256, ring_seconds: float = 2.0) -> None:
        super().__init__(sample_rate, channels, ring_seconds=ring_seconds, policy="drop_oldest")
        self.device, self.block_samples = device, block_samples
        self._audio: Any = None
        self._stream: Any = None

    def _callback(self, in_data: bytes, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        if status:
            self.status_flags += 1
        self.ring.write(np.frombuffer(in_data, dtype=np.float32).reshape(-1, self.channels))
        return None, self._continue

    def start(self) -> None:
        pyaudio = _pyaudio()
        self._continue = pyaudio.paContinue
        self._audio = pyaudio.PyAudio()
        try:
            self._stream = self._audio.open(
                format=pyaudio.paFloat32, channels=self.channels, rate=self.sample_rate, input=True,
                input_device_index=_pyaudio_index(self._audio, self.device, "input"),
                frames_per_buffer=self.block_samples, stream_callback=self._callback,
            )
        except Exception as exc:
            self._audio.terminate()
            raise DeviceError(f"cannot open input device {self.device!r}: {exc}") from exc
        self.device_latency_s = float(self._stream.get_input_latency())

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop_stream()
            self._stream.close()
            self._stream = None
        if self._audio is not None:
            self._audio.terminate()
            self._audio = None


class PyAudioSink(_RingSink):
    """Playback through a PyAudio callback stream from a ring, after ``prefill_samples``."""

    block_frames = Renamed[int]("block_samples")  # the old name (deprecated, kept for one release)

    @renamed_keywords(block_frames="block_samples", prefill_frames="prefill_samples", allowance_frames="allowance_samples")
    def __init__(self, device: int | str | None, sample_rate: int, channels: int = 1, *, block_samples: int = 256, prefill_samples: int = 0, ring_seconds: float = 2.0, late_audio: LateAudio = "play", allowance_samples: int | None = None) -> None:
        super().__init__(sample_rate, channels, prefill_samples, ring_seconds, late_audio, allowance_samples)
        self.device, self.block_samples = device, block_samples
        # Sized by start(); the callback grows it if it is ever called with more samples.
        self._out = np.zeros((0, channels), dtype=np.float32)
        self._view = self._out  # _out[:frame_count] of the last callback, reused while it fits
        self._audio: Any = None
        self._stream: Any = None

    def _reserve(self, n: int) -> None:
        """Make room for callbacks of up to ``n`` samples (outside the callback if possible:
        this allocates)."""
        if n > len(self._out):
            self._out = np.zeros((n, self.channels), dtype=np.float32)
            self._view = self._out[:0]

    def _callback(self, in_data: Any, frame_count: int, time_info: Any, status: int) -> tuple[np.ndarray, int]:
        if status:
            self.status_flags += 1
        view = self._view
        if len(view) != frame_count:
            if frame_count > len(self._out):
                # A short buffer would end the stream (PyAudio reads it as paComplete): grow,
                # once, with headroom, rather than truncate.
                self._reserve(max(frame_count, 2 * len(self._out)))
            view = self._view = self._out[:frame_count]
        self._prefill.fill(view)
        # The array itself, not .tobytes(): PyAudio copies it out before the next callback.
        return view, self._continue

    def start(self) -> None:
        pyaudio = _pyaudio()
        self._continue = pyaudio.paContinue
        # With frames_per_buffer set PortAudio calls back with exactly that many samples; 0
        # (unspecified) lets the host vary it, so leave room for typical host buffers too.
        self._reserve(self.block_samples if self.block_samples > 0 else _PYAUDIO_UNSPECIFIED_RESERVE)
        self._audio = pyaudio.PyAudio()
        try:
            self._stream = self._audio.open(
                format=pyaudio.paFloat32, channels=self.channels, rate=self.sample_rate, output=True,
                output_device_index=_pyaudio_index(self._audio, self.device, "output"),
                frames_per_buffer=self.block_samples, stream_callback=self._callback,
            )
        except Exception as exc:
            self._audio.terminate()
            raise DeviceError(f"cannot open output device {self.device!r}: {exc}") from exc
        self.device_latency_s = float(self._stream.get_output_latency())

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop_stream()
            self._stream.close()
            self._stream = None
        if self._audio is not None:
            self._audio.terminate()
            self._audio = None


@renamed_keywords(block_frames="block_samples")
def open_source(
    backend: str, device: int | str | None, sample_rate: int, channels: int, block_samples: int, *, ring_seconds: float = 2.0
) -> AudioSource:
    """A device source; ``ring_seconds`` bounds how much input may wait (live audio drops the
    oldest beyond it, so latency cannot grow)."""
    if backend == "sounddevice":
        return SoundDeviceSource(device, sample_rate, channels, block_samples=block_samples, ring_seconds=ring_seconds)
    if backend == "pyaudio":
        return PyAudioSource(device, sample_rate, channels, block_samples=block_samples or 256, ring_seconds=ring_seconds)
    raise DeviceError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


@renamed_keywords(block_frames="block_samples", prefill_frames="prefill_samples", allowance_frames="allowance_samples")
def open_sink(
    backend: str, device: int | str | None, sample_rate: int, channels: int, block_samples: int, prefill_samples: int,
    *, ring_seconds: float = 2.0, late_audio: LateAudio = "play", allowance_samples: int | None = None,
) -> AudioSink:
    """A device sink; ``ring_seconds`` bounds the audio queued for playing (beyond it the
    oldest is dropped); ``late_audio`` says what follows an underrun: ``"play"`` everything
    (later than planned) or ``"drop"``: gaps up to ``allowance_samples`` in all (default a
    quarter of the prefill) become extra cushion, and late audio beyond that is skipped, so
    latency grows by the allowance at most."""
    if backend == "sounddevice":
        return SoundDeviceSink(device, sample_rate, channels, block_samples=block_samples, prefill_samples=prefill_samples, ring_seconds=ring_seconds, late_audio=late_audio, allowance_samples=allowance_samples)
    if backend == "pyaudio":
        return PyAudioSink(
            device, sample_rate, channels, block_samples=block_samples or 256, prefill_samples=prefill_samples,
            ring_seconds=ring_seconds, late_audio=late_audio, allowance_samples=allowance_samples,
        )
    raise DeviceError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
