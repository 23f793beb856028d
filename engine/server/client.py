"""A Python client for ``codecstream serve``: audio (or codes) out, the server's answer back.

:func:`stream_file` is the building block of ``codecstream client`` and of the load test: it
sends a signal in chunks (paced in real time or not), collects what comes back, and checks the
sequence numbers, so a lost or reordered message is an error, never a silent glitch.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .protocol import Audio, Codes, End, ErrorMessage, Hello, Protocol, Ready, Stats

__all__ = ["ClientResult", "stream_audio", "send_paced", "expect_ready", "ServerError"]


class ServerError(Exception):
    """The server answered with an error message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def expect_ready(message: object) -> Ready:
    """The server's answer to a hello: ``Ready``, or :class:`ServerError` (its error, or any
    other message, which a server must not send first)."""
    if isinstance(message, ErrorMessage):
        raise ServerError(message.code, message.message)
    if not isinstance(message, Ready):
        raise ServerError("protocol", f"expected a ready message after hello, got {type(message).__name__}")
    return message


@dataclass
class ClientResult:
    ready: Ready
    audio: np.ndarray  # [n, channels] float32, what came back (empty for audio->codes)
    codes: list[list[np.ndarray]] = field(default_factory=list)  # per message, per level
    stats: dict[str, Any] = field(default_factory=dict)
    sent_at: list[float] = field(default_factory=list)  # monotonic send time of each chunk
    received_at: list[tuple[float, int]] = field(default_factory=list)  # (time, messages so far)


async def send_paced(websocket: Any, payloads: Iterable[bytes], period_s: float | None, sent_at: list[float] | None = None) -> None:
    """Send ``payloads``, the i-th not before the first's time + i·``period_s`` (real-time pace;
    None: at once), then an end message. ``sent_at`` gets each send time."""
    started = time.monotonic()
    for index, payload in enumerate(payloads):
        if period_s is not None:
            delay = started + index * period_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if sent_at is not None:
            sent_at.append(time.monotonic())
        await websocket.send(payload)
    await websocket.send(Protocol.end())


async def stream_audio(
    url: str,
    audio: np.ndarray,
    sample_rate: int,
    *,
    model: str | None = None,
    direction: str = "audio->audio",
    chunk_ms: float = 20.0,
    realtime: bool = False,
    audio_format: str = "pcm16",
    options: dict[str, Any] | None = None,
    token: str | None = None,
    open_timeout: float = 30.0,
) -> ClientResult:
    """Send ``audio`` (``[n, channels]`` float32) and return everything the server sends back."""
    from websockets.asyncio.client import connect

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    protocol = Protocol(max_message_bytes=1 << 24)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    chunk = max(1, round(chunk_ms * sample_rate / 1000))
    async with connect(url, additional_headers=headers, max_size=1 << 24, open_timeout=open_timeout) as websocket:
        await websocket.send(protocol.hello(Hello(model=model, direction=direction, sample_rate=sample_rate, channels=audio.shape[1], format=audio_format, options=options or {})))
        ready = expect_ready(protocol.receive(await websocket.recv()))
        result = ClientResult(ready=ready, audio=np.zeros((0, audio.shape[1]), np.float32))
        pieces: list[np.ndarray] = []
        received = 0

        payloads = (protocol.audio(audio[start : start + chunk]) for start in range(0, len(audio), chunk))
        sender = asyncio.create_task(send_paced(websocket, payloads, chunk / sample_rate if realtime else None, result.sent_at))
        try:
            async for message in websocket:
                event = protocol.receive(message)  # raises on a lost or reordered message
                if isinstance(event, Audio):
                    pieces.append(event.samples)
                    received += 1
                    result.received_at.append((time.monotonic(), received))
                elif isinstance(event, Codes):
                    result.codes.append(event.levels)
                    result.received_at.append((time.monotonic(), len(result.codes)))
                elif isinstance(event, Stats):
                    result.stats = event.values
                elif isinstance(event, End):
                    break
                elif isinstance(event, ErrorMessage):
                    raise ServerError(event.code, event.message)
            await sender
        finally:
            if not sender.done():
                sender.cancel()
        result.audio = np.concatenate(pieces) if pieces else np.zeros((0, audio.shape[1]), np.float32)
        return result
