"""The codecstream WebSocket protocol, version 1, without any I/O.

Every WebSocket message is binary: one kind byte, then the payload.

======  =============  ===================================================================
byte    kind           payload
======  =============  ===================================================================
0x01    CONTROL        UTF-8 JSON object with a ``"type"``: ``hello`` (client, first
                       message), ``ready`` (server's answer), ``end`` (either side: no more
                       input / no more output), ``stats`` (server, on request or at end)
0x02    AUDIO_PCM16    u32 sequence number, then little-endian int16 samples, interleaved
0x03    AUDIO_F32      u32 sequence number, then little-endian float32 samples, interleaved
0x04    CODES          u32 sequence number, u8 dtype (0 int32, 1 float32), u8 levels, then
                       per level u16 rows and u32 frames, then each level's values
                       row-major (codes ``[rows, frames]`` per level, batch of one)
0x05    ERROR          UTF-8 JSON ``{"code": ..., "message": ...}``
======  =============  ===================================================================

Sequence numbers count each side's data messages from 0, so a receiver sees a loss or a
reordering at once. A hello looks like::

    {"type": "hello", "version": 1, "model": "hifigan-universal", "direction": "audio->audio",
     "sample_rate": 24000, "channels": 1, "format": "pcm16", "options": {}}

``direction`` is ``audio->codes``, ``codes->audio`` or ``audio->audio``; ``format`` (``pcm16`` or
``f32``) is the audio format of both directions; ``sample_rate`` is the client's (the server
converts). The server answers ``ready`` with the model's rates and latency, then data flows.

:class:`Protocol` turns one received message into an event and events into messages; it raises
:class:`ProtocolError` (with a stable ``code``) for anything malformed. It keeps the sequence
counters of one connection, so it also catches gaps and reordering.
"""

from __future__ import annotations

import dataclasses

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CodecStreamError

__all__ = [
    "VERSION",
    "Kind",
    "ProtocolError",
    "Hello",
    "Ready",
    "End",
    "Stats",
    "Audio",
    "Codes",
    "ErrorMessage",
    "Protocol",
    "ERROR_CODES",
    "DIRECTIONS",
    "FORMATS",
]

VERSION = 1
#: Every ``code`` an ERROR message may carry, and what it means.
ERROR_CODES = {
    "empty": "an empty message",
    "unknown_kind": "a text message, or an unknown kind byte",
    "bad_json": "a control payload that is not a UTF-8 JSON object (or nests too deep, or has huge numbers)",
    "bad_control": "a control message of an unknown type, or a malformed one",
    "bad_hello": "a hello with a bad field, or a model or direction this server does not serve",
    "bad_options": "hello options unknown to the model, of the wrong type or out of range",
    "unsupported_version": "a protocol version this server does not speak",
    "bad_audio": "audio that is not whole samples, has NaN or infinities, or does not fit the model",
    "bad_codes": "codes of the wrong shape or levels, or out of range",
    "bad_stream": "a stream used out of order (ended inside a frame, layout changed)",
    "bad_input": "other input the model refuses",
    "sequence": "a data message lost or reordered",
    "unexpected": "a message that does not belong at this point of the session",
    "too_large": "a message over the byte limit, or carrying more audio or codes than one message may",
    "server_busy": "the session limit, or the limit of connections waiting for a hello, is reached",
    "hello_timeout": "no hello within the server's hello timeout",
    "idle_timeout": "no message within the server's idle timeout",
    "model_unavailable": "a served model that cannot be loaded",
    "internal": "a server bug (logged with the session id); never caused by malformed input",
}
DIRECTIONS = ("audio->codes", "codes->audio", "audio->audio")
FORMATS = ("pcm16", "f32")


class Kind:
    CONTROL = 0x01
    AUDIO_PCM16 = 0x02
    AUDIO_F32 = 0x03
    CODES = 0x04
    ERROR = 0x05


class ProtocolError(CodecStreamError):
    """A message that breaks the protocol, or a request the server refuses. ``code`` is stable
    (see :data:`ERROR_CODES`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Hello:
    model: str | None
    direction: str
    sample_rate: int
    channels: int = 1
    format: str = "pcm16"
    options: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION


@dataclass(frozen=True)
class Ready:
    model: str
    direction: str
    sample_rate: int  # the client's rate, echoed
    model_sample_rate: int
    frame_rate: float
    latency_ms: float
    code_levels: list[dict[str, Any]] = field(default_factory=list)
    session: str = ""
    replica: str = ""  # which replica serves the session (``serve --ray``); sent only when set


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class Stats:
    values: dict[str, Any]


@dataclass(frozen=True)
class Audio:
    sequence: int
    samples: np.ndarray  # [n, channels] float32


@dataclass(frozen=True)
class Codes:
    sequence: int
    levels: list[np.ndarray]  # each [rows, frames], int32 or float32


@dataclass(frozen=True)
class ErrorMessage:
    code: str
    message: str


Event = Hello | Ready | End | Stats | Audio | Codes | ErrorMessage
_SEQUENCE = struct.Struct("<I")


def _control(payload: dict[str, Any]) -> bytes:
    return bytes([Kind.CONTROL]) + json.dumps(payload, separators=(",", ":")).encode()


class Protocol:
    """One side of one connection. ``channels`` and ``format`` are those of the hello (the
    client sets them when it sends it, the server when it receives it)."""

    def __init__(self, *, max_message_bytes: int = 1 << 20) -> None:
        self.max_message_bytes = max_message_bytes
        self.channels = 1
        self.format = "pcm16"
        self._sent = 0  # data messages sent
        self._received = 0  # data messages received

    # -- receiving ------------------------------------------------------------------------
    def receive(self, message: bytes | str) -> Event:
        if isinstance(message, str):
            raise ProtocolError("unknown_kind", "text messages are not part of the protocol; send binary messages")
        if len(message) > self.max_message_bytes:
            raise ProtocolError("too_large", f"message of {len(message)} bytes exceeds the limit of {self.max_message_bytes}")
        if not message:
            raise ProtocolError("empty", "empty message")
        kind, payload = message[0], memoryview(message)[1:]
        if kind == Kind.CONTROL:
            return self._control(payload)
        if kind == Kind.ERROR:
            data = self._json(payload)
            return ErrorMessage(code=str(data.get("code", "error")), message=str(data.get("message", "")))
        if kind in (Kind.AUDIO_PCM16, Kind.AUDIO_F32):
            return self._audio(kind, payload)
        if kind == Kind.CODES:
            return self._codes(payload)
        raise ProtocolError("unknown_kind", f"unknown message kind 0x{kind:02x}")

    def _json(self, payload: memoryview) -> dict[str, Any]:
        try:
            data = json.loads(bytes(payload).decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge integers, deep nesting
            raise ProtocolError("bad_json", f"control payload is not UTF-8 JSON we accept: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise ProtocolError("bad_json", "control payload must be a JSON object")
        return data

    def _control(self, payload: memoryview) -> Event:
        data = self._json(payload)
        kind = data.get("type")
        if kind == "hello":
            return self._hello(data)
        if kind == "ready":
            try:
                known = {f.name for f in dataclasses.fields(Ready)}  # a newer server may say more
                return Ready(**{k: v for k, v in data.items() if k in known})
            except TypeError as exc:
                raise ProtocolError("bad_control", f"malformed ready: {exc}") from None
        if kind == "end":
            return End()
        if kind == "stats":
            return Stats(values={k: v for k, v in data.items() if k != "type"})
        raise ProtocolError("bad_control", f"unknown control type {kind!r}")

    def _hello(self, data: dict[str, Any]) -> Hello:
        version = data.get("version", VERSION)
        if version != VERSION:
            raise ProtocolError("unsupported_version", f"protocol version {version!r} is not supported; this server speaks {VERSION}")
        direction = data.get("direction", "audio->audio")
        if direction not in DIRECTIONS:
            raise ProtocolError("bad_hello", f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        fmt = data.get("format", "pcm16")
        if fmt not in FORMATS:
            raise ProtocolError("bad_hello", f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        rate, channels = data.get("sample_rate"), data.get("channels", 1)
        if not isinstance(rate, int) or isinstance(rate, bool) or not 4000 <= rate <= 192000:
            raise ProtocolError("bad_hello", f"sample_rate must be an integer from 4000 to 192000 Hz, got {rate!r}")
        if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 2:
            raise ProtocolError("bad_hello", f"channels must be 1 or 2, got {channels!r}")
        model, options = data.get("model"), data.get("options", {})
        if model is not None and not isinstance(model, str):
            raise ProtocolError("bad_hello", "model must be a string")
        if not isinstance(options, dict):
            raise ProtocolError("bad_hello", "options must be a JSON object")
        unknown = set(data) - {"type", "version", "direction", "format", "sample_rate", "channels", "model", "options"}
        if unknown:
            raise ProtocolError("bad_hello", f"unknown hello fields {sorted(unknown)}")
        self.channels, self.format = channels, fmt
        return Hello(model=model, direction=direction, sample_rate=rate, channels=channels, format=fmt, options=options)

    def _sequence(self, payload: memoryview) -> int:
        if len(payload) < 4:
            raise ProtocolError("bad_audio", "data message too short for its sequence number")
        (sequence,) = _SEQUENCE.unpack_from(payload)
        if sequence != self._received:
            raise ProtocolError("sequence", f"expected data message {self._received}, got {sequence}: a message was lost or reordered")
        self._received += 1
        return sequence

    def _audio(self, kind: int, payload: memoryview) -> Audio:
        sequence = self._sequence(payload)
        body = payload[4:]
        width = 2 if kind == Kind.AUDIO_PCM16 else 4
        if len(body) % (width * self.channels):
            raise ProtocolError("bad_audio", f"audio payload of {len(body)} bytes is not whole {self.channels}-channel samples")
        if kind == Kind.AUDIO_PCM16:
            samples = np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0
        else:
            samples = np.frombuffer(body, dtype="<f4").astype(np.float32)
            if samples.size and not np.isfinite(samples).all():
                raise ProtocolError("bad_audio", "audio contains NaN or infinite values")
        return Audio(sequence=sequence, samples=samples.reshape(-1, self.channels))

    def _codes(self, payload: memoryview) -> Codes:
        sequence = self._sequence(payload)
        body = payload[4:]
        if len(body) < 2:
            raise ProtocolError("bad_codes", "codes message too short")
        dtype_code, count = body[0], body[1]
        if dtype_code not in (0, 1):
            raise ProtocolError("bad_codes", f"unknown codes dtype {dtype_code}")
        if not 1 <= count <= 16:
            raise ProtocolError("bad_codes", f"codes must have 1 to 16 levels, got {count}")
        offset, shapes = 2, []
        for _ in range(count):
            if len(body) < offset + 6:
                raise ProtocolError("bad_codes", "codes header is truncated")
            rows, frames = struct.unpack_from("<HI", body, offset)
            shapes.append((rows, frames))
            offset += 6
        dtype = np.dtype("<i4") if dtype_code == 0 else np.dtype("<f4")
        needed = sum(r * f for r, f in shapes) * dtype.itemsize
        if len(body) - offset != needed:
            raise ProtocolError("bad_codes", f"codes payload has {len(body) - offset} bytes, the header says {needed}")
        levels = []
        for rows, frames in shapes:
            size = rows * frames * dtype.itemsize
            levels.append(np.frombuffer(body[offset : offset + size], dtype=dtype).reshape(rows, frames))
            offset += size
        return Codes(sequence=sequence, levels=levels)

    # -- sending --------------------------------------------------------------------------
    def hello(self, hello: Hello) -> bytes:
        self.channels, self.format = hello.channels, hello.format
        payload = {
            "type": "hello", "version": hello.version, "model": hello.model, "direction": hello.direction,
            "sample_rate": hello.sample_rate, "channels": hello.channels, "format": hello.format, "options": hello.options,
        }
        return _control(payload)

    @staticmethod
    def ready(ready: Ready) -> bytes:
        return _control({"type": "ready", **{k: v for k, v in ready.__dict__.items() if k != "replica" or v}})

    @staticmethod
    def end() -> bytes:
        return _control({"type": "end"})

    @staticmethod
    def stats(values: dict[str, Any]) -> bytes:
        return _control({"type": "stats", **values})

    @staticmethod
    def error(code: str, message: str) -> bytes:
        return bytes([Kind.ERROR]) + json.dumps({"code": code, "message": message}).encode()

    def audio(self, samples: np.ndarray) -> bytes:
        """``samples``: ``[n, channels]`` float32 in [-1, 1] (pcm16 clips)."""
        header = _SEQUENCE.pack(self._sent)
        self._sent += 1
        if self.format == "pcm16":
            pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
            return bytes([Kind.AUDIO_PCM16]) + header + pcm.tobytes()
        return bytes([Kind.AUDIO_F32]) + header + np.ascontiguousarray(samples, dtype="<f4").tobytes()

    def codes(self, levels: list[np.ndarray]) -> bytes:
        """``levels``: ``[rows, frames]`` arrays (integers → int32, floats → float32)."""
        floating = any(np.issubdtype(np.asarray(level).dtype, np.floating) for level in levels)
        dtype = np.dtype("<f4") if floating else np.dtype("<i4")
        header = _SEQUENCE.pack(self._sent) + bytes([1 if floating else 0, len(levels)])
        self._sent += 1
        shapes = b"".join(struct.pack("<HI", *np.asarray(level).shape) for level in levels)
        data = b"".join(np.ascontiguousarray(level, dtype=dtype).tobytes() for level in levels)
        return bytes([Kind.CODES]) + header + shapes + data
